// The live page at `/` in a real headless Chromium, against the real server binary, on SQLite and
// on PostgreSQL. What a user relies on: the page loads cleanly and offline, a posted metric shows
// in the chart and the table within a second, a chosen range shows its history, and the page
// reconnects by itself after a server restart without leaving a hole in the chart.
//
// Run (from this directory, after `npm ci`; needs Debian's chromium and PostgreSQL):
//   node --test
// or from the workspace: cargo test -p metrics-server --test browser

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { BACKENDS, ServerProcess, chartPoints, createDatabase, isoAgo, launchBrowser, openPage } from "./harness.mjs";

/** The bound: a posted metric is visible within a second. */
const VISIBLE_WITHIN_MS = 1000;

for (const backend of BACKENDS) {
  describe(`dashboard on ${backend}`, () => {
    let db, server, browser;
    const pages = [];

    before(async () => {
      db = await createDatabase(backend);
      server = await ServerProcess.start(db.url);
      browser = await launchBrowser();
    });

    after(async () => {
      for (const { context } of pages) await context.close().catch(() => {});
      await browser?.close();
      await server?.stop();
      await db?.drop();
    });

    async function open(hash = "", options = {}) {
      const opened = await openPage(browser, `${server.url}/${hash}`, options);
      pages.push(opened);
      await opened.page.waitForSelector('#status[data-state="live"]', { timeout: 10e3 });
      return opened;
    }

    test("the page loads without console errors and fetches nothing from elsewhere", async () => {
      const { page, errors, offsite, violations } = await open();
      // The chart library is the embedded one, and the chart is drawn.
      assert.equal(await page.evaluate(() => typeof window.uPlot), "function");
      await page.waitForSelector("#chart .uplot canvas");
      assert.deepEqual(errors, []);
      assert.deepEqual(offsite, []);
      assert.deepEqual(violations, []);
    });

    test("under its Content-Security-Policy the page works with no violation, and markup in a name stays text", async () => {
      // Names and keys that would run script if the page ever put them into HTML.
      const name = `<img src=x onerror=alert(1)>.${backend}`;
      const label = "</script><script>alert(2)</script>";
      await server.post({ name, value: 7, ts: isoAgo(0), [label]: "<b onmouseover=alert(3)>x</b>" });
      const { page, errors, offsite, violations, dialogs, response } = await open(`#name=${encodeURIComponent(name)}&range=5m`);
      const csp = response.headers()["content-security-policy"];
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(response.headers()["x-content-type-options"], "nosniff");

      // The page did its work: the chart is drawn, the name is listed and its metric is in the
      // table and the chart.
      await page.waitForSelector("#chart .uplot canvas");
      await waitForValues(page, name, [7]);
      const shown = await page.evaluate((name) => {
        const row = [...document.querySelectorAll("#latest tbody tr")].find((r) => r.dataset.name === name);
        const item = [...document.querySelectorAll("#names li")].find((li) => li.textContent.includes(name));
        return { row: row?.textContent ?? null, item: item?.textContent ?? null };
      }, name);
      assert.ok(shown.row?.includes(name), `the name shows as text in the table: ${JSON.stringify(shown)}`);
      assert.ok(shown.row?.includes(label), `the key shows as text: ${shown.row}`);
      assert.ok(shown.item?.includes(name), `the name shows as text in the picker: ${shown.item}`);
      assert.equal(await page.locator("#latest img, #names img, #latest script, [onerror], [onmouseover]").count(), 0);

      // The theme script, moved out of the page into /assets/theme.js, still runs before the
      // first paint.
      await page.evaluate(() => localStorage.setItem("metrics.theme", "dark"));
      await page.reload();
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
      await page.waitForSelector('#status[data-state="live"]', { timeout: 10e3 });
      await waitForValues(page, name, [7]);
      assert.deepEqual(dialogs, []);
      assert.deepEqual(violations, []);
      assert.deepEqual(errors, []);
      assert.deepEqual(offsite, []);
    });

    test("a metric posted over HTTP appears in the chart and the table within a second", async () => {
      const { page, errors } = await open();
      const name = `cpu.live.${backend}`;
      const ts = isoAgo(0);
      await server.post({ name, value: 42.5, ts, host: "web-1", region: "eu" });
      const seen = Date.now();

      await page.waitForFunction(
        ([name, x]) => {
          const d = window.metricsDashboard;
          const i = d.chartSeries().indexOf(name);
          if (i < 0) return false;
          const [xs, ...ys] = d.chartData();
          const j = xs.findIndex((v) => Math.abs(v - x) < 1e-3);
          const inChart = j >= 0 && ys[i][j] === 42.5;
          const row = document.querySelector(`#latest tbody tr[data-name="${name}"]`);
          return inChart && row !== null && row.textContent.includes("42.5") && row.textContent.includes("host=web-1");
        },
        [name, Date.parse(ts) / 1000],
        { timeout: VISIBLE_WITHIN_MS },
      );
      assert.ok(Date.now() - seen <= VISIBLE_WITHIN_MS + 100);
      const row = page.locator(`#latest tbody tr[data-name="${name}"]`).first();
      assert.match(await row.textContent(), /region=eu/);

      // A value that is not a number goes to the table, never to the chart.
      const textTs = isoAgo(0);
      await server.post({ name, value: "degraded", ts: textTs });
      await page.waitForFunction(
        (name) => [...document.querySelectorAll(`#latest tbody tr[data-name="${name}"]`)].some((r) => r.textContent.includes('"degraded"')),
        name,
        { timeout: VISIBLE_WITHIN_MS },
      );
      const points = await chartPoints(page, name);
      assert.deepEqual(points.map(([, v]) => v), [42.5]);
      assert.deepEqual(errors, []);
    });

    test("a chosen range loads its history", async () => {
      const name = `temp.history.${backend}`;
      const minutes = 60e3;
      const recent = isoAgo(3 * minutes);
      const halfHour = isoAgo(30 * minutes);
      const twoDays = isoAgo(2 * 24 * 60 * minutes);
      await server.post([
        { name, value: 1, ts: recent },
        { name, value: 2, ts: halfHour },
        { name, value: 3, ts: twoDays },
      ]);
      const values = async () => (await chartPoints(page, name)).map(([, v]) => v).sort();

      // The picker lists the name with its count, from GET /v1/names.
      const { page, errors } = await open(`#name=${encodeURIComponent(name)}&range=5m`);
      const item = page.locator("#names li", { hasText: name });
      await item.waitFor();
      assert.match(await item.locator(".meta").textContent(), /^3 · /);
      assert.equal(await item.locator("input").isChecked(), true);

      await page.waitForFunction((name) => window.metricsDashboard.chartSeries().includes(name), name);
      await waitForValues(page, name, [1]);
      assert.deepEqual(await values(), [1]);

      await page.getByRole("button", { name: "1 hour" }).click();
      await waitForValues(page, name, [1, 2]);

      // A custom range three days ago to one day ago: only the old point. The page runs in UTC.
      await page.getByRole("button", { name: "Custom" }).click();
      const local = (msAgo) => new Date(Date.now() - msAgo).toISOString().slice(0, 19);
      await page.fill("#custom-from", local(3 * 24 * 60 * minutes));
      await page.fill("#custom-to", local(24 * 60 * minutes));
      await page.getByRole("button", { name: "Show" }).click();
      await waitForValues(page, name, [3]);
      const rows = page.locator(`#latest tbody tr[data-name="${name}"]`);
      assert.equal(await rows.count(), 1);
      assert.deepEqual(errors, []);
    });

    test("timestamps in every form the server accepts are charted at their instant", async () => {
      const name = `ts.forms.${backend}`;
      // The same kinds of `ts` the API accepts: no offset (UTC), a space, `+HHMM`, `-HH:MM`, `Z`.
      const at = (secondsAgo) => Math.floor(Date.now() / 1000 - secondsAgo) * 1000 + 250;
      const wall = (ms, offsetMinutes) => new Date(ms + offsetMinutes * 60e3).toISOString().slice(0, 23);
      const t1 = at(40), t2 = at(30), t3 = at(20), t4 = at(10);
      await server.post([
        { name, value: 1, ts: wall(t1, 0).replace("T", " ") },
        { name, value: 2, ts: `${wall(t2, 120)}+0200` },
        { name, value: 3, ts: `${wall(t3, -330)}-05:30` },
        { name, value: 4, ts: `${wall(t4, 0)}Z` },
      ]);
      // A browser far from UTC: a `ts` without an offset must still be read as UTC.
      const { page, errors } = await open(`#name=${encodeURIComponent(name)}&range=5m`, { timezoneId: "America/Anchorage" });
      await waitForValues(page, name, [1, 2, 3, 4]);
      assert.deepEqual(await chartPoints(page, name), [[t1 / 1000, 1], [t2 / 1000, 2], [t3 / 1000, 3], [t4 / 1000, 4]]);
      assert.deepEqual(errors, []);
    });

    test("pause freezes the chart and table; resume shows what arrived meanwhile", async () => {
      const name = `pause.${backend}`;
      await server.post({ name, value: 1, ts: isoAgo(1000) });
      const { page, errors } = await open(`#name=${encodeURIComponent(name)}&range=5m`);
      await waitForValues(page, name, [1]);

      await page.getByRole("button", { name: "Pause" }).click();
      assert.match(await page.textContent("#status"), /paused/);
      await server.post({ name, value: 2, ts: isoAgo(0) });
      // Long enough for the page to have drawn it, were it not paused.
      await page.waitForTimeout(600);
      assert.deepEqual((await chartPoints(page, name)).map(([, v]) => v), [1]);
      assert.equal(await page.locator(`#latest tbody tr[data-name="${name}"]`).count(), 1);

      await page.getByRole("button", { name: "Resume" }).click();
      await waitForValues(page, name, [1, 2], VISIBLE_WITHIN_MS);
      assert.equal(await page.locator(`#latest tbody tr[data-name="${name}"]`).count(), 2);
      assert.deepEqual(errors, []);
    });

    test("after the server restarts the page reconnects by itself, with no hole in the chart", async () => {
      const name = `restart.${backend}`;
      await server.post([{ name, value: 1, ts: isoAgo(2000) }, { name, value: 0.5, ts: isoAgo(30 * 60e3) }]);
      const { page } = await open(`#name=${encodeURIComponent(name)}&range=5m`);
      await waitForValues(page, name, [1]);

      // Another server over the same database (started first, so it cannot take the port).
      const other = await ServerProcess.start(db.url);
      await server.stop();
      await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 10e3 });
      assert.match(await page.textContent("#status"), /reconnecting/);
      // A range picked while the server is away loads once it is back.
      await page.getByRole("button", { name: "1 hour" }).click();

      // While the page is cut off, the other server stores a metric: no live stream ever sends
      // it to this page, so only the query of the gap can show it.
      await other.post({ name, value: 2, ts: isoAgo(0) });
      await other.stop();

      await server.restart();
      await page.waitForSelector('#status[data-state="live"]', { timeout: 15e3 });
      await waitForValues(page, name, [0.5, 1, 2]);

      // And the stream is live again.
      await server.post({ name, value: 3, ts: isoAgo(0) });
      await waitForValues(page, name, [0.5, 1, 2, 3], VISIBLE_WITHIN_MS);
    });

    test("a reconnect resumes the stream from its cursor, even for metrics with an older ts", async () => {
      const name = `resume.${backend}`;
      await server.post({ name, value: 1, ts: isoAgo(1000) });
      const { page } = await open(`#name=${encodeURIComponent(name)}&range=1h`);
      await waitForValues(page, name, [1]);

      const other = await ServerProcess.start(db.url);
      await server.stop();
      await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 10e3 });
      // Stored while the page is cut off, and stamped 20 minutes ago: a re-query "since the last
      // point seen" would miss it; the cursor replay cannot.
      await other.post({ name, value: 2, ts: isoAgo(20 * 60e3) });
      await other.stop();

      await server.restart();
      await page.waitForSelector('#status[data-state="live"]', { timeout: 15e3 });
      await waitForValues(page, name, [1, 2]);
    });
  });
}

/** Waits until the chart's series `name` holds exactly `expected` (in any order). */
async function waitForValues(page, name, expected, timeout = 5000) {
  try {
    await page.waitForFunction(
      ([name, expected]) => {
        const d = window.metricsDashboard;
        const i = d.chartSeries().indexOf(name);
        if (i < 0) return false;
        const [, ...ys] = d.chartData();
        const got = ys[i].filter((v) => v != null).sort((a, b) => a - b);
        return JSON.stringify(got) === JSON.stringify([...expected].sort((a, b) => a - b));
      },
      [name, expected],
      { timeout },
    );
  } catch (err) {
    const got = await chartPoints(page, name);
    throw new Error(`chart series ${name}: expected values ${JSON.stringify(expected)}, got ${JSON.stringify(got)} (${err.message})`);
  }
}
