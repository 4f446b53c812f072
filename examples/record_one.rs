//! Records one metric, with an extra key, and reads it back.
//!
//! Needs a running server (`cargo run -p metrics-server`), then:
//!
//! ```text
//! cargo run -p examples --example record_one [-- http://127.0.0.1:5000]
//! ```

use metrics_client::{Client, Metric};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let client = Client::new(&url)?;

    // The short form: name, value, timestamp. Ok means committed.
    client.record("cpu", 0.93, chrono::Utc::now()).await?;
    // With extra keys, through the builder.
    client
        .record_metric(Metric::new("cpu", 0.42).with("host", "web-1"))
        .await?;

    let latest = client.query().name("cpu").await?;
    println!(
        "{} cpu metrics stored; the last: {:?}",
        latest.len(),
        latest.last()
    );
    Ok(())
}
