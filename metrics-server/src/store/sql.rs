//! [`SqlStore`]: the [`MetricStore`] over sea-orm, for PostgreSQL and SQLite alike.

use futures::{stream::BoxStream, StreamExt};
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, RuntimeErr, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    entity::{Column, Entity},
    MetricFilter, MetricStore, NewMetric, StoreError,
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
        if backend == DbBackend::Postgres {
            return insert_postgres(self.db.get_postgres_connection_pool(), metrics).await;
        }
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }
}

/// One statement for the whole batch on PostgreSQL: four array parameters, unnested into rows.
///
/// The profile of the multi-row `INSERT ... VALUES` showed the server building and binding
/// 4,000 parameters per 1,000 rows (sea-query, then sqlx encoding each one) and PostgreSQL
/// planning a statement that large; arrays make it one bind per column and a plan that is the
/// same for every batch size. A single statement is atomic on its own, so no BEGIN/COMMIT round
/// trips either. Ids come from the sequence in row order, so sorting them gives the input order.
async fn insert_postgres(
    pool: &sqlx::PgPool,
    metrics: &[&NewMetric],
) -> Result<Vec<i64>, StoreError> {
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let ts: Vec<i64> = metrics.iter().map(|m| m.ts_micros).collect();
    let values: Vec<Option<f64>> = metrics.iter().map(|m| m.value).collect();
    let docs: Vec<&str> = metrics.iter().map(|m| m.doc.as_str()).collect();
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO metrics (name, ts, value, doc) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::float8[], $4::text[]) \
         RETURNING id",
    )
    .bind(names)
    .bind(ts)
    .bind(values)
    .bind(docs)
    .fetch_all(pool)
    .await
    .map_err(|err| match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DbErr::Conn(RuntimeErr::SqlxError(err))
        }
        other => DbErr::Query(RuntimeErr::SqlxError(other)),
    })?;
    ids.sort_unstable();
    Ok(ids)
}
