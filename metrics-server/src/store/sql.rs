//! [`SqlStore`]: the [`MetricStore`] for PostgreSQL and SQLite alike: reads through sea-orm,
//! writes through the sqlx transactions of [`super::write`].

use futures::{stream::BoxStream, StreamExt};
use sea_orm::{
    sea_query::Expr, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder,
    QuerySelect, Statement,
};

use super::{
    disk::DiskGuard,
    entity::{Column, Entity},
    write::{self, transaction, WriteConnection},
    Chunk, MetricStore, NameStats, NewMetric, OnceOutcome, RetentionRule, StoreError, StoredMetric,
};
use crate::selection::{self, Cursor, Selection};

/// The part of a [`Selection`] the store serves so far (the store rewrite replaces it).
#[derive(Debug, Clone, Default)]
struct MetricFilter {
    names: Vec<String>,
    start_micros: Option<i64>,
    end_micros: Option<i64>,
}

fn not_yet(what: &str) -> StoreError {
    StoreError::Database(std::sync::Arc::new(std::io::Error::other(format!(
        "{what} is not supported by this store yet"
    ))))
}

/// Rows per page of [`SqlStore::query_chunks`]: two statements, one result row, one chunk of the
/// answer each. At ~100 bytes a row, a page is a few hundred kilobytes, which bounds the memory
/// of any query.
const ROWS_PER_PAGE: i64 = 4096;

/// The metric store over a connection pool.
#[derive(Clone)]
pub struct SqlStore {
    /// The pool; cheap to clone, shared by the writer and every query.
    db: DatabaseConnection,
    /// Refuses writes when the SQLite file's filesystem runs low (`--min-free-disk`).
    disk: Option<DiskGuard>,
}

impl SqlStore {
    /// A store over an open, migrated connection (see [`super::connect`]).
    pub fn new(db: DatabaseConnection) -> Self {
        SqlStore { db, disk: None }
    }

    /// Refuses writes with [`StoreError::LowDiskSpace`] while the filesystem of the SQLite file
    /// has less than `min_free` bytes available (0: never). PostgreSQL's disk is not ours to
    /// see; a full one is reported by the database as [`StoreError::DiskFull`].
    pub fn with_min_free_disk(mut self, min_free: u64) -> Self {
        if self.db.get_database_backend() == DbBackend::Sqlite {
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
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                transaction(pool, async |conn| conn.insert_rows(metrics).await).await
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                transaction(pool, async |conn| conn.insert_rows(metrics).await).await
            }
        }
    }

    async fn names(&self, _selection: &Selection) -> Result<Vec<NameStats>, StoreError> {
        // One pass over the (name, ts, id) index: MIN/MAX per name come from its ends.
        let rows: Vec<(String, i64, i64, i64)> = Entity::find()
            .select_only()
            .column(Column::Name)
            .column_as(Expr::col(Column::Id).count(), "count")
            .column_as(Expr::col(Column::Ts).min(), "first")
            .column_as(Expr::col(Column::Ts).max(), "last")
            .group_by(Column::Name)
            .order_by_asc(Column::Name)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, count, first_micros, last_micros)| NameStats {
                name,
                count: u64::try_from(count).unwrap_or_default(),
                first_micros,
                last_micros,
                tag_keys: Vec::new(),
            })
            .collect())
    }

    fn query(
        &self,
        selection: Selection,
        page: selection::Page,
        separator: char,
    ) -> BoxStream<'static, Result<Chunk, StoreError>> {
        if !selection.tags.is_empty() || page != selection::Page::default() || separator != ',' {
            return futures::stream::once(async { Err(not_yet("paging or tag filtering")) })
                .boxed();
        }
        let filter = MetricFilter {
            names: selection.names,
            start_micros: selection.start_micros,
            end_micros: selection.end_micros,
        };
        let db = self.db.clone();
        // Keyset pagination over (ts, id): each page starts after the last row of the previous
        // one and the database joins the page's documents itself. The profile of the row stream
        // showed most of a GET's time spent handing rows over one at a time (sqlx's SQLite
        // worker sends each row through a channel; sea-orm wraps each in a QueryResult); a page
        // is one row. A small answer is one statement, so one snapshot; a large one is read a
        // page at a time, so its pages may include rows committed meanwhile after the cursor.
        futures::stream::try_unfold(Page::First, move |page| {
            let (db, filter) = (db.clone(), filter.clone());
            async move {
                let backend = db.get_database_backend();
                let after = match page {
                    Page::Done => return Ok(None),
                    Page::First => {
                        // Most answers fit in one page: one statement, one snapshot.
                        let row = db.query_one(first_page(backend, &filter)).await?;
                        let (docs, count): (Option<String>, i64) = match row {
                            Some(row) => (row.try_get_by_index(0)?, row.try_get_by_index(1)?),
                            None => (None, 0),
                        };
                        if count < ROWS_PER_PAGE {
                            return Ok(docs.map(|docs| (docs, Page::Done)));
                        }
                        // A large answer: start over a page at a time, each bounded first.
                        None
                    }
                    Page::After(after) => after,
                };
                // Where this page ends: the last row of a full page, or nothing for the last.
                let end = match db.query_one(page_end(backend, &filter, after)).await? {
                    Some(row) => Some((row.try_get_by_index(0)?, row.try_get_by_index(1)?)),
                    None => None,
                };
                let statement = page_docs(backend, &filter, after, end);
                let docs: Option<String> = match db.query_one(statement).await? {
                    Some(row) => row.try_get_by_index(0)?,
                    None => None,
                };
                let next = match end {
                    Some(end) => Page::After(Some(end)),
                    None => Page::Done,
                };
                Ok(docs.map(|docs| (docs, next)))
            }
        })
        .map(|text| {
            text.map(|text| Chunk {
                text,
                rows: 0,
                last: Cursor {
                    ts_micros: 0,
                    id: 0,
                },
            })
        })
        .boxed()
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
        if !selection.tags.is_empty() {
            return Err(not_yet("tag filtering"));
        }
        super::replay::replay(&self.db, selection, after_id, limit).await
    }

    async fn delete(&self, _selection: &Selection) -> Result<u64, StoreError> {
        Err(not_yet("delete"))
    }

    async fn delete_expired(&self, _rule: &RetentionRule, _max: u64) -> Result<u64, StoreError> {
        Err(not_yet("retention"))
    }

    async fn tag_keys(&self, _selection: &Selection) -> Result<Vec<String>, StoreError> {
        Err(not_yet("the tag catalog"))
    }

    async fn tag_values(&self, _key: &str, _sel: &Selection) -> Result<Vec<String>, StoreError> {
        Err(not_yet("the tag catalog"))
    }

    async fn last_id(&self) -> Result<i64, StoreError> {
        super::replay::last_id(&self.db).await
    }

    async fn insert_once(
        &self,
        key: &str,
        window_micros: i64,
        metrics: &[&NewMetric],
    ) -> Result<OnceOutcome, StoreError> {
        self.check_disk()?;
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                transaction(pool, async |conn| {
                    write::insert_once(conn, key, window_micros, metrics).await
                })
                .await
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                transaction(pool, async |conn| {
                    write::insert_once(conn, key, window_micros, metrics).await
                })
                .await
            }
        }
    }
}

/// Where a paged query stands.
#[derive(Debug, Clone, Copy)]
enum Page {
    /// Nothing read yet.
    First,
    /// Read up to this `(ts, id)` (`None`: start from the first row).
    After(Option<(i64, i64)>),
    /// Answered.
    Done,
}

/// The first [`ROWS_PER_PAGE`] rows' documents joined by commas, and how many there are.
fn first_page(backend: DbBackend, filter: &MetricFilter) -> Statement {
    let w = Where::new(backend, filter, None);
    let sql = format!(
        "SELECT {}, count(*) FROM (SELECT ts, id, doc FROM metrics {} ORDER BY ts, id LIMIT {}) AS page",
        join_docs(backend),
        w.sql(),
        ROWS_PER_PAGE
    );
    w.statement(sql)
}

/// The aggregate that joins documents in `(ts, id)` order.
fn join_docs(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "string_agg(doc, ',' ORDER BY ts, id)",
        _ => "group_concat(doc, ',' ORDER BY ts, id)",
    }
}

/// A query's conditions and their bind values, with the placeholders of `backend`.
struct Where {
    backend: DbBackend,
    conditions: Vec<String>,
    values: Vec<sea_orm::Value>,
}

impl Where {
    fn new(backend: DbBackend, filter: &MetricFilter, after: Option<(i64, i64)>) -> Where {
        let mut w = Where {
            backend,
            conditions: Vec::new(),
            values: Vec::new(),
        };
        if !filter.names.is_empty() {
            let names: Vec<String> = filter
                .names
                .iter()
                .map(|n| w.bind(n.as_str().into()))
                .collect();
            w.conditions.push(format!("name IN ({})", names.join(", ")));
        }
        if let Some(start) = filter.start_micros {
            let p = w.bind(start.into());
            w.conditions.push(format!("ts >= {p}"));
        }
        if let Some(end) = filter.end_micros {
            let p = w.bind(end.into());
            w.conditions.push(format!("ts <= {p}"));
        }
        if let Some((ts, id)) = after {
            let (ts, id) = (w.bind(ts.into()), w.bind(id.into()));
            w.conditions.push(format!("(ts, id) > ({ts}, {id})"));
        }
        w
    }

    fn bind(&mut self, value: sea_orm::Value) -> String {
        self.values.push(value);
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

/// The `(ts, id)` of the last row of the page after `after`, if the page is full: an index-only
/// scan of [`ROWS_PER_PAGE`] entries.
fn page_end(backend: DbBackend, filter: &MetricFilter, after: Option<(i64, i64)>) -> Statement {
    let w = Where::new(backend, filter, after);
    let sql = format!(
        "SELECT ts, id FROM metrics {} ORDER BY ts, id LIMIT 1 OFFSET {}",
        w.sql(),
        ROWS_PER_PAGE - 1
    );
    w.statement(sql)
}

/// The documents of the rows after `after` up to `end` (or to the end), joined by commas in
/// `(ts, id)` order by the database: one result row for the whole page.
fn page_docs(
    backend: DbBackend,
    filter: &MetricFilter,
    after: Option<(i64, i64)>,
    end: Option<(i64, i64)>,
) -> Statement {
    let mut w = Where::new(backend, filter, after);
    if let Some((ts, id)) = end {
        let (ts, id) = (w.bind(ts.into()), w.bind(id.into()));
        w.conditions.push(format!("(ts, id) <= ({ts}, {id})"));
    }
    let sql = format!("SELECT {} FROM metrics {}", join_docs(backend), w.sql());
    w.statement(sql)
}
