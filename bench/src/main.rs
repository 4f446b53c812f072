//! `metrics-bench`: the load generators behind `bench/run.sh` that `ab` cannot play.
//!
//! - `bulk`: posts pre-built batches (NDJSON or JSON arrays, plain or gzip) to metrics-server,
//!   or the same points to VictoriaMetrics (`/api/v1/import`) or InfluxDB 1.x (`/write`), from a
//!   few concurrent clients, and prints metrics per second. Bodies are built before the clock
//!   starts, so the figure is the server's, not the generator's.
//! - `ws`: opens WebSocket subscribers, posts one metric per request at a fixed rate, and prints
//!   the POST-to-frame latency percentiles and how many frames went missing.
//!
//! Every load is bounded (a count or a duration) and goes to loopback only. Output is one line
//! of `key=value` pairs that the script records.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message};

/// Load generators for the benchmark suite.
#[derive(Debug, Parser)]
#[command(name = "metrics-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bulk ingest: `total` points in bodies of `batch`, from `concurrency` clients.
    Bulk(BulkArgs),
    /// Live fan-out: `subscribers` WebSockets while `rate` metrics/s are posted one per request.
    Ws(WsArgs),
    /// The disk alone: 8 kB appended and `fdatasync`ed in a loop, what every durable commit
    /// waits for at least once.
    Fsync(FsyncArgs),
}

#[derive(Debug, clap::Args)]
struct FsyncArgs {
    /// A scratch file to append to (removed afterwards); put it on the database's disk.
    #[arg(long)]
    file: std::path::PathBuf,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
}

/// Where the points go and how they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// metrics-server, `POST /v1/metrics` with `application/x-ndjson`.
    Ndjson,
    /// metrics-server, `POST /v1/metrics` with a JSON array.
    Json,
    /// VictoriaMetrics, `POST /api/v1/import` (JSON lines, one sample each).
    Victoria,
    /// Line protocol, `POST /write?db=bench`: InfluxDB 1.x, VictoriaMetrics, or metrics-server.
    Influx,
    /// Prometheus remote write 1.0, `POST /api/v1/write` (Snappy + protobuf, one series per
    /// point): VictoriaMetrics or metrics-server.
    RemoteWrite,
}

/// Remote write 1.0's messages.
use metrics_types::remote_write as prw;

/// One remote-write body of points `first..first + len`, Snappy-compressed.
fn remote_write_body(first: usize, len: usize, names: usize) -> anyhow::Result<Vec<u8>> {
    use prost::Message as _;
    let label = |name: &str, value: String| prw::Label {
        name: name.into(),
        value,
    };
    let timeseries = (first..first + len)
        .map(|i| {
            let (name, secs) = point(i, names);
            prw::TimeSeries {
                labels: vec![
                    label("__name__", format!("m{name}")),
                    label("host", "bench".into()),
                ],
                samples: vec![prw::Sample {
                    value: (i % 1000) as f64 / 10.0,
                    timestamp: secs * 1000,
                }],
            }
        })
        .collect();
    let protobuf = prw::WriteRequest { timeseries }.encode_to_vec();
    Ok(snap::raw::Encoder::new().compress_vec(&protobuf)?)
}

#[derive(Debug, clap::Args)]
struct BulkArgs {
    /// Base URL of the server, e.g. `http://127.0.0.1:5000`.
    #[arg(long)]
    url: String,
    /// The wire format, which also picks the peer.
    #[arg(long, value_enum, default_value = "ndjson")]
    target: Target,
    /// Compress every body with gzip (`Content-Encoding: gzip`).
    #[arg(long)]
    gzip: bool,
    /// Points in all.
    #[arg(long, default_value_t = 200_000)]
    total: usize,
    /// Points per request body.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Distinct metric names; point `i` is named `m{i % names}`.
    #[arg(long, default_value_t = 100)]
    names: usize,
    /// Distinct hosts: name `m{n}` is tagged `"host":"web-{n % hosts}"`; 0: every point is
    /// tagged `"host":"bench"`.
    #[arg(long, default_value_t = 0)]
    hosts: usize,
    /// Index of the first point, so that successive loads continue each other's series.
    #[arg(long, default_value_t = 0)]
    first: usize,
}

#[derive(Debug, clap::Args)]
struct WsArgs {
    /// Base URL of metrics-server, e.g. `http://127.0.0.1:5000`.
    #[arg(long)]
    url: String,
    /// WebSocket subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Metrics posted per second, one per request.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to post, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// 2016-01-01T00:00:00Z, where every generated series starts.
const BASE_SECS: i64 = 1_451_606_400;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Bulk(args) => bulk(args).await,
            Command::Ws(args) => ws(args).await,
            Command::Fsync(args) => fsync(args),
        }
    })
}

/// An ISO-8601 UTC timestamp `secs` after the Unix epoch, without external crates.
fn iso(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Point `i`: its name and its second (each name gets one point per second).
fn point(i: usize, names: usize) -> (usize, i64) {
    (i % names, BASE_SECS + (i / names) as i64)
}

/// One request body of points `first..first + len`, in the target's format.
fn body(target: Target, first: usize, len: usize, names: usize, hosts: usize) -> String {
    let mut out = String::with_capacity(len * 96);
    if target == Target::Json {
        out.push('[');
    }
    for i in first..first + len {
        let (name, secs) = point(i, names);
        let value = (i % 1000) as f64 / 10.0;
        let host = match hosts {
            0 => "bench".to_owned(),
            hosts => format!("web-{}", name % hosts),
        };
        match target {
            Target::Ndjson | Target::Json => {
                if target == Target::Json && i > first {
                    out.push(',');
                }
                out.push_str(&format!(
                    r#"{{"name":"m{name}","ts":"{}","value":{value},"host":"{host}"}}"#,
                    iso(secs)
                ));
                if target == Target::Ndjson {
                    out.push('\n');
                }
            }
            Target::Victoria => out.push_str(&format!(
                "{{\"metric\":{{\"__name__\":\"m{name}\",\"host\":\"{host}\"}},\"values\":[{value}],\"timestamps\":[{}]}}\n",
                secs * 1000
            )),
            Target::Influx => out.push_str(&format!(
                "m{name},host={host} value={value} {}\n",
                secs * 1_000_000_000
            )),
            // Built as bytes by `remote_write_body`.
            Target::RemoteWrite => {}
        }
    }
    if target == Target::Json {
        out.push(']');
    }
    out
}

fn gzip(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes())?;
    Ok(encoder.finish()?)
}

async fn bulk(args: BulkArgs) -> anyhow::Result<()> {
    let (path, content_type) = match args.target {
        Target::Ndjson => ("/v1/metrics", "application/x-ndjson"),
        Target::Json => ("/v1/metrics", "application/json"),
        Target::Victoria => ("/api/v1/import", "application/json"),
        Target::Influx => ("/write?db=bench", "text/plain"),
        Target::RemoteWrite => ("/api/v1/write", "application/x-protobuf"),
    };
    let remote_write = args.target == Target::RemoteWrite;
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let batch = args.batch.max(1);
    let mut bodies = Vec::new();
    let mut wire_bytes = 0usize;
    let mut start = 0;
    while start < args.total {
        let len = batch.min(args.total - start);
        let bytes = if remote_write {
            remote_write_body(args.first + start, len, args.names.max(1))?
        } else {
            let text = body(
                args.target,
                args.first + start,
                len,
                args.names.max(1),
                args.hosts,
            );
            if args.gzip {
                gzip(&text)?
            } else {
                text.into_bytes()
            }
        };
        wire_bytes += bytes.len();
        bodies.push((len, bytes));
        start += len;
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let queue = Arc::new(std::sync::Mutex::new(bodies.into_iter()));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, queue, url) = (client.clone(), queue.clone(), url.clone());
        let gzip = args.gzip;
        workers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .next();
                let Some((len, bytes)) = next else { break };
                let mut request = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(bytes);
                if remote_write {
                    request = request
                        .header("content-encoding", "snappy")
                        .header("x-prometheus-remote-write-version", "0.1.0");
                } else if gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let response = request.send().await.context("POST")?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("{url} answered {status}: {text}");
                }
                sent += len;
            }
            Ok::<usize, anyhow::Error>(sent)
        }));
    }
    let mut sent = 0;
    for worker in workers {
        sent += worker.await??;
    }
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "points={sent} seconds={elapsed:.3} points_per_sec={:.0} wire_bytes={wire_bytes}",
        sent as f64 / elapsed
    );
    Ok(())
}

fn fsync(args: FsyncArgs) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(&args.file)
        .with_context(|| format!("create {}", args.file.display()))?;
    let block = [b'x'; 8192];
    let began = Instant::now();
    let mut syncs = 0u64;
    while began.elapsed() < Duration::from_secs(args.seconds) {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    let elapsed = began.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&args.file)?;
    println!(
        "fdatasyncs={syncs} per_sec={:.0} ms_each={:.2}",
        syncs as f64 / elapsed,
        elapsed * 1000.0 / syncs as f64
    );
    Ok(())
}

/// Microseconds since `start` at which POST `seq` was sent; 0 = not yet.
struct SentAt {
    start: Instant,
    micros: Vec<AtomicU64>,
}

async fn ws(args: WsArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    let ws_url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    let total = (args.rate * args.seconds) as usize;
    let sent = Arc::new(SentAt {
        start: Instant::now(),
        micros: (0..total).map(|_| AtomicU64::new(0)).collect(),
    });
    // A per-run tag, so that frames of an earlier run (or of other writers) are ignored.
    let run = format!(
        "{}",
        sent.start.elapsed().as_nanos() ^ u128::from(std::process::id())
    );

    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers {
        let config = WebSocketConfig::default().read_buffer_size(64 << 10);
        let (socket, _) = tokio_tungstenite::connect_async_with_config(&ws_url, Some(config), true)
            .await
            .with_context(|| format!("connect {ws_url}"))?;
        let (sent, run) = (sent.clone(), run.clone());
        subscribers.push(tokio::spawn(async move {
            let (_, mut incoming) = socket.split();
            let mut latencies = Vec::with_capacity(total);
            let mut closed_early = false;
            let deadline = tokio::time::sleep(Duration::from_secs(args.seconds + 10));
            tokio::pin!(deadline);
            while latencies.len() < total {
                let message = tokio::select! {
                    m = incoming.next() => m,
                    _ = &mut deadline => break,
                };
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(seq) = seq_of(&text, &run) {
                            let now = sent.start.elapsed().as_micros() as u64;
                            let at = sent.micros[seq].load(Ordering::Acquire);
                            latencies.push(now.saturating_sub(at));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        closed_early = true;
                        break;
                    }
                }
            }
            (latencies, closed_early)
        }));
    }

    let client = reqwest::Client::new();
    let url = format!("{base}/v1/metrics");
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(total);
    let began = Instant::now();
    for seq in 0..total {
        ticker.tick().await;
        let body = format!(
            r#"{{"name":"ws","ts":"{}","value":{seq},"run":"{run}","seq":{seq}}}"#,
            iso(BASE_SECS + seq as i64)
        );
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        posts.push(tokio::spawn(async move {
            sent.micros[seq].store(sent.start.elapsed().as_micros() as u64, Ordering::Release);
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "POST answered {}",
                response.status()
            );
            Ok(())
        }));
    }
    let mut failed_posts = 0;
    for post in posts {
        if !matches!(post.await, Ok(Ok(()))) {
            failed_posts += 1;
        }
    }
    let posting = began.elapsed().as_secs_f64();

    let mut all = Vec::with_capacity(total * args.subscribers);
    let mut closed_early = 0;
    for subscriber in subscribers {
        let (latencies, closed) = subscriber.await?;
        closed_early += usize::from(closed);
        all.extend(latencies);
    }
    let expected = total * args.subscribers;
    let received = all.len();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    println!(
        "posted={total} post_rate={:.0} failed_posts={failed_posts} frames_expected={expected} \
         frames_received={received} dropped={} closed_early={closed_early} p50_ms={:.2} \
         p99_ms={:.2} max_ms={:.2}",
        total as f64 / posting,
        expected - received,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// The `seq` of a frame of this run, read without parsing the whole object.
fn seq_of(text: &str, run: &str) -> Option<usize> {
    let tag = format!("\"run\":\"{run}\"");
    if !text.contains(&tag) {
        return None;
    }
    let at = text.find("\"seq\":")? + 6;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_utc() {
        assert_eq!(iso(BASE_SECS), "2016-01-01T00:00:00Z");
        assert_eq!(iso(BASE_SECS + 86_400 * 59 + 3661), "2016-02-29T01:01:01Z");
    }

    #[test]
    fn bodies_have_one_point_per_line_or_element() {
        let ndjson = body(Target::Ndjson, 0, 3, 2, 0);
        assert_eq!(ndjson.lines().count(), 3);
        let json: serde_json::Value =
            serde_json::from_str(&body(Target::Json, 0, 3, 2, 0)).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(3));
        assert_eq!(json[2]["name"], "m0");
        assert_eq!(json[2]["ts"], "2016-01-01T00:00:01Z");
    }

    #[test]
    fn hosts_tag_each_name_with_one_host() {
        let json: serde_json::Value =
            serde_json::from_str(&body(Target::Json, 105, 3, 1000, 100)).unwrap();
        assert_eq!(json[2]["name"], "m107");
        assert_eq!(json[2]["host"], "web-7");
        assert!(body(Target::Influx, 1107, 1, 1000, 100).starts_with("m107,host=web-7 "));
    }

    #[test]
    fn reads_seq_of_this_run_only() {
        assert_eq!(seq_of(r#"{"run":"7","seq":42}"#, "7"), Some(42));
        assert_eq!(seq_of(r#"{"run":"8","seq":42}"#, "7"), None);
    }
}
