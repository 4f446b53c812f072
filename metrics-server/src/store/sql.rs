//! [`SqlStore`]: the [`MetricStore`] for PostgreSQL and SQLite alike. Reads and deletes are
//! sea-query statements (`query`, `replay`, `catalog`, `delete`, conditions in `filter`) run
//! through sea-orm's connection; writes are the sqlx transactions of `write`, which keep the
//! series catalog (`series`) in step with every insert.

use futures::stream::BoxStream;
use sea_orm::DatabaseConnection;

use super::{
    catalog, delete,
    disk::DiskGuard,
    query, replay,
    schema::backend_of,
    series::SeriesCache,
    write::{self, transaction},
    Backend, Chunk, MetricStore, NameStats, NewMetric, OnceOutcome, RetentionRule, StoreError,
    StoredMetric,
};
use crate::selection::{Page, Selection};

/// The metric store over a connection pool.
#[derive(Clone)]
pub struct SqlStore {
    /// The pool; cheap to clone, shared by the writer and every query.
    db: DatabaseConnection,
    /// Refuses writes when the SQLite file's filesystem runs low (`--min-free-disk`).
    disk: Option<DiskGuard>,
    /// Series ids the writes have seen committed.
    series: SeriesCache,
}

impl SqlStore {
    /// A store over an open, migrated connection (see [`super::connect`]).
    pub fn new(db: DatabaseConnection) -> Self {
        SqlStore {
            db,
            disk: None,
            series: SeriesCache::default(),
        }
    }

    /// Refuses writes with [`StoreError::LowDiskSpace`] while the filesystem of the SQLite file
    /// has less than `min_free` bytes available (0: never). PostgreSQL's disk is not ours to
    /// see; a full one is reported by the database as [`StoreError::DiskFull`].
    pub fn with_min_free_disk(mut self, min_free: u64) -> Self {
        if let Ok(Backend::Sqlite) = backend_of(&self.db) {
            let options = self.db.get_sqlite_connection_pool().connect_options();
            self.disk = DiskGuard::new(options.get_filename(), min_free);
        }
        self
    }

    fn check_disk(&self) -> Result<(), StoreError> {
        self.disk.as_ref().map_or(Ok(()), DiskGuard::check)
    }
}

#[async_trait::async_trait]
impl MetricStore for SqlStore {
    async fn insert(&self, metrics: &[&NewMetric]) -> Result<Vec<i64>, StoreError> {
        self.check_disk()?;
        let cache = &self.series;
        let (ids, learned) = match backend_of(&self.db)? {
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                transaction(pool, async |conn| {
                    write::store_metrics(conn, cache, metrics).await
                })
                .await?
            }
            Backend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                transaction(pool, async |conn| {
                    write::store_metrics(conn, cache, metrics).await
                })
                .await?
            }
        };
        cache.learn(learned);
        Ok(ids)
    }

    async fn names(&self, selection: &Selection) -> Result<Vec<NameStats>, StoreError> {
        catalog::names(&self.db, selection).await
    }

    fn query(
        &self,
        selection: Selection,
        page: Page,
        separator: char,
    ) -> BoxStream<'static, Result<Chunk, StoreError>> {
        query::query(self.db.clone(), selection, page, separator)
    }

    async fn delete(&self, selection: &Selection) -> Result<u64, StoreError> {
        delete::delete(&self.db, selection).await
    }

    async fn delete_expired(&self, rule: &RetentionRule, max_rows: u64) -> Result<u64, StoreError> {
        delete::delete_expired(&self.db, rule, max_rows).await
    }

    async fn tag_keys(&self, selection: &Selection) -> Result<Vec<String>, StoreError> {
        catalog::tag_keys(&self.db, selection).await
    }

    async fn tag_values(
        &self,
        key: &str,
        selection: &Selection,
    ) -> Result<Vec<String>, StoreError> {
        catalog::tag_values(&self.db, key, selection).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    async fn replay(
        &self,
        selection: &Selection,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<StoredMetric>, StoreError> {
        replay::replay(&self.db, selection, after_id, limit).await
    }

    async fn last_id(&self) -> Result<i64, StoreError> {
        replay::last_id(&self.db).await
    }

    async fn insert_once(
        &self,
        key: &str,
        window_micros: i64,
        metrics: &[&NewMetric],
    ) -> Result<OnceOutcome, StoreError> {
        self.check_disk()?;
        let cache = &self.series;
        let (outcome, learned) = match backend_of(&self.db)? {
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                transaction(pool, async |conn| {
                    write::insert_once(conn, cache, key, window_micros, metrics).await
                })
                .await?
            }
            Backend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                transaction(pool, async |conn| {
                    write::insert_once(conn, cache, key, window_micros, metrics).await
                })
                .await?
            }
        };
        cache.learn(learned);
        Ok(outcome)
    }
}
