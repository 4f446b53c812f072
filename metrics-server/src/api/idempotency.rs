//! `POST /v1/metrics` with an `Idempotency-Key`: the write is made at most once per key.

use metrics_types::{ErrorCode, PostMetricsResponse};

use super::error::ApiError;
use crate::{
    store::{NewMetric, OnceOutcome},
    AppState,
};

/// The longest key accepted, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// The answer to a malformed `Idempotency-Key`.
pub(crate) fn bad_key() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidParam,
        format!(
            "header `Idempotency-Key` must be 1 to {MAX_KEY_BYTES} printable ASCII characters, \
             such as a UUID"
        ),
    )
}

/// Stores `metrics` unless `key` was seen within the server's window; either way answers with
/// the result of the first request that carried the key.
pub(crate) async fn post_once(
    state: &AppState,
    key: String,
    metrics: Vec<NewMetric>,
) -> Result<PostMetricsResponse, ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(bad_key());
    }
    match state
        .ingest
        .write_once(key, state.idempotency_window, metrics)
        .await?
    {
        OnceOutcome::Stored(ids) => Ok(PostMetricsResponse::success(ids.len() as u64)),
        OnceOutcome::Repeated { stored } => Ok(PostMetricsResponse::success(stored)),
    }
}
