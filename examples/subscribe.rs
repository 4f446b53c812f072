//! Subscribes to live metrics and prints them as they are committed. Stop and restart the server
//! meanwhile: the subscription reconnects by itself and misses nothing.
//!
//! Needs a running server (`cargo run -p metrics-server`), then:
//!
//! ```text
//! cargo run -p examples --example subscribe [-- http://127.0.0.1:5000 [NAME...]]
//! ```
//!
//! and post metrics from another terminal (e.g. the `record_one` example).

use futures::StreamExt;
use metrics_client::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let client = Client::new(&url)?;

    let mut builder = client.subscribe();
    for name in args {
        builder = builder.name(name);
    }
    let mut live = builder.await?;
    println!("subscribed; waiting for metrics (ctrl-c to stop)");
    while let Some(metric) = live.next().await {
        let metric = metric?;
        println!(
            "[{}] {} = {:?} at {} {:?}",
            live.cursor(),
            metric.name,
            metric.value,
            metric.ts,
            metric.extra
        );
    }
    Ok(())
}
