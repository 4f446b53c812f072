//! The connection cap: a connection over `max_connections` is answered `503` JSON with
//! `Retry-After` and closed, while those under it keep their place.

use std::{
    convert::Infallible,
    io,
    sync::{atomic::AtomicBool, Arc},
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_types::ErrorCode;
use poem::{
    http::{self, header, HeaderValue, StatusCode},
    IntoResponse,
};
use tokio::net::TcpStream;

use super::{socket::GuardedIo, Shared};
use crate::api::ApiError;

/// Connections over the cap that are answered 503 at once; more than that are closed unanswered,
/// so that shedding itself cannot pile up sockets.
pub(super) const SHED_AT_ONCE: usize = 64;

/// Turns away a connection over the cap: `503` JSON with `Retry-After`, then close. At most
/// [`SHED_AT_ONCE`] at a time are answered; the rest are closed at once.
pub(super) fn shed<E>(shared: &Shared<E>, stream: TcpStream) {
    let Ok(permit) = shared.shedding.clone().try_acquire_owned() else {
        return;
    };
    let limits = shared.limits;
    tokio::spawn(async move {
        let _permit = permit;
        let service = service_fn(move |_request: http::Request<Incoming>| async move {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!(
                    "the server is at its connection limit ({}); retry later",
                    limits.max_connections
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok::<_, Infallible>(http::Response::<BoxBody<Bytes, io::Error>>::from(response))
        });
        // The request is never read: linger so that the answer is not lost to a reset.
        let linger = Arc::new(AtomicBool::new(true));
        let io = GuardedIo::new(stream, limits.write_timeout, None, None, linger);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.hyper_buffer())
            .keep_alive(false)
            .serve_connection(TokioIo::new(io), service);
        let _ =
            tokio::time::timeout(limits.header_timeout + limits.write_timeout, connection).await;
    });
}
