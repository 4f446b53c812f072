//! The one JSON error body every route answers with.

use serde::{Deserialize, Serialize};

/// The body of every error response, on every route and status.
///
/// `code` is stable and meant for programs; `message` is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ErrorBody {
    /// Stable, machine-readable error code: one of `invalid_json`, `invalid_body`,
    /// `missing_field`, `invalid_field`, `invalid_timestamp`, `invalid_range`, `invalid_param`,
    /// `not_found`, `method_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `bad_request`, `upgrade_required`, `internal`, `unavailable`, `insufficient_storage`,
    /// `unauthorized`, `forbidden`, `request_timeout`, `headers_too_large`, `unknown_parameter`.
    pub code: String,
    /// What went wrong, in words a person can act on (names the field or parameter at fault).
    pub message: String,
}

/// The error codes the server uses in [`ErrorBody::code`].
///
/// Clients should treat the code as an open set: new codes may appear in later versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is JSON but not a metric object or an array of them.
    InvalidBody,
    /// A required field (`name`, `value` or `ts`) is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// A timestamp (field or query parameter) is not ISO-8601.
    InvalidTimestamp,
    /// `sts` is after `ets`.
    InvalidRange,
    /// A query parameter other than a timestamp is invalid.
    InvalidParam,
    /// No such route.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request's `Content-Type` is not one the route accepts.
    UnsupportedMediaType,
    /// The request body is over the server's limit.
    PayloadTooLarge,
    /// Any other malformed request.
    BadRequest,
    /// A WebSocket route was requested without the WebSocket handshake headers.
    UpgradeRequired,
    /// The server failed; the details are in its log, not in the response.
    Internal,
    /// The server cannot serve the request now (shutting down, database unreachable): retry.
    Unavailable,
    /// The database's disk is full, or below the configured free-space floor: nothing was
    /// stored; writes resume by themselves once space returns (507).
    InsufficientStorage,
    /// No credentials, or credentials the server does not know (401).
    Unauthorized,
    /// The credentials are valid but lack the scope (or name prefix) the request needs, or the
    /// request's `Origin` is not allowed (403).
    Forbidden,
    /// The client took too long to send its request (408).
    RequestTimeout,
    /// The request's headers are over the server's limit (431).
    HeadersTooLarge,
    /// A query parameter the route does not know (400).
    UnknownParameter,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::InvalidRange => "invalid_range",
            ErrorCode::InvalidParam => "invalid_param",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UpgradeRequired => "upgrade_required",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::UnknownParameter => "unknown_parameter",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorBody {
    /// An error body with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }
}
