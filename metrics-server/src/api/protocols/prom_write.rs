//! `POST /api/v1/write`: Prometheus remote write 1.0 (a Snappy-compressed protobuf
//! `WriteRequest`), answered `204 No Content` once every sample is committed. A body that cannot
//! be read or holds a sample that cannot be stored is a 400 (which senders do not retry) and
//! nothing of it is stored; samples that are not finite numbers (stale markers) are skipped; a
//! transient failure is a 503, which senders retry.

use metrics_types::ErrorCode;
use poem::{handler, http::StatusCode, web::Data, Body, Request, Response};

use super::{body::too_large, encoding, limit, read_body, store, ApiError, Encoding};
use crate::{
    ingest::remote_write::{decode, decompress, DecodeError},
    AppState,
};

/// The remote write receiver.
#[handler]
pub(super) async fn write(
    req: &Request,
    body: Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    // The spec requires `Content-Encoding: snappy`; a body without one is read as Snappy too.
    let encoding = match encoding(req, true)? {
        Encoding::Identity => Encoding::Snappy,
        other => other,
    };
    let bytes = read_body(req, body, encoding).await?;
    let limit = limit(req);
    let decoded = tokio::task::spawn_blocking(move || {
        let plain = match encoding {
            Encoding::Snappy => decompress(&bytes, limit).map_err(|err| match err {
                DecodeError::Invalid(message) => {
                    ApiError::bad_request(ErrorCode::InvalidBody, message)
                }
                DecodeError::TooLarge(_) => too_large(limit),
            })?,
            // gzip was already undone; a gzipped WriteRequest is taken as plain protobuf.
            _ => bytes,
        };
        decode(&plain).map_err(|message| ApiError::bad_request(ErrorCode::InvalidBody, message))
    })
    .await
    .map_err(|err| ApiError::internal(&err))??;
    if decoded.skipped > 0 {
        tracing::debug!(
            skipped = decoded.skipped,
            "remote write: samples that are not finite numbers (stale markers) skipped"
        );
    }
    store(state, req, decoded.metrics).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}
