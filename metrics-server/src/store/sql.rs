//! [`SqlStore`]: the [`MetricStore`] over sea-orm, for PostgreSQL and SQLite alike.

use futures::{stream::BoxStream, StreamExt};
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    entity::{Column, Entity},
    MetricFilter, MetricStore, NameStats, NewMetric, OnceOutcome, ReplayFilter, StoreError,
    StoredMetric,
};

/// Rows per INSERT statement: 4 bind parameters each stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters per statement.
const ROWS_PER_STATEMENT: usize = 1000;

/// Rows a query stream reads ahead of its consumer; this bounds the memory of a large query.
const QUERY_READ_AHEAD: usize = 1024;

/// The metric store over a sea-orm connection pool.
#[derive(Clone)]
pub struct SqlStore {
    /// The pool; cheap to clone, shared by the writer and every query.
    db: DatabaseConnection,
}

impl SqlStore {
    /// A store over an open, migrated connection (see [`super::connect`]).
    pub fn new(db: DatabaseConnection) -> Self {
        SqlStore { db }
    }
}

#[async_trait::async_trait]
impl MetricStore for SqlStore {
    async fn insert(&self, metrics: &[&NewMetric]) -> Result<Vec<i64>, StoreError> {
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await?;
        let mut ids = Vec::with_capacity(metrics.len());
        for chunk in metrics.chunks(ROWS_PER_STATEMENT) {
            let mut insert = Query::insert();
            insert
                .into_table(Entity)
                .columns([Column::Name, Column::Ts, Column::Value, Column::Doc])
                .returning_col(Column::Id);
            for m in chunk {
                insert.values_panic([
                    m.name.as_str().into(),
                    m.ts_micros.into(),
                    m.value.into(),
                    m.doc.as_str().into(),
                ]);
            }
            let rows = txn.query_all(backend.build(&insert)).await?;
            let mut chunk_ids = rows
                .iter()
                .map(|row| row.try_get_by_index::<i64>(0))
                .collect::<Result<Vec<_>, _>>()?;
            // Ids are assigned in row order; RETURNING does not promise to list them in it.
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids);
        }
        txn.commit().await?;
        Ok(ids)
    }

    fn query(&self, filter: MetricFilter) -> BoxStream<'static, Result<String, StoreError>> {
        let db = self.db.clone();
        let (tx, rx) = mpsc::channel(QUERY_READ_AHEAD);
        // sea-orm's row stream borrows the connection, so a task owns both and hands rows over
        // a bounded channel: the database is read only as fast as the client takes the answer.
        tokio::spawn(async move {
            let mut select = Entity::find()
                .select_only()
                .column(Column::Doc)
                .order_by_asc(Column::Ts)
                .order_by_asc(Column::Id);
            if !filter.names.is_empty() {
                select = select.filter(Column::Name.is_in(filter.names));
            }
            if let Some(start) = filter.start_micros {
                select = select.filter(Expr::col(Column::Ts).gte(start));
            }
            if let Some(end) = filter.end_micros {
                select = select.filter(Expr::col(Column::Ts).lte(end));
            }
            let mut rows = match select.into_tuple::<String>().stream(&db).await {
                Ok(rows) => rows,
                Err(err) => {
                    let _ = tx.send(Err(err.into())).await;
                    return;
                }
            };
            while let Some(row) = rows.next().await {
                let failed = row.is_err();
                if tx.send(row.map_err(StoreError::from)).await.is_err() || failed {
                    break;
                }
            }
        });
        ReceiverStream::new(rx).boxed()
    }

    async fn names(&self) -> Result<Vec<NameStats>, StoreError> {
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
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    async fn replay(
        &self,
        filter: &ReplayFilter,
        limit: u64,
    ) -> Result<Vec<StoredMetric>, StoreError> {
        super::replay::replay(&self.db, filter, limit).await
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
        super::idempotency::insert_once(&self.db, key, window_micros, metrics).await
    }
}
