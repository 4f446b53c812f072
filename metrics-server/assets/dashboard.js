// The live page: pick metric names and a time range, see their history as one chart, and watch
// new points arrive over the WebSocket without reloading or polling.
//
// Data flow. `GET /v1/names` fills the picker. The page subscribes to the resumable stream
// `/v1/stream` *before* it reads history with `GET /v1/metrics`, so nothing committed between the
// two is lost; both feed one store per name, which drops duplicates (the same object seen on both
// paths). Every stream frame carries a cursor; after a disconnect the page reconnects with backoff
// and `since=<cursor>`, and the server replays every metric committed meanwhile, exactly once, so
// the chart has no hole. (Only if no frame was ever received does it fall back to re-querying the
// gap by time.) Numbers go to the chart; every metric, number or not, goes to the
// table with its other keys.
"use strict";

(() => {
  /** Relative ranges, in milliseconds; "custom" uses the form instead. */
  const RANGES = { "5m": 5 * 60e3, "1h": 60 * 60e3, "1d": 24 * 60 * 60e3, "7d": 7 * 24 * 60 * 60e3 };
  /** Ranges longer than this are read aggregated by the server (`step`, about one bucket per pixel
   * of the chart); shorter ones are read raw, every point as posted. */
  const AGGREGATE_ABOVE_MS = 60 * 60e3;
  /** Rows in the table of latest metrics. */
  const TABLE_ROWS = 100;
  /** Names charted without asking, until the user picks some. */
  const AUTO_SERIES = 6;
  /** How much earlier than the last point seen the gap query starts: covers metrics posted
   * during the outage with a slightly older `ts` (clock skew between writers). */
  const GAP_MARGIN_MS = 60e3;
  /** Reconnect delays, in milliseconds; the last one repeats. */
  const BACKOFF = [250, 500, 1000, 2000, 3000];
  /** The chart and table redraw at most this often while metrics stream in. */
  const RENDER_EVERY_MS = 200;
  const PALETTE = ["#3b82f6", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16", "#f97316", "#64748b"];
  /** Keys every metric has; the table lists the others. */
  const BASE_KEYS = new Set(["name", "value", "ts"]);

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"), statusText: $("status-text"), pause: $("pause"), theme: $("theme"),
    names: $("names"), namesFilter: $("names-filter"), namesCount: $("names-count"), namesEmpty: $("names-empty"),
    custom: $("custom"), customFrom: $("custom-from"), customTo: $("custom-to"), customError: $("custom-error"),
    chart: $("chart"), yMode: $("y-mode"), splitBy: $("split-by"), band: $("band"), chartNote: $("chart-note"), tbody: document.querySelector("#latest tbody"),
    auth: $("auth"), authForm: $("auth-form"), authToken: $("auth-token"), authMessage: $("auth-message"),
  };

  const state = {
    /** name -> { count, firstMs, lastMs }: what the server holds, kept current by live frames. */
    known: new Map(),
    /** The charted names, in the order they were picked. */
    selected: [],
    /** True until the user picks names: new names are then charted as they appear. */
    autoSelect: true,
    /** name -> colour, stable for the page's life. */
    colors: new Map(),
    range: "1h",
    /** Each metric on a y scale of its own, or all on one. */
    ownScales: false,
    custom: null, // { fromMs, toMs }
    /** name -> { records: sorted by t, keys: Set } for the selected names: the raw metrics the
     * page holds (the whole range when it is read raw; the live tail, late points and the table's
     * rows when it is aggregated). */
    series: new Map(),
    /** The tag key whose values split each name into lines (`by=`), or "" for one line a name. */
    by: "",
    /** Draw the min–max band of each bucket around its average (aggregated views only). */
    band: false,
    /** The aggregated view, or null when the range is read raw: `step` in ms; `tailMs`, where the
     * server's buckets end and the page's own begin (the start of the bucket the clock was in when
     * history was read: metrics from there on are kept raw and bucketed here, so live points join
     * the current bucket exactly once); `buckets`: series key -> { name, tag, t: Map(bucketMs ->
     * { avg, min, max, count }) } from the server, plus late live points folded in. */
    agg: null,
    /** Read every range raw, never aggregated (`#raw=1`: for comparing, e.g. in benchmarks). */
    raw: false,
    /** The tag keys of the charted names, for the "split by" picker. */
    tagKeys: [],
    /** Bumped when the shown range or names change, so late answers for the old view are dropped. */
    generation: 0,
    paused: false,
    pausedAt: 0,
    connection: "connecting",
    /** The cursor of the last stream frame: where a reconnect resumes. */
    cursor: null,
    /** The latest `ts` seen on the socket, and when the socket dropped: where a gap starts. */
    lastLiveMs: null,
    downSinceMs: null,
    /** A history read failed (the server was down): the next connection re-reads it whole. */
    historyFailed: false,
  };

  // ---------------------------------------------------------------- timestamps

  /** Parses `ts` as the server does: ISO-8601, no offset means UTC. Milliseconds, or NaN. */
  function parseTs(text) {
    if (typeof text !== "string") return NaN;
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+\- ])(\d{2})(?::?(\d{2}))?)?$/.exec(text.trim());
    if (!m) return NaN;
    const frac = m[7] ? Number("0." + m[7]) * 1000 : 0;
    let ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0)) + frac;
    if (m[9]) {
      const offset = (+m[10] * 60 + +(m[11] || 0)) * 60e3;
      ms -= m[9] === "-" ? -offset : offset;
    }
    return ms;
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function fmtTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }
  function fmtAgo(ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${Math.floor(s)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }
  function fmtNum(v) {
    if (v == null || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e9 || a < 1e-3)) return v.toExponential(3);
    return v.toLocaleString(undefined, { maximumFractionDigits: a < 10 ? 4 : 2 });
  }
  /** A `datetime-local` value (local time) from milliseconds, and back. */
  const toLocalInput = (ms) => { const d = new Date(ms); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
  const fromLocalInput = (value) => (value ? new Date(value).getTime() : NaN);

  // ---------------------------------------------------------------- the view's time window

  function now() { return state.paused ? state.pausedAt : Date.now(); }
  /** [fromMs, toMs] of the chart; toMs is open-ended (Infinity) for live ranges when storing. */
  function windowMs() {
    if (state.range === "custom" && state.custom) return [state.custom.fromMs, state.custom.toMs];
    const t = now();
    return [t - RANGES[state.range], t];
  }
  const isLive = () => state.range !== "custom";
  function inWindow(t) {
    if (!isLive()) return t >= state.custom.fromMs && t <= state.custom.toMs;
    return t >= Date.now() - RANGES[state.range];
  }

  // ---------------------------------------------------------------- the store

  function colorOf(name) {
    if (!state.colors.has(name)) state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(name);
  }

  /** Adds one metric object (as posted) to its series; false when it is a duplicate or out of view. */
  function addMetric(obj, raw, { live = false } = {}) {
    const series = state.series.get(obj.name);
    if (!series) return false;
    const t = parseTs(obj.ts);
    if (Number.isNaN(t) || !inWindow(t)) return false;
    const key = raw;
    if (series.keys.has(key)) return false;
    series.keys.add(key);
    // A live point older than the page's own buckets (a late writer, or a replay after a
    // reconnect) joins the server's bucket it falls in.
    if (live && state.agg && t < state.agg.tailMs) foldIntoBucket(obj, t);
    const record = { t, name: obj.name, value: obj.value, obj, key };
    const recs = series.records;
    if (!recs.length || recs[recs.length - 1].t <= t) {
      recs.push(record);
    } else {
      let lo = 0, hi = recs.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (recs[mid].t <= t) lo = mid + 1; else hi = mid; }
      recs.splice(lo, 0, record);
    }
    chartDirty = true;
    return true;
  }

  /** Drops points that slid out of a live window, so a page left open all day stays small. */
  function prune() {
    if (!isLive()) return;
    const from = Date.now() - RANGES[state.range];
    for (const series of state.series.values()) {
      let n = 0;
      while (n < series.records.length && series.records[n].t < from) n++;
      if (!n) continue;
      for (const r of series.records.splice(0, n)) series.keys.delete(r.key);
      chartDirty = true;
    }
  }

  function noteKnown(obj) {
    const t = parseTs(obj.ts);
    const k = state.known.get(obj.name);
    if (k) {
      k.count += 1;
      if (!Number.isNaN(t) && t > k.lastMs) k.lastMs = t;
    } else {
      state.known.set(obj.name, { count: 1, firstMs: t, lastMs: t });
    }
  }

  // ---------------------------------------------------------------- the token

  // With auth on (docs/security.md) the API answers 401 until the page sends a token. The page
  // asks for one, keeps it in localStorage, sends it as `Authorization: Bearer` on every fetch
  // and as a `bearer.<token>` subprotocol next to `metrics` on the WebSocket (a browser cannot
  // set headers there; the server answers with `metrics`, never the token).
  const TOKEN_KEY = "metrics.token";
  let token = null;
  try { token = localStorage.getItem(TOKEN_KEY); } catch (_) { /* storage disabled */ }

  // Without a token there is nothing to show: Escape does not close the prompt.
  el.auth.addEventListener("cancel", (event) => event.preventDefault());

  /** `headers` with the token's `Authorization`, when the page has one. */
  function withToken(headers = {}) {
    return token ? { ...headers, authorization: `Bearer ${token}` } : headers;
  }

  /** `fetch` with the token; a 401 (token missing, wrong or revoked) opens the prompt. */
  async function apiFetch(url, init = {}) {
    const response = await fetch(url, { ...init, headers: withToken(init.headers) });
    if (response.status === 401) authorize();
    return response;
  }

  let authorizing = null;
  /** Resolves once the server accepts the page's token or needs none, asking for a token for as
   * long as it answers 401. An unreachable server resolves at once: the socket's backoff retries. */
  function authorize() {
    authorizing ??= (async () => {
      let refused = false;
      for (;;) {
        let response;
        try {
          response = await fetch("/v1/limits", { headers: withToken({ accept: "application/json" }) });
        } catch (_) { break; }
        if (response.status !== 401) break;
        let message = "";
        try { message = (await response.json()).message || ""; } catch (_) { /* not JSON */ }
        token = await askForToken(refused || token ? `The server refused the token: ${message}` : "This server needs a token to show its metrics.");
        refused = true;
      }
      if (el.auth.open) el.auth.close();
      authorizing = null;
    })();
    return authorizing;
  }

  /** Shows the token prompt; resolves with what the user enters (also kept in localStorage). */
  function askForToken(message) {
    el.authMessage.textContent = message;
    el.authToken.value = "";
    if (!el.auth.open) el.auth.showModal();
    el.authToken.focus();
    return new Promise((resolve) => {
      el.authForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const entered = el.authToken.value.trim();
        try { localStorage.setItem(TOKEN_KEY, entered); } catch (_) { /* kept for this page only */ }
        resolve(entered);
      }, { once: true });
    });
  }

  // ---------------------------------------------------------------- server calls

  async function getJson(url) {
    const response = await apiFetch(url, { headers: { accept: "application/json" } });
    if (!response.ok) {
      let message = `${response.status}`;
      try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }

  /** Reads `/v1/metrics` for `names` from `fromMs` (and up to `toMs`), returning the raw objects. */
  async function queryMetrics(names, fromMs, toMs, extra = {}) {
    const params = new URLSearchParams();
    for (const name of names) params.append("name", name);
    if (fromMs != null) params.set("sts", new Date(fromMs).toISOString());
    if (toMs != null) params.set("ets", new Date(toMs).toISOString());
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    const response = await apiFetch(`/v1/metrics?${params}`);
    if (!response.ok) throw new Error(`history: ${response.status} ${await response.text()}`);
    // The objects are kept as their own JSON text: that text is what dedupes live and history.
    const text = await response.text();
    return JSON.parse(text);
  }

  /** Loads the history of `names` for the current window into the store. */
  async function loadHistory(names) {
    if (!names.length) return;
    const generation = state.generation;
    const [from, to] = windowMs();
    el.chartNote.textContent = "loading history…";
    try {
      if (state.agg) {
        const { stepMs, tailMs } = state.agg;
        // The server's buckets up to the page's own (`ets` is inclusive: 1 µs before the tail),
        // the raw tail, and the latest raw metrics for the table.
        const [answer, tail, latest] = await Promise.all([
          getJson(`/v1/metrics?${aggParams(names, from, isLive() ? tailMs : to + 1, stepMs)}`),
          tailMs <= to ? queryMetrics(names, tailMs, isLive() ? null : to) : [],
          queryMetrics(names, from, isLive() ? null : to, { order: "desc", limit: String(TABLE_ROWS) }),
        ]);
        if (generation !== state.generation) return;
        addBuckets(answer);
        for (const obj of [...tail, ...latest]) addMetric(obj, JSON.stringify(obj));
      } else {
        const metrics = await queryMetrics(names, from, isLive() ? null : to);
        if (generation !== state.generation) return;
        for (const obj of metrics) addMetric(obj, JSON.stringify(obj));
      }
      el.chartNote.textContent = "";
    } catch (err) {
      if (generation === state.generation) {
        state.historyFailed = true;
        el.chartNote.textContent = `could not load history: ${err.message}`;
      }
    }
    scheduleRender();
  }

  /** After a reconnect: re-reads what was committed while the socket was down. */
  async function fillGap() {
    const names = state.selected.slice();
    const down = state.downSinceMs ?? Date.now();
    state.downSinceMs = null;
    if (!names.length) return;
    const generation = state.generation;
    const since = Math.min(state.lastLiveMs ?? down, down) - GAP_MARGIN_MS;
    const [from, to] = windowMs();
    try {
      const metrics = await queryMetrics(names, Math.max(since, from), isLive() ? null : to);
      if (generation !== state.generation) return;
      for (const obj of metrics) addMetric(obj, JSON.stringify(obj), { live: true });
    } catch (err) {
      state.historyFailed = true;
      el.chartNote.textContent = `could not fill the gap after reconnecting: ${err.message}`;
    }
    scheduleRender();
  }

  // ---------------------------------------------------------------- aggregation

  /** The width of the chart's plot, in CSS pixels: how many buckets a range is cut into. */
  function plotWidth() {
    return chart ? Math.max(100, Math.round(chart.bbox.width / devicePixelRatio)) : Math.max(100, el.chart.clientWidth - 80);
  }

  /** Decides, for the current range and width, whether history is read aggregated, and sets up
   * `state.agg` (empty) when it is: step = ceil(range / width) whole seconds. */
  function planView() {
    const [from, to] = windowMs();
    const span = to - from;
    if (span <= AGGREGATE_ABOVE_MS || state.raw) { state.agg = null; return; }
    const width = plotWidth();
    const stepMs = Math.max(1, Math.ceil(span / 1000 / width)) * 1000;
    const tailMs = isLive() ? Math.floor(Date.now() / stepMs) * stepMs : Infinity;
    state.agg = { stepMs, tailMs, width, buckets: new Map() };
  }

  /** `/v1/metrics` parameters of the aggregated read from `fromMs` (its bucket's start) to just
   * before `endMs` (`ets` is inclusive: 1 µs before): avg, min, max and count per bucket, split by
   * the picked tag. */
  function aggParams(names, fromMs, endMs, stepMs) {
    const params = new URLSearchParams();
    for (const name of names) params.append("name", name);
    params.set("sts", new Date(Math.floor(fromMs / stepMs) * stepMs).toISOString());
    params.set("ets", `${new Date(endMs - 1).toISOString().slice(0, -1)}999Z`);
    params.set("step", `${stepMs / 1000}s`);
    params.set("agg", "avg,min,max,count");
    if (state.by) params.set("by", state.by);
    return params;
  }

  /** A tag's value as the server compares tags (as text); null when the metric has no such key. */
  function tagText(v) {
    if (v === undefined || v === null) return null;
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  /** The line a metric or a server series belongs to. */
  const seriesKey = (name, tag) => (state.by ? `${name} ${state.by}=${tag ?? "∅"}` : name);

  function bucketsOf(name, tag) {
    const key = seriesKey(name, tag);
    let b = state.agg.buckets.get(key);
    if (!b) { b = { name, tag, t: new Map() }; state.agg.buckets.set(key, b); }
    return b;
  }

  /** Stores the server's columnar answer `{series: [{name, tags, ts, avg, min, max, count}]}`. */
  function addBuckets(answer) {
    for (const s of answer.series || []) {
      if (!state.series.has(s.name)) continue;
      const b = bucketsOf(s.name, state.by ? tagText(s.tags?.[state.by]) : null);
      s.ts.forEach((sec, i) => {
        if (s.avg[i] == null) return;
        b.t.set(sec * 1000, { avg: s.avg[i], min: s.min[i], max: s.max[i], count: s.count[i] });
      });
    }
    chartDirty = true;
  }

  /** A late live point joins the server's bucket it falls in: the average weighted by `count`. */
  function foldIntoBucket(obj, t) {
    const v = obj.value;
    if (typeof v !== "number" || !Number.isFinite(v)) return;
    const { stepMs } = state.agg;
    const b = bucketsOf(obj.name, state.by ? tagText(obj[state.by]) : null);
    const start = Math.floor(t / stepMs) * stepMs;
    const cur = b.t.get(start);
    if (!cur) b.t.set(start, { avg: v, min: v, max: v, count: 1 });
    else b.t.set(start, { avg: (cur.avg * cur.count + v) / (cur.count + 1), min: Math.min(cur.min, v), max: Math.max(cur.max, v), count: cur.count + 1 });
  }

  /** Fills the "split by" picker with the tag keys of the charted names (`GET /v1/tags`). */
  async function refreshTagKeys() {
    const names = state.selected.slice();
    let keys = [];
    if (names.length) {
      const params = new URLSearchParams();
      for (const n of names) params.append("name", n);
      try { keys = (await getJson(`/v1/tags?${params}`)).keys || []; } catch (_) { return; }
    }
    if (state.by && !keys.includes(state.by)) keys = [...keys, state.by];
    state.tagKeys = keys;
    const fragment = document.createDocumentFragment();
    for (const [value, text] of [["", "nothing"], ...keys.map((k) => [k, k])]) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      fragment.append(option);
    }
    el.splitBy.replaceChildren(fragment);
    el.splitBy.value = state.by;
  }

  async function refreshNames() {
    try {
      const list = await getJson("/v1/names");
      for (const n of list.names) {
        state.known.set(n.name, { count: n.count, firstMs: parseTs(n.first_ts), lastMs: parseTs(n.last_ts) });
      }
      if (state.autoSelect && !state.selected.length) {
        const recent = [...state.known.entries()].sort((a, b) => b[1].lastMs - a[1].lastMs).slice(0, AUTO_SERIES);
        setSelected(recent.map(([name]) => name).sort(), { auto: true });
      }
      renderNames();
    } catch (err) {
      el.namesCount.textContent = `could not list names: ${err.message}`;
    }
  }

  // ---------------------------------------------------------------- the live socket

  let attempts = 0;
  let everOpen = false;
  function connect() {
    const since = state.cursor == null ? "" : `?since=${state.cursor}`;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream${since}`;
    let socket;
    try {
      socket = token ? new WebSocket(url, ["metrics", `bearer.${token}`]) : new WebSocket(url);
    } catch (_) {
      // A token with characters a subprotocol cannot hold goes in the query instead.
      socket = new WebSocket(`${url}${since ? "&" : "?"}access_token=${encodeURIComponent(token)}`);
    }
    const resumed = state.cursor != null;
    socket.onopen = () => {
      attempts = 0;
      setConnection("live");
      if (everOpen && state.historyFailed) {
        state.historyFailed = false;
        state.downSinceMs = null;
        refreshNames().then(() => { reloadView(); refreshTagKeys(); });
      } else if (everOpen && resumed) {
        // The server replays everything after the cursor: no gap to query.
        state.downSinceMs = null;
        refreshNames();
      } else if (everOpen) {
        fillGap();
        refreshNames();
      } else {
        everOpen = true;
        // Subscribed first, then read: nothing committed in between is missed.
        refreshNames().then(() => { planView(); loadHistory(state.selected); refreshTagKeys(); });
      }
    };
    socket.onmessage = (event) => onFrame(event.data);
    socket.onclose = () => {
      if (state.downSinceMs == null) state.downSinceMs = Date.now();
      setConnection("reconnecting");
      const delay = BACKOFF[Math.min(attempts, BACKOFF.length - 1)];
      attempts += 1;
      // A refused upgrade looks like any closed socket: ask the server whether the token is why.
      setTimeout(() => authorize().then(connect), delay);
    };
  }

  /** One frame of `/v1/stream`: `{id, metric}`, or a checkpoint `{id}` that only moves the cursor. */
  function onFrame(text) {
    let frame;
    try { frame = JSON.parse(text); } catch (_) { return; }
    if (!frame || typeof frame.id !== "number") return;
    state.cursor = frame.id;
    const obj = frame.metric;
    if (!obj || typeof obj.name !== "string") return;
    const t = parseTs(obj.ts);
    if (!Number.isNaN(t) && (state.lastLiveMs == null || t > state.lastLiveMs)) state.lastLiveMs = t;
    const isNew = !state.known.has(obj.name);
    noteKnown(obj);
    if (isNew && state.autoSelect && state.selected.length < AUTO_SERIES) {
      setSelected([...state.selected, obj.name], { auto: true, load: false });
    }
    // The socket sends compact JSON as posted; re-serialising gives the same text as history.
    addMetric(obj, JSON.stringify(obj), { live: true });
    if (isNew) renderNames(); else scheduleNamesRender();
    scheduleRender();
  }

  function setConnection(connection) {
    state.connection = connection;
    el.status.dataset.state = connection;
    const text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" }[connection];
    el.statusText.textContent = state.paused ? `${text} · paused` : text;
    el.status.title = connection === "reconnecting"
      ? "The live stream dropped; reconnecting. Missed points are re-read from history when it is back."
      : "";
  }

  // ---------------------------------------------------------------- choosing what to show

  function setSelected(names, { auto = false, load = true } = {}) {
    if (!auto) state.autoSelect = false;
    const added = names.filter((n) => !state.selected.includes(n));
    for (const n of state.selected) {
      if (names.includes(n)) continue;
      state.series.delete(n);
      if (state.agg) for (const [key, b] of state.agg.buckets) if (b.name === n) state.agg.buckets.delete(key);
    }
    state.selected = names.slice();
    for (const n of added) { colorOf(n); state.series.set(n, { records: [], keys: new Set() }); }
    saveHash();
    renderNames();
    rebuildChart();
    if (load && everOpen) loadHistory(added);
    if (everOpen && (added.length || names.length < state.tagKeys.length)) refreshTagKeys();
  }

  /** Forgets what the chart holds and reads the whole view again: after the range, the split or
   * the band changes (each changes what the server is asked). */
  function reloadView() {
    state.generation += 1;
    for (const n of state.selected) state.series.set(n, { records: [], keys: new Set() });
    planView();
    chartDirty = true;
    rebuildChart();
    if (everOpen) loadHistory(state.selected);
  }

  function setRange(range, custom) {
    state.range = range;
    state.custom = custom || null;
    for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === range));
    el.custom.hidden = range !== "custom";
    saveHash();
    reloadView();
  }

  function setBy(by) {
    state.by = by;
    el.splitBy.value = by;
    saveHash();
    reloadView();
  }

  function saveHash() {
    const p = new URLSearchParams();
    if (!state.autoSelect) for (const n of state.selected) p.append("name", n);
    p.set("range", state.range);
    if (state.ownScales) p.set("y", "own");
    if (state.by) p.set("by", state.by);
    if (state.band) p.set("band", "1");
    if (state.raw) p.set("raw", "1");
    if (state.range === "custom" && state.custom) {
      p.set("from", new Date(state.custom.fromMs).toISOString());
      p.set("to", new Date(state.custom.toMs).toISOString());
    }
    history.replaceState(null, "", `#${p}`);
  }

  function loadHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const names = p.getAll("name").filter(Boolean);
    if (names.length) setSelected(names, { load: false });
    state.ownScales = p.get("y") === "own";
    state.by = p.get("by") || "";
    state.band = p.get("band") === "1";
    state.raw = p.get("raw") === "1";
    el.band.setAttribute("aria-pressed", String(state.band));
    el.yMode.setAttribute("aria-pressed", String(state.ownScales));
    const range = p.get("range");
    if (range === "custom") {
      const fromMs = parseTs(p.get("from") || ""), toMs = parseTs(p.get("to") || "");
      if (!Number.isNaN(fromMs) && !Number.isNaN(toMs) && fromMs <= toMs) {
        state.range = "custom";
        state.custom = { fromMs, toMs };
        el.customFrom.value = toLocalInput(fromMs);
        el.customTo.value = toLocalInput(toMs);
      }
    } else if (range in RANGES) {
      state.range = range;
    }
    for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
    el.custom.hidden = state.range !== "custom";
  }

  // ---------------------------------------------------------------- drawing

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  let chart = null;
  /** The chart's columns are rebuilt only when the store changed since they were last built. */
  let chartDirty = true;
  let chartColumns = null;
  function chartSize() {
    const width = Math.max(200, el.chart.clientWidth);
    return { width, height: window.innerWidth < 860 ? 240 : 320 };
  }

  /** What is drawn: one line per name, or per name and value of the split-by tag, each a list of
   * [tMs, avg, min, max] sorted by time; raw points have avg = min = max = their value. In an
   * aggregated view the server's buckets come first, then the page's own buckets of the raw tail
   * (live points land there, in the bucket of the clock). */
  function lines() {
    const out = new Map();
    const lineOf = (name, tag) => {
      const key = seriesKey(name, tag);
      if (!out.has(key)) out.set(key, { key, name, points: new Map() });
      return out.get(key);
    };
    const agg = state.agg;
    const [from] = windowMs();
    if (agg) {
      for (const b of agg.buckets.values()) {
        if (!state.series.has(b.name)) continue;
        const line = lineOf(b.name, b.tag);
        for (const [t, v] of b.t) if (t + agg.stepMs > from) line.points.set(t, v);
      }
    }
    for (const name of state.selected) {
      if (!state.by) lineOf(name, null);
      const own = new Map(); // key -> bucket start -> { sum, n, min, max }
      for (const r of state.series.get(name)?.records || []) {
        if (typeof r.value !== "number" || !Number.isFinite(r.value)) continue;
        if (agg && r.t < agg.tailMs) continue; // in the server's buckets already
        const line = lineOf(name, state.by ? tagText(r.obj[state.by]) : null);
        if (!agg) { line.points.set(r.t, { avg: r.value, min: r.value, max: r.value }); continue; }
        const start = Math.floor(r.t / agg.stepMs) * agg.stepMs;
        if (!own.has(line.key)) own.set(line.key, new Map());
        const m = own.get(line.key);
        const c = m.get(start) || { sum: 0, n: 0, min: Infinity, max: -Infinity };
        c.sum += r.value; c.n += 1; c.min = Math.min(c.min, r.value); c.max = Math.max(c.max, r.value);
        m.set(start, c);
      }
      for (const [key, m] of own) {
        const line = out.get(key);
        for (const [t, c] of m) line.points.set(t, { avg: c.sum / c.n, min: c.min, max: c.max });
      }
    }
    // Split by a tag but nothing to split yet: the name still gets its place in the legend.
    for (const name of state.selected) if (![...out.values()].some((l) => l.name === name)) lineOf(name, null);
    const order = new Map(state.selected.map((n, i) => [n, i]));
    return [...out.values()]
      .filter((l) => order.has(l.name))
      .sort((a, b) => order.get(a.name) - order.get(b.name) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Whether the min–max band is drawn: asked for, and the view is aggregated. */
  const banded = () => state.band && state.agg != null;

  let chartShape = "";
  /** (Re)creates the chart for `shown` lines: when the lines, the scales or the theme change. */
  function rebuildChart(shown = lines()) {
    if (chart) { chart.destroy(); chart = null; }
    const muted = css("--muted"), grid = css("--grid");
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: "11px system-ui, sans-serif" };
    const band = banded();
    const series = [{ label: "time", value: (u, v) => (v == null ? "—" : fmtTime(v * 1000)) }];
    const bands = [];
    shown.forEach((line, i) => {
      const scale = state.ownScales ? `y${i}` : "y";
      series.push({
        label: line.key, stroke: colorOf(line.key), width: 1.75, spanGaps: true, scale,
        points: { size: 5, fill: colorOf(line.key) },
        value: (u, v) => fmtNum(v),
      });
      if (band) {
        const at = series.length;
        for (const edge of ["max", "min"]) {
          series.push({ label: `${line.key} ${edge}`, stroke: "transparent", width: 0, spanGaps: true, scale, points: { show: false }, value: (u, v) => fmtNum(v) });
        }
        bands.push({ series: [at, at + 1], fill: `${colorOf(line.key)}33` });
      }
    });
    const opts = {
      ...chartSize(),
      scales: {
        x: { time: true, range: () => { const [a, b] = windowMs(); return [a / 1000, b / 1000]; } },
      },
      series,
      bands,
      axes: [axis, ...yAxes(axis, shown)],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
    chartShape = shapeOf(shown);
    chartDirty = true;
    chart = new uPlot(opts, chartData(shown), el.chart);
    renderNow();
  }

  function shapeOf(shown) { return JSON.stringify([shown.map((l) => l.key), banded(), state.ownScales]); }

  /** One shared y axis; or, with a scale per line, an axis in its colour for the first two. */
  function yAxes(axis, shown) {
    const values = (u, vals) => vals.map(fmtNum);
    if (!state.ownScales || !shown.length) return [{ ...axis, size: 64, values }];
    return shown.slice(0, 2).map((line, i) => ({
      ...axis, scale: `y${i}`, side: i === 0 ? 3 : 1, size: 64, values, stroke: colorOf(line.key),
      grid: { ...axis.grid, show: i === 0 },
    }));
  }

  /** uPlot's columns: one x array of seconds (the union of every line's times), then per line its
   * averages (and, with the band, its maxima and minima), `null` where it has no point. */
  function chartData(shown) {
    if (!chartDirty && chartColumns) return chartColumns;
    chartDirty = false;
    chartColumns = alignedColumns(shown || lines());
    return chartColumns;
  }

  function alignedColumns(shown) {
    const xs = [...new Set(shown.flatMap((l) => [...l.points.keys()]))].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const fields = banded() ? ["avg", "max", "min"] : ["avg"];
    const ys = [];
    for (const line of shown) {
      for (const f of fields) {
        const y = new Array(xs.length).fill(null);
        for (const [t, p] of line.points) y[index.get(t)] = p[f];
        ys.push(y);
      }
    }
    return [xs.map((t) => t / 1000), ...ys];
  }

  let renderTimer = null;
  let lastRender = 0;
  function scheduleRender() {
    if (state.paused || renderTimer) return;
    const wait = Math.max(0, RENDER_EVERY_MS - (performance.now() - lastRender));
    renderTimer = setTimeout(() => { renderTimer = null; requestAnimationFrame(renderNow); }, wait);
  }

  function renderNow() {
    lastRender = performance.now();
    prune();
    if (chartDirty || !chart) {
      const shown = lines();
      if (!chart || shapeOf(shown) !== chartShape) { rebuildChart(shown); return; }
      chart.setData(chartData(shown));
    } else {
      chart.setData(chartColumns); // a live window slides with the clock
    }
    renderTable();
    const charted = state.selected.length;
    if (!charted) el.chartNote.textContent = state.known.size ? "Pick a metric on the left to chart it." : "Waiting for the first metric…";
    else if (el.chartNote.textContent.startsWith("Pick") || el.chartNote.textContent.startsWith("Waiting")) el.chartNote.textContent = "";
  }

  let shownRows = new Set();
  function renderTable() {
    const recent = [];
    for (const name of state.selected) {
      const recs = state.series.get(name)?.records || [];
      recent.push(...recs.slice(-TABLE_ROWS));
    }
    recent.sort((a, b) => b.t - a.t);
    const rows = recent.slice(0, TABLE_ROWS);
    const fragment = document.createDocumentFragment();
    const nowShown = new Set();
    for (const r of rows) {
      nowShown.add(r.key);
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      if (shownRows.size && !shownRows.has(r.key)) tr.className = "fresh";
      const time = cell(tr, "time", fmtTime(r.t));
      time.title = `ts as posted: ${r.obj.ts}`;
      const name = cell(tr, "name", "");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colorOf(r.name);
      name.append(swatch, r.name);
      const isNumber = typeof r.value === "number";
      cell(tr, isNumber ? "value" : "value text", isNumber ? fmtNum(r.value) : JSON.stringify(r.value));
      const extras = cell(tr, "extras", "");
      for (const [k, v] of Object.entries(r.obj)) {
        if (BASE_KEYS.has(k)) continue;
        const chip = document.createElement("span");
        chip.className = "chip";
        const label = document.createElement("b");
        label.textContent = `${k}=`;
        chip.append(label, typeof v === "string" ? v : JSON.stringify(v));
        extras.append(chip);
      }
      fragment.append(tr);
    }
    shownRows = nowShown;
    el.tbody.replaceChildren(fragment);
  }

  function cell(tr, className, text) {
    const td = document.createElement("td");
    td.className = className;
    td.textContent = text;
    tr.append(td);
    return td;
  }

  let namesTimer = null;
  function scheduleNamesRender() {
    if (!namesTimer) namesTimer = setTimeout(() => { namesTimer = null; renderNames(); }, 1000);
  }

  function renderNames() {
    const filter = el.namesFilter.value.trim().toLowerCase();
    const names = [...state.known.keys()].sort();
    const fragment = document.createDocumentFragment();
    for (const name of names) {
      if (filter && !name.toLowerCase().includes(filter)) continue;
      const info = state.known.get(name);
      const li = document.createElement("li");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.checked = state.selected.includes(name);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      if (box.checked) swatch.style.background = colorOf(name);
      const text = document.createElement("span");
      text.className = "label";
      text.textContent = name;
      text.title = name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${info.count.toLocaleString()} · ${Number.isNaN(info.lastMs) ? "" : fmtAgo(info.lastMs)}`;
      meta.title = Number.isNaN(info.lastMs) ? "" : `latest ts: ${fmtTime(info.lastMs)}`;
      label.append(box, swatch, text, meta);
      li.append(label);
      fragment.append(li);
    }
    el.names.replaceChildren(fragment);
    el.namesEmpty.hidden = state.known.size > 0;
    el.namesCount.textContent = state.known.size ? `${state.selected.length} of ${state.known.size} charted` : "";
  }

  // ---------------------------------------------------------------- theme

  const THEMES = ["auto", "light", "dark"];
  function applyTheme(theme) {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    try { localStorage.setItem("metrics.theme", theme); } catch (_) { /* private mode */ }
    el.theme.textContent = `Theme: ${theme}`;
    rebuildChart();
  }

  // ---------------------------------------------------------------- wiring

  el.names.addEventListener("change", (event) => {
    const box = event.target;
    if (box.type !== "checkbox") return;
    const names = box.checked ? [...state.selected, box.value] : state.selected.filter((n) => n !== box.value);
    setSelected(names);
  });
  el.namesFilter.addEventListener("input", renderNames);

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      const range = button.dataset.range;
      if (range === "custom") {
        el.custom.hidden = false;
        for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b === button));
        if (!el.customFrom.value) {
          const t = Date.now();
          el.customFrom.value = toLocalInput(t - RANGES["1h"]);
          el.customTo.value = toLocalInput(t);
        }
        el.customFrom.focus();
      } else {
        setRange(range);
      }
    });
  }

  el.custom.addEventListener("submit", (event) => {
    event.preventDefault();
    const fromMs = fromLocalInput(el.customFrom.value), toMs = fromLocalInput(el.customTo.value);
    if (Number.isNaN(fromMs) || Number.isNaN(toMs)) { el.customError.textContent = "Enter both ends of the range."; return; }
    if (fromMs > toMs) { el.customError.textContent = "“From” is after “To”."; return; }
    el.customError.textContent = "";
    setRange("custom", { fromMs, toMs });
  });

  el.yMode.addEventListener("click", () => {
    state.ownScales = !state.ownScales;
    el.yMode.setAttribute("aria-pressed", String(state.ownScales));
    saveHash();
    rebuildChart();
  });

  el.splitBy.addEventListener("change", () => setBy(el.splitBy.value));

  el.band.addEventListener("click", () => {
    state.band = !state.band;
    el.band.setAttribute("aria-pressed", String(state.band));
    saveHash();
    rebuildChart();
  });

  el.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    if (state.paused) state.pausedAt = Date.now();
    el.pause.setAttribute("aria-pressed", String(state.paused));
    el.pause.textContent = state.paused ? "Resume" : "Pause";
    setConnection(state.connection);
    if (!state.paused) renderNow();
  });

  el.theme.addEventListener("click", () => {
    const current = document.documentElement.dataset.theme || "auto";
    applyTheme(THEMES[(THEMES.indexOf(current) + 1) % THEMES.length]);
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (!document.documentElement.dataset.theme) rebuildChart();
  });

  new ResizeObserver(() => { if (chart) chart.setSize(chartSize()); }).observe(el.chart);

  // A live window slides with the clock even when nothing arrives.
  setInterval(() => { if (isLive() && !state.paused) renderNow(); }, 1000);
  // "3m ago" in the picker stays true.
  setInterval(renderNames, 15e3);

  /** For the browser tests and the curious: what the chart and table show, read-only. */
  window.metricsDashboard = {
    chartData: () => (chart ? chart.data.map((column) => Array.from(column)) : null),
    chartSeries: () => (chart ? chart.series.slice(1).map((s) => s.label) : []),
    selected: () => state.selected.slice(),
    /** How history is read: `step` (seconds) and the plot `width` it was sized to when aggregated, null when raw; the split; the plot width now. */
    view: () => ({ step: state.agg ? state.agg.stepMs / 1000 : null, by: state.by, width: state.agg?.width ?? null, plotWidth: plotWidth() }),
    connection: () => state.connection,
  };

  el.theme.textContent = `Theme: ${document.documentElement.dataset.theme || "auto"}`;
  loadHash();
  rebuildChart();
  renderNames();
  authorize().then(connect);
})();
