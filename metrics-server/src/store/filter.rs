//! A [`Selection`] turned into conditions on the tables: names and the time range on `metrics`,
//! tag matchers on the series catalog.
//!
//! A tag matcher selects series, never documents: for key `k`, a series passes when the text of
//! its `k` (`""` when it has none: empty texts have no `series_tags` row) satisfies the matcher.
//! When an absent tag satisfies it ([`MatchOp::matches_absent`]), the series pass unless they
//! have a row for `k` whose value fails (`NOT IN`); otherwise they must have a row whose value
//! passes (`IN`). Both probe the `(key, value_sha, series_id)` index. A regular expression is
//! resolved in Rust against the distinct values the catalog holds for its key, so both backends
//! match with the same engine (RE2-like, anchored) on the same texts.

use migrations::digest;
use sea_orm::{
    sea_query::{Condition, Expr, Query, SelectStatement, SimpleExpr},
    ConnectionTrait, DatabaseConnection, DbBackend,
};

use super::{
    schema::{quote, Metrics, Series, SeriesTags},
    StoreError,
};
use crate::selection::{MatchOp, Selection};

/// The most series ids a query lists in its statement; beyond, it names them by a subquery.
const MAX_LISTED_SERIES: u64 = 1000;

/// The series a selection's names and tag matchers allow.
#[derive(Debug, Clone)]
pub(super) enum SeriesSet {
    /// These ids, resolved before the statement: the planner sees constants and walks the
    /// `(series_id, ts, id)` index of each.
    Ids(Vec<i64>),
    /// The ids this subquery yields.
    Query(Box<SelectStatement>),
}

/// A selection as conditions on `metrics`.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    names: Vec<String>,
    start_micros: Option<i64>,
    end_micros: Option<i64>,
    /// `None`: no tag matchers, every series of the names.
    series: Option<SeriesSet>,
}

/// Whether to resolve the series ids before the statement ([`SeriesSet::Ids`] when there are
/// few) or to leave them to a subquery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolve {
    /// Read the ids first: for queries that walk `metrics` in `(ts, id)` order.
    Ids,
    /// One statement: for deletes and counts.
    Subquery,
}

impl Filter {
    /// The conditions of `selection`; `with_range`: whether its time range applies.
    pub(super) async fn new(
        db: &DatabaseConnection,
        selection: &Selection,
        with_range: bool,
        resolve: Resolve,
    ) -> Result<Filter, StoreError> {
        let series = if selection.tags.is_empty() {
            None
        } else {
            let query = Query::select()
                .column((Series::Table, Series::Id))
                .from(Series::Table)
                .cond_where(series_condition(db, selection).await?)
                .to_owned();
            Some(match resolve {
                Resolve::Subquery => SeriesSet::Query(Box::new(query)),
                Resolve::Ids => {
                    let limited = query.clone().limit(MAX_LISTED_SERIES + 1).to_owned();
                    let ids = column::<i64>(db, &limited).await?;
                    if ids.len() as u64 > MAX_LISTED_SERIES {
                        SeriesSet::Query(Box::new(query))
                    } else {
                        SeriesSet::Ids(ids)
                    }
                }
            })
        };
        Ok(Filter {
            names: selection.names.clone(),
            start_micros: selection.start_micros.filter(|_| with_range),
            end_micros: selection.end_micros.filter(|_| with_range),
            series,
        })
    }

    /// Whether no metric can pass (tag matchers that no series satisfies).
    pub(super) fn is_empty(&self) -> bool {
        matches!(&self.series, Some(SeriesSet::Ids(ids)) if ids.is_empty())
    }

    /// The conditions on `metrics`.
    pub(super) fn condition(&self) -> Condition {
        let mut condition = Condition::all();
        // Listed series imply their names.
        if !self.names.is_empty() && !matches!(self.series, Some(SeriesSet::Ids(_))) {
            condition = condition
                .add(Expr::col((Metrics::Table, Metrics::Name)).is_in(self.names.iter().cloned()));
        }
        if let Some(start) = self.start_micros {
            condition = condition.add(Expr::col((Metrics::Table, Metrics::Ts)).gte(start));
        }
        if let Some(end) = self.end_micros {
            condition = condition.add(Expr::col((Metrics::Table, Metrics::Ts)).lte(end));
        }
        let series = Expr::col((Metrics::Table, Metrics::SeriesId));
        match &self.series {
            None => {}
            Some(SeriesSet::Ids(ids)) => condition = condition.add(series.is_in(ids.clone())),
            Some(SeriesSet::Query(query)) => {
                condition = condition.add(series.in_subquery(query.as_ref().clone()));
            }
        }
        condition
    }
}

/// The conditions on `series` (columns qualified) that `selection`'s names and tag matchers
/// set; its time range is not a property of series.
pub(super) async fn series_condition(
    db: &DatabaseConnection,
    selection: &Selection,
) -> Result<Condition, StoreError> {
    let mut condition = Condition::all();
    if !selection.names.is_empty() {
        condition = condition
            .add(Expr::col((Series::Table, Series::Name)).is_in(selection.names.iter().cloned()));
    }
    for matcher in &selection.tags {
        // Whether a stored (non-empty) value of the key passes.
        let passes: SimpleExpr = match &matcher.op {
            MatchOp::Equal(values) => {
                Expr::col(SeriesTags::ValueSha).is_in(values.iter().map(|v| digest(v)))
            }
            MatchOp::NotEqual(value) => Expr::col(SeriesTags::ValueSha).ne(digest(value)),
            MatchOp::Regex(_) | MatchOp::NotRegex(_) => {
                let known = Query::select()
                    .distinct()
                    .column(SeriesTags::Value)
                    .from(SeriesTags::Table)
                    .and_where(Expr::col(SeriesTags::Key).eq(quote(&matcher.key)))
                    .to_owned();
                let passing: Vec<String> = unquoted(column::<String>(db, &known).await?)?
                    .into_iter()
                    .filter(|value| matcher.op.matches(value))
                    .map(|value| digest(&value))
                    .collect();
                Expr::col(SeriesTags::ValueSha).is_in(passing)
            }
        };
        let absent_passes = matcher.op.matches_absent();
        let tagged = Query::select()
            .column(SeriesTags::SeriesId)
            .from(SeriesTags::Table)
            .and_where(Expr::col(SeriesTags::Key).eq(quote(&matcher.key)))
            .and_where(if absent_passes { passes.not() } else { passes })
            .to_owned();
        let id = Expr::col((Series::Table, Series::Id));
        condition = condition.add(if absent_passes {
            id.not_in_subquery(tagged)
        } else {
            id.in_subquery(tagged)
        });
    }
    Ok(condition)
}

/// Texts of `series_tags` (JSON strings) as they were tagged.
pub(super) fn unquoted(quoted: Vec<String>) -> Result<Vec<String>, StoreError> {
    quoted
        .iter()
        .map(|text| {
            serde_json::from_str(text).map_err(|err| StoreError::Database(std::sync::Arc::new(err)))
        })
        .collect()
}

/// The first column of every row `select` yields.
pub(super) async fn column<T: sea_orm::TryGetable>(
    db: &DatabaseConnection,
    select: &SelectStatement,
) -> Result<Vec<T>, StoreError> {
    let backend: DbBackend = db.get_database_backend();
    db.query_all(backend.build(select))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<T>(0).map_err(StoreError::from))
        .collect()
}
