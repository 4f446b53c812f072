//! Raw queries: the selected documents in `(ts, id)` order, a page of rows per statement.
//!
//! Keyset paging: each page is the rows strictly after the previous page's last `(ts, id)` in
//! the query's order, up to [`ROWS_PER_PAGE`] (or what is left of the limit). The profile of the
//! row stream showed most of a GET's time spent handing rows over one at a time (sqlx's SQLite
//! worker sends each row through a channel; sea-orm wraps each in a `QueryResult`), so the
//! database joins a page's documents itself and a page is one result row, which also bounds the
//! memory of any query. A page is one statement, so one snapshot; a cursor is a position, not a
//! snapshot, so paging while writes land neither skips nor repeats a row that was there before
//! the first page (a row committed meanwhile shows up if it sorts after the cursor).

use futures::{stream::BoxStream, StreamExt};
use sea_orm::{
    sea_query::{Expr, Order as SqlOrder, Query, SelectStatement},
    ConnectionTrait, DatabaseConnection, Statement,
};

use super::{
    filter::{Filter, Resolve},
    schema::{backend_of, Metrics},
    Backend, Chunk, StoreError,
};
use crate::selection::{Cursor, Order, Page, Selection};

/// Rows per page (per statement, per chunk). At ~100 bytes a row, a page is a few hundred
/// kilobytes.
const ROWS_PER_PAGE: u64 = 4096;

/// Where a query stands between pages.
enum State {
    Start(Selection),
    Paging {
        filter: Box<Filter>,
        after: Option<Cursor>,
        /// Rows still allowed by the limit (`u64::MAX`: none).
        remaining: u64,
    },
    Done,
}

/// The stream of chunks of [`super::MetricStore::query`].
pub(super) fn query(
    db: DatabaseConnection,
    selection: Selection,
    page: Page,
    separator: char,
) -> BoxStream<'static, Result<Chunk, StoreError>> {
    futures::stream::try_unfold(State::Start(selection), move |state| {
        let db = db.clone();
        async move {
            let (filter, after, remaining) = match state {
                State::Done => return Ok(None),
                State::Start(selection) => {
                    let filter = Filter::new(&db, &selection, true, Resolve::Ids).await?;
                    if filter.is_empty() {
                        return Ok(None);
                    }
                    (Box::new(filter), page.after, page.limit.unwrap_or(u64::MAX))
                }
                State::Paging {
                    filter,
                    after,
                    remaining,
                } => (filter, after, remaining),
            };
            let want = remaining.min(ROWS_PER_PAGE);
            if want == 0 {
                return Ok(None);
            }
            let inner = page_rows(&filter, page.order, after, want);
            let statement = joined_page(backend_of(&db)?, &db, &inner, page.order, separator);
            let Some(row) = db.query_one(statement).await? else {
                return Ok(None);
            };
            let text: Option<String> = row.try_get_by_index(0)?;
            let rows: i64 = row.try_get_by_index(1)?;
            let last_ts: Option<i64> = row.try_get_by_index(2)?;
            let last_id: Option<i64> = row.try_get_by_index(3)?;
            let (Some(text), Some(ts_micros), Some(id)) = (text, last_ts, last_id) else {
                return Ok(None);
            };
            let rows = u64::try_from(rows).unwrap_or_default();
            let last = Cursor { ts_micros, id };
            let next = if rows < want {
                State::Done
            } else {
                State::Paging {
                    filter,
                    after: Some(last),
                    remaining: remaining.saturating_sub(rows),
                }
            };
            Ok(Some((Chunk { text, rows, last }, next)))
        }
    })
    .boxed()
}

/// `SELECT ts, id, doc` of up to `want` rows after `after`, in `order`.
fn page_rows(filter: &Filter, order: Order, after: Option<Cursor>, want: u64) -> SelectStatement {
    let mut condition = filter.condition();
    if let Some(after) = after {
        let key = Expr::tuple([
            Expr::col((Metrics::Table, Metrics::Ts)).into(),
            Expr::col((Metrics::Table, Metrics::Id)).into(),
        ]);
        let at = Expr::tuple([
            Expr::val(after.ts_micros).into(),
            Expr::val(after.id).into(),
        ]);
        condition = condition.add(match order {
            Order::Asc => key.gt(at),
            Order::Desc => key.lt(at),
        });
    }
    let direction = sql_order(order);
    Query::select()
        .columns([
            (Metrics::Table, Metrics::Ts),
            (Metrics::Table, Metrics::Id),
            (Metrics::Table, Metrics::Doc),
        ])
        .from(Metrics::Table)
        .cond_where(condition)
        .order_by((Metrics::Table, Metrics::Ts), direction.clone())
        .order_by((Metrics::Table, Metrics::Id), direction)
        .limit(want)
        .to_owned()
}

fn sql_order(order: Order) -> SqlOrder {
    match order {
        Order::Asc => SqlOrder::Asc,
        Order::Desc => SqlOrder::Desc,
    }
}

/// One row for a page: its documents joined by `separator` in `order`, how many, and the last
/// row's `ts` and `id`.
///
/// This is the one statement of the read path sea-query does not build: the ordered string
/// aggregate is spelled differently by each backend (`string_agg` in PostgreSQL, `group_concat`
/// with `ORDER BY`, SQLite 3.44+). The page itself (`inner`) is built by sea-query; this wraps
/// it in a common table expression read three times, which both backends materialise once.
fn joined_page(
    backend: Backend,
    db: &DatabaseConnection,
    inner: &SelectStatement,
    order: Order,
    separator: char,
) -> Statement {
    let built = db.get_database_backend().build(inner);
    let (forward, backward) = match order {
        Order::Asc => ("ts, id", "ts DESC, id DESC"),
        Order::Desc => ("ts DESC, id DESC", "ts, id"),
    };
    // A SQL string literal: quotes doubled; no backslash escapes on either backend.
    let separator = format!("'{}'", separator.to_string().replace('\'', "''"));
    let joined = match backend {
        Backend::Postgres => format!("string_agg(doc, {separator} ORDER BY {forward})"),
        Backend::Sqlite => format!("group_concat(doc, {separator} ORDER BY {forward})"),
    };
    let sql = format!(
        "WITH page AS ({inner}) SELECT {joined}, count(*), \
         (SELECT ts FROM page ORDER BY {backward} LIMIT 1), \
         (SELECT id FROM page ORDER BY {backward} LIMIT 1) FROM page",
        inner = built.sql,
    );
    Statement::from_sql_and_values(
        built.db_backend,
        sql,
        built.values.map(|values| values.0).unwrap_or_default(),
    )
}
