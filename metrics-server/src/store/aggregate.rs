//! Aggregation in the database: one statement groups the selected metrics by name, the values of
//! the `by` keys (joined from the series catalog) and bucket, and computes every function; Rust
//! only groups the result rows into series, interpolates percentiles between the two ranks the
//! database found, and fills empty buckets (see [`crate::aggregation`] for the rules).
//!
//! The statement is the same text on both backends. Its rows (`picked`) are built by sea-query:
//! the selection's conditions, `LEFT JOIN series_tags` once per `by` key, and the bucket start
//! `ts - ((ts - offset) % step + step) % step` (integer arithmetic, a floor before the epoch too;
//! both backends' `%` keeps the dividend's sign). The aggregate around it is a string, as in
//! `query.rs`, because sea-query 0.32 builds neither the window clauses nor `NULLS FIRST` in
//! `PARTITION`/`ORDER BY` of a CTE: when `first`, `last`, `stddev` or a percentile is asked, a
//! window layer numbers each bucket's numbers by value and by `(ts, id)` and takes their count
//! and mean (partitioned by bucket *and* by whether the value is a number, so non-numeric
//! metrics never take a rank), and the `GROUP BY` picks the ranks it needs. Only the numbers the
//! statement computes cross the wire, a row per bucket, streamed: memory stays bounded however
//! many metrics are aggregated (the databases sort and group on disk when they must).

use std::collections::BTreeMap;

use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use sea_orm::{
    sea_query::{Alias, Expr, JoinType, Query, SelectStatement},
    ConnectionTrait, DatabaseConnection, QueryResult, Statement, StreamTrait,
};
use tokio::sync::mpsc;

use super::{
    filter::{unquoted, Filter, Resolve},
    schema::{quote, Metrics, SeriesTags},
    StoreError,
};
use crate::{
    aggregation::{AggSeries, Aggregation, Bucket, Function, MAX_BUCKETS},
    selection::Selection,
};

/// Series handed over ahead of the reader: bounds what waits in memory.
const SERIES_AHEAD: usize = 4;

/// What [`super::MetricStore::aggregate`] answers.
pub enum Aggregated {
    /// The grid would have more than [`MAX_BUCKETS`] buckets per series.
    TooManyBuckets {
        /// How many it would have.
        buckets: u64,
        /// The span of time they cover, in microseconds.
        span_micros: i64,
    },
    /// The series, by name then by the `by` values (absent first), streamed.
    Series(BoxStream<'static, Result<AggSeries, StoreError>>),
}

impl std::fmt::Debug for Aggregated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregated::TooManyBuckets {
                buckets,
                span_micros,
            } => f
                .debug_struct("TooManyBuckets")
                .field("buckets", buckets)
                .field("span_micros", span_micros)
                .finish(),
            Aggregated::Series(_) => f.write_str("Series(..)"),
        }
    }
}

/// [`super::MetricStore::aggregate`].
pub(super) async fn aggregate(
    db: &DatabaseConnection,
    selection: &Selection,
    aggregation: &Aggregation,
) -> Result<Aggregated, StoreError> {
    let filter = Filter::new(db, selection, true, Resolve::Ids).await?;
    if filter.is_empty() {
        return Ok(Aggregated::Series(futures::stream::empty().boxed()));
    }
    // The grid: from the bucket of `sts` (else of the first metric) to that of `ets` (else of
    // the last metric).
    let (first, last) = match (selection.start_micros, selection.end_micros) {
        (Some(start), Some(end)) => (start, end),
        (start, end) => {
            let span = Query::select()
                .expr(Expr::col((Metrics::Table, Metrics::Ts)).min())
                .expr(Expr::col((Metrics::Table, Metrics::Ts)).max())
                .from(Metrics::Table)
                .cond_where(filter.condition())
                .to_owned();
            let row = db.query_one(db.get_database_backend().build(&span)).await?;
            let (min, max) = match row {
                Some(row) => (
                    row.try_get_by_index::<Option<i64>>(0)?,
                    row.try_get_by_index::<Option<i64>>(1)?,
                ),
                None => (None, None),
            };
            let (Some(min), Some(max)) = (min, max) else {
                return Ok(Aggregated::Series(futures::stream::empty().boxed()));
            };
            (start.unwrap_or(min), end.unwrap_or(max))
        }
    };
    let buckets = aggregation.buckets_between(first, last);
    if buckets > MAX_BUCKETS {
        return Ok(Aggregated::TooManyBuckets {
            buckets,
            span_micros: last.saturating_sub(first),
        });
    }
    let grid = (aggregation.bucket_of(first), aggregation.bucket_of(last));
    let statement = statement(db, &filter, aggregation);
    let (tx, rx) = mpsc::channel(SERIES_AHEAD);
    let db = db.clone();
    let aggregation = aggregation.clone();
    tokio::spawn(async move {
        if let Err(err) = read_series(&db, statement, &aggregation, grid, &tx).await {
            let _ = tx.send(Err(err)).await;
        }
    });
    Ok(Aggregated::Series(
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed(),
    ))
}

/// Whether the statement needs the window layer.
fn needs_windows(aggregation: &Aggregation) -> bool {
    aggregation.functions.iter().any(|f| {
        matches!(
            f,
            Function::First | Function::Last | Function::Stddev | Function::Percentile(_)
        )
    })
}

/// The rows to aggregate: `name, g0.., bucket, ts, id, value`.
fn rows(filter: &Filter, aggregation: &Aggregation) -> SelectStatement {
    let step = aggregation.step_micros;
    let offset = aggregation.offset_micros.rem_euclid(step);
    let mut select = Query::select();
    select
        .expr_as(
            Expr::col((Metrics::Table, Metrics::Name)),
            Alias::new("name"),
        )
        .from(Metrics::Table);
    for (i, key) in aggregation.by.iter().enumerate() {
        let tags = Alias::new(format!("t{i}"));
        select
            .expr_as(
                Expr::col((tags.clone(), SeriesTags::Value)),
                Alias::new(format!("g{i}")),
            )
            .join_as(
                JoinType::LeftJoin,
                SeriesTags::Table,
                tags.clone(),
                Expr::col((tags.clone(), SeriesTags::SeriesId))
                    .equals((Metrics::Table, Metrics::SeriesId))
                    .and(Expr::col((tags, SeriesTags::Key)).eq(quote(key))),
            );
    }
    // Integers the server computed, never client text.
    let bucket =
        format!(r#""metrics"."ts" - (("metrics"."ts" - {offset}) % {step} + {step}) % {step}"#);
    select
        .expr_as(Expr::cust(bucket), Alias::new("bucket"))
        .expr_as(Expr::col((Metrics::Table, Metrics::Ts)), Alias::new("ts"))
        .expr_as(Expr::col((Metrics::Table, Metrics::Id)), Alias::new("id"))
        .expr_as(
            Expr::col((Metrics::Table, Metrics::Value)),
            Alias::new("value"),
        )
        .cond_where(filter.condition());
    select.to_owned()
}

/// The whole statement: one row per series and bucket, `name, g0.., bucket, count(*),
/// count(value)`, then per function one column (two for a percentile: the numbers at its low
/// and high ranks).
fn statement(db: &DatabaseConnection, filter: &Filter, aggregation: &Aggregation) -> Statement {
    let built = db.get_database_backend().build(&rows(filter, aggregation));
    let groups: Vec<String> = std::iter::once("name".to_owned())
        .chain((0..aggregation.by.len()).map(|i| format!("g{i}")))
        .collect();
    let group_list = groups.join(", ");
    let order_list: Vec<String> = groups
        .iter()
        .map(|g| format!("{g} NULLS FIRST"))
        .chain(std::iter::once("bucket".to_owned()))
        .collect();
    let numeric = "value IS NOT NULL";
    let mut columns = vec!["count(*)".to_owned(), "count(value)".to_owned()];
    for function in &aggregation.functions {
        match function {
            Function::Count => columns.push("count(*)".to_owned()),
            Function::Sum => columns.push("sum(value)".to_owned()),
            Function::Avg => columns.push("avg(value)".to_owned()),
            Function::Min => columns.push("min(value)".to_owned()),
            Function::Max => columns.push("max(value)".to_owned()),
            Function::First => columns.push(format!(
                "max(CASE WHEN {numeric} AND rf = 1 THEN value END)"
            )),
            Function::Last => columns.push(format!(
                "max(CASE WHEN {numeric} AND rl = 1 THEN value END)"
            )),
            Function::Stddev => columns.push(format!(
                "sum(CASE WHEN {numeric} THEN (value - mean) * (value - mean) END)"
            )),
            Function::Percentile(p) => {
                let (num, den) = (p.numerator, p.denominator);
                columns.push(format!(
                    "max(CASE WHEN {numeric} AND rv = 1 + ((nv - 1) * {num}) / {den} \
                     THEN value END)"
                ));
                columns.push(format!(
                    "max(CASE WHEN {numeric} AND rv = 1 + ((nv - 1) * {num} + {den} - 1) / {den} \
                     THEN value END)"
                ));
            }
        }
    }
    let source = if needs_windows(aggregation) {
        let partition = format!("PARTITION BY {group_list}, bucket, value IS NULL");
        format!(
            "(SELECT picked.*, \
             row_number() OVER ({partition} ORDER BY value, id) AS rv, \
             row_number() OVER ({partition} ORDER BY ts, id) AS rf, \
             row_number() OVER ({partition} ORDER BY ts DESC, id DESC) AS rl, \
             count(*) OVER ({partition}) AS nv, \
             avg(value) OVER ({partition}) AS mean \
             FROM picked) AS numbered"
        )
    } else {
        "picked".to_owned()
    };
    let sql = format!(
        "WITH picked AS ({inner}) SELECT {group_list}, bucket, {columns} FROM {source} \
         GROUP BY {group_list}, bucket ORDER BY {order}",
        inner = built.sql,
        columns = columns.join(", "),
        order = order_list.join(", "),
    );
    Statement::from_sql_and_values(
        built.db_backend,
        sql,
        built.values.map(|values| values.0).unwrap_or_default(),
    )
}

/// A series being read: its key and buckets so far.
struct Current {
    name: String,
    keys: Vec<Option<String>>,
    buckets: Vec<Bucket>,
}

/// Runs the statement and sends each series, filled, as soon as its last bucket is read.
async fn read_series(
    db: &DatabaseConnection,
    statement: Statement,
    aggregation: &Aggregation,
    grid: (i64, i64),
    tx: &mpsc::Sender<Result<AggSeries, StoreError>>,
) -> Result<(), StoreError> {
    let mut rows = db.stream(statement).await?;
    let mut current: Option<Current> = None;
    while let Some(row) = rows.try_next().await? {
        let (name, keys, bucket) = read_row(&row, aggregation)?;
        match &mut current {
            Some(c) if c.name == name && c.keys == keys => c.buckets.push(bucket),
            _ => {
                if let Some(done) = current.take() {
                    if tx.send(Ok(finish(done, aggregation, grid))).await.is_err() {
                        return Ok(());
                    }
                }
                current = Some(Current {
                    name,
                    keys,
                    buckets: vec![bucket],
                });
            }
        }
    }
    if let Some(done) = current {
        let _ = tx.send(Ok(finish(done, aggregation, grid))).await;
    }
    Ok(())
}

fn finish(current: Current, aggregation: &Aggregation, grid: (i64, i64)) -> AggSeries {
    let tags: BTreeMap<String, String> = aggregation
        .by
        .iter()
        .zip(current.keys)
        .filter_map(|(key, value)| value.map(|v| (key.clone(), v)))
        .collect();
    AggSeries::filled(current.name, tags, current.buckets, aggregation, Some(grid))
}

/// One result row: the series key and the bucket.
fn read_row(
    row: &QueryResult,
    aggregation: &Aggregation,
) -> Result<(String, Vec<Option<String>>, Bucket), StoreError> {
    let mut at = 0;
    let mut next = || {
        at += 1;
        at - 1
    };
    let name: String = row.try_get_by_index(next())?;
    let mut keys = Vec::with_capacity(aggregation.by.len());
    for _ in &aggregation.by {
        // The catalog keeps tag texts as JSON strings (`"web-1"`).
        let quoted: Option<String> = row.try_get_by_index(next())?;
        keys.push(match quoted {
            Some(text) => Some(unquoted(vec![text])?.remove(0)),
            None => None,
        });
    }
    let start_micros: i64 = row.try_get_by_index(next())?;
    let count: i64 = row.try_get_by_index(next())?;
    let numbers: i64 = row.try_get_by_index(next())?;
    let mut values = Vec::with_capacity(aggregation.functions.len());
    for function in &aggregation.functions {
        let value = match function {
            Function::Count => Some(row.try_get_by_index::<i64>(next())? as f64),
            Function::Stddev => {
                let squares: Option<f64> = row.try_get_by_index(next())?;
                squares
                    .filter(|_| numbers > 0)
                    .map(|s| (s / numbers as f64).max(0.0).sqrt())
            }
            Function::Percentile(p) => {
                let low: Option<f64> = row.try_get_by_index(next())?;
                let high: Option<f64> = row.try_get_by_index(next())?;
                match (low, high) {
                    (Some(low), Some(high)) if numbers > 0 => {
                        Some(p.interpolate(numbers, low, high))
                    }
                    _ => None,
                }
            }
            _ => row.try_get_by_index::<Option<f64>>(next())?,
        };
        values.push(value);
    }
    Ok((
        name,
        keys,
        Bucket {
            start_micros,
            count: u64::try_from(count).unwrap_or_default(),
            non_numeric: u64::try_from(count - numbers).unwrap_or_default(),
            values,
        },
    ))
}
