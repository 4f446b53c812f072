//! Deleting: what a selection selects, in one statement (one transaction); and what a retention
//! rule expires, a bounded batch per statement so that the write lock is held briefly.
//!
//! Series rows are kept when their last metric goes: their ids stay valid in every server's
//! cache of series (a deleted series row would leave new metrics pointing at nothing), and the
//! catalog lists only series that still have metrics, so nothing deleted shows anywhere.

use sea_orm::{
    sea_query::{Condition, Expr, Func, Query},
    ConnectionTrait, DatabaseConnection,
};

use super::{
    filter::{Filter, Resolve},
    schema::Metrics,
    RetentionRule, StoreError,
};
use crate::selection::Selection;

/// [`super::MetricStore::delete`].
pub(super) async fn delete(
    db: &DatabaseConnection,
    selection: &Selection,
) -> Result<u64, StoreError> {
    let filter = Filter::new(db, selection, true, Resolve::Subquery).await?;
    let delete = Query::delete()
        .from_table(Metrics::Table)
        .cond_where(filter.condition())
        .to_owned();
    Ok(db
        .execute(db.get_database_backend().build(&delete))
        .await?
        .rows_affected())
}

/// [`super::MetricStore::delete_expired`]: the ids of at most `max_rows` expired metrics (found
/// through the `(ts, id)` index), deleted by one statement.
pub(super) async fn delete_expired(
    db: &DatabaseConnection,
    rule: &RetentionRule,
    max_rows: u64,
) -> Result<u64, StoreError> {
    let mut condition =
        Condition::all().add(Expr::col((Metrics::Table, Metrics::Ts)).lt(rule.before_micros));
    if !rule.prefix.is_empty() {
        condition = condition.add(starts_with(&rule.prefix));
    }
    for except in &rule.except {
        condition = condition.add(starts_with(except).not());
    }
    let expired = Query::select()
        .column((Metrics::Table, Metrics::Id))
        .from(Metrics::Table)
        .cond_where(condition)
        .limit(max_rows)
        .to_owned();
    let delete = Query::delete()
        .from_table(Metrics::Table)
        .and_where(Expr::col((Metrics::Table, Metrics::Id)).in_subquery(expired))
        .to_owned();
    Ok(db
        .execute(db.get_database_backend().build(&delete))
        .await?
        .rows_affected())
}

/// `substr(name, 1, n) = prefix`: exact and case-sensitive on both backends (unlike SQLite's
/// `LIKE`), counting characters on both.
fn starts_with(prefix: &str) -> sea_orm::sea_query::SimpleExpr {
    let chars = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    Expr::expr(
        Func::cust(sea_orm::sea_query::Alias::new("substr"))
            .arg(Expr::col((Metrics::Table, Metrics::Name)))
            .arg(1_i32)
            .arg(chars),
    )
    .eq(prefix)
}
