//! Runs the server in-process on a temporary SQLite file, and a client against it: record, batch,
//! query, a live subscription and the batching recorder; then shuts the server down. Needs
//! nothing running; CI runs it.
//!
//! ```text
//! cargo run -p examples --example in_process
//! ```

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use metrics_client::{Client, Metric, Timestamp};
use metrics_server::{Config, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The server: a SQLite file in a temporary directory, a free port on 127.0.0.1.
    let dir = tempfile::tempdir()?;
    let config = Config::with_database(format!(
        "sqlite://{}",
        dir.path().join("metrics.db").display()
    ));
    let server = Server::start(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    println!("server on {url}");

    // The client.
    let client = Client::new(&url)?;
    let mut live = client.subscribe().name("cpu").await?;

    let day: Timestamp = "2016-01-01".parse()?;
    client.record("cpu", 0.93, chrono::Utc::now()).await?;
    let stored = client
        .record_batch((0..1000).map(|i| Metric::new("requests", i).at(day).with("host", "web-1")))
        .await?;
    println!("batch: {stored} stored");

    let requests = client.query().name("requests").start(day).end(day).await?;
    anyhow::ensure!(
        requests.len() == 1000,
        "expected 1000, got {}",
        requests.len()
    );
    println!("query: {} requests metrics", requests.len());

    let first = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .context("no live metric within 10 s")?
        .context("subscription ended")??;
    println!(
        "live: {} = {:?} (cursor {})",
        first.name,
        first.value,
        live.cursor()
    );

    let recorder = client.recorder().max_batch(100).build();
    for i in 0..250 {
        recorder.record(Metric::new("hot.path", i))?;
    }
    let undelivered = recorder.close().await?;
    anyhow::ensure!(undelivered.is_empty(), "undelivered: {undelivered:?}");
    let hot = client.query().name("hot.path").await?;
    println!("recorder: {} delivered", hot.len());
    anyhow::ensure!(hot.len() == 250);

    drop(live);
    let _ = stop.send(());
    serving.await??;
    println!("server stopped");
    Ok(())
}
