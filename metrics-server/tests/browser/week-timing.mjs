// Times the dashboard's one-week view in headless Chromium, aggregated (the page's default for
// ranges over an hour) beside the same view read raw (`#raw=1`), over a week of one busy metric.
// A measurement, not a test: it prints the figures.
//
//   node week-timing.mjs [sqlite|postgres]     (WEEK_POINTS=100800 by default: one every 6 s)
//
// Each figure is from navigation to the chart holding the whole week (its first and its current
// bucket or point), as the page's own `window.metricsDashboard` reports it; the median of RUNS.

import { ServerProcess, createDatabase, launchBrowser, openPage } from "./harness.mjs";

const backend = process.argv[2] || "sqlite";
const points = Number(process.env.WEEK_POINTS || 100_800);
const runs = Number(process.env.RUNS || 3);
const WEEK = 7 * 86_400e3;

const db = await createDatabase(backend);
const server = await ServerProcess.start(db.url);
const browser = await launchBrowser();
try {
  const name = "busy.week";
  const now = Date.now();
  const every = WEEK / points;
  for (let i = 0; i < points; i += 10_000) {
    const batch = [];
    for (let j = i; j < Math.min(points, i + 10_000); j++) batch.push({ name, value: Math.sin(j / 500) + (j % 7) / 10, ts: new Date(now - j * every).toISOString(), host: `h${j % 4}` });
    await server.post(batch);
  }
  const time = async (hash) => {
    const { page, context } = await openPage(browser, `${server.url}/${hash}`);
    const started = Date.now();
    await page.waitForFunction(([name, every, seeded]) => {
      const d = window.metricsDashboard;
      const i = d.chartSeries().indexOf(name);
      if (i < 0) return false;
      const step = Math.max(d.view().step || 0, every / 1000);
      const [xs, ...ys] = d.chartData();
      const drawn = xs.filter((_, j) => ys[i][j] != null);
      return drawn.length > 0 && drawn[0] <= Date.now() / 1000 - 7 * 86400 + 2 * step && drawn.at(-1) >= seeded / 1000 - step - 1;
    }, [name, every, now], { timeout: 300e3, polling: 20 });
    const ms = Date.now() - started;
    const drawn = await page.evaluate(() => window.metricsDashboard.chartData()[0].length);
    await context.close();
    return { ms, drawn };
  };
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [label, hash] of [["aggregated", `#name=${name}&range=7d`], ["raw", `#name=${name}&range=7d&raw=1`]]) {
    const results = [];
    for (let r = 0; r < runs; r++) results.push(await time(hash));
    console.log(`${backend} ${points} points, one week ${label}: ${median(results.map((r) => r.ms))} ms to draw (median of ${runs}), ${results[0].drawn} points drawn`);
  }
} finally {
  await browser.close();
  await server.stop();
  await db.drop();
}
