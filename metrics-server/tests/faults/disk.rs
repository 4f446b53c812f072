//! A full disk: SQLite on a small tmpfs (and PostgreSQL with the test database in a tablespace
//! on one), written until nothing fits. Every answer is a 200 or a 507 `insufficient_storage`
//! (never a 500); every acknowledged metric is committed (seen by another connection and after a
//! restart); reads keep working; writes resume by themselves when space returns;
//! `--min-free-disk` refuses writes before the SQLite disk is full.
//!
//! Mounting needs root: without it each test prints `skipped: ...` and passes. The PostgreSQL
//! test also needs the server on this machine (the tablespace directory is made for its
//! `postgres` user) and skips otherwise.
//!
//! ```text
//! cargo test -p metrics-server --test faults disk::
//! ```

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use metrics_server::Config;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

use crate::common::TestServer;

/// A tmpfs of `size` mounted on a temporary directory of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs, or says why not (not root, no mount) and returns `None`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a {size} tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(err) => {
                eprintln!("skipped: cannot run mount: {err}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn available(&self) -> u64 {
        fs4::available_space(self.path()).unwrap()
    }

    /// Fills `bytes` of the tmpfs with a file that [`Filler::remove`] gives back.
    fn filler(&self, bytes: usize) -> Filler {
        let path = self.path().join("filler");
        std::fs::write(&path, vec![1u8; bytes]).unwrap();
        Filler(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).output();
        if !unmounted.is_ok_and(|out| out.status.success()) {
            // A failed test leaves the server's connections open a moment longer: detach now,
            // and the kernel frees the tmpfs once they close.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Space taken on purpose, to be given back.
struct Filler(PathBuf);

impl Filler {
    fn remove(self) {
        std::fs::remove_file(&self.0).unwrap();
    }
}

/// The server's configuration for a database file on `fs`.
fn config_on(fs: &Tmpfs, min_free_disk: u64) -> Config {
    let mut config = Config::with_database(format!(
        "sqlite://{}",
        fs.path().join("metrics.db").display()
    ));
    config.port = 0;
    config.db_connections = 4;
    config.shutdown_timeout = Duration::from_secs(5);
    config.min_free_disk = min_free_disk;
    config
}

/// What the writers saw.
#[derive(Debug, Default)]
struct Tally {
    /// Values of every metric acknowledged with a 200.
    acknowledged: Vec<u64>,
    /// How many requests got 507 `insufficient_storage`.
    refused: usize,
    /// Every other answer: status and body (must stay empty).
    unexpected: Vec<(u16, String)>,
    requests: usize,
}

/// Metrics per POST and bytes of padding per metric: ~40 KB a request.
const BATCH: u64 = 100;
const PADDING: usize = 300;

/// Four concurrent writers POST batches of metrics named `disk` until `stop_after` requests in a
/// row have been refused with 507, or `max_requests` in all, or for a minute at most.
async fn write_until_refused(server: &TestServer, stop_after: u64, max_requests: u64) -> Tally {
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = Arc::new(AtomicU64::new(0));
    let refused_in_a_row = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let padding = "x".repeat(PADDING);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (server.http.clone(), server.url("/v1/metrics"));
            let (next, refused_in_a_row, done) =
                (next.clone(), refused_in_a_row.clone(), done.clone());
            let padding = padding.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let request = next.fetch_add(1, Ordering::Relaxed);
                    if request >= max_requests {
                        break;
                    }
                    let values: Vec<u64> = (request * BATCH..(request + 1) * BATCH).collect();
                    let batch: Vec<Value> = values
                        .iter()
                        .map(|v| json!({"name": "disk", "value": v, "ts": "2016-01-01", "pad": padding}))
                        .collect();
                    let response = http.post(&url).json(&batch).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap();
                    tally.requests += 1;
                    let code = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|b| b["code"].as_str().map(str::to_owned));
                    match (status, code.as_deref()) {
                        (200, _) => {
                            refused_in_a_row.store(0, Ordering::Relaxed);
                            tally.acknowledged.extend(values);
                        }
                        (507, Some("insufficient_storage")) => {
                            tally.refused += 1;
                            if refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= stop_after {
                                done.store(true, Ordering::Relaxed);
                            }
                        }
                        _ => tally.unexpected.push((status, body)),
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for writer in writers {
        let tally = writer.await.unwrap();
        all.acknowledged.extend(tally.acknowledged);
        all.refused += tally.refused;
        all.unexpected.extend(tally.unexpected);
        all.requests += tally.requests;
    }
    all.acknowledged.sort_unstable();
    all
}

/// Prints what a run against a filling disk saw, then asserts its promises: every answer was 200
/// or 507, the disk did fill, and every acknowledged metric is in `stored`.
fn report_full_disk(label: &str, tally: &Tally, stored: &[u64], free: u64) {
    let lost = missing(&tally.acknowledged, stored);
    eprintln!(
        "{label}: {} requests, {} metrics acknowledged, {} answers 507, {} other answers, \
         {} acknowledged metrics not committed, {} bytes free",
        tally.requests,
        tally.acknowledged.len(),
        tally.refused,
        tally.unexpected.len(),
        lost,
        free
    );
    assert!(
        tally.unexpected.is_empty(),
        "answers other than 200 or 507 insufficient_storage: {:?}",
        &tally.unexpected[..tally.unexpected.len().min(5)]
    );
    assert!(tally.refused > 0, "the disk never filled");
    assert!(!tally.acknowledged.is_empty());
    assert_eq!(
        lost, 0,
        "acknowledged metrics missing for another connection"
    );
}

/// After a run that filled the disk: reads keep working on the full disk; once `filler` is
/// removed, writes resume without a restart; and after a restart every acknowledged metric is
/// still there. Returns the restarted server.
async fn recover(
    server: TestServer,
    config: Config,
    filler: Filler,
    tally: &Tally,
    stored: &[u64],
) -> TestServer {
    assert_eq!(query_values(&server).await, stored);
    let (status, names) = server.get("/v1/names").await;
    assert_eq!(status, 200, "{names}");

    filler.remove();
    let statuses = write_succeeds_within(&server, Duration::from_secs(5)).await;
    assert_eq!(
        statuses.last(),
        Some(&200),
        "writes did not resume: {statuses:?}"
    );

    let addr = server.addr;
    server.stop().await;
    let server = TestServer::start_at(config, addr).await;
    assert_eq!(
        missing(&tally.acknowledged, &query_values(&server).await),
        0
    );
    server
}

/// The values of the `disk` metrics as another connection sees them, and the integrity check.
async fn read_directly(fs: &Tmpfs) -> (Vec<u64>, String) {
    let url = format!(
        "sqlite://{}?mode=ro",
        fs.path().join("metrics.db").display()
    );
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let mut values: Vec<u64> =
        sqlx::query_scalar::<_, f64>("SELECT value FROM metrics WHERE name = 'disk'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v as u64)
            .collect();
    values.sort_unstable();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (values, integrity)
}

/// The values of the `disk` metrics as another connection to PostgreSQL sees them.
async fn read_postgres(url: &str) -> Vec<u64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let mut values: Vec<u64> =
        sqlx::query_scalar::<_, f64>("SELECT value FROM metrics WHERE name = 'disk'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v as u64)
            .collect();
    values.sort_unstable();
    conn.close().await.unwrap();
    values
}

/// Every acknowledged value is in `stored`; returns how many are missing.
fn missing(acknowledged: &[u64], stored: &[u64]) -> usize {
    acknowledged
        .iter()
        .filter(|v| stored.binary_search(v).is_err())
        .count()
}

/// The values of the `disk` metrics as the server answers a query.
async fn query_values(server: &TestServer) -> Vec<u64> {
    let mut values: Vec<u64> = server
        .query("?name=disk")
        .await
        .iter()
        .map(|m| m["value"].as_u64().unwrap())
        .collect();
    values.sort_unstable();
    values
}

/// POSTs one small metric until it is stored, for at most `within`; returns the statuses seen.
async fn write_succeeds_within(server: &TestServer, within: Duration) -> Vec<u16> {
    let deadline = Instant::now() + within;
    let mut statuses = Vec::new();
    loop {
        let (status, _) = server
            .post(&json!({"name": "after", "value": 1, "ts": "2016-01-02"}).to_string())
            .await;
        statuses.push(status);
        if status == 200 || Instant::now() > deadline {
            return statuses;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_and_loses_no_acknowledged_write() {
    let Some(fs) = Tmpfs::mount("20m") else {
        return;
    };
    let filler = fs.filler(2 << 20);
    let config = config_on(&fs, 0);
    let server = TestServer::start_with(config.clone()).await;

    let tally = write_until_refused(&server, 40, 4000).await;
    let (stored, integrity) = read_directly(&fs).await;
    report_full_disk("full disk", &tally, &stored, fs.available());
    assert_eq!(integrity, "ok");

    let server = recover(server, config, filler, &tally, &stored).await;
    assert_eq!(read_directly(&fs).await.1, "ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_free_disk_refuses_writes_before_the_disk_is_full() {
    let Some(fs) = Tmpfs::mount("20m") else {
        return;
    };
    let filler = fs.filler(4 << 20);
    let min_free = 8 << 20;
    let config = config_on(&fs, min_free);
    let server = TestServer::start_with(config).await;

    let tally = write_until_refused(&server, 8, 4000).await;
    let free = fs.available();
    eprintln!(
        "--min-free-disk 8MiB: {} metrics acknowledged, {} answers 507, {free} bytes free",
        tally.acknowledged.len(),
        tally.refused
    );
    assert!(
        tally.unexpected.is_empty(),
        "answers other than 200 or 507 insufficient_storage: {:?}",
        &tally.unexpected[..tally.unexpected.len().min(5)]
    );
    assert!(tally.refused > 0 && !tally.acknowledged.is_empty());
    // Refused by the guard, with room to spare: the disk itself never filled.
    assert!(
        free > min_free / 2,
        "only {free} bytes free: the disk filled"
    );
    let (stored, integrity) = read_directly(&fs).await;
    assert_eq!(missing(&tally.acknowledged, &stored), 0);
    assert_eq!(integrity, "ok");

    filler.remove();
    let statuses = write_succeeds_within(&server, Duration::from_secs(5)).await;
    assert_eq!(
        statuses.last(),
        Some(&200),
        "writes did not resume: {statuses:?}"
    );
    server.stop().await;
}

/// A PostgreSQL database of its own in a tablespace on `fs`; dropped with the tablespace.
struct TablespaceDb {
    admin: String,
    name: String,
    url: String,
}

impl TablespaceDb {
    async fn create(fs: &Tmpfs) -> Option<TablespaceDb> {
        let dir = fs.path().join("pg");
        std::fs::create_dir(&dir).unwrap();
        let chowned = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .output();
        if !chowned.is_ok_and(|out| out.status.success()) {
            eprintln!("skipped: no local `postgres` user to own the tablespace directory");
            return None;
        }
        let admin = std::env::var(metrics_test_support::POSTGRES_URL_VAR)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("metrics_disk_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await.unwrap();
        let location = dir.display().to_string().replace('\'', "''");
        if let Err(err) = conn
            .execute(format!("CREATE TABLESPACE {name} LOCATION '{location}'").as_str())
            .await
        {
            eprintln!("skipped: cannot create a tablespace on the tmpfs (is PostgreSQL on this machine?): {err}");
            return None;
        }
        conn.execute(format!("CREATE DATABASE {name} TABLESPACE {name}").as_str())
            .await
            .unwrap();
        // Temporary files (a large sort) go to the database's tablespace unless told otherwise:
        // keep them off the full disk, as docs/operations.md advises, so that reads go on.
        conn.execute(format!("ALTER DATABASE {name} SET temp_tablespaces = pg_default").as_str())
            .await
            .unwrap();
        let url = match admin.rfind('/') {
            Some(i) if i > "postgres://".len() => format!("{}/{name}", &admin[..i]),
            _ => format!("{admin}/{name}"),
        };
        Some(TablespaceDb { admin, name, url })
    }
}

impl Drop for TablespaceDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async, before the tmpfs is unmounted: a runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    for statement in [
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        format!("DROP TABLESPACE IF EXISTS {name}"),
                    ] {
                        let _ = conn.execute(statement.as_str()).await;
                    }
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_postgres_tablespace_refuses_writes_with_507_and_loses_no_acknowledged_write() {
    let Some(fs) = Tmpfs::mount("20m") else {
        return;
    };
    let filler = fs.filler(2 << 20);
    let Some(db) = TablespaceDb::create(&fs).await else {
        return;
    };
    let mut config = Config::with_database(db.url.clone());
    config.port = 0;
    config.db_connections = 4;
    config.shutdown_timeout = Duration::from_secs(5);
    let server = TestServer::start_with(config.clone()).await;

    let tally = write_until_refused(&server, 40, 4000).await;
    let stored = read_postgres(&db.url).await;
    report_full_disk(
        "full PostgreSQL tablespace",
        &tally,
        &stored,
        fs.available(),
    );

    recover(server, config, filler, &tally, &stored)
        .await
        .stop()
        .await;
}
