//! Nothing acknowledged is lost: on graceful shutdown, and when the server is killed with -9.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    graceful_shutdown_keeps_every_acknowledged_write,
    acknowledged_writes_survive_kill_9,
);

async fn graceful_shutdown_keeps_every_acknowledged_write(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let http = reqwest::Client::new();
    let url = server.url("/v1/metrics");

    let writers: Vec<_> = (0..40)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                // Stagger the writers so that some are in flight when the signal comes.
                tokio::time::sleep(Duration::from_millis(i * 2)).await;
                let response = http
                    .post(&url)
                    .json(&json!({"name": "g", "value": i, "ts": "2016-01-01"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => Some(i),
                    Ok(r) => {
                        // Refused during shutdown: a 503 in the one error shape, never a 500.
                        assert_eq!(r.status(), 503);
                        let body: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(body["code"], "unavailable");
                        None
                    }
                    Err(_) => None, // the listener had already closed
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.stop().await;
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }

    let server = TestServer::start(&db).await;
    let mut stored: Vec<u64> = server
        .query("?name=g")
        .await
        .iter()
        .map(|m| m["value"].as_u64().unwrap())
        .collect();
    stored.sort();
    for i in &acknowledged {
        assert!(stored.contains(i), "acknowledged write {i} was lost");
    }
    server.stop().await;
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics-server"))
        .args(["--port", "0", "--log", "info", "--database-url", &db.url])
        .arg("--log-file")
        .arg(&log_file)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start metrics-server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs its address")
            .expect("a log line");
        if line.contains("metrics-server listening") {
            let start = line.find("127.0.0.1:").expect("an address in the line");
            let addr: String = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr;
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let http = reqwest::Client::new();
    let writes = (0..50).map(|i| {
        let http = http.clone();
        let url = format!("http://{addr}/v1/metrics");
        async move {
            let batch: Vec<_> = (0..10)
                .map(|k| json!({"name": "k", "value": i * 10 + k, "ts": "2016-01-01"}))
                .collect();
            let response = http.post(url).json(&batch).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
    });
    futures::future::join_all(writes).await;
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.wait().unwrap();
    // --log-file got the log too.
    let logged = std::fs::read_to_string(&log_file).expect("the log file exists");
    assert!(logged.contains("metrics-server listening"), "{logged}");

    let server = TestServer::start(&db).await;
    let mut values: Vec<u64> = server
        .query("?name=k")
        .await
        .iter()
        .map(|m| m["value"].as_u64().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, (0..500).collect::<Vec<u64>>());
    server.stop().await;
}
