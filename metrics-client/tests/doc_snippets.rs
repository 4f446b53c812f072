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
        checked, 6,
        "a snippet was added or removed: update this file"
    );
}
