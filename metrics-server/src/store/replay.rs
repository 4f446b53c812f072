//! Reading committed metrics back in storage order: what a resumable stream replays after a
//! cursor before it switches to live metrics.

use sea_orm::{
    sea_query::Expr, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{
    entity::{Column, Entity},
    StoreError, StoredMetric,
};
use crate::selection::Selection;

/// Up to `limit` metrics after `filter.after_id`, by id.
pub(super) async fn replay(
    db: &DatabaseConnection,
    filter: &Selection,
    after_id: i64,
    limit: u64,
) -> Result<Vec<StoredMetric>, StoreError> {
    let mut select = Entity::find()
        .select_only()
        .columns([Column::Id, Column::Name, Column::Doc])
        .filter(Expr::col(Column::Id).gt(after_id))
        .order_by_asc(Column::Id)
        .limit(limit);
    if !filter.names.is_empty() {
        select = select.filter(Column::Name.is_in(filter.names.clone()));
    }
    if let Some(start) = filter.start_micros {
        select = select.filter(Expr::col(Column::Ts).gte(start));
    }
    let rows = select.into_tuple::<(i64, String, String)>().all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, doc)| StoredMetric { id, name, doc })
        .collect())
}

/// The highest id stored so far, or 0.
pub(super) async fn last_id(db: &DatabaseConnection) -> Result<i64, StoreError> {
    let max: Option<Option<i64>> = Entity::find()
        .select_only()
        .column_as(Column::Id.max(), "max_id")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?;
    Ok(max.flatten().unwrap_or(0))
}
