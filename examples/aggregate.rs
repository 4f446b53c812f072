//! Aggregation on the server: per minute and host the mean, the maximum and the 99th percentile
//! of an hour of latencies; a per-region count with gaps filled; daily sums on a shifted grid.
//! The server does the arithmetic; what comes back is one typed series per host, one vector per
//! function.
//!
//! Runs the server in-process on a temporary SQLite file unless given a server's URL:
//!
//! ```text
//! cargo run -p examples --example aggregate [-- http://127.0.0.1:5000]
//! ```

use chrono::{Duration, DurationRound, Utc};
use metrics_client::{Agg, Client, Fill, Metric, Step};

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

    // An hour of request latencies, one a second, from three hosts; db-1 is quiet for ten
    // minutes, and now and then a request times out and says so in words. The hour starts on
    // the 5-minute grid, so that each bucket below is whole.
    let hour_ago = (Utc::now() - Duration::hours(1)).duration_trunc(Duration::minutes(5))?;
    let hosts = [("web-1", "eu"), ("web-2", "eu"), ("db-1", "us")];
    let readings = (0..3600_i64).filter_map(|s| {
        let (host, region) = hosts[s as usize % hosts.len()];
        if host == "db-1" && (20 * 60..30 * 60).contains(&s) {
            return None;
        }
        let latency = 5.0 + (s * 7 % 40) as f64 + if s % 97 == 0 { 250.0 } else { 0.0 };
        let metric = if s % 501 == 0 {
            Metric::new("example.latency", "timeout")
        } else {
            Metric::new("example.latency", latency)
        };
        Some(
            metric
                .at(hour_ago + Duration::seconds(s))
                .with("host", host)
                .with("region", region),
        )
    });
    println!("stored {}", client.record_batch(readings).await?);

    // Per minute and host: three functions, one vector each, as long as the buckets.
    let per_host = client
        .query()
        .name("example.latency")
        .start(hour_ago)
        .step(Step::minutes(1))
        .agg([Agg::Avg, Agg::Max, Agg::P99])
        .by(["host"])
        .await?;
    for series in &per_host {
        let avg = series.values(Agg::Avg).unwrap_or_default();
        let worst = series
            .values(Agg::P99)
            .unwrap_or_default()
            .iter()
            .flatten()
            .fold(f64::NAN, |a, &b| a.max(b));
        println!(
            "{} {:?}: {} minutes, first avg {:?}, worst p99 {worst:.1} ms, {} non-numeric skipped",
            series.name,
            series.tags,
            series.ts.len(),
            avg.first().copied().flatten(),
            series.non_numeric,
        );
    }

    // Per 5 minutes and region, with the empty buckets kept (count 0, the rest None): db-1's
    // quiet spell shows as a gap in "us" instead of vanishing.
    let per_region = client
        .query()
        .name("example.latency")
        .start(hour_ago)
        .end(hour_ago + Duration::seconds(3599))
        .step(Step::minutes(5))
        .agg([Agg::Count, Agg::Avg])
        .by(["region"])
        .fill(Fill::Null)
        .await?;
    for series in &per_region {
        let counts: Vec<f64> = series
            .points(Agg::Count)
            .filter_map(|(_, count)| count)
            .collect();
        println!("{:?} requests per 5 minutes: {counts:?}", series.tags);
    }

    // Daily totals on days that start at midnight UTC+2: the grid shifted by -2 hours.
    let daily = client
        .query()
        .name("example.latency")
        .step(Step::days(1))
        .offset(Duration::hours(-2))
        .agg([Agg::Count, Agg::Sum])
        .await?;
    for series in &daily {
        for (start, count) in series.starts().zip(series.points(Agg::Count)) {
            println!("day from {start}: {:?} requests", count.1);
        }
    }

    if let Some(server) = local {
        server.stop().await?;
    }
    Ok(())
}
