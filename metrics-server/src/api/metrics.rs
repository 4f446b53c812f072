//! `POST /v1/metrics`, `GET /v1/metrics` (filters, paging, formats) and `DELETE /v1/metrics`.

use std::pin::Pin;

use futures::{stream, StreamExt, TryStreamExt};
use metrics_types::{DeleteResponse, PostMetricsResponse};
use poem::Request;
use poem_openapi::{
    param::{Header, Query},
    payload::Json,
    OpenApi,
};

use super::{
    aggregate,
    answer::{self, Format, MetricsAnswer},
    body::MetricsBody,
    error::ApiError,
    param_types::{
        AllParam, ColumnsParam, CursorParam, FormatParam, LimitParam, OrderParam, SelectorParam,
        TimeParam,
    },
    params::{invalid, Params},
    schema, ApiTags,
};
use crate::{
    selection::{Cursor, Order, Page, RESERVED_KEYS},
    store::Chunk,
    AppState,
};

/// Writing and querying metrics.
pub(crate) struct MetricsApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Metrics")]
impl MetricsApi {
    /// Store metrics
    ///
    /// Stores one metric or a batch. A metric is a JSON object with at least `name`, `value` and
    /// `ts`; every other key is kept as sent. A batch (a JSON array, or one object per line with
    /// `Content-Type: application/x-ndjson`) is stored all or nothing; bodies may be sent with
    /// `Content-Encoding: gzip`. A 200 means every metric is committed to the database; the
    /// metrics are then pushed to every open WebSocket.
    ///
    /// With an `Idempotency-Key` header the write is made at most once per key within the
    /// server's idempotency window (`GET /v1/limits`): a retry with the same key stores nothing
    /// and gets the original answer, so a client may retry a request whose answer it lost.
    #[oai(path = "/v1/metrics", method = "post", operation_id = "postMetrics")]
    async fn post_metrics(
        &self,
        body: MetricsBody,
        /// Any unique string of 1 to 255 printable ASCII characters (a UUID, say) naming this
        /// request, the same on every retry of it.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<schema::IdempotencyKey>>,
        /// The unit of a numeric `ts`: `s` (the default: Unix seconds, a fraction allowed), `ms`,
        /// `us` or `ns`. ISO-8601 strings are not affected. Read by the body's parser.
        #[oai(name = "precision")]
        _precision: Query<Option<super::body::TimePrecision>>,
        req: &poem::Request,
    ) -> Result<Json<PostMetricsResponse>, ApiError> {
        // A token confined to name prefixes writes only within them (all or nothing).
        if let Some(grant) = req.extensions().get::<crate::auth::Grant>() {
            if let Some(metric) = body.0.iter().find(|m| !grant.allows_name(&m.name)) {
                return Err(grant.name_forbidden(&metric.name));
            }
        }
        // poem-openapi reads a header value that is not visible ASCII as no header at all; a
        // write sent with a key must not be made without it.
        if idempotency_key.0.is_none() && req.headers().contains_key("idempotency-key") {
            return Err(super::idempotency::bad_key());
        }
        if let Some(key) = idempotency_key.0 {
            return super::idempotency::post_once(&self.state, key.0, body.0)
                .await
                .map(Json);
        }
        let ids = self.state.ingest.write(body.0).await?;
        Ok(Json(PostMetricsResponse::success(ids.len() as u64)))
    }

    /// Query metrics
    ///
    /// Returns the stored metrics matching every given parameter, as the JSON objects that were
    /// posted, ordered by `ts` (ties in the order they were stored; `order=desc` for newest
    /// first). Omitting a parameter means "all": no parameter at all returns every metric.
    ///
    /// Filters: `name` (repeat for any of several), `sts`/`ets` (inclusive; ISO-8601, Unix
    /// seconds such as `1700000000`, an epoch with its unit such as `1700000000000ms`, or
    /// `now-15m`), `tag.<key>=<text>` for any extra key (repeat a key for any of several texts;
    /// different keys must all hold; e.g. `tag.host=web-1`), and `match` with a Prometheus
    /// selector. A tag is compared by its text: `tag.port=80` matches both `"port": 80` and
    /// `"port": "80"`, `tag.up=true` both `true` and `"true"`; `tag.k=` matches metrics without
    /// `k`.
    ///
    /// Paging: with `limit=n`, an answer of `n` metrics carries `Link: <...>; rel="next"`, the
    /// same query with a `cursor`; following it never skips nor repeats a metric, whatever is
    /// written meanwhile. Formats: `format=json|ndjson|csv`, or the `Accept` header.
    ///
    /// A parameter the route does not know is a 400 `unknown_parameter` naming it.
    #[oai(path = "/v1/metrics", method = "get", operation_id = "queryMetrics")]
    #[allow(clippy::too_many_arguments)]
    async fn query_metrics(
        &self,
        req: &Request,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, example = "example_name")]
        name: Query<Vec<schema::NameFilter>>,
        /// Only metrics with `ts` at or after this time (inclusive): ISO-8601
        /// (`2016-01-01T12:00:00Z`), Unix seconds (`1700000000`, `1700000000.5`), an epoch with
        /// its unit (`1700000000000ms`, `...us`, `...ns`, `...s`), or `now`, `now-15m`, `now+1h`
        /// (units `ms`, `s`, `m`, `h`, `d`, `w`). A bare number is always seconds.
        sts: Query<Option<TimeParam>>,
        /// Only metrics with `ts` at or before this time (inclusive), in the forms of `sts`. Set
        /// `sts` and `ets` equal for an exact timestamp.
        #[oai(example = "example_end")]
        ets: Query<Option<TimeParam>>,
        /// A Prometheus series selector the metrics must match, e.g.
        /// `cpu{host=~"web-.*",region!="eu",canary=""}`: operators `=`, `!=`, `=~`, `!~`
        /// (regular expressions match the whole text), `k=""` means `k` is absent; a name before
        /// the braces narrows `name`. Repeat for several selectors that must all hold.
        #[oai(name = "match", default, example = "example_match")]
        matches: Query<Vec<SelectorParam>>,
        /// At most this many metrics (1 to 1000000). When that many are returned, the `Link`
        /// header gives the next page.
        limit: Query<Option<LimitParam>>,
        /// `asc` (oldest first, the default) or `desc` (newest first); ties by storage order.
        order: Query<Option<OrderParam>>,
        /// Where the page starts: the opaque value from a previous answer's `Link` header.
        cursor: Query<Option<CursorParam>>,
        /// The answer's format: `json` (an array), `ndjson` (one object per line) or `csv`.
        /// Without it, the `Accept` header chooses (`application/json`,
        /// `application/x-ndjson`, `text/csv`); JSON by default.
        format: Query<Option<FormatParam>>,
        /// Extra keys to add as CSV columns after `name,ts,value`, comma-separated, e.g.
        /// `host,region`. Implies `format=csv` (another `format` with it is a 400).
        columns: Query<Option<ColumnsParam>>,
        /// Aggregate instead of listing: the bucket width, whole seconds (`60`) or a number
        /// with a unit `s`, `m`, `h`, `d`, `w` (`10s`, `5m`, `1h`, `1d`). Buckets are
        /// `[origin + k·step, origin + (k+1)·step)`, labelled by their start, `origin` the Unix
        /// epoch plus `offset`. At most 11000 buckets per series over `sts`..`ets` (or the
        /// selected metrics' span): more is a 400 naming a step that fits. See "Aggregation" in
        /// docs/api.md.
        step: Query<Option<aggregate::StepParam>>,
        /// With `step`: the functions, comma-separated (default `avg`): `count` (every
        /// metric), and over numeric values only `sum`, `avg`, `min`, `max`, `first`, `last`,
        /// `stddev` (population) and percentiles `pNN` (`p50`, `p99`, `p99.9`; linear
        /// interpolation between closest ranks, as PostgreSQL's `percentile_cont`).
        agg: Query<Option<aggregate::AggParam>>,
        /// With `step`: tag keys splitting the series besides the name, comma-separated or
        /// repeated, e.g. `host,region`.
        #[oai(default)]
        by: Query<Vec<aggregate::ByParam>>,
        /// With `step`: shifts the bucket grid from the epoch, e.g. `-5h` for buckets from
        /// 19:00 UTC or `30s`; default 0.
        offset: Query<Option<aggregate::OffsetParam>>,
        /// With `step`: what empty buckets between `sts` and `ets` (or the first and last
        /// bucket with metrics) become: `none` (left out, the default), `null`, `prev`,
        /// `linear` or a number. `count` is 0 in them.
        fill: Query<Option<aggregate::FillParam>>,
    ) -> Result<MetricsAnswer, ApiError> {
        let _ = (
            name, sts, ets, matches, limit, order, cursor, format, columns, step, agg, by, offset,
            fill,
        );
        let params = Params::read(req, &QUERY_PARAMS)?;
        if aggregate::asked(&params) {
            return aggregate::answer(&self.state, req, &params).await;
        }
        let selection = params.selection()?;
        let page = page(&params)?;
        // `columns` asks for CSV: it chooses the format when `format` does not.
        let format = match (params.one("format")?, params.one("columns")?) {
            (None, Some(_)) => Format::Csv,
            (format, _) => Format::choose(format, req)?,
        };
        let columns = columns_of(&params, format)?;
        let chunks = self.state.store.query(selection, page, format.separator());
        let Some(limit) = page.limit else {
            let mut texts = chunks.map(|chunk| chunk.map(|chunk| chunk.text)).peekable();
            // Fail with a proper status while we still can: once the body starts it is a 200.
            if let Some(Err(_)) = Pin::new(&mut texts).peek().await {
                if let Some(Err(err)) = texts.next().await {
                    return Err(err.into());
                }
            }
            return Ok(MetricsAnswer {
                format,
                body: answer::body(format, columns, texts),
                link: None,
            });
        };
        // A page: its last position goes in the `Link` header, so it is read before answering.
        let chunks: Vec<Chunk> = chunks.try_collect().await?;
        let rows: u64 = chunks.iter().map(|c| c.rows).sum();
        let link = match chunks.last() {
            Some(last) if rows >= limit => Some(next_link(req.uri().path(), &params, last.last)),
            _ => None,
        };
        let texts = stream::iter(chunks.into_iter().map(|c| Ok(c.text)));
        Ok(MetricsAnswer {
            format,
            body: answer::body(format, columns, texts),
            link,
        })
    }

    /// Delete metrics
    ///
    /// Deletes every stored metric the parameters select (the filters of `GET /v1/metrics`:
    /// `name`, `sts`, `ets`, `tag.<key>`, `match`) in one transaction, and says how many. A
    /// deleted metric never comes back from a query, a replay or a resumed stream. With no
    /// filter at all the request is refused unless it says `all=true`. Needs scope `delete`.
    #[oai(
        path = "/v1/metrics",
        method = "delete",
        operation_id = "deleteMetrics"
    )]
    async fn delete_metrics(
        &self,
        req: &Request,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, example = "example_name")]
        name: Query<Vec<schema::NameFilter>>,
        /// Only metrics with `ts` at or after this time (inclusive), in the forms of
        /// `GET /v1/metrics`.
        sts: Query<Option<TimeParam>>,
        /// Only metrics with `ts` at or before this time (inclusive).
        #[oai(example = "example_end")]
        ets: Query<Option<TimeParam>>,
        /// A Prometheus series selector the metrics must match, as for `GET /v1/metrics`.
        #[oai(name = "match", default, example = "example_match")]
        matches: Query<Vec<SelectorParam>>,
        /// `true` to delete every metric when no filter is given (required then, refused
        /// otherwise as a safeguard); `false` or absent otherwise.
        all: Query<Option<AllParam>>,
    ) -> Result<Json<DeleteResponse>, ApiError> {
        let _ = (name, sts, ets, matches, all);
        let params = Params::read(req, &["all"])?;
        let selection = params.selection()?;
        let all = match params.one("all")? {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "query parameter `all`: {other:?} is neither true nor false"
                )))
            }
        };
        if selection.is_everything() && !all {
            return Err(invalid(
                "query parameter `all`: no filter was given, which would delete every metric; \
                 add all=true to mean it, or filter with name, sts, ets, tag.<key> or match"
                    .to_owned(),
            ));
        }
        let deleted = self.state.store.delete(&selection).await?;
        tracing::info!(deleted, "metrics deleted");
        Ok(Json(DeleteResponse { deleted }))
    }
}

/// The parameters of `GET /v1/metrics` besides the selection's.
const QUERY_PARAMS: [&str; 10] = [
    "limit", "order", "cursor", "format", "columns", "step", "agg", "by", "offset", "fill",
];

/// The largest `limit`.
const MAX_LIMIT: u64 = 1_000_000;

/// `limit`, `order` and `cursor`.
fn page(params: &Params) -> Result<Page, ApiError> {
    let limit = match params.one("limit")? {
        None => None,
        Some(text) => Some(
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "query parameter `limit`: {text:?} is not a whole number from 1 to \
                 {MAX_LIMIT}"
                    ))
                })?,
        ),
    };
    let order = match params.one("order")? {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(other) => {
            return Err(invalid(format!(
                "query parameter `order`: {other:?} is not an order; expected asc or desc"
            )))
        }
    };
    let after = match params.one("cursor")? {
        None => None,
        Some(text) => Some(Cursor::decode(text.trim()).ok_or_else(|| {
            invalid(format!(
                "query parameter `cursor`: {text:?} is not a cursor this server made; take it \
                 from the `Link` header of the previous page"
            ))
        })?),
    };
    Ok(Page {
        order,
        limit,
        after,
    })
}

/// `columns` (CSV only): tag keys, comma-separated, none empty or reserved.
fn columns_of(params: &Params, format: Format) -> Result<Vec<String>, ApiError> {
    let Some(text) = params.one("columns")? else {
        return Ok(Vec::new());
    };
    if format != Format::Csv {
        return Err(invalid(
            "query parameter `columns` applies to CSV answers only; drop `format` or say \
             format=csv"
                .to_owned(),
        ));
    }
    let columns: Vec<String> = text.split(',').map(|c| c.trim().to_owned()).collect();
    if let Some(bad) = columns
        .iter()
        .find(|c| c.is_empty() || RESERVED_KEYS.contains(&c.as_str()))
    {
        return Err(invalid(format!(
            "query parameter `columns`: {bad:?} is not a tag key (name, ts and value are \
                 always the first columns); expected keys separated by commas, e.g. host,region"
        )));
    }
    Ok(columns)
}

/// The `Link` header of the page after `last`: the same parameters, with `cursor` replaced.
fn next_link(path: &str, params: &Params, last: Cursor) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params.pairs().iter().filter(|(n, _)| n != "cursor") {
        query.append_pair(name, value);
    }
    query.append_pair("cursor", &last.encode());
    format!("<{path}?{}>; rel=\"next\"", query.finish())
}

fn example_name() -> Vec<schema::NameFilter> {
    vec![schema::NameFilter("cpu".to_owned())]
}

fn example_end() -> Option<TimeParam> {
    Some(TimeParam("now".to_owned()))
}

pub(super) fn example_match() -> Vec<SelectorParam> {
    vec![SelectorParam(r#"{host=~"web-.*",region!="eu"}"#.to_owned())]
}
