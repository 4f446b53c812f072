//! OTLP/HTTP metrics: `POST /otlp/v1/metrics` with an `ExportMetricsServiceRequest` as protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed; also
//! `POST /v1/metrics` with a protobuf body, so an exporter pointed at the server's root works.
//!
//! Answers as the OTLP spec says, in the request's encoding: `200` with an
//! `ExportMetricsServiceResponse` once the accepted data points are committed, its
//! `partial_success` counting the rejected ones and saying why (see `ingest::otlp`); an error is
//! a `google.rpc.Status` (`code`, `message`) with the HTTP status our JSON API would use: `400`
//! for a body that cannot be decoded, `413`, `403` for a name outside the token's prefixes, and
//! `503` with `Retry-After` when the server cannot store now (which exporters retry). What the
//! shared layers refuse before this handler runs (`401`, a `403` for the scope, an unknown
//! route) keeps our JSON error shape; so does a `415` for a content type that is neither.

use metrics_types::ErrorCode;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use poem::{
    handler,
    http::{header, HeaderValue, StatusCode},
    web::Data,
    Body, Request, Response,
};
use prost::Message;

use super::{encoding, read_body, store, ApiError};
use crate::{
    ingest::{otlp::convert, points::now_nanos},
    AppState,
};

/// `google.rpc.Status`, the body of an OTLP error.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    message: String,
}

/// How the request (and so the answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// The essence of a content type, lowercased.
fn essence(req: &Request) -> Option<String> {
    req.content_type().map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Whether a request's body is protobuf (what OTLP exporters send by default).
pub(in crate::api) fn is_otlp_protobuf(req: &Request) -> bool {
    matches!(
        essence(req).as_deref(),
        Some("application/x-protobuf" | "application/protobuf")
    )
}

/// The OTLP metrics receiver.
#[handler]
pub(super) async fn export(
    req: &Request,
    body: Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    let format = if is_otlp_protobuf(req) {
        Format::Protobuf
    } else if essence(req).as_deref() == Some("application/json") {
        Format::Json
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "OTLP metrics are application/x-protobuf or application/json",
        ));
    };
    match receive(req, body, state, format).await {
        Ok(response) => Ok(response),
        Err(err) => Ok(status_response(&err, format)),
    }
}

async fn receive(
    req: &Request,
    body: Body,
    state: &AppState,
    format: Format,
) -> Result<Response, ApiError> {
    let encoding = encoding(req, false)?;
    let bytes = read_body(req, body, encoding).await?;
    let now = now_nanos();
    let converted = tokio::task::spawn_blocking(move || {
        let request = match format {
            Format::Protobuf => {
                ExportMetricsServiceRequest::decode(bytes.as_slice()).map_err(|err| {
                    format!("the body is not an OTLP ExportMetricsServiceRequest: {err}")
                })
            }
            Format::Json => {
                serde_json::from_slice::<ExportMetricsServiceRequest>(&bytes).map_err(|err| {
                    format!("the body is not an OTLP ExportMetricsServiceRequest in JSON: {err}")
                })
            }
        }
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidBody, message))?;
        Ok::<_, ApiError>(convert(&request, now))
    })
    .await
    .map_err(|err| ApiError::internal(&err))??;
    let rejected = converted.rejected;
    let message = converted.error_message();
    store(state, req, converted.metrics).await?;
    let partial = (rejected > 0).then_some(ExportMetricsPartialSuccess {
        rejected_data_points: rejected,
        error_message: message,
    });
    let (content_type, body) = match format {
        Format::Protobuf => (
            "application/x-protobuf",
            ExportMetricsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        ),
        Format::Json => {
            let json = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedDataPoints": p.rejected_data_points.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            ("application/json", json.to_string().into_bytes())
        }
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .body(body))
}

/// An error as OTLP answers it: a `google.rpc.Status` in the request's encoding.
fn status_response(err: &ApiError, format: Format) -> Response {
    let code = match err.status() {
        StatusCode::UNAUTHORIZED => 16,   // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,       // PERMISSION_DENIED
        StatusCode::REQUEST_TIMEOUT => 4, // DEADLINE_EXCEEDED
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::INSUFFICIENT_STORAGE => 8, // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        StatusCode::INTERNAL_SERVER_ERROR => 13, // INTERNAL
        _ => 3,                           // INVALID_ARGUMENT
    };
    let status = Status {
        code,
        message: err.message().to_owned(),
    };
    let (content_type, body) = match format {
        Format::Protobuf => ("application/x-protobuf", status.encode_to_vec()),
        Format::Json => (
            "application/json",
            serde_json::json!({"code": status.code, "message": status.message})
                .to_string()
                .into_bytes(),
        ),
    };
    let mut response = Response::builder()
        .status(err.status())
        .content_type(content_type)
        .body(body);
    if err.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
