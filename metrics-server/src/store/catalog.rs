//! The catalog: names with their counts, spans and tag keys; tag keys; tag values. Tag keys and
//! values come from the series catalog kept at ingest, never from the documents; a series counts
//! only while it still has a metric (one probe of the `(series_id, ts, id)` index each), so what
//! was deleted leaves the catalog too. Everything is sorted in Rust, by bytes, so both backends
//! answer in the same order whatever PostgreSQL's collation.

use std::collections::BTreeMap;

use sea_orm::{
    sea_query::{Expr, Query, SelectStatement},
    ConnectionTrait, DatabaseConnection,
};

use super::{
    filter::{column, series_condition, unquoted, Filter, Resolve},
    schema::{quote, Metrics, Series, SeriesTags},
    NameStats, StoreError,
};
use crate::selection::Selection;

/// [`super::MetricStore::names`].
pub(super) async fn names(
    db: &DatabaseConnection,
    selection: &Selection,
) -> Result<Vec<NameStats>, StoreError> {
    let filter = Filter::new(db, selection, false, Resolve::Subquery).await?;
    // One pass over the (name, ts, id) index: MIN/MAX per name come from its ends.
    let counts = Query::select()
        .column((Metrics::Table, Metrics::Name))
        .expr(Expr::col((Metrics::Table, Metrics::Id)).count())
        .expr(Expr::col((Metrics::Table, Metrics::Ts)).min())
        .expr(Expr::col((Metrics::Table, Metrics::Ts)).max())
        .from(Metrics::Table)
        .cond_where(filter.condition())
        .group_by_col((Metrics::Table, Metrics::Name))
        .to_owned();
    let rows = db
        .query_all(db.get_database_backend().build(&counts))
        .await?;
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let pairs = live_series(db, selection)
        .await?
        .column((Series::Table, Series::Name))
        .column((SeriesTags::Table, SeriesTags::Key))
        .distinct()
        .to_owned();
    for row in db
        .query_all(db.get_database_backend().build(&pairs))
        .await?
    {
        let name: String = row.try_get_by_index(0)?;
        let key: String = row.try_get_by_index(1)?;
        keys.entry(name).or_default().push(key);
    }
    let mut names = rows
        .iter()
        .map(|row| {
            let name: String = row.try_get_by_index(0)?;
            let count: i64 = row.try_get_by_index(1)?;
            let mut tag_keys = unquoted(keys.remove(&name).unwrap_or_default())?;
            tag_keys.sort_unstable();
            Ok(NameStats {
                count: u64::try_from(count).unwrap_or_default(),
                first_micros: row.try_get_by_index(2)?,
                last_micros: row.try_get_by_index(3)?,
                tag_keys,
                name,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    names.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(names)
}

/// [`super::MetricStore::tag_keys`].
pub(super) async fn tag_keys(
    db: &DatabaseConnection,
    selection: &Selection,
) -> Result<Vec<String>, StoreError> {
    let select = live_series(db, selection)
        .await?
        .column((SeriesTags::Table, SeriesTags::Key))
        .distinct()
        .to_owned();
    sorted(column(db, &select).await?)
}

/// [`super::MetricStore::tag_values`].
pub(super) async fn tag_values(
    db: &DatabaseConnection,
    key: &str,
    selection: &Selection,
) -> Result<Vec<String>, StoreError> {
    let select = live_series(db, selection)
        .await?
        .column((SeriesTags::Table, SeriesTags::Value))
        .and_where(Expr::col((SeriesTags::Table, SeriesTags::Key)).eq(quote(key)))
        .distinct()
        .to_owned();
    sorted(column(db, &select).await?)
}

/// Quoted texts of `series_tags`, unquoted and sorted.
fn sorted(quoted: Vec<String>) -> Result<Vec<String>, StoreError> {
    let mut texts = unquoted(quoted)?;
    texts.sort_unstable();
    Ok(texts)
}

/// `FROM series JOIN series_tags` restricted to the series `selection` selects that still have
/// a metric; the caller picks the columns.
async fn live_series(
    db: &DatabaseConnection,
    selection: &Selection,
) -> Result<SelectStatement, StoreError> {
    let has_metrics = Query::select()
        .expr(Expr::val(1))
        .from(Metrics::Table)
        .and_where(
            Expr::col((Metrics::Table, Metrics::SeriesId)).equals((Series::Table, Series::Id)),
        )
        .to_owned();
    Ok(Query::select()
        .from(Series::Table)
        .inner_join(
            SeriesTags::Table,
            Expr::col((SeriesTags::Table, SeriesTags::SeriesId))
                .equals((Series::Table, Series::Id)),
        )
        .cond_where(series_condition(db, selection).await?)
        .and_where(Expr::exists(has_metrics))
        .to_owned())
}
