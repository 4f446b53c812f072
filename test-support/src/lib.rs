//! The test harness shared by the workspace's end-to-end tests (a dev-dependency only): a fresh
//! database per test on either backend, and the real server, in-process, on a real socket
//! (127.0.0.1), which can be stopped and started again on the same address and database.
//!
//! SQLite tests use a file in a temporary directory. PostgreSQL tests create their own database
//! through `METRICS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and drop it afterwards.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use metrics_server::{Config, Server};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};

/// The variable that points the tests at a PostgreSQL server (a database they may create
/// databases from).
pub const POSTGRES_URL_VAR: &str = "METRICS_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates, for each listed `async fn name(backend: Backend)` of the current module, one test
/// per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A database of its own for one test; removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Holds the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop, with the admin URL to drop it from.
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("metrics.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var(POSTGRES_URL_VAR)
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!("metrics_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|err| {
                    panic!(
                        "cannot reach PostgreSQL at {admin} ({err}); start it or point \
                         {POSTGRES_URL_VAR} at one"
                    )
                });
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let url = match admin.rfind('/') {
                    Some(i) if i > "postgres://".len() => format!("{}/{name}", &admin[..i]),
                    _ => format!("{admin}/{name}"),
                };
                TestDb {
                    backend,
                    url,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }

    pub fn config(&self) -> Config {
        let mut config = Config::with_database(self.url.clone());
        config.port = 0;
        config.db_connections = 4;
        config.shutdown_timeout = Duration::from_secs(5);
        config
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&admin).await {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The server, in-process, on a real socket.
pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        TestServer::start_with(db.config()).await
    }

    /// Starts the server with `config` on a free port.
    pub async fn start_with(config: Config) -> TestServer {
        TestServer::start_at(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the server on `addr`: a restart reuses the address the clients know (retrying
    /// while the previous listener's port is still being released).
    pub async fn start_at(config: Config, addr: SocketAddr) -> TestServer {
        let server = Server::start(&config).await.expect("server starts");
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(err) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("bind {addr}: {err}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("bind {addr}: {err}"),
            }
        };
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown, as on SIGTERM; returns once the server has stopped.
    pub async fn stop(mut self) {
        self.stop.take().map(|s| s.send(()));
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// `http://ADDR`, the server's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// POSTs `body` to /v1/metrics as JSON; returns the status and the JSON answer.
    pub async fn post(&self, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/metrics"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// POSTs a value, asserting success.
    pub async fn post_ok(&self, body: &Value) {
        let (status, answer) = self.post(&body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// GETs a path; returns the status and the JSON answer.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// GETs /v1/metrics with a query string, asserting success; returns the array.
    pub async fn query(&self, query: &str) -> Vec<Value> {
        let (status, answer) = self.get(&format!("/v1/metrics{query}")).await;
        assert_eq!(status, 200, "{query}: {answer}");
        answer.as_array().expect("an array").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
