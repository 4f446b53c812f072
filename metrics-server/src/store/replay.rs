//! Reading committed metrics back in storage order: what a resumable stream replays after a
//! cursor before it switches to live metrics.

use sea_orm::{
    sea_query::{Expr, Order, Query},
    ConnectionTrait, DatabaseConnection,
};

use super::{
    filter::{column, Filter, Resolve},
    schema::Metrics,
    StoreError, StoredMetric,
};
use crate::selection::Selection;

/// Up to `limit` metrics `selection` selects with an id above `after_id`, by id.
pub(super) async fn replay(
    db: &DatabaseConnection,
    selection: &Selection,
    after_id: i64,
    limit: u64,
) -> Result<Vec<StoredMetric>, StoreError> {
    let filter = Filter::new(db, selection, true, Resolve::Ids).await?;
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    let select = Query::select()
        .columns([
            (Metrics::Table, Metrics::Id),
            (Metrics::Table, Metrics::Name),
            (Metrics::Table, Metrics::Doc),
        ])
        .from(Metrics::Table)
        .cond_where(filter.condition())
        .and_where(Expr::col((Metrics::Table, Metrics::Id)).gt(after_id))
        .order_by((Metrics::Table, Metrics::Id), Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(db.get_database_backend().build(&select))
        .await?
        .iter()
        .map(|row| {
            Ok(StoredMetric {
                id: row.try_get_by_index(0)?,
                name: row.try_get_by_index(1)?,
                doc: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// The highest id stored so far, or 0.
pub(super) async fn last_id(db: &DatabaseConnection) -> Result<i64, StoreError> {
    let select = Query::select()
        .expr(Expr::col((Metrics::Table, Metrics::Id)).max())
        .from(Metrics::Table)
        .to_owned();
    let max: Vec<Option<i64>> = column(db, &select).await?;
    Ok(max.into_iter().flatten().next().unwrap_or(0))
}
