//! A query streamed with `.stream()` over 1,000,000 metrics keeps the client's memory flat.
//!
//! `cargo test -p metrics-client --test query_stream`
//!
//! One test that streams from both backends at once, alone in its binary: memory is measured for the
//! whole process (`VmRSS` in `/proc/self/status`), so nothing else may run beside it. The server
//! runs in the same process; its query path reads ahead a bounded number of rows, so it adds
//! little. The rows are inserted with one SQL statement to keep the test quick: what is tested
//! here is reading them.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use futures::TryStreamExt;
use metrics_client::Metric;
use sqlx::{Connection, Executor};

use crate::common::{Backend, ServerClient, TestDb, TestServer};

const ROWS: i64 = 1_000_000;
/// Generous: a `Vec` of the result would need several times this.
const MAX_GROWTH: u64 = 64 << 20;

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

async fn seed(db: &TestDb) {
    let insert = |series: &str| {
        format!(
            "INSERT INTO metrics (name, ts, value, doc) SELECT 'big', 1451606400000000 + i, i, \
             '{{\"name\":\"big\",\"value\":' || i || ',\"ts\":\"2016-01-01T00:00:00Z\",\
             \"host\":\"web-1\",\"dc\":\"eu-west\"}}' FROM {series}"
        )
    };
    match db.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            conn.execute(insert(&format!("generate_series(1, {ROWS}) AS s(i)")).as_str())
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let sql = format!(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS}) {}",
                insert("s")
            );
            conn.execute(sql.as_str()).await.unwrap();
        }
    }
}

/// A server on a fresh database of `backend` holding `ROWS` metrics named `big`.
async fn seeded(backend: Backend) -> (TestDb, TestServer) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await; // applies the migrations
    seed(&db).await;
    (db, server)
}

/// Streams every metric of `server`, checking each; returns the highest RSS seen meanwhile.
async fn stream_all(backend: Backend, server: &TestServer) -> u64 {
    let mut peak = rss();
    let mut count = 0_i64;
    let mut sum = 0.0;
    let mut metrics = server.client().query().name("big").stream();
    while let Some(metric) = metrics.try_next().await.unwrap() {
        count += 1;
        sum += metric.value.as_f64().unwrap();
        assert_eq!(metric.extra["dc"], "eu-west");
        if count % 10_000 == 0 {
            peak = peak.max(rss());
        }
    }
    assert_eq!(count, ROWS, "{backend:?}: every row, once");
    assert_eq!(
        sum,
        (ROWS * (ROWS + 1) / 2) as f64,
        "{backend:?}: the right rows"
    );
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_query_over_a_million_metrics_keeps_memory_flat() {
    // The bound means something: holding one result would need far more.
    assert!(ROWS as u64 * std::mem::size_of::<Metric>() as u64 > MAX_GROWTH);
    // Both backends at once, to keep the test short; the bound holds for both streams together.
    let ((_sqlite_db, sqlite), (_pg_db, pg)) =
        tokio::join!(seeded(Backend::Sqlite), seeded(Backend::Postgres));
    let before = rss();
    let (a, b) = tokio::join!(
        stream_all(Backend::Sqlite, &sqlite),
        stream_all(Backend::Postgres, &pg)
    );
    let growth = a.max(b).saturating_sub(before);
    eprintln!(
        "resident memory grew by {} KiB while streaming",
        growth >> 10
    );
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB streaming {ROWS} metrics from each backend",
        growth >> 20
    );
    sqlite.stop().await;
    pg.stop().await;
}
