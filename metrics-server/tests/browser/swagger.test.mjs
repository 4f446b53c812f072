// Swagger UI at /docs in a real headless Chromium, on SQLite and on PostgreSQL: "Try it out" then
// "Execute" on the main routes, with the examples the spec fills in, gets the answer the spec
// promises (the spec's `required` flags and examples let a person call each route as shown).
//
// Run (from this directory, after `npm ci`): node --test swagger.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { BACKENDS, ServerProcess, createDatabase, isoAgo, launchBrowser, openPage } from "./harness.mjs";

/** Expands an operation, presses "Try it out" and "Execute", and returns the status shown. */
async function tryItOut(page, operationId) {
  const op = page.locator(`[id$="-${operationId}"].opblock`);
  await op.locator(".opblock-summary").first().click();
  await op.locator("button.try-out__btn").click();
  await op.locator("button.execute").click();
  const status = op.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor({ timeout: 15e3 });
  const body = await op.locator(".live-responses-table .response-col_description pre").first().textContent();
  return { status: Number((await status.textContent()).trim()), body };
}

for (const backend of BACKENDS) {
  describe(`Swagger UI "Try it out" on ${backend}`, () => {
    let db, server, browser;

    before(async () => {
      db = await createDatabase(backend);
      server = await ServerProcess.start(db.url);
      browser = await launchBrowser();
      // What the examples select: `cpu` with host web-1 in the last quarter of an hour.
      await server.post([{ name: "cpu", value: 0.93, ts: isoAgo(60e3), host: "web-1", region: "us" }]);
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
      await db?.drop();
    });

    test("the main routes answer as documented with the spec's examples", async () => {
      const { page, context, errors, offsite } = await openPage(browser, `${server.url}/docs`);
      const failed = [];
      page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`); });
      try {
        await page.waitForSelector(".opblock", { timeout: 15e3 });
        for (const [operationId, expected] of [
          ["postMetrics", 200],
          ["queryMetrics", 200],
          ["listNames", 200],
          ["listTagKeys", 200],
          ["listTagValues", 200],
          ["limits", 200],
          ["liveMetrics", 426],
          ["streamMetrics", 426],
        ]) {
          const { status, body } = await tryItOut(page, operationId);
          assert.equal(status, expected, `${operationId}: ${body}`);
        }
        // Spot checks of what came back: the catalog knows the example's name and tag.
        const names = await (await fetch(`${server.url}/v1/names`)).json();
        assert.ok(names.names.some((n) => n.name === "cpu"), JSON.stringify(names));
        assert.deepEqual(offsite, []);
        // The browser logs every answer >= 400 as a console error: the two 426s are the ones
        // asked for; anything else is a real error.
        assert.deepEqual(failed, ["426 /v1/ws", "426 /v1/stream"]);
        assert.deepEqual(errors.filter((e) => !e.startsWith("Failed to load resource")), []);
      } finally {
        await context.close();
      }
    });
  });
}
