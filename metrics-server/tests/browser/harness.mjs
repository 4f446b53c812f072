// The browser tests' harness: the real server binary on a free port over a fresh database of
// either backend, and Debian's Chromium driven by playwright-core.
//
// Environment:
//   METRICS_SERVER_BIN         the server binary; when unset it is built with `cargo build`
//                              (`cargo test` sets it to the binary it just built)
//   METRICS_TEST_POSTGRES_URL  a PostgreSQL database to create test databases from
//                              (default postgres://postgres@127.0.0.1:5432/postgres)
//   METRICS_TEST_CHROMIUM      the browser (default /usr/bin/chromium: `apt-get install chromium`)

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";

import pg from "pg";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const workspace = resolve(here, "../../..");

export const POSTGRES_URL = process.env.METRICS_TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";
export const CHROMIUM = process.env.METRICS_TEST_CHROMIUM || "/usr/bin/chromium";
/** The flags that make Debian's Chromium run headless in a container and stay off the network. */
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
export const BACKENDS = ["sqlite", "postgres"];

let builtBinary = null;
/** The server binary: METRICS_SERVER_BIN, or what `cargo build` makes of the workspace. */
export function serverBinary() {
  if (process.env.METRICS_SERVER_BIN) return process.env.METRICS_SERVER_BIN;
  if (builtBinary) return builtBinary;
  const build = spawnSync(
    "cargo",
    ["build", "-p", "metrics-server", "--bin", "metrics-server", "--message-format=json-render-diagnostics"],
    { cwd: workspace, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 },
  );
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status}); is cargo on PATH?`);
  for (const line of build.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const msg = JSON.parse(line);
    if (msg.reason === "compiler-artifact" && msg.target?.name === "metrics-server" && msg.executable) builtBinary = msg.executable;
  }
  if (!builtBinary) throw new Error("cargo build did not report the metrics-server binary");
  return builtBinary;
}

/** A fresh database of `backend`: a SQLite file in a temp dir, or a new PostgreSQL database. */
export async function createDatabase(backend) {
  if (backend === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "metrics-browser-"));
    return { url: `sqlite://${join(dir, "metrics.db")}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `metrics_browser_${randomUUID().replaceAll("-", "")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`cannot reach PostgreSQL at ${POSTGRES_URL} (${err.message}); start it or point METRICS_TEST_POSTGRES_URL at one`);
  }
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: POSTGRES_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** The real server binary, listening on `port` (0: a free one) over `databaseUrl`. */
export class ServerProcess {
  /** `args` and `env` are added to the command line and the environment (e.g. `--auth on`). */
  static async start(databaseUrl, port = 0, { args = [], env = {} } = {}) {
    const server = new ServerProcess(databaseUrl);
    server.args = args;
    server.env = env;
    await server.spawn(port);
    return server;
  }

  constructor(databaseUrl) {
    this.databaseUrl = databaseUrl;
    this.log = "";
    this.args = [];
    this.env = {};
    /** Sent as `Authorization: Bearer` by `post`, when set. */
    this.token = null;
  }

  async spawn(port) {
    this.log = "";
    const child = spawn(serverBinary(), ["--host", "127.0.0.1", "--port", String(port), "--database-url", this.databaseUrl, "--log", "info", ...this.args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", ...this.env },
    });
    this.child = child;
    this.exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));
    const address = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`the server did not start in 30 s:\n${this.log}`)), 30e3);
      const onData = (chunk) => {
        // tracing colours its output; the address is what matters.
        this.log += chunk.toString().replace(/\x1b\[[0-9;]*m/g, "");
        const m = /metrics-server listening address=(\S+)/.exec(this.log);
        if (m) { clearTimeout(timer); ok(m[1]); }
      };
      child.stderr.on("data", onData);
      child.stdout.on("data", onData);
      this.exited.then(({ code }) => { clearTimeout(timer); fail(new Error(`the server exited with ${code}:\n${this.log}`)); });
    });
    this.port = Number(address.split(":").pop());
    this.url = `http://127.0.0.1:${this.port}`;
  }

  /** SIGTERM, as a service manager stops it; resolves once the process has exited. */
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    const stopped = await Promise.race([this.exited, new Promise((r) => setTimeout(() => r(null), 15e3))]);
    if (!stopped) { this.child.kill("SIGKILL"); await this.exited; }
  }

  /** Stops the server and starts it again on the same port and database. */
  async restart() {
    await this.stop();
    await this.spawn(this.port);
  }

  async post(metrics) {
    const response = await fetch(`${this.url}/v1/metrics`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
      body: JSON.stringify(metrics),
    });
    const body = await response.json();
    if (response.status !== 200) throw new Error(`POST /v1/metrics: ${response.status} ${JSON.stringify(body)}`);
    return body;
  }
}

/** Debian's Chromium, headless; fails with what to install when it is missing. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set METRICS_TEST_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A page, by default in UTC (so a `datetime-local` field means what the test computes), with its
 * console errors, any request to another origin, every Content-Security-Policy violation the page
 * reports and every dialog (`alert`) collected. */
export async function openPage(browser, url, { colorScheme = "light", viewport = { width: 1280, height: 860 }, timezoneId = "UTC" } = {}) {
  const context = await browser.newContext({ timezoneId, colorScheme, viewport });
  const page = await context.newPage();
  const errors = [];
  const offsite = [];
  const violations = [];
  const dialogs = [];
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("request", (req) => { if (!req.url().startsWith(new URL(url).origin) && !req.url().startsWith("data:")) offsite.push(req.url()); });
  page.on("dialog", (dialog) => { dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}); });
  // Injected by the browser driver, not by the page, so the page's own CSP does not block it.
  await page.exposeFunction("__reportCspViolation", (v) => violations.push(v));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__reportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
    }, true);
  });
  const response = await page.goto(url);
  return { page, context, errors, offsite, violations, dialogs, response };
}

/** What the chart shows for `name`: [[tSeconds, value], ...], read from uPlot's own data. */
export async function chartPoints(page, name) {
  return page.evaluate((name) => {
    const d = window.metricsDashboard;
    const i = d.chartSeries().indexOf(name);
    if (i < 0) return null;
    const [xs, ...ys] = d.chartData();
    return xs.map((x, j) => [x, ys[i][j]]).filter(([, y]) => y != null);
  }, name);
}

/** `ts` for a metric `msAgo` milliseconds before now, as ISO-8601 UTC. */
export const isoAgo = (msAgo) => new Date(Date.now() - msAgo).toISOString();
