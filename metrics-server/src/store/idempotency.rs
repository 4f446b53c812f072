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

use super::{NewMetric, OnceOutcome, StoreError};

/// Stores `metrics` unless `key` was recorded within the last `window_micros`, in which case it
/// stores nothing and returns what the first write stored.
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

    let ids = super::sql::insert_rows(&txn, metrics).await?;

    let remember = Query::insert()
        .into_table(table)
        .columns([key_col, created_col, stored_col])
        .values_panic([key.into(), now.into(), (ids.len() as i64).into()])
        .to_owned();
    txn.execute(backend.build(&remember)).await?;
    txn.commit().await?;
    Ok(OnceOutcome::Stored(ids))
}
