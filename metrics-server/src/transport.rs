//! The HTTP transport: accepts TCP connections and serves each with hyper, with the deadlines and
//! limits that poem's own server lacks.
//!
//! poem 3.1 runs hyper without a timer, so none of hyper's timeouts fire, and its accept loop
//! retries a failing `accept()` at once (a spinning core at the file-descriptor limit). This
//! module replaces it, feeding poem's endpoint the same requests (WebSocket upgrades included):
//!
//! - **header timeout**: a connection must deliver a request's line and headers within
//!   `header_timeout` of its start, or of its first byte after an idle spell, or it is closed;
//! - **idle timeout**: a keep-alive connection with no request in flight and no byte received
//!   for `idle_timeout` is closed;
//! - **body timeout**: a request body must arrive whole within `body_timeout` of the headers;
//!   reading it then fails with [`std::io::ErrorKind::TimedOut`] (the API answers 408);
//! - **write timeout**: a write that makes no progress for `write_timeout` fails, and the
//!   connection (or the WebSocket that took it over) is dropped;
//! - **connection cap**: at most `max_connections` connections, WebSockets included; one more
//!   gets `503` JSON with `Retry-After` and is closed;
//! - **header size**: a request line plus headers over `max_header_size` gets `431` JSON;
//! - **accept errors** back off from 10 ms, doubling to 1 s, and are logged at most every 10 s;
//! - an answer given **before the request body was read** whole says `Connection: close`, and
//!   the socket lingers (reads and discards) for up to [`LINGER`] before closing, so that a
//!   reset does not destroy the answer.
//!
//! The deadlines of a connection follow its [`Phase`]: the socket reports bytes read, the service
//! reports requests starting and their responses finishing, and a watchdog closes the connection
//! when the deadline of the phase it is in passes.

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
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use metrics_types::ErrorCode;
use poem::{
    http::{self, header, uri::Scheme, HeaderValue, StatusCode},
    web::{LocalAddr, RemoteAddr},
    Addr, Body, Endpoint, IntoResponse, Request, RequestParts, Response,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{api::ApiError, Config};

/// The transport's deadlines and limits (from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time allowed for a request's line and headers.
    pub(crate) header_timeout: Duration,
    /// Time allowed for a request's whole body, from the end of its headers.
    pub(crate) body_timeout: Duration,
    /// Time a keep-alive connection may sit with nothing in flight.
    pub(crate) idle_timeout: Duration,
    /// Time a write may make no progress.
    pub(crate) write_timeout: Duration,
    /// Connections open at once, WebSockets included.
    pub(crate) max_connections: usize,
    /// Largest request line plus headers, in bytes.
    pub(crate) max_header_size: usize,
}

impl Limits {
    pub(crate) fn from_config(config: &Config) -> Limits {
        Limits {
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            max_connections: config.max_connections.max(1),
            max_header_size: config.max_header_size,
        }
    }

    /// hyper's read buffer, which bounds a request head before the service sees it: room for
    /// heads well over our own limit, so that those get our JSON 431 rather than hyper's bare one.
    fn hyper_buffer(&self) -> usize {
        self.max_header_size
            .saturating_mul(4)
            .clamp(MIN_HYPER_BUFFER, MAX_HYPER_BUFFER)
    }
}

/// hyper refuses a buffer under 8 KiB.
const MIN_HYPER_BUFFER: usize = 8 << 10;
/// hyper's own default (about 400 KiB); a larger buffer only costs memory.
const MAX_HYPER_BUFFER: usize = 8192 + 4096 * 100;
/// Connections over the cap that are answered 503 at once; more than that are closed unanswered,
/// so that shedding itself cannot pile up sockets.
const SHED_AT_ONCE: usize = 64;
/// Accept errors back off from here...
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...doubling up to here.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A repeating warning (accept errors, shedding) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// After answering a request whose body it did not read, the server reads and discards what the
/// client still sends for up to this long before closing: closing with unread data would send a
/// reset, which can destroy the answer before the client reads it (nginx's `lingering_close`).
const LINGER: Duration = Duration::from_secs(5);

/// Raises the soft limit on open files to the hard limit, where the system allows it, so that
/// `--max-connections` fits; warns when it still does not.
pub fn raise_fd_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(now) => {
                if before.is_some_and(|before| before < now) {
                    tracing::info!(
                        from = before,
                        to = now,
                        "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
                    );
                }
                // The database pool, the log and the runtime need some files too.
                if now < max_connections as u64 + 64 {
                    tracing::warn!(
                        limit = now,
                        max_connections,
                        "the open-file limit is below --max-connections plus headroom: at the \
                         limit new connections wait in the listen queue (raise `ulimit -n` or \
                         lower --max-connections)"
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

/// Serves `endpoint` on `listener` until `signal` resolves, then stops accepting, lets the
/// requests in flight finish for up to `shutdown_timeout`, and drops what is left.
pub(crate) async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: Limits,
    signal: impl Future<Output = ()>,
    shutdown_timeout: Duration,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let local = listener.local_addr()?;
    let shared = Arc::new(Shared {
        endpoint,
        limits,
        local,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        shedding: Arc::new(Semaphore::new(SHED_AT_ONCE)),
        graceful: CancellationToken::new(),
        hard: CancellationToken::new(),
    });
    let connections = TaskTracker::new();
    let mut accept_errors = Backoff::default();
    let mut shed_warning = Throttle::default();
    tokio::pin!(signal);

    loop {
        let accepted = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                accept_errors.succeeded();
                accepted
            }
            // The peer gave up between its SYN and our accept: nothing to wait for.
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                let delay = accept_errors.failed(&err);
                tokio::select! {
                    () = &mut signal => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        // A live frame or a small answer goes out at once instead of waiting for the peer to
        // acknowledge the previous segment.
        let _ = stream.set_nodelay(true);
        match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(serve_connection(shared.clone(), stream, peer, permit));
            }
            Err(_) => {
                if shed_warning.ready() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "at the connection limit: answering new connections 503 (--max-connections)"
                    );
                }
                shed(&shared, stream);
            }
        }
    }

    drop(listener);
    shared.graceful.cancel();
    connections.close();
    if tokio::time::timeout(shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "requests still in flight at the shutdown timeout: closing their connections"
        );
        shared.hard.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// What every connection task shares.
struct Shared<E> {
    endpoint: E,
    limits: Limits,
    local: SocketAddr,
    /// One per open connection: the cap.
    permits: Arc<Semaphore>,
    /// One per connection being turned away with a 503.
    shedding: Arc<Semaphore>,
    /// Cancelled on shutdown: finish what is in flight, take nothing new.
    graceful: CancellationToken,
    /// Cancelled at the shutdown timeout: drop the connection.
    hard: CancellationToken,
}

/// Where a connection is in its request cycle; each phase but `Busy` has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
type PhaseCell = Arc<watch::Sender<Phase>>;

async fn serve_connection<E: Endpoint + 'static>(
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

/// Turns away a connection over the cap: `503` JSON with `Retry-After`, then close. At most
/// [`SHED_AT_ONCE`] at a time are answered; the rest are closed at once.
fn shed<E>(shared: &Shared<E>, stream: TcpStream) {
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

/// Accept errors that concern one connection only, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The back-off of the accept loop: 10 ms, doubling to 1 s, reset by a success; logs the failure
/// at most every [`WARN_EVERY`], with the count since the last line.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    failures: u64,
    unlogged: u64,
    log: Throttle,
}

impl Backoff {
    /// Records a failed accept; returns how long to wait before the next.
    fn failed(&mut self, err: &io::Error) -> Duration {
        let delay = self
            .delay
            .map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX));
        self.delay = Some(delay);
        self.failures += 1;
        self.unlogged += 1;
        if self.log.ready() {
            tracing::error!(
                error = %err,
                failures = self.unlogged,
                retry_in_ms = delay.as_millis() as u64,
                "cannot accept connections (at the open-file limit?); backing off"
            );
            self.unlogged = 0;
        }
        delay
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "accepting connections again after failed accepts"
            );
        }
        self.delay = None;
        self.failures = 0;
        self.unlogged = 0;
    }
}

/// Lets a repeating log line through at most every [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
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

/// A client socket with a write deadline, which reports reads to its connection's phase and
/// holds the connection's place under the cap for as long as it lives (through a WebSocket
/// upgrade too).
struct GuardedIo {
    /// Always `Some` until dropped (then it may linger in a task of its own).
    stream: Option<TcpStream>,
    write_timeout: Duration,
    /// Armed while a write waits; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set once the write deadline fired: a client that reads nothing gets no lingering.
    write_failed: bool,
    phase: Option<PhaseCell>,
    permit: Option<OwnedSemaphorePermit>,
    /// Set when an answer went out before its request body was read whole: see [`LINGER`].
    linger: Arc<AtomicBool>,
}

impl GuardedIo {
    fn new(
        stream: TcpStream,
        write_timeout: Duration,
        phase: Option<PhaseCell>,
        permit: Option<OwnedSemaphorePermit>,
        linger: Arc<AtomicBool>,
    ) -> GuardedIo {
        GuardedIo {
            stream: Some(stream),
            write_timeout,
            stalled: None,
            write_failed: false,
            phase,
            permit,
            linger,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    /// Passes a write's outcome through, failing it once writes have made no progress for
    /// `write_timeout`.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.write_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        self.write_failed = true;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {timeout:?} (--write-timeout)"),
        )))
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        if self.write_failed || !self.linger.load(Ordering::Acquire) {
            return;
        }
        let (Some(mut stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        // The socket keeps its place under the cap while it lingers.
        let permit = self.permit.take();
        runtime.spawn(async move {
            let _permit = permit;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let drain = async { while let Ok(1..) = stream.read(&mut sink).await {} };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = match self.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(err) => return Poll::Ready(Err(err)),
        };
        if buf.filled().len() > before {
            if let Some(phase) = &self.phase {
                // The first byte after an idle spell starts the header deadline.
                phase.send_if_modified(|p| match *p {
                    Phase::Idle(_) => {
                        *p = Phase::Head(Instant::now());
                        true
                    }
                    _ => false,
                });
            }
        }
        poll
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = match self.stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(err) => return Poll::Ready(Err(err)),
        };
        self.deadline(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = match self.stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(err) => return Poll::Ready(Err(err)),
        };
        self.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.is_write_vectored())
    }

    // A TCP socket's flush and shutdown never wait (the kernel has the bytes), so they are not
    // progress either: only writes count.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = Backoff::default();
        let err = io::Error::from_raw_os_error(24); // EMFILE
        let delays: Vec<u128> = (0..9).map(|_| backoff.failed(&err).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(&err), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn only_connection_errors_skip_the_backoff() {
        assert!(is_per_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
    }

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
