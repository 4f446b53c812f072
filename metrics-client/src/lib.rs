//! The typed async client of the metrics server: record, query, aggregate, delete and subscribe
//! to metrics; with the `facade` feature, a recorder for the `metrics` crate's macros too.
//!
//! ```no_run
//! use chrono::{TimeZone, Utc};
//! use futures::{StreamExt, TryStreamExt};
//! use metrics_client::{Client, Metric};
//!
//! # async fn run() -> Result<(), metrics_client::Error> {
//! let client = Client::new("http://127.0.0.1:5000")?;
//!
//! // Watch cpu live; reconnects by itself and never misses or repeats a metric.
//! let mut live = client.subscribe().name("cpu").await?;
//!
//! // One metric: Ok means committed.
//! let noon = Utc.with_ymd_and_hms(2016, 1, 1, 12, 0, 0).unwrap();
//! client.record("cpu", 0.93, noon).await?;
//!
//! // A batch of any size, with extra keys; split under the server's limits.
//! let batch = (0..10_000).map(|i| Metric::new("cpu", i % 100).at(noon).with("host", "web-1"));
//! client.record_batch(batch).await?;
//!
//! // Query: collect with .await, or stream results larger than memory.
//! let day: metrics_client::Timestamp = "2016-01-01".parse()?;
//! let cpu = client.query().name("cpu").start(day).await?;
//! let mut all = client.query().stream();
//! while let Some(metric) = all.try_next().await? {
//!     println!("{} {:?} at {}", metric.name, metric.value, metric.ts);
//! }
//!
//! // Filter by extra keys (tags), newest first, a page at a time.
//! let web_1 = client.query().name("cpu").tag("host", "web-1").descending().limit(10).await?;
//! let eu = client.query().matching(r#"cpu{region=~"eu-.*"}"#).await?;
//! let mut pages = client.query().name("cpu").limit(1000).pages();
//! while let Some(page) = pages.try_next().await? {
//!     println!("{} metrics, next page at {:?}", page.metrics.len(), page.cursor);
//! }
//!
//! // Aggregate on the server: per 5 minutes and host, the mean and the 99th percentile.
//! use metrics_client::{Agg, Fill, Step};
//! let per_host = client.query().name("cpu").start(day)
//!     .step(Step::minutes(5)).agg([Agg::Avg, Agg::P99]).by(["host"]).fill(Fill::Null)
//!     .await?;
//! for series in &per_host {
//!     println!("{} {:?}: p99 {:?} at {:?}", series.name, series.tags, series.values(Agg::P99), series.ts);
//! }
//!
//! // Delete by the same filters; the answer is how many went.
//! let deleted = client.delete().name("cpu").tag("host", "web-9").await?;
//!
//! // Hot paths: record returns at once; batches go out in the background.
//! let recorder = client.recorder().build();
//! recorder.record(Metric::new("requests", 1).with("route", "/"))?;
//! assert!(recorder.close().await?.is_empty(), "everything delivered");
//!
//! let first = live.next().await.unwrap()?;
//! assert_eq!(first.name, "cpu");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! | module | job |
//! | --- | --- |
//! | `client` | [`Client`] (a cheap `Clone` handle), [`ClientBuilder`], writes |
//! | `metric` | [`Metric`]: name, value, timestamp and extra keys |
//! | `query` | [`QueryBuilder`]: filters by name, time and tags; `.await`, `.send()`, `.stream()`, `.pages()` |
//! | `aggregate` | [`AggregateQuery`] (from [`QueryBuilder::step`]): [`Step`], [`Agg`], `by`, offset, [`Fill`]; answers [`Series`] |
//! | `delete` | [`DeleteBuilder`]: the same filters; answers how many metrics were deleted |
//! | `catalog` | [`CatalogBuilder`]: metric names, tag keys and tag values, narrowed by the same filters |
//! | `subscription` | [`Subscription`]: a `Stream` that reconnects and resumes from its cursor |
//! | `recorder` | [`Recorder`]: batching, retries with idempotency keys, flush and close |
//! | `error` | [`Error`], the one error type, with [`Error::Api`] for the server's errors |
//! | [`json`] | `serde_json`'s `Value`, `Map` and `json!`, for extra keys |
//! | `facade` | with the `facade` feature: a recorder for the `metrics` crate's `counter!`, `gauge!` and `histogram!` |
//!
//! The guide is `docs/client.md` in the repository.

mod aggregate;
mod catalog;
mod client;
mod delete;
mod error;
#[cfg(feature = "facade")]
pub mod facade;
mod filter;
mod metric;
mod query;
mod recorder;
mod subscription;

pub use aggregate::{Agg, AggregateQuery, Fill, Percentile, Series, Step};
pub use catalog::CatalogBuilder;
pub use client::{Client, ClientBuilder};
pub use delete::DeleteBuilder;
pub use error::{Error, Result};
pub use metric::Metric;
pub use metrics_types::{
    AggregateAnswer, AggregateSeries, Limits, MetricValue, NameSummary, Timestamp, TimestampError,
};
pub use query::{Page, QueryBuilder, DEFAULT_PAGE_SIZE};
pub use recorder::{Recorder, RecorderBuilder, Undelivered};
/// The HTTP status in [`Error::Api`] (reqwest's, from the `http` crate).
pub use reqwest::StatusCode;
pub use subscription::{SubscribeBuilder, Subscription};

/// The JSON types of [`Metric::extra`] and [`Metric::with`] (re-exported from `serde_json`), so
/// that extra keys can be built and read without a `serde_json` dependency of your own.
///
/// # Examples
///
/// ```
/// use metrics_client::{json::{json, Value}, Metric};
///
/// let metric = Metric::new("cpu", 0.93).with("tags", json!(["web", "eu"]));
/// assert_eq!(metric.extra["tags"], Value::from(vec!["web", "eu"]));
/// ```
pub mod json {
    pub use serde_json::{json, Map, Value};
}
