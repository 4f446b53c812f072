//! Reading a `POST /v1/metrics` body off the wire: content type, encoding and size limit, then
//! the metrics in it.
//!
//! A body is JSON (`application/json`) or NDJSON (`application/x-ndjson`), optionally
//! gzip-compressed (`Content-Encoding: gzip`). The size limit applies to the body as sent and
//! again to the body once decompressed, so a gzip bomb gets 413 after reading at most the limit.
//! The bytes then go to [`crate::ingest::parse`], which turns them into [`NewMetric`]s or an
//! error answered as a 400 that names what is wrong, before anything is stored.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use metrics_types::ErrorCode;
use poem::{
    error::ReadBodyError,
    http::{header, StatusCode},
    Request, RequestBody,
};
use poem_openapi::{
    registry::{MetaMediaType, MetaRequest, Registry},
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
};

use super::{error::ApiError, schema};
use crate::{
    ingest::parse::{parse_metrics, parse_ndjson, ParseError, Precision},
    store::NewMetric,
};

/// The largest request body accepted, set once for the whole service (`--body-limit`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// The validated metrics of one POST.
pub(crate) struct MetricsBody(pub(crate) Vec<NewMetric>);

impl<'a> ApiExtractor<'a> for MetricsBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        schema::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "One metric object, or a JSON array of them (`application/json`), or one metric \
                 object per line (`application/x-ndjson`): a batch, stored all or nothing. Send \
                 `Content-Encoding: gzip` to compress the body; the size limit applies to the \
                 decompressed body too.",
            ),
            content: vec![
                MetaMediaType {
                    content_type: "application/json",
                    schema: schema::metric_or_batch(),
                },
                MetaMediaType {
                    content_type: NDJSON,
                    schema: schema::ndjson_lines(),
                },
            ],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let format = match request.content_type() {
            // Without a content type a browser may send this cross-site (a "simple" request,
            // no CORS preflight): only a JSON type proves a client that meant it.
            None => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    "the request has no Content-Type; send Content-Type: application/json (or \
                     application/x-ndjson)",
                )
                .into());
            }
            Some(content_type) if is_json(content_type) => Format::Json,
            Some(content_type) if is_ndjson(content_type) => Format::Ndjson,
            Some(content_type) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "Content-Type {content_type:?} is not supported; send application/json \
                         or application/x-ndjson"
                    ),
                )
                .into());
            }
        };
        let gzip = match request.headers().get(header::CONTENT_ENCODING) {
            None => false,
            Some(value) => match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
                Ok(v) if v == "gzip" || v == "x-gzip" => true,
                Ok(v) if v.is_empty() || v == "identity" => false,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        ErrorCode::UnsupportedMediaType,
                        format!(
                            "Content-Encoding {value:?} is not supported; send gzip or nothing"
                        ),
                    )
                    .into());
                }
            },
        };
        let precision = precision(request)?;
        let limit = request.data::<BodyLimit>().map_or(usize::MAX, |l| l.0);
        let bytes = read_limited(request, body.take()?, limit).await?;
        let metrics = if gzip {
            // Decompressing and parsing a large batch takes milliseconds: off the async threads.
            tokio::task::spawn_blocking(move || {
                gunzip(&bytes, limit).and_then(|plain| format.parse(&plain, precision))
            })
            .await
            .map_err(|err| ApiError::internal(&err))??
        } else {
            format.parse(&bytes, precision)?
        };
        Ok(MetricsBody(metrics))
    }
}

/// Reads a request's body, refusing one over `limit` bytes (413) before reading it when its
/// declared length says so, and otherwise after at most `limit` bytes; a body sent too slowly is
/// a 408. Also what the other protocols' routes (`api/protocols`) read bodies with.
pub(super) async fn read_limited(
    request: &Request,
    body: poem::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(request).is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    body.into_bytes_limit(limit).await.map_err(|err| match err {
        ReadBodyError::PayloadTooLarge => too_large(limit),
        // The transport's --body-timeout.
        ReadBodyError::Io(err) if err.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!("{err}; send the body faster or in smaller batches"),
        ),
        other => ApiError::bad_request(
            ErrorCode::BadRequest,
            format!("could not read the request body: {other}"),
        ),
    })
}

/// The media type of newline-delimited JSON: one metric object per line.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// How a body lists its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One object or an array of objects.
    Json,
    /// One object per line; blank lines are skipped.
    Ndjson,
}

impl Format {
    fn parse(self, bytes: &[u8], precision: Precision) -> Result<Vec<NewMetric>, ApiError> {
        let metrics = match self {
            Format::Json => parse_metrics(bytes, precision),
            Format::Ndjson => parse_ndjson(bytes, precision),
        }?;
        Ok(metrics)
    }
}

/// A body that is not valid metrics: `400` with the parser's code and message.
impl From<ParseError> for ApiError {
    fn from(err: ParseError) -> ApiError {
        let code = err.code();
        ApiError::bad_request(code, err.into_message())
    }
}

/// The unit of numeric `ts` values: the `precision` query parameter (`s`, `ms`, `us`, `ns`),
/// seconds when absent. Read here, before the body, so that a bad value is refused before a
/// byte of the body is read.
fn precision(request: &Request) -> Result<Precision, ApiError> {
    let query = request.uri().query().unwrap_or_default();
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "precision") {
        None => Ok(Precision::default()),
        Some((_, value)) => Precision::from_param(&value).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidParam,
                format!(
                    "query parameter `precision`: {value:?} is not a unit; use s, ms, us or ns \
                     (the unit of numeric `ts` values; seconds when absent)"
                ),
            )
        }),
    }
}

/// A numeric `ts`'s unit in the spec (the `precision` query parameter of `POST /v1/metrics`).
#[derive(Debug, Clone, Copy, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum TimePrecision {
    /// Seconds (the default; a fraction allowed).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

/// The `Content-Length` of a request, when it has a valid one.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is over the limit of {limit} bytes; split it into smaller batches"
        ),
    )
}

/// Decompresses a gzip body, reading at most `limit` bytes of output: one more is a 413.
pub(super) fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut plain = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|err| {
            ApiError::bad_request(
                ErrorCode::BadRequest,
                format!("the body is not valid gzip: {err}"),
            )
        })?;
    if plain.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!(
                "the decompressed request body is over the limit of {limit} bytes; split it into \
                 smaller batches"
            ),
        ));
    }
    Ok(plain)
}

/// `application/json`, with or without parameters, and `application/<anything>+json`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 17
            && essence[..12].eq_ignore_ascii_case("application/")
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// `application/x-ndjson`, with or without parameters (also the `jsonlines` spellings).
fn is_ndjson(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonlines",
        "application/x-jsonlines",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunzip_stops_at_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&[b' '; 1 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(
            gunzip(&bomb, (1 << 20) - 1).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            gunzip(b"plain", 100).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn accepts_json_content_types_only() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.metrics+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(is_ndjson("application/x-ndjson; charset=utf-8"));
        assert!(!is_ndjson("application/json"));
    }

    /// Property tests: whatever arrives, the parser answers parsed metrics that every reader can
    /// decode back to exactly what was posted, or a 4xx; it never panics.

    #[test]
    fn a_body_that_is_not_metrics_is_a_400_with_the_parsers_code() {
        let err = ApiError::from(parse_metrics(b"[42]", Precision::Seconds).unwrap_err());
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), ErrorCode::InvalidBody);
        assert!(err.to_string().contains("index 0"), "{err}");
    }
}
