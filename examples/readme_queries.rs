//! The original README's queries, through the query builder: by name, by inclusive time range,
//! an exact timestamp, everything; and a streamed query for results larger than memory.
//!
//! Needs a running server with data (`cargo run -p metrics-server`, then the `original_sample`
//! example), then:
//!
//! ```text
//! cargo run -p examples --example readme_queries [-- http://127.0.0.1:5000]
//! ```

use futures::TryStreamExt;
use metrics_client::{Client, Timestamp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:5000".into());
    let client = Client::new(&url)?;
    let day = |s: &str| -> anyhow::Result<Timestamp> { Ok(s.parse()?) };

    // ?name=foo
    let by_name = client.query().name("foo").await?;
    // ?name=foo&sts=2016-01-01
    let foo_since = client.query().name("foo").start(day("2016-01-01")?).await?;
    // ?ets=2016-01-02
    let until = client.query().end(day("2016-01-02")?).await?;
    // ?name=foo&sts=2016-01-01&ets=2016-01-02
    let both = client
        .query()
        .name("foo")
        .start(day("2016-01-01")?)
        .end(day("2016-01-02")?)
        .await?;
    // ?name=foo&sts=2016-01-02&ets=2016-01-02: exactly that instant
    let exact = client
        .query()
        .name("foo")
        .start(day("2016-01-02")?)
        .end(day("2016-01-02")?)
        .await?;
    // ?sts=2016-01-02
    let since = client.query().start(day("2016-01-02")?).await?;
    // everything, streamed: one metric in memory at a time
    let mut count = 0;
    let mut all = client.query().stream();
    while let Some(_metric) = all.try_next().await? {
        count += 1;
    }

    println!("name=foo: {}", by_name.len());
    println!("name=foo, from 2016-01-01: {}", foo_since.len());
    println!("until 2016-01-02: {}", until.len());
    println!("name=foo, 2016-01-01 to 2016-01-02: {}", both.len());
    println!("name=foo, exactly 2016-01-02: {}", exact.len());
    println!("from 2016-01-02: {}", since.len());
    println!("everything: {count}");
    Ok(())
}
