//! [`SqlStore`]: the [`MetricStore`] over sea-orm, for PostgreSQL and SQLite alike.

use futures::{stream::BoxStream, StreamExt};
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, RuntimeErr, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
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

/// Rows per page of [`SqlStore::query_chunks`]: one statement, one result row, one chunk of the
/// answer each. At ~100 bytes a row, a page is a few hundred kilobytes, which bounds the memory
/// of any query.
const ROWS_PER_PAGE: i64 = 4096;

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

    fn query_chunks(&self, filter: MetricFilter) -> BoxStream<'static, Result<String, StoreError>> {
        let db = self.db.clone();
        // Keyset pagination over (ts, id): each page starts after the last row of the previous
        // one and the database joins the page's documents itself. The profile of the row stream
        // showed most of a GET's time spent handing rows over one at a time (sqlx's SQLite
        // worker sends each row through a channel; sea-orm wraps each in a QueryResult); a page
        // is one row. A small answer is one statement, so one snapshot; a large one is read a
        // page at a time, so its pages may include rows committed meanwhile after the cursor.
        futures::stream::try_unfold(Some(None), move |cursor: Option<Option<(i64, i64)>>| {
            let (db, filter) = (db.clone(), filter.clone());
            async move {
                let Some(after) = cursor else { return Ok(None) };
                let statement = page_statement(db.get_database_backend(), &filter, after);
                let Some(row) = db.query_one(statement).await? else {
                    return Ok(None);
                };
                let docs: String = row.try_get_by_index(0)?;
                let count: i64 = row.try_get_by_index(1)?;
                let last = (row.try_get_by_index(2)?, row.try_get_by_index(3)?);
                let next = (count >= ROWS_PER_PAGE).then_some(Some(last));
                Ok(Some((docs, next)))
            }
        })
        .boxed()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }
}

/// One page of a query: the documents of up to [`ROWS_PER_PAGE`] rows after `after` (in
/// `(ts, id)` order) joined by commas, how many there are, and the last row's `ts` and `id`.
/// No page left: no row.
fn page_statement(
    backend: DbBackend,
    filter: &MetricFilter,
    after: Option<(i64, i64)>,
) -> Statement {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut bind = |value: sea_orm::Value| {
        values.push(value);
        match backend {
            DbBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_owned(),
        }
    };
    let mut conditions = Vec::new();
    if !filter.names.is_empty() {
        let names: Vec<String> = filter.names.iter().map(|n| bind(n.as_str().into())).collect();
        conditions.push(format!("name IN ({})", names.join(", ")));
    }
    if let Some(start) = filter.start_micros {
        conditions.push(format!("ts >= {}", bind(start.into())));
    }
    if let Some(end) = filter.end_micros {
        conditions.push(format!("ts <= {}", bind(end.into())));
    }
    if let Some((ts, id)) = after {
        let (ts, id) = (bind(ts.into()), bind(id.into()));
        conditions.push(format!("(ts, id) > ({ts}, {id})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let join = match backend {
        DbBackend::Postgres => "string_agg(doc, ',' ORDER BY ts, id)",
        _ => "group_concat(doc, ',' ORDER BY ts, id)",
    };
    let sql = format!(
        "WITH page AS MATERIALIZED (\
           SELECT ts, id, doc FROM metrics {filter} ORDER BY ts, id LIMIT {ROWS_PER_PAGE}) \
         SELECT (SELECT {join} FROM page), (SELECT count(*) FROM page), last.ts, last.id \
         FROM (SELECT ts, id FROM page ORDER BY ts DESC, id DESC LIMIT 1) AS last"
    );
    Statement::from_sql_and_values(backend, sql, values)
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
