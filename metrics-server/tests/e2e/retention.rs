//! `--retention`: the background task removes what each rule expires (longest prefix winning)
//! and nothing else, on a real database.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

/// `now - ago`, as an RFC 3339 timestamp.
fn ago(ago: Duration) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The `(name, value)` pairs of every stored metric, sorted.
async fn stored(server: &TestServer) -> Vec<(String, i64)> {
    let mut pairs: Vec<(String, i64)> = server
        .query("")
        .await
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["value"].as_i64().unwrap(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

async fn removes_what_each_rule_expires(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.retention = ["1d", "debug.=1h", "debug.keep.=forever"]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    config.retention_interval = Duration::from_millis(50);
    // Several transactions per pass.
    config.retention_batch = 2;
    let server = TestServer::start_with(config).await;

    let hour = Duration::from_secs(3600);
    let metric =
        |name: &str, value: i64, ts: String| json!({"name": name, "value": value, "ts": ts});
    let mut batch: Vec<Value> = Vec::new();
    for i in 0..5 {
        batch.push(metric("cpu", i, ago(48 * hour))); // older than 1d: removed
    }
    batch.push(metric("cpu", 10, ago(2 * hour))); // kept
    for i in 0..3 {
        batch.push(metric("debug.a", 20 + i, ago(2 * hour))); // older than 1h: removed
    }
    batch.push(metric("debug.a", 30, ago(Duration::ZERO))); // kept
    batch.push(metric("debug.keep.b", 40, ago(480 * hour))); // forever
    batch.push(metric("debugger", 50, ago(2 * hour))); // not under `debug.`: 1d, kept
    server.post_ok(&Value::Array(batch)).await;

    let expected: Vec<(String, i64)> = [
        ("cpu", 10),
        ("debug.a", 30),
        ("debug.keep.b", 40),
        ("debugger", 50),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), *v))
    .collect();
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        last = stored(&server).await;
        if last == expected {
            break;
        }
        // Polling for the condition; each pass is 50 ms apart.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, expected);
    server.stop().await;
}

crate::on_both_backends!(removes_what_each_rule_expires);
