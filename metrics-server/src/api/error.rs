//! [`ApiError`]: the one JSON error of every route, and the mapping of framework errors onto it.
//!
//! Handlers return `Result<_, ApiError>`; errors raised by poem and poem-openapi themselves
//! (unknown route, wrong method, bad parameter, ...) are turned into the same body by
//! [`error_response`], so a client sees one shape on every route and status.

use metrics_types::{ErrorBody, ErrorCode};
use poem::{
    error::{MethodNotAllowedError, NotFoundError, ResponseError, UpgradeError, WebSocketError},
    http::{header, HeaderValue, Method, StatusCode},
    IntoResponse, Response,
};
use poem_openapi::{
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    ApiResponse,
};

use crate::{ingest::IngestError, store::StoreError};

/// An error answered to a client: a status and an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with this status, code and message (shown to the client as is).
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with this code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500: the client sees a generic message; `detail` goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal server error; the details are in the server log",
        )
    }

    /// 503: retry later; `detail` goes to the log only.
    pub fn unavailable(detail: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "service unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the service is unavailable (shutting down or database unreachable); retry later",
        )
    }

    /// 507: the database's disk is full or below `--min-free-disk`; `detail` goes to the log.
    pub fn insufficient_storage(detail: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "write refused: insufficient storage");
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InsufficientStorage,
            "the database's disk is full: a write stores nothing until space is freed on the \
             server; retry later",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::unavailable(&err),
            StoreError::DiskFull(_) | StoreError::LowDiskSpace { .. } => {
                ApiError::insufficient_storage(&err)
            }
            _ => ApiError::internal(&err),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::ShuttingDown => ApiError::unavailable(&err),
            IngestError::Store(err) => err.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let mut response = poem::web::Json(self.body()).into_response();
        response.set_status(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from_static("1"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// The statuses every API route may answer with an [`ErrorBody`], for the OpenAPI spec.
const ERROR_RESPONSES: &[(u16, &str)] = &[
    (400, "The request is malformed: invalid JSON, a missing or wrongly typed field, a bad timestamp or parameter. The message names the field or parameter."),
    (401, "Auth is on and the request has no valid token (missing, unknown or revoked); see `WWW-Authenticate`."),
    (403, "The token lacks the route's scope, or the metric names are outside its prefixes."),
    (404, "No such route."),
    (405, "The route does not accept this method."),
    (408, "The request body did not arrive whole within `--body-timeout`. Nothing was stored."),
    (413, "The request body is over the server's limit (`--body-limit`); a `Content-Length` over it is refused before the body is read."),
    (415, "The request's Content-Type is missing or not one the route accepts (`POST /v1/metrics`: `application/json` or `application/x-ndjson`)."),
    (431, "The request line and headers are over the server's limit (`--max-header-size`)."),
    (500, "The server failed. Nothing of the request was stored; the details are in the server log."),
    (503, "The server is shutting down, at its connection limit (`--max-connections`) or WebSocket cap, or its database is unreachable or lost the connection. Retry after `Retry-After` seconds. A write answered so may or may not have been stored: retry it with the same `Idempotency-Key` to store it exactly once."),
    (507, "The server's disk is full (or below `--min-free-disk`): nothing of the write was stored. Reads still work; retry once space is freed."),
];

/// The 426 of a WebSocket route asked without the handshake, for the OpenAPI spec: only those
/// two routes answer it, so it is not among [`ERROR_RESPONSES`].
pub(crate) fn upgrade_required_meta() -> MetaResponse {
    MetaResponse {
        description: "The request is not a WebSocket handshake (a GET with `Connection: Upgrade`, \
                      `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and `Sec-WebSocket-Key`), \
                      or came over HTTP/1.0: the JSON error `upgrade_required`.",
        status: Some(426),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "application/json; charset=utf-8",
            schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
        }],
        headers: vec![],
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: ERROR_RESPONSES
                .iter()
                .map(|&(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

/// Turns any error that reached the edge of the service into the JSON error response.
pub(crate) fn error_response(err: poem::Error, method: &Method, path: &str) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.as_response();
    }
    let status = err.status();
    if let Some(WebSocketError::UpgradeError(UpgradeError::NoUpgrade)) =
        err.downcast_ref::<WebSocketError>()
    {
        // A handshake over HTTP/1.0 (or HTTP/2): well formed, but hyper cannot upgrade it.
        return ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::UpgradeRequired,
            format!("{path} is a WebSocket endpoint and the WebSocket handshake needs HTTP/1.1"),
        )
        .as_response();
    }
    let api = if err.is::<WebSocketError>() && status == StatusCode::BAD_REQUEST {
        // poem's own message ("invalid protocol") does not say what is wrong with the request.
        let mut response = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::UpgradeRequired,
            format!(
                "{path} is a WebSocket endpoint: connect with a WebSocket client (a GET with \
                 `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and \
                 `Sec-WebSocket-Key`); to read stored metrics, use GET /v1/metrics"
            ),
        )
        .as_response();
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    } else if err.is::<NotFoundError>() || status == StatusCode::NOT_FOUND {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no route for {method} {path}; see /docs for the API"),
        )
    } else if err.is::<MethodNotAllowedError>() || status == StatusCode::METHOD_NOT_ALLOWED {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("{path} does not accept {method}; see /docs for the API"),
        )
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        ApiError::new(status, ErrorCode::UnsupportedMediaType, err.to_string())
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, ErrorCode::PayloadTooLarge, err.to_string())
    } else if err.is::<poem_openapi::error::ParseParamError>() {
        ApiError::bad_request(ErrorCode::InvalidParam, err.to_string())
    } else if status.is_client_error() {
        ApiError::new(status, ErrorCode::BadRequest, err.to_string())
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        ApiError::unavailable(&err)
    } else {
        ApiError::internal(&err)
    };
    api.as_response()
}
