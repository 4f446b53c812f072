//! Writes made at most once per `Idempotency-Key`: the metrics and the key in one transaction.
//!
//! The key is looked up and recorded inside the transaction that stores the metrics, so either
//! both are committed or neither is: a retry after a lost answer finds the key and stores nothing,
//! and a retry after a failed write stores the batch. Keys older than the window are deleted on
//! the way, which is what bounds the table.

use sea_orm::{
    sea_query::{Alias, Expr, Query},
    ConnectionTrait, DatabaseConnection, TransactionTrait,
};

use super::{
    entity::{Column, Entity},
    NewMetric, OnceOutcome, StoreError,
};

/// Rows per INSERT statement (see `sql.rs`: 4 parameters each stays under every backend's limit).
const ROWS_PER_STATEMENT: usize = 1000;

pub(super) async fn insert_once(
    db: &DatabaseConnection,
    key: &str,
    window_micros: i64,
    metrics: &[&NewMetric],
) -> Result<OnceOutcome, StoreError> {
    let table = Alias::new("idempotency_keys");
    let key_col = Alias::new("key");
    let created_col = Alias::new("created_micros");
    let stored_col = Alias::new("stored");
    let now = chrono::Utc::now().timestamp_micros();
    let backend = db.get_database_backend();
    let txn = db.begin().await?;

    let forget = Query::delete()
        .from_table(table.clone())
        .and_where(Expr::col(created_col.clone()).lt(now.saturating_sub(window_micros)))
        .to_owned();
    txn.execute(backend.build(&forget)).await?;

    let seen = Query::select()
        .column(stored_col.clone())
        .from(table.clone())
        .and_where(Expr::col(key_col.clone()).eq(key))
        .to_owned();
    if let Some(row) = txn.query_one(backend.build(&seen)).await? {
        let stored: i64 = row.try_get_by_index(0)?;
        txn.commit().await?;
        return Ok(OnceOutcome::Repeated {
            stored: u64::try_from(stored).unwrap_or(0),
        });
    }

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
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }

    let remember = Query::insert()
        .into_table(table)
        .columns([key_col, created_col, stored_col])
        .values_panic([key.into(), now.into(), (ids.len() as i64).into()])
        .to_owned();
    txn.execute(backend.build(&remember)).await?;
    txn.commit().await?;
    Ok(OnceOutcome::Stored(ids))
}
