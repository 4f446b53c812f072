//! Storage: the [`MetricStore`] trait the rest of the server talks to, and its SQL implementation.
//!
//! This module is the only place with SQL. [`SqlStore`] serves PostgreSQL and SQLite: reads
//! through sea-orm, writes through one sqlx transaction each (`write`); [`connect`] opens either
//! from a URL with the settings each needs. [`StoreError`] says what a failure means for the
//! client.

mod connect;
mod disk;
mod entity;
mod error;
mod replay;
mod sql;
mod token_entity;
mod tokens;
mod write;

use futures::stream::BoxStream;

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
}

/// Which metrics a query returns: every combination of names and an inclusive range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricFilter {
    /// Any of these names; empty means every name.
    pub names: Vec<String>,
    /// Inclusive lower bound on `ts`, in microseconds since the epoch.
    pub start_micros: Option<i64>,
    /// Inclusive upper bound on `ts`, in microseconds since the epoch.
    pub end_micros: Option<i64>,
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

/// Which stored metrics a replay returns: those after a cursor, in storage order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Only metrics with an id above this cursor.
    pub after_id: i64,
    /// Any of these names; empty means every name.
    pub names: Vec<String>,
    /// Only metrics with `ts` at or after this instant (microseconds since the epoch).
    pub start_micros: Option<i64>,
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
}

/// Where metrics are kept. Implementations must make every `insert` atomic and durable.
#[async_trait::async_trait]
pub trait MetricStore: Send + Sync + 'static {
    /// Stores `metrics` in one transaction, all or nothing, and returns their ids in the same
    /// order. When it returns `Ok`, the transaction is committed.
    async fn insert(&self, metrics: &[&NewMetric]) -> Result<Vec<i64>, StoreError>;

    /// Every stored name with its count and time span, ordered by name.
    async fn names(&self) -> Result<Vec<NameStats>, StoreError>;

    /// The stored objects matching `filter`, ordered by `ts` and then by storage order, joined
    /// by commas into chunks of many objects each (what a JSON array answer is made of), streamed
    /// from the database so that a large result is never held in memory.
    fn query(&self, filter: MetricFilter) -> BoxStream<'static, Result<String, StoreError>>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Up to `limit` committed metrics matching `filter`, in storage (id) order.
    async fn replay(
        &self,
        filter: &ReplayFilter,
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
