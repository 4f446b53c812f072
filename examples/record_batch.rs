//! Records a batch of 50,000 metrics in one call: the client splits it under the limits the
//! server publishes (`GET /v1/limits`), so a batch may be of any size.
//!
//! Needs a running server (`cargo run -p metrics-server`), then:
//!
//! ```text
//! cargo run -p examples --example record_batch [-- http://127.0.0.1:5000]
//! ```

use metrics_client::{Client, Metric};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let client = Client::new(&url)?;
    let limits = client.limits().await?;
    println!(
        "the server takes bodies of up to {} bytes",
        limits.max_body_bytes
    );

    let now = chrono::Utc::now();
    let batch = (0..50_000).map(|i| {
        Metric::new("requests", i % 100)
            .at(now - chrono::Duration::milliseconds(i))
            .with("host", format!("web-{}", i % 4))
    });
    let stored = client.record_batch(batch).await?;
    println!("stored {stored} metrics");
    Ok(())
}
