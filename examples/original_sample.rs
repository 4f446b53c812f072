//! Posts the original test suite's 100 sample metrics: names foo, bar, baz in turn, values 1 to 4
//! in turn, days 2016-01-01 to 2016-01-04 in turn. The `readme_queries` example then has data.
//!
//! Needs a running server (`cargo run -p metrics-server`), then:
//!
//! ```text
//! cargo run -p examples --example original_sample [-- http://127.0.0.1:5000]
//! ```

use metrics_client::{Client, Metric, Timestamp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let client = Client::new(&url)?;

    let names = ["foo", "bar", "baz"];
    let days: Vec<Timestamp> = ["2016-01-01", "2016-01-02", "2016-01-03", "2016-01-04"]
        .iter()
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let sample = (0..100).map(|i| Metric::new(names[i % 3], i % 4 + 1).at(days[i % 4]));
    let stored = client.record_batch(sample).await?;
    println!("stored {stored} sample metrics");
    Ok(())
}
