// The live page with auth on (docs/security.md), on SQLite and on PostgreSQL: it asks for a token
// when the server answers 401, refuses a wrong one, accepts the right one, keeps it across a
// reload, and then charts live data: fetches carry `Authorization: Bearer`, the WebSocket a
// `bearer.<token>` subprotocol.
//
// Run (from this directory, after `npm ci`): node --test auth.test.mjs

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { BACKENDS, ServerProcess, createDatabase, isoAgo, launchBrowser, openPage } from "./harness.mjs";

for (const backend of BACKENDS) {
  describe(`dashboard with auth on, on ${backend}`, () => {
    const token = `bootstrap-${randomBytes(24).toString("hex")}`;
    let db, server, browser;

    before(async () => {
      db = await createDatabase(backend);
      server = await ServerProcess.start(db.url, 0, { args: ["--auth", "on"], env: { METRICS_ADMIN_TOKEN: token } });
      browser = await launchBrowser();
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
      await db?.drop();
    });

    test("the page prompts for a token, accepts it, keeps it and charts live data", async () => {
      const { page, context, offsite } = await openPage(browser, `${server.url}/`);
      try {
        // The server answers 401: the prompt opens and nothing goes live.
        await page.waitForSelector("#auth[open]", { timeout: 10e3 });
        assert.notEqual(await page.evaluate(() => window.metricsDashboard.connection()), "live");

        // A wrong token is refused and the prompt stays, saying so.
        await page.fill("#auth-token", "mt_not-a-token");
        await page.click('#auth-form button[type="submit"]');
        await page.waitForFunction(() => document.querySelector("#auth-message").textContent.includes("refused"), null, { timeout: 10e3 });
        assert.ok(await page.locator("#auth[open]").isVisible());

        // The right one: the prompt closes and the stream goes live.
        await page.fill("#auth-token", token);
        await page.click('#auth-form button[type="submit"]');
        await page.waitForSelector('#status[data-state="live"]', { timeout: 10e3 });
        assert.equal(await page.locator("#auth[open]").count(), 0);
        assert.equal(await page.evaluate(() => localStorage.getItem("metrics.token")), token);

        // Live data arrives over the authenticated socket and is charted.
        const name = `cpu.auth.${backend}`;
        server.token = token;
        await server.post({ name, value: 7.5, ts: isoAgo(0) });
        await page.waitForFunction((name) => {
          const d = window.metricsDashboard;
          const i = d.chartSeries().indexOf(name);
          return i >= 0 && d.chartData()[i + 1].includes(7.5);
        }, name, { timeout: 10e3 });

        // A reload uses the kept token: no prompt, live, and the history is read back.
        await page.reload();
        await page.waitForSelector('#status[data-state="live"]', { timeout: 10e3 });
        assert.equal(await page.locator("#auth[open]").count(), 0);
        await page.waitForFunction((name) => window.metricsDashboard.chartSeries().includes(name), name, { timeout: 10e3 });
        assert.deepEqual(offsite, []);
      } finally {
        await context.close();
      }
    });
  });
}
