//! Storage: the [`MetricStore`] trait the rest of the server talks to, and its SQL implementation.
//!
//! This module is the only place with SQL. [`SqlStore`] serves PostgreSQL and SQLite: reads,
//! deletes and the catalog as sea-query statements (`filter` turns a [`Selection`] into
//! conditions, `query` pages raw answers, `catalog` lists names and tags, `delete` deletes,
//! `replay` feeds resumed streams), writes through one sqlx transaction each (`write`), which
//! keeps the series catalog (`series`) that tag filters use. [`connect`] opens either backend
//! from a URL with the settings each needs. [`StoreError`] says what a failure means for the
//! client.

mod catalog;
mod connect;
mod delete;
mod disk;
mod error;
mod filter;
mod query;
mod replay;
mod schema;
mod series;
mod sql;
mod token_entity;
mod tokens;
mod write;

use futures::stream::BoxStream;

use crate::selection::{Cursor, Page, Selection, Tags};

pub use connect::{connect, Backend};
pub use error::StoreError;
pub use sql::SqlStore;
pub use tokens::{NewToken, TokenInfo, TokenStore};

/// A validated metric on its way into the database.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    /// The metric's name.
    pub name: String,
    /// The instant of `ts`, in microseconds since the Unix epoch (what ranges compare).
    pub ts_micros: i64,
    /// The value when it is a number, kept for aggregations.
    pub value: Option<f64>,
    /// The object as posted, compacted JSON: what queries and the live stream return.
    pub doc: String,
    /// Its tags (the extra keys, by text; see [`crate::selection`]): what tag filters compare.
    pub tags: Tags,
}

/// A run of a raw query's rows, in the query's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The rows' documents joined by the separator the query was given.
    pub text: String,
    /// How many rows it holds (at least one).
    pub rows: u64,
    /// The last row's position: where the next page starts.
    pub last: Cursor,
}

/// What retention removes in one pass: metrics older than `before_micros` whose name starts with
/// `prefix` but with none of `except` (longer prefixes that have rules of their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRule {
    /// Names starting with this; `""` for every name.
    pub prefix: String,
    /// Names starting with any of these are left to their own rules.
    pub except: Vec<String>,
    /// Metrics with `ts` before this instant (microseconds since the epoch) are removed.
    pub before_micros: i64,
}

/// A committed metric read back in storage order, for a stream that replays what it missed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMetric {
    /// Its id: storage order and the stream cursor.
    pub id: i64,
    /// Its name, for name filters.
    pub name: String,
    /// The object as posted.
    pub doc: String,
}

/// What became of a write made with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceOutcome {
    /// The key was new: the metrics are committed with these ids, and the key with them.
    Stored(Vec<i64>),
    /// The key was seen within the window: nothing was stored; this is the original count.
    Repeated {
        /// How many metrics the original request stored.
        stored: u64,
    },
}

/// What the store holds under one name: how many metrics and their time span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStats {
    /// The metric name.
    pub name: String,
    /// How many metrics carry it.
    pub count: u64,
    /// The earliest `ts`, in microseconds since the epoch.
    pub first_micros: i64,
    /// The latest `ts`, in microseconds since the epoch.
    pub last_micros: i64,
    /// The tag keys its metrics carry, sorted.
    pub tag_keys: Vec<String>,
}

/// Where metrics are kept. Implementations must make every `insert` atomic and durable.
#[async_trait::async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// Stores `metrics` in one transaction, all or nothing, and returns their ids in the same
    /// order. When it returns `Ok`, the transaction is committed.
    async fn insert(&self, metrics: &[&NewMetric]) -> Result<Vec<i64>, StoreError>;

    /// Every stored name the selection's names and tags select (its time range is ignored),
    /// with its count, time span and tag keys, ordered by name.
    async fn names(&self, selection: &Selection) -> Result<Vec<NameStats>, StoreError>;

    /// The stored objects `selection` selects, in `page`'s order (by `ts`, ties by storage
    /// order), after its cursor and up to its limit, joined by `separator` into chunks of many
    /// objects each (`,` for a JSON array, `\n` for NDJSON), streamed from the database so that
    /// a large result is never held in memory. Tag filters are served by indexes.
    fn query(
        &self,
        selection: Selection,
        page: Page,
        separator: char,
    ) -> BoxStream<'static, Result<Chunk, StoreError>>;

    /// Deletes every stored metric `selection` selects, in one transaction, and says how many.
    async fn delete(&self, selection: &Selection) -> Result<u64, StoreError>;

    /// Deletes at most `max_rows` metrics that `rule` expires, in one short transaction, and says
    /// how many (fewer than `max_rows`: nothing more is expired).
    async fn delete_expired(&self, rule: &RetentionRule, max_rows: u64) -> Result<u64, StoreError>;

    /// The tag keys of the metrics `selection` selects (its time range is ignored), sorted.
    async fn tag_keys(&self, selection: &Selection) -> Result<Vec<String>, StoreError>;

    /// The texts `key` takes among the metrics `selection` selects (its time range is ignored),
    /// sorted.
    async fn tag_values(&self, key: &str, selection: &Selection)
        -> Result<Vec<String>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Up to `limit` committed metrics with an id above `after_id` that `selection` selects, in
    /// storage (id) order: what a resumed stream replays.
    async fn replay(
        &self,
        selection: &Selection,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<StoredMetric>, StoreError>;

    /// The highest id stored so far (0 when empty): where a stream "from now" starts.
    async fn last_id(&self) -> Result<i64, StoreError>;

    /// Like [`insert`](Self::insert), but at most once per `key` within `window_micros`: the
    /// metrics and the key are committed together, and a key seen within the window stores
    /// nothing and reports the original count.
    async fn insert_once(
        &self,
        key: &str,
        window_micros: i64,
        metrics: &[&NewMetric],
    ) -> Result<OnceOutcome, StoreError>;
}

#[cfg(test)]
mod tests;
