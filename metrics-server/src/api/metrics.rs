//! `POST /v1/metrics` and `GET /v1/metrics`: the original API's writes and range queries.

use std::pin::Pin;

use bytes::Bytes;
use futures::{stream, Stream, StreamExt};
use metrics_types::{ErrorCode, PostMetricsResponse, Timestamp};
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::{
    param::{Header, Query},
    payload::{Json, Payload},
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    ApiResponse, OpenApi,
};

use super::{body::MetricsBody, error::ApiError, schema, ApiTags};
use crate::{
    selection::{Page, Selection},
    store::StoreError,
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
    /// posted, ordered by `ts` (ties in the order they were stored). Omitting a parameter means
    /// "all": no parameter at all returns every metric. The answer is streamed from the database.
    #[oai(path = "/v1/metrics", method = "get", operation_id = "queryMetrics")]
    async fn query_metrics(
        &self,
        req: &Request,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default)]
        name: Query<Vec<schema::NameFilter>>,
        /// Only metrics with `ts` at or after this ISO-8601 timestamp (inclusive).
        sts: Query<Option<schema::TimeBound>>,
        /// Only metrics with `ts` at or before this ISO-8601 timestamp (inclusive). Set `sts` and
        /// `ets` equal for an exact timestamp.
        ets: Query<Option<schema::TimeBound>>,
    ) -> Result<MetricArray, ApiError> {
        super::query::check(req, &["sts", "ets"])?;
        let names = super::query::names(name.0.into_iter().map(|n| n.0).collect())?;
        let start = parse_bound("sts", sts.0.map(|t| t.0))?;
        let end = parse_bound("ets", ets.0.map(|t| t.0))?;
        if let (Some(start), Some(end)) = (&start, &end) {
            if start.timestamp_micros() > end.timestamp_micros() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRange,
                    format!("sts ({start}) is after ets ({end}); swap them or widen the range"),
                ));
            }
        }
        let selection = Selection {
            names,
            start_micros: start.map(|t| t.timestamp_micros()),
            end_micros: end.map(|t| t.timestamp_micros()),
            ..Selection::default()
        };
        let mut docs = self
            .state
            .store
            .query(selection, Page::default(), ',')
            .map(|chunk| chunk.map(|chunk| chunk.text))
            .peekable();
        // Fail with a proper status while we still can: once the body starts it is a 200.
        if let Some(Err(_)) = Pin::new(&mut docs).peek().await {
            if let Some(Err(err)) = docs.next().await {
                return Err(err.into());
            }
        }
        Ok(MetricArray(Body::from_bytes_stream(json_array(docs))))
    }
}

/// A query bound: absent or empty means unbounded.
fn parse_bound(param: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Timestamp::parse(text).map(Some).map_err(|err| {
            ApiError::bad_request(
                ErrorCode::InvalidTimestamp,
                format!("query parameter `{param}`: {err}"),
            )
        }),
    }
}

/// Frames chunks of comma-joined stored objects as one JSON array, a chunk at a time.
fn json_array(
    chunks: impl Stream<Item = Result<String, StoreError>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    stream::unfold(
        (chunks.boxed(), false, false),
        |(mut chunks, started, done)| async move {
            if done {
                return None;
            }
            match chunks.next().await {
                None => {
                    let tail = if started { "]" } else { "[]" };
                    Some((
                        Ok(Bytes::from_static(tail.as_bytes())),
                        (chunks, started, true),
                    ))
                }
                Some(Ok(chunk)) if chunk.is_empty() => {
                    Some((Ok(Bytes::new()), (chunks, started, false)))
                }
                Some(Ok(chunk)) => {
                    let mut buf = String::with_capacity(chunk.len() + 1);
                    buf.push(if started { ',' } else { '[' });
                    buf.push_str(&chunk);
                    Some((Ok(Bytes::from(buf)), (chunks, true, false)))
                }
                Some(Err(err)) => {
                    // Too late for a status: cut the body so the client sees it incomplete.
                    tracing::error!(error = %err, "query stream failed mid-answer");
                    Some((Err(std::io::Error::other(err)), (chunks, started, true)))
                }
            }
        },
    )
}

/// A JSON array of metrics, streamed.
pub(crate) struct MetricArray(Body);

impl Payload for MetricArray {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        schema::metric_array()
    }

    fn register(registry: &mut Registry) {
        schema::register(registry);
    }
}

impl IntoResponse for MetricArray {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.0)
    }
}

impl ApiResponse for MetricArray {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The matching metrics, as posted, ordered by `ts` then storage order.",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        schema::register(registry);
    }
}
