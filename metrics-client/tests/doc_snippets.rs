//! Every ```rust snippet of `README.md` and `docs/client.md`, word for word, inside a function
//! returning `metrics_client::Result` as a user would write it: this file compiling is the test
//! that the docs compile as written (`?` on timestamps included). The one test below fails when
//! a snippet in the docs changes without its copy here.
//!
//! `cargo test -p metrics-client --test doc_snippets` (no server: the snippets are compiled,
//! not run; the other tests run the same calls against a real server).

// The snippets are fragments: they bind values they do not use, rebind names and, like the
// README's curl examples, call things `foo`.
#![allow(
    unused_variables,
    unused_mut,
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::disallowed_names
)]

use metrics_client::{Client, Metric, Result, Timestamp};

/// README.md, "From Rust".
#[rustfmt::skip]
async fn readme() -> Result<()> {
let client = metrics_client::Client::new("http://127.0.0.1:5000")?;
client.record("cpu", 0.93, chrono::Utc::now()).await?;
let foo = client.query().name("foo").start(metrics_client::Timestamp::parse("2016-01-01")?).await?;
let mut live = client.subscribe().name("cpu").await?; // a Stream that resumes by itself
    Ok(())
}

/// docs/client.md, "Connecting".
#[rustfmt::skip]
async fn connecting() -> Result<()> {
use std::time::Duration;
use metrics_client::Client;

let client = Client::new("http://127.0.0.1:5000")?;          // the common case
let client = Client::builder()                                 // or with options
    .timeout(Duration::from_secs(5))       // per request; not applied to streams
    .bearer_token("s3cr3t")                // Authorization: Bearer, WebSockets included
    .user_agent("my-app/1.0")
    .http_client(reqwest::Client::new())   // proxies, TLS roots, pools of your own
    .build("http://127.0.0.1:5000")?;
    Ok(())
}

/// docs/client.md, "Recording".
#[rustfmt::skip]
async fn recording(client: Client, ts: Timestamp, metrics: Vec<Metric>) -> Result<()> {
use metrics_client::{json::json, Metric};

client.record("cpu", 0.93, chrono::Utc::now()).await?;               // Ok = committed
client.record_metric(Metric::new("deploy", 1).with("tags", json!(["web", "eu"]))).await?;
client.record_metric(Metric::new("cpu", 0.93).at(ts).with("host", "web-1")).await?;
let stored = client.record_batch(metrics).await?;                     // any size
    Ok(())
}

/// docs/client.md, "Querying".
#[rustfmt::skip]
async fn querying(client: Client) -> Result<()> {
use futures::TryStreamExt;
use metrics_client::Timestamp;

let foo = client.query().name("foo").await?;                          // IntoFuture
let both = client.query().name("foo").name("bar")                      // any of several names
    .start(Timestamp::parse("2016-01-01")?)                            // inclusive
    .end(Timestamp::parse("2016-01-02")?)                              // inclusive
    .send().await?;                                                    // same as .await

let mut all = client.query().stream();                                 // results of any size
while let Some(metric) = all.try_next().await? { /* ... */ }
    Ok(())
}

/// docs/client.md, "Filtering by tags, limits and pages".
#[rustfmt::skip]
async fn filtering(client: Client, saved: String) -> Result<()> {
use futures::TryStreamExt;

let web = client.query().name("cpu")
    .tag("host", "web-1").tag("host", "web-2")                         // same key: any of
    .tag("region", "eu")                                               // other key: all of
    .await?;
let selected = client.query()
    .matching(r#"cpu{host=~"web-.*", region!="us", canary=""}"#)      // Prometheus selector
    .await?;
let latest = client.query().name("cpu").descending().limit(1).await?;  // newest first, one
let last_15_minutes = client.query()
    .start(chrono::Utc::now() - chrono::Duration::minutes(15))         // typed times
    .await?;

let mut pages = client.query().name("cpu").limit(500).pages();         // 500 per page
while let Some(page) = pages.try_next().await? {
    println!("{} metrics", page.metrics.len());
    if let Some(cursor) = page.cursor { /* save it to carry on later */ }
}
let more = client.query().name("cpu").limit(500).cursor(saved).await?; // from a saved cursor
    Ok(())
}

/// docs/client.md, "The catalog: names, tag keys, tag values".
#[rustfmt::skip]
async fn catalog(client: Client) -> Result<()> {
let names = client.names().await?;                                     // Vec<NameSummary>
let keys: Vec<String> = client.tag_keys().name("cpu").await?;          // ["host", "region"]
let hosts = client.tag_values("host").tag("region", "eu").await?;      // ["web-1", "web-2"]
    Ok(())
}

/// docs/client.md, "Aggregation".
#[rustfmt::skip]
async fn aggregation(client: Client) -> Result<()> {
use metrics_client::{Agg, Fill, Series, Step};

let per_host: Vec<Series> = client.query().name("latency")             // the same filters
    .start(Timestamp::parse("2016-01-01")?).end(Timestamp::parse("2016-01-02")?)
    .step(Step::minutes(5))                                            // now an AggregateQuery
    .agg([Agg::Avg, Agg::Max, Agg::P99, Agg::percentile(99.9)?])       // one column each
    .by(["host"])                                                      // one series per host
    .fill(Fill::Null)                                                  // keep empty buckets
    .await?;
for series in &per_host {
    let host = series.tags.get("host");                                // the `by` values
    let p99: &[Option<f64>] = series.values(Agg::P99).unwrap_or(&[]);  // as long as series.ts
    for (start, avg) in series.points(Agg::Avg) { /* Unix seconds, Option<f64> */ }
}
let local_days = client.query().name("sales")
    .step(Step::days(1)).offset(chrono::Duration::hours(-2))          // days from 22:00 UTC
    .agg([Agg::Sum, Agg::Count]).by(["shop", "region"])
    .fill(Fill::Value(0.0)).send().await?;                             // same as .await
    Ok(())
}

/// docs/client.md, "Deleting".
#[rustfmt::skip]
async fn deleting(client: Client) -> Result<()> {
let deleted: u64 = client.delete().name("cpu").tag("host", "web-9").await?; // how many went
let deleted = client.delete()
    .matching(r#"{env=~"test|staging"}"#)
    .end(Timestamp::parse("2016-01-01")?)                              // older than this
    .send().await?;                                                    // same as .await
let everything = client.delete().all().await?;                        // must be said
    Ok(())
}

/// docs/client.md, "Subscribing".
#[rustfmt::skip]
async fn subscribing(
    client: Client,
    saved_cursor: i64,
    one_hour_ago: chrono::DateTime<chrono::Utc>,
    save: impl Fn(i64),
) -> Result<()> {
use futures::StreamExt;

let mut live = client.subscribe().name("cpu").await?;                  // from now
let mut resumed = client.subscribe().after(saved_cursor).await?;       // from a cursor
let mut replay = client.subscribe().since(one_hour_ago).await?;        // from a timestamp
let mut web = client.subscribe().name("cpu").tag("host", "web-1")      // tags, as queries
    .matching(r#"{region=~"eu-.*"}"#).await?;
while let Some(metric) = live.next().await {
    let metric = metric?;
    save(live.cursor());                                               // to resume later
}
    Ok(())
}

/// docs/client.md, "The batching recorder".
#[rustfmt::skip]
async fn recorder(client: Client) -> Result<()> {
use std::time::Duration;
use metrics_client::Metric;

let recorder = client.recorder()
    .max_batch(1000)                       // send when this many wait ...
    .interval(Duration::from_secs(1))      // ... or this often
    .capacity(100_000)                     // the bounded buffer
    .retry_for(Duration::from_secs(60))    // the longest any batch, flush or close waits
    .build();
recorder.record(Metric::new("requests", 1).with("route", "/"))?;    // returns at once
let undelivered = recorder.flush().await?;  // wait for everything so far; what failed
let undelivered = recorder.close().await?;  // the same, then drop this handle
    Ok(())
}

/// docs/client.md, "The `metrics` facade" (its feature on: `cargo test --workspace` or
/// `--features facade`; the text is checked either way).
#[cfg(feature = "facade")]
#[rustfmt::skip]
async fn facade(client: Client) -> Result<()> {
use std::time::Duration;
use metrics_client::facade::{self, FacadeBuilder};

let handle = facade::install(&client)?;                    // the defaults; or:
let handle = FacadeBuilder::new(&client)
    .interval(Duration::from_secs(10))                     // sampling period (default 10 s)
    .global_label("service", "checkout")                  // an extra key on everything
    .quantiles(&[0.0, 0.5, 0.9, 0.99, 1.0])                // of histograms (the default)
    .batching(client.recorder().retry_for(Duration::from_secs(300)))
    .install()?;                                           // the process's global recorder

metrics::counter!("requests", "route" => "/").increment(1); // anywhere in the program
metrics::gauge!("queue.depth").set(12.0);
metrics::histogram!("latency.ms").record(3.5);

let undelivered = handle.close().await?;                   // last sample, delivered
    Ok(())
}

/// The ```rust blocks of a markdown text.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut block, line.trim()) {
            (None, "```rust") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                blocks.push(lines.join("\n"));
                block = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_rust_snippet_of_the_docs_is_compiled_here() {
    let here: Vec<&str> = include_str!("doc_snippets.rs").lines().collect();
    let docs = [
        ("README.md", include_str!("../../README.md")),
        ("docs/client.md", include_str!("../../docs/client.md")),
    ];
    let mut checked = 0;
    for (doc, text) in docs {
        for block in rust_blocks(text) {
            let lines: Vec<&str> = block.lines().collect();
            assert!(
                here.windows(lines.len()).any(|window| window == lines),
                "this snippet of {doc} is not in tests/doc_snippets.rs word for word; copy it into a function there:\n{block}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 11,
        "a snippet was added or removed: update this file"
    );
}
