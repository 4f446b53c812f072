//! What both test modules share: a server with auth on, raw requests, waiting for metrics.

use std::time::{Duration, Instant};

use clap::Parser;
use metrics_server::{auth::AuthMode, Config};
pub use metrics_test_support::{Backend, TestDb, TestServer};
use serde_json::Value;

/// The admin token of the servers started with [`start_with_auth`].
pub const ADMIN: &str = "protocols-admin-token-0123456789abcdef";

/// The server on `db` with auth on and [`ADMIN`] as its admin token.
pub async fn start_with_auth(db: &TestDb) -> TestServer {
    let mut config = db.config();
    config.auth = AuthMode::On;
    config.admin_token = Config::parse_from(["metrics-server", "--admin-token", ADMIN]).admin_token;
    TestServer::start_with(config).await
}

/// `GET /v1/metrics?name=<name>` with the admin token.
pub async fn query(server: &TestServer, name: &str) -> Vec<Value> {
    let response = server
        .http
        .get(server.url("/v1/metrics"))
        .query(&[("name", name)])
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Vec<Value>>().await.unwrap()
}

/// Polls the metrics named `name` until `done` holds for them (at most `limit`); returns them.
/// Waiting on a condition, not a time: the limit only bounds a run that would never finish.
pub async fn wait_for(
    server: &TestServer,
    name: &str,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>, Vec<Value>> {
    let start = Instant::now();
    loop {
        let metrics = query(server, name).await;
        if done(&metrics) {
            return Ok(metrics);
        }
        if start.elapsed() > limit {
            return Err(metrics);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free port on 127.0.0.1 for a client's own listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates a token with these scopes and name prefixes; returns it.
pub async fn token(server: &TestServer, scopes: &[&str], prefixes: &[&str]) -> String {
    let response = server
        .http
        .post(server.url("/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "t", "scopes": scopes, "prefixes": prefixes}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}
