//! A small program instrumented with the `metrics` crate's macros only (`counter!`, `gauge!`,
//! `histogram!`), its values sent to the server by `metrics-client`'s facade recorder (the
//! `facade` feature). At the end, it reads back what arrived.
//!
//! Runs the server in-process on a temporary SQLite file unless given a server's URL:
//!
//! ```text
//! cargo run -p examples --example facade [-- http://127.0.0.1:5000]
//! ```

use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_client::{facade::FacadeBuilder, Client};

/// The instrumented part: it knows nothing of the server, only the facade.
async fn work(jobs: u64) {
    gauge!("jobs.queued").set(jobs as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4_u64 {
        tasks.spawn(async move {
            for job in (worker..jobs).step_by(4) {
                let started = Instant::now();
                // The "job": a few rounds of hashing, and a pause of its own length.
                let mut x = job;
                for _ in 0..10_000 * (job % 5 + 1) {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                }
                tokio::time::sleep(Duration::from_millis(job % 7)).await;
                let outcome = if x % 10 == 0 { "retried" } else { "ok" };
                counter!("jobs.done", "worker" => worker.to_string(), "outcome" => outcome)
                    .increment(1);
                histogram!("job.duration.ms").record(started.elapsed().as_secs_f64() * 1000.0);
                gauge!("jobs.queued").decrement(1.0);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let local = match std::env::args().nth(1) {
        Some(_) => None,
        None => Some(examples::LocalServer::start().await?),
    };
    let url = std::env::args()
        .nth(1)
        .or_else(|| local.as_ref().map(|s| s.url.clone()))
        .unwrap_or_default();
    let client = Client::new(&url)?;

    // Once, at the start of main: every macro in the program now reports to the server.
    let facade = FacadeBuilder::new(&client)
        .interval(Duration::from_millis(200))
        .global_label("service", "facade-example")
        .install()?;

    work(200).await;

    // A last sample, delivered before returning.
    let undelivered = facade.close().await?;
    anyhow::ensure!(undelivered.is_empty(), "undelivered: {undelivered:?}");

    // What arrived: the last sampling of each series (all series of a sampling share its ts).
    let mut done = 0.0;
    for name in [
        "jobs.done",
        "jobs.queued",
        "job.duration.ms.count",
        "job.duration.ms.sum",
    ] {
        let metrics = client.query().name(name).await?;
        let last = metrics.iter().map(|m| m.ts.to_utc()).max();
        for m in metrics.iter().filter(|m| Some(m.ts.to_utc()) == last) {
            println!("{name} = {:?} {:?}", m.value, m.extra);
            if name == "jobs.done" {
                done += m.value.as_f64().unwrap_or(0.0);
            }
        }
    }
    let p99 = client
        .query()
        .name("job.duration.ms")
        .tag("quantile", "0.99")
        .await?;
    println!("{} samples of the 99th percentile", p99.len());
    anyhow::ensure!(done == 200.0, "expected 200 jobs done, got {done}");

    if let Some(server) = local {
        server.stop().await?;
    }
    Ok(())
}
