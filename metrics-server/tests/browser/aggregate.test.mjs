// Long ranges on the live page, in a real headless Chromium against the real server binary, on
// SQLite and on PostgreSQL: a week of a busy metric is read aggregated by the server, about one
// bucket per pixel of the chart; "split by" draws one line per value of a tag, with a legend; and
// live points join the bucket they fall in. Every drawn value is checked against the average (or
// minimum, maximum) this test computes from the metrics it posted.
//
// Run (from this directory, after `npm ci`): node --test aggregate.test.mjs
// or from the workspace: cargo test -p metrics-server --test browser

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { BACKENDS, ServerProcess, chartPoints, createDatabase, launchBrowser, openPage } from "./harness.mjs";

const MINUTE = 60e3;
const DAY = 24 * 60 * MINUTE;

for (const backend of BACKENDS) {
  describe(`aggregated views on ${backend}`, () => {
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

    /** Opens the page at `hash`, collecting the URL of every `/v1/metrics` read it makes. */
    async function open(hash) {
      const opened = await openPage(browser, `${server.url}/${hash}`);
      pages.push(opened);
      opened.reads = [];
      opened.page.on("request", (req) => {
        const url = new URL(req.url());
        if (url.pathname === "/v1/metrics" && req.method() === "GET") opened.reads.push(url.searchParams);
      });
      await opened.page.waitForSelector('#status[data-state="live"]', { timeout: 10e3 });
      return opened;
    }

    const view = (page) => page.evaluate(() => window.metricsDashboard.view());

    test("a week of a busy metric is read aggregated, about one point per pixel", async () => {
      const name = `busy.week.${backend}`;
      // One point a minute for a week and a bit: 10,200 metrics, with values that vary in a
      // pattern the buckets do not line up with.
      const now = Date.now();
      const metrics = [];
      for (let i = 0; i < 10_200; i++) metrics.push({ name, value: (i * 7) % 23, ts: new Date(now - i * MINUTE).toISOString() });
      for (let i = 0; i < metrics.length; i += 2000) await server.post(metrics.slice(i, i + 2000));

      const { page, reads, errors } = await open(`#name=${encodeURIComponent(name)}&range=7d`);
      await page.waitForFunction(() => window.metricsDashboard.view().step != null);
      const { step, width, plotWidth } = await view(page);
      assert.equal(step, Math.ceil((7 * DAY) / 1000 / width), `step = ceil(range / width) seconds (width ${width} px)`);
      // The width the step was sized to is the plot's (give or take a scroll bar that came later).
      assert.ok(Math.abs(width - plotWidth) <= 0.1 * plotWidth, `sized to ${width} px, the plot is ${plotWidth} px`);
      // Wait until the whole week is drawn: its first and its current bucket.
      await page.waitForFunction(([name, step]) => {
        const d = window.metricsDashboard;
        const i = d.chartSeries().indexOf(name);
        if (i < 0) return false;
        const [xs, ...ys] = d.chartData();
        const drawn = xs.filter((_, j) => ys[i][j] != null);
        return drawn.length > 0 && drawn[0] <= Date.now() / 1000 - 7 * 86400 + step
          && drawn[drawn.length - 1] >= Math.floor(Date.now() / 1000 / step) * step - step;
      }, [name, step], { timeout: 10e3 });

      const aggregated = reads.filter((p) => p.has("step"));
      assert.equal(aggregated.length, 1, `one aggregated read: ${reads.map(String).join(" | ")}`);
      assert.equal(aggregated[0].get("step"), `${step}s`);
      assert.equal(aggregated[0].get("agg"), "avg,min,max,count");
      // No raw read of the whole week: only the tail since the current bucket and the table's rows.
      for (const p of reads.filter((p) => !p.has("step"))) {
        assert.ok(p.get("limit") === "100" || Date.parse(p.get("sts")) >= Date.now() - 2 * step * 1000, `raw read ${p}`);
      }

      const points = await chartPoints(page, name);
      assert.ok(points.length <= width + 2, `${points.length} points drawn for ${width} px`);
      assert.ok(points.length >= width * 0.9, `${points.length} points drawn for ${width} px`);
      assert.ok(points.length < metrics.length / 5);

      // Each drawn point is its bucket's average, as computed here from what was posted.
      const expected = bucketStats(metrics, step);
      for (const [x, y] of points) {
        const e = expected.get(x);
        assert.ok(e, `a point at ${x} where nothing was posted`);
        assert.ok(Math.abs(y - e.avg) < 1e-9, `bucket ${x}: drawn ${y}, expected ${e.avg}`);
      }

      // The min–max band: two more series per line, each bucket's minimum and maximum.
      await page.getByRole("button", { name: "Min–max band" }).click();
      await page.waitForFunction((name) => window.metricsDashboard.chartSeries().includes(`${name} min`), name);
      const mins = await chartPoints(page, `${name} min`);
      const maxs = await chartPoints(page, `${name} max`);
      assert.equal(mins.length, points.length);
      for (const [x, y] of mins) assert.equal(y, expected.get(x).min);
      for (const [x, y] of maxs) assert.equal(y, expected.get(x).max);
      assert.match(page.url(), /band=1/);
      assert.deepEqual(errors, []);
    });

    test("split by a tag draws one line per value, with a legend, raw and aggregated", async () => {
      const name = `split.${backend}`;
      const now = Date.now();
      const metrics = [];
      for (let i = 0; i < 600; i++) {
        const host = ["web-1", "web-2", "db-1"][i % 3];
        metrics.push({ name, value: i % 11 + (host === "db-1" ? 100 : 0), ts: new Date(now - 10e3 - i * 2 * MINUTE).toISOString(), host });
      }
      await server.post(metrics);

      const { page, reads, errors } = await open(`#name=${encodeURIComponent(name)}&range=5m`);
      // The picker lists the name's tag keys, from GET /v1/tags?name=...
      await page.waitForSelector('#split-by option[value="host"]', { state: "attached" });
      await page.selectOption("#split-by", "host");
      const lines = ["db-1", "web-1", "web-2"].map((h) => `${name} host=${h}`);
      await page.waitForFunction((lines) => JSON.stringify(window.metricsDashboard.chartSeries()) === JSON.stringify(lines), lines);
      // Raw (five minutes): the three latest points, one on each line.
      for (const line of lines) {
        const host = line.split("=")[1];
        const want = metrics.filter((m) => m.host === host && Date.parse(m.ts) >= Date.now() - 5 * MINUTE).map((m) => m.value);
        await waitForPoints(page, line, (pts) => JSON.stringify(pts.map(([, v]) => v)) === JSON.stringify(want.reverse()));
      }
      const legend = await page.locator(".u-legend").textContent();
      for (const line of lines) assert.ok(legend.includes(line), `legend: ${legend}`);
      assert.match(page.url(), /by=host/);

      // A day, aggregated: the server splits (`by=host`); each line's buckets are that host's.
      await page.getByRole("button", { name: "1 day" }).click();
      await page.waitForFunction(() => window.metricsDashboard.view().step != null);
      const { step } = await view(page);
      for (const line of lines) {
        const host = line.split("=")[1];
        const expected = bucketStats(metrics.filter((m) => m.host === host), step);
        const inDay = [...expected.keys()].filter((x) => x * 1000 + step * 1000 > Date.now() - DAY - 60e3);
        await waitForPoints(page, line, (pts) => pts.length >= inDay.length - 1);
        for (const [x, y] of await chartPoints(page, line)) {
          assert.ok(Math.abs(y - expected.get(x).avg) < 1e-9, `${line} bucket ${x}: drawn ${y}, expected ${expected.get(x)?.avg}`);
        }
      }
      const split = reads.filter((p) => p.has("step"));
      assert.equal(split.at(-1).get("by"), "host");

      // A live metric of a new host gets a line of its own.
      await server.post({ name, value: 5, ts: new Date().toISOString(), host: "web-3" });
      await waitForPoints(page, `${name} host=web-3`, (pts) => pts.length === 1 && pts[0][1] === 5);
      assert.deepEqual(errors, []);
    });

    test("live points join the bucket they fall in", async () => {
      const name = `join.${backend}`;
      const old = new Date(Date.now() - 3 * 60 * MINUTE).toISOString();
      await server.post({ name, value: 4, ts: old });
      const { page, errors } = await open(`#name=${encodeURIComponent(name)}&range=1d`);
      await waitForPoints(page, name, (pts) => pts.length === 1 && pts[0][1] === 4);
      const { step } = await view(page);
      assert.ok(step > 1, `a day is read aggregated (step ${step})`);
      const bucketOf = (iso) => Math.floor(Date.parse(iso) / 1000 / step) * step;

      // Into the current bucket (the page's own, from the raw tail): 10, then 10 and 20.
      const ts = new Date().toISOString();
      await server.post({ name, value: 10, ts });
      await waitForPoints(page, name, (pts) => pts.some(([x, v]) => x === bucketOf(ts) && v === 10));
      await server.post({ name, value: 20, ts });
      await waitForPoints(page, name, (pts) => pts.some(([x, v]) => x === bucketOf(ts) && v === 15));

      // A late metric, three hours old, joins the server's bucket: (4 + 8) / 2.
      await server.post({ name, value: 8, ts: old });
      await waitForPoints(page, name, (pts) => pts.some(([x, v]) => x === bucketOf(old) && v === 6));
      assert.deepEqual((await chartPoints(page, name)).map(([, v]) => v), [6, 15]);
      assert.deepEqual(errors, []);
    });
  });
}

/** Per bucket start (seconds), the average, minimum and maximum of the numeric `metrics`. */
function bucketStats(metrics, step) {
  const out = new Map();
  for (const m of metrics) {
    const x = Math.floor(Date.parse(m.ts) / 1000 / step) * step;
    const b = out.get(x) || { sum: 0, n: 0, min: Infinity, max: -Infinity };
    b.sum += m.value; b.n += 1; b.min = Math.min(b.min, m.value); b.max = Math.max(b.max, m.value);
    out.set(x, b);
  }
  for (const b of out.values()) b.avg = b.sum / b.n;
  return out;
}

/** Waits until the chart's series `name` satisfies `ok([[x, y], ...])`. */
async function waitForPoints(page, name, ok, timeout = 10e3) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const points = await chartPoints(page, name);
    if (points && ok(points)) return points;
    if (Date.now() > deadline) {
      const series = await page.evaluate(() => window.metricsDashboard.chartSeries());
      throw new Error(`chart series ${name}: condition not met, got ${JSON.stringify(points)?.slice(0, 2000)} (series ${JSON.stringify(series)})`);
    }
    // Polls the page's state (the chart redraws at most every 200 ms); no fixed sleep decides.
    await page.waitForTimeout(50);
  }
}
