//! Database connections lost under load. PostgreSQL: every backend of the test database is
//! terminated again and again while writers and readers run; every failure is a 503 JSON error
//! with `Retry-After` (never a 500), every acknowledged metric is stored, and the server recovers
//! by itself. SQLite has no connection to kill; its transient failure is a database locked by
//! another process, which answers 503 too.
//!
//! ```text
//! cargo test -p metrics-server --test faults database::
//! ```

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

use crate::common::{Backend, TestDb, TestServer};

/// How a transient failure must be answered: 503, `Retry-After`, JSON code `unavailable` (or,
/// from `/healthz`, its own body with status `unavailable`).
fn check_unavailable(status: u16, retry_after: Option<&str>, body: &str) -> Result<(), String> {
    let code = serde_json::from_str::<Value>(body).ok().and_then(|b| {
        let code = b.get("code").or_else(|| b.get("status"));
        code.and_then(Value::as_str).map(str::to_owned)
    });
    match (status, retry_after, code.as_deref()) {
        (503, Some(_), Some("unavailable")) => Ok(()),
        _ => Err(format!("{status} (Retry-After {retry_after:?}): {body}")),
    }
}

/// What writers or readers saw.
#[derive(Debug, Default)]
struct Tally {
    /// Values of the metrics acknowledged with a 200 (writers) or count of 200s (readers).
    acknowledged: Vec<u64>,
    ok: usize,
    /// 503s with `Retry-After` and code `unavailable`.
    unavailable: usize,
    /// Anything else (must stay empty).
    unexpected: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.acknowledged.extend(other.acknowledged);
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.unexpected.extend(other.unexpected);
    }
}

/// Sends `request`; a 200 counts as ok, a proper 503 as unavailable, anything else unexpected.
async fn classify(request: reqwest::RequestBuilder, tally: &mut Tally) -> bool {
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            tally.unexpected.push(format!("no answer: {err}"));
            return false;
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => {
            tally.unexpected.push(format!("{status}, body cut: {err}"));
            return false;
        }
    };
    if status == 200 {
        tally.ok += 1;
        return true;
    }
    match check_unavailable(status, retry_after.as_deref(), &body) {
        Ok(()) => tally.unavailable += 1,
        Err(err) => tally.unexpected.push(err),
    }
    false
}

const WRITERS: u64 = 4;
const REQUESTS_PER_WRITER: u64 = 150;
const BATCH: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated_under_load_answer_503_and_lose_no_acknowledged_write() {
    let db = TestDb::new(Backend::Postgres).await;
    let db_name = db.url.rsplit('/').next().unwrap().to_owned();
    let server = TestServer::start(&db).await;
    // A few metrics for the readers: one page, so a query fails before its status or not at all.
    server
        .post_ok(&json!([
            {"name": "probe", "value": 1, "ts": "2016-01-01"},
            {"name": "probe", "value": 2, "ts": "2016-01-02"}
        ]))
        .await;

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (done, kills) = (done.clone(), kills.clone());
        let admin = std::env::var(metrics_test_support::POSTGRES_URL_VAR)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        tokio::spawn(async move {
            let mut admin = PgConnection::connect(&admin).await.unwrap();
            while !done.load(Ordering::Relaxed) {
                let killed: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&db_name)
                .fetch_all(&mut admin)
                .await
                .unwrap();
                kills.fetch_add(killed.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, url) = (server.http.clone(), server.url("/v1/metrics"));
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for r in 0..REQUESTS_PER_WRITER {
                    let first = (w * REQUESTS_PER_WRITER + r) * BATCH;
                    let values: Vec<u64> = (first..first + BATCH).collect();
                    let batch: Vec<Value> = values
                        .iter()
                        .map(|v| json!({"name": "kill", "value": v, "ts": "2016-01-01"}))
                        .collect();
                    if classify(http.post(&url).json(&batch), &mut tally).await {
                        tally.acknowledged.extend(values);
                    }
                }
                tally
            })
        })
        .collect();
    let readers: Vec<_> = ["/v1/metrics?name=probe", "/v1/names", "/healthz"]
        .into_iter()
        .map(|path| {
            let (http, url, done) = (server.http.clone(), server.url(path), done.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while !done.load(Ordering::Relaxed) {
                    classify(http.get(&url), &mut tally).await;
                }
                tally
            })
        })
        .collect();

    let mut writes = Tally::default();
    for writer in writers {
        writes.add(writer.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    let mut reads = Tally::default();
    for reader in readers {
        reads.add(reader.await.unwrap());
    }

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut stored: Vec<u64> =
        sqlx::query_scalar::<_, f64>("SELECT value FROM metrics WHERE name = 'kill'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v as u64)
            .collect();
    stored.sort_unstable();
    let lost = writes
        .acknowledged
        .iter()
        .filter(|v| stored.binary_search(v).is_err())
        .count();
    eprintln!(
        "killed backends: {} kills; writes: {} ok ({} metrics), {} answered 503, {} other; \
         {} metrics stored, {} acknowledged metrics missing; reads: {} ok, {} answered 503, {} other",
        kills.load(Ordering::Relaxed),
        writes.ok,
        writes.acknowledged.len(),
        writes.unavailable,
        writes.unexpected.len(),
        stored.len(),
        lost,
        reads.ok,
        reads.unavailable,
        reads.unexpected.len()
    );
    assert!(
        writes.unexpected.is_empty() && reads.unexpected.is_empty(),
        "answers other than 200 or 503 unavailable with Retry-After: {:?} {:?}",
        &writes.unexpected[..writes.unexpected.len().min(5)],
        &reads.unexpected[..reads.unexpected.len().min(5)]
    );
    assert!(writes.unavailable > 0, "no write met a terminated backend");
    assert!(!writes.acknowledged.is_empty(), "no write succeeded");
    assert_eq!(lost, 0, "acknowledged metrics missing");
    // A 503 may or may not have been stored; nothing else may be.
    assert!(
        stored.len()
            <= (writes.acknowledged.len() as u64 + writes.unavailable as u64 * BATCH) as usize
    );

    // The kills are over: the server recovers by itself. A pooled connection whose backend was
    // terminated while idle fails once and is dropped, so at most one failure per connection.
    let mut recovered = Tally::default();
    let (http, url) = (server.http.clone(), server.url("/v1/metrics"));
    let metric = json!({"name": "after", "value": 1, "ts": "2016-01-03"});
    for _ in 0..db.config().db_connections * 2 + 20 {
        classify(http.post(&url).json(&metric), &mut recovered).await;
    }
    assert!(
        recovered.unexpected.is_empty(),
        "{:?}",
        recovered.unexpected
    );
    assert!(
        recovered.unavailable <= db.config().db_connections as usize,
        "{} failures after the kills: dead connections reused",
        recovered.unavailable
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_answers_503() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!({"name": "before", "value": 1, "ts": "2016-01-01"}))
        .await;

    // Another process holds the write lock past the server's busy timeout.
    let mut other = SqliteConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let started = Instant::now();
    let mut tally = Tally::default();
    let metric = json!({"name": "locked", "value": 1, "ts": "2016-01-01"});
    let stored = classify(
        server.http.post(server.url("/v1/metrics")).json(&metric),
        &mut tally,
    )
    .await;
    eprintln!("locked database: answered after {:?}", started.elapsed());
    assert!(!stored && tally.unexpected.is_empty(), "{tally:?}");
    assert_eq!(tally.unavailable, 1);
    // Reads go on meanwhile (WAL).
    assert_eq!(server.query("?name=before").await.len(), 1);

    other.execute("ROLLBACK").await.unwrap();
    server.post_ok(&metric).await;
    assert_eq!(server.query("?name=locked").await.len(), 1);
    server.stop().await;
}

/// With its database unreachable at start, the server does not pretend to serve: it exits with a
/// non-zero status and says which database it could not open, with the password hidden.
#[tokio::test]
async fn an_unreachable_database_at_start_stops_the_server_with_a_clear_message() {
    // A port that refuses connections: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://metrics:secret@127.0.0.1:{port}/metrics");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_metrics-server"))
        .args(["--port", "0", "--database-url", &url])
        .env("RUST_BACKTRACE", "0")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the server gave up within the pool's acquire timeout")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited with {}", output.status);
    assert!(
        stderr.contains(&format!(
            "cannot open the database postgres://metrics:***@127.0.0.1:{port}/metrics"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}
