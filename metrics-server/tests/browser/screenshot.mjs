// Takes docs/dashboard.png (light) and docs/dashboard-dark.png: the real server on a temp SQLite
// database, an hour of history for a few metrics posted over HTTP, then live points while the
// page is open.
//
//   node screenshot.mjs        (from this directory, after `npm ci`)

import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { ServerProcess, createDatabase, launchBrowser, openPage } from "./harness.mjs";

const docs = resolve(dirname(fileURLToPath(import.meta.url)), "../../../docs");
mkdirSync(docs, { recursive: true });

const db = await createDatabase("sqlite");
const server = await ServerProcess.start(db.url);
const browser = await launchBrowser();
try {
  const now = Date.now();
  const hosts = ["web-1", "web-2"];
  const history = [];
  for (let i = 360; i >= 1; i--) {
    const t = now - i * 10e3;
    const phase = i / 40;
    history.push({ name: "cpu.load", value: +(1.2 + Math.sin(phase) * 0.6 + Math.random() * 0.25).toFixed(3), ts: new Date(t).toISOString(), host: hosts[i % 2] });
    history.push({ name: "http.latency_ms", value: +(42 + Math.cos(phase / 2) * 12 + Math.random() * 6).toFixed(1), ts: new Date(t + 3e3).toISOString(), route: "/v1/metrics", region: "eu-west" });
    if (i % 6 === 0) history.push({ name: "queue.depth", value: Math.round(8 + Math.sin(phase * 1.7) * 6 + Math.random() * 3), ts: new Date(t + 6e3).toISOString(), queue: "ingest" });
  }
  history.push({ name: "deploy.status", value: "rolled out v1.4.2", ts: new Date(now - 25 * 60e3).toISOString(), by: "ci" });
  await server.post(history);

  for (const [scheme, file] of [["light", "dashboard.png"], ["dark", "dashboard-dark.png"]]) {
    const { page, context } = await openPage(browser, `${server.url}/#name=cpu.load&name=http.latency_ms&name=queue.depth&name=deploy.status&range=1h&y=own`, { colorScheme: scheme, viewport: { width: 1360, height: 900 } });
    await page.waitForSelector('#status[data-state="live"]');
    for (let i = 0; i < 3; i++) {
      await server.post({ name: "cpu.load", value: 1.4 + i * 0.1, ts: new Date().toISOString(), host: "web-1" });
      await new Promise((r) => setTimeout(r, 300));
    }
    await page.waitForTimeout(800);
    await page.screenshot({ path: join(docs, file) });
    await context.close();
    console.log(`wrote ${join(docs, file)}`);
  }
} finally {
  await browser.close();
  await server.stop();
  await db.drop();
}
