//! Tags, paging and delete: filters on extra keys (`.tag`, `.matching`), the newest first with a
//! limit, every page of a large result with `.pages()`, a saved cursor to carry on later, and a
//! delete by filter that answers how many metrics went.
//!
//! Runs the server in-process on a temporary SQLite file unless given a server's URL:
//!
//! ```text
//! cargo run -p examples --example query_engine [-- http://127.0.0.1:5000]
//! ```

use chrono::{Duration, Utc};
use futures::TryStreamExt;
use metrics_client::{Client, Metric};

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

    // An hour of cpu readings, one a second, from four hosts in two regions.
    let start = Utc::now() - Duration::hours(1);
    let hosts = [
        ("web-1", "eu"),
        ("web-2", "eu"),
        ("web-3", "us"),
        ("db-1", "us"),
    ];
    let readings = (0..3600).map(|s| {
        let (host, region) = hosts[s as usize % hosts.len()];
        Metric::new("example.cpu", (s % 100) as f64 / 100.0)
            .at(start + Duration::seconds(s))
            .with("host", host)
            .with("region", region)
    });
    println!("stored {}", client.record_batch(readings).await?);

    // What is there to filter on: the catalog.
    let keys = client.tag_keys().name("example.cpu").await?;
    let hosts = client.tag_values("host").name("example.cpu").await?;
    println!("tag keys {keys:?}; hosts {hosts:?}");

    // Tags: one host; or a selector (anchored regular expressions, `!=`, `!~`, `=""`).
    let web_1 = client
        .query()
        .name("example.cpu")
        .tag("host", "web-1")
        .await?;
    let web_in_us = client
        .query()
        .matching(r#"example.cpu{host=~"web-.*", region="us"}"#)
        .await?;
    println!(
        "web-1: {}, web hosts in us: {}",
        web_1.len(),
        web_in_us.len()
    );

    // The latest reading of db-1: newest first, one row.
    let latest = client
        .query()
        .name("example.cpu")
        .tag("host", "db-1")
        .descending()
        .limit(1)
        .await?;
    if let Some(m) = latest.first() {
        println!("db-1 last said {:?} at {}", m.value, m.ts);
    }

    // Every reading of the last 15 minutes, 250 per page, following the server's Link header.
    let mut pages = client
        .query()
        .name("example.cpu")
        .start(Utc::now() - Duration::minutes(15))
        .limit(250)
        .pages();
    let mut saved = None;
    while let Some(page) = pages.try_next().await? {
        println!(
            "a page of {} (more: {})",
            page.metrics.len(),
            page.cursor.is_some()
        );
        saved = saved.or(page.cursor);
    }
    // A cursor is a position: save it, carry on from it later (with the same filters).
    if let Some(cursor) = saved {
        let after_first_page = client
            .query()
            .name("example.cpu")
            .start(Utc::now() - Duration::minutes(15))
            .limit(250)
            .cursor(cursor)
            .await?;
        println!("the second page again: {} metrics", after_first_page.len());
    }

    // Delete what db-1 sent, then everything older than half an hour; each answers a count.
    let gone = client
        .delete()
        .name("example.cpu")
        .tag("host", "db-1")
        .await?;
    println!("deleted {gone} db-1 readings");
    let gone = client
        .delete()
        .name("example.cpu")
        .end(Utc::now() - Duration::minutes(30))
        .await?;
    println!("deleted {gone} readings older than 30 minutes");
    let left = client.query().name("example.cpu").await?;
    println!("{} readings left", left.len());

    if let Some(server) = local {
        server.stop().await?;
    }
    Ok(())
}
