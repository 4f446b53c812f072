//! Serving one connection: hyper with poem's endpoint behind it, and a watchdog that closes the
//! connection when the deadline of its [`Phase`] passes (header, idle); each request's head size
//! and body deadline are checked on the way in.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use metrics_types::ErrorCode;
use poem::{
    http::{self, header, uri::Scheme, HeaderValue, StatusCode},
    web::{LocalAddr, RemoteAddr},
    Addr, Body, Endpoint, IntoResponse, Request, RequestParts, Response,
};
use tokio::{
    net::TcpStream,
    sync::{watch, OwnedSemaphorePermit},
    time::{Instant, Sleep},
};

use super::{socket::GuardedIo, Limits, Shared};
use crate::api::ApiError;

/// Where a connection is in its request cycle; each phase but `Busy` has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a request head, since this instant (the connection's start, or the first
    /// byte after an idle spell): the header timeout runs.
    Head(Instant),
    /// This many requests in flight (more than one only on HTTP/2): no transport deadline; the
    /// body and write timeouts guard the request itself.
    Busy(usize),
    /// Nothing in flight and nothing received since this instant: the idle timeout runs.
    Idle(Instant),
}

impl Phase {
    fn deadline(self, limits: &Limits) -> Option<(Instant, &'static str)> {
        match self {
            Phase::Head(since) => Some((since + limits.header_timeout, "header")),
            Phase::Busy(_) => None,
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idle")),
        }
    }
}

/// The phase of one connection, shared by its socket, its service and its watchdog.
pub(super) type PhaseCell = Arc<watch::Sender<Phase>>;

pub(super) async fn serve_connection<E: Endpoint + 'static>(
    shared: Arc<Shared<E>>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let limits = shared.limits;
    let (phase, mut watch_phase) = watch::channel(Phase::Head(Instant::now()));
    let phase: PhaseCell = Arc::new(phase);
    let linger = Arc::new(AtomicBool::new(false));
    let io = GuardedIo::new(
        stream,
        limits.write_timeout,
        Some(phase.clone()),
        Some(permit),
        linger.clone(),
    );

    let service = service_fn({
        let shared = shared.clone();
        let phase = phase.clone();
        move |request: http::Request<Incoming>| {
            let in_flight = InFlight::begin(phase.clone());
            let shared = shared.clone();
            let linger = linger.clone();
            async move {
                let response = handle(&shared, peer, request, &linger).await;
                let response: http::Response<BoxBody<Bytes, io::Error>> = response.into();
                Ok::<_, Infallible>(response.map(|body| TrackedBody {
                    body,
                    _in_flight: in_flight,
                }))
            }
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The header timeout is ours (hyper's would also cut idle keep-alive connections).
        .header_read_timeout(None)
        .max_buf_size(limits.hyper_buffer());
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);

    let mut draining = false;
    loop {
        let deadline = watch_phase.borrow_and_update().deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            // The sender lives in `phase` for as long as this loop: this never fails.
            _ = watch_phase.changed() => {}
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                let which = deadline.map_or("", |(_, which)| which);
                tracing::debug!(%peer, timeout = which, "closing the connection: timed out");
                return;
            }
            () = shared.graceful.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = shared.hard.cancelled() => return,
        }
    }
}

/// One request: the header-size check, the body deadline, then poem's endpoint. An answer given
/// before the body was read whole closes the connection (the rest of the body is not read), and
/// says so with `Connection: close`, so that a client does not send its next request on it.
async fn handle<E: Endpoint>(
    shared: &Shared<E>,
    peer: SocketAddr,
    request: http::Request<Incoming>,
    linger: &AtomicBool,
) -> Response {
    let (parts, body) = request.into_parts();
    let complete = Arc::new(AtomicBool::new(body.is_end_stream()));
    let mut response = respond(shared, peer, parts, body, complete.clone()).await;
    if !complete.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        linger.store(true, Ordering::Release);
    }
    response
}

async fn respond<E: Endpoint>(
    shared: &Shared<E>,
    peer: SocketAddr,
    parts: http::request::Parts,
    body: Incoming,
    complete: Arc<AtomicBool>,
) -> Response {
    let head = head_size(&parts);
    if head > shared.limits.max_header_size {
        let mut response = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            format!(
                "the request line and headers take {head} bytes, over the limit of {} bytes",
                shared.limits.max_header_size
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let body = TimedBody::new(body, shared.limits.body_timeout, complete);
    let parts = RequestParts::from((
        parts,
        LocalAddr(Addr::SocketAddr(shared.local)),
        RemoteAddr(Addr::SocketAddr(peer)),
        Scheme::HTTP,
    ));
    let request = Request::from_parts(parts, Body::from(BoxBody::new(body)));
    shared.endpoint.get_response(request).await
}

/// The size of a request head as sent on HTTP/1.1: request line, then `name: value\r\n` each.
fn head_size(parts: &http::request::Parts) -> usize {
    let line = parts.method.as_str().len() + 1 + parts.uri.to_string().len() + 1 + 8 + 2;
    parts.headers.iter().fold(line, |size, (name, value)| {
        size + name.as_str().len() + 2 + value.len() + 2
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A request in flight: the connection is `Busy` from its head until its response is written
/// (or dropped).
struct InFlight(PhaseCell);

impl InFlight {
    fn begin(phase: PhaseCell) -> InFlight {
        phase.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
        InFlight(phase)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct TrackedBody {
    body: BoxBody<Bytes, io::Error>,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must arrive whole by a deadline; past it, reading fails with
/// [`io::ErrorKind::TimedOut`].
struct TimedBody {
    body: Incoming,
    /// Set once the body has been read to its end.
    complete: Arc<AtomicBool>,
    timeout: Duration,
    deadline: Instant,
    /// Armed on the first wait, so a body that is already complete costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(body: Incoming, timeout: Duration, complete: Arc<AtomicBool>) -> TimedBody {
        TimedBody {
            body,
            complete,
            timeout,
            deadline: Instant::now() + timeout,
            timer: None,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            if frame.is_none() || this.body.is_end_stream() {
                this.complete.store(true, Ordering::Release);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(io::Error::other)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the request body did not arrive within {:?} (--body-timeout)",
                this.timeout
            ),
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_have_the_right_deadlines() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_header_size: 32 << 10,
        };
        let now = Instant::now();
        assert_eq!(
            Phase::Head(now).deadline(&limits),
            Some((now + Duration::from_secs(10), "header"))
        );
        assert_eq!(
            Phase::Idle(now).deadline(&limits),
            Some((now + Duration::from_secs(60), "idle"))
        );
        assert_eq!(Phase::Busy(2).deadline(&limits), None);
        assert_eq!(limits.hyper_buffer(), 128 << 10);
    }

    #[tokio::test]
    async fn in_flight_requests_keep_a_connection_busy() {
        let (phase, rx) = watch::channel(Phase::Head(Instant::now()));
        let phase = Arc::new(phase);
        let first = InFlight::begin(phase.clone());
        let second = InFlight::begin(phase.clone());
        assert_eq!(*rx.borrow(), Phase::Busy(2));
        drop(first);
        assert_eq!(*rx.borrow(), Phase::Busy(1));
        drop(second);
        assert!(matches!(*rx.borrow(), Phase::Idle(_)));
    }
}
