//! What `/v1/ws` and `/v1/stream` share: who may open a live socket, and the write path with a
//! deadline.
//!
//! Before the `101`, [`LiveSockets::admit`] refuses a browser page of another origin (403, against
//! cross-site WebSocket hijacking) and a socket over the cap (503 with `Retry-After`). After it,
//! every frame goes through a [`Writer`]: a socket that stays unwritable for the write timeout is
//! dropped, so a reader that stopped reading cannot hold the server's buffers and a task forever
//! (NATS' `write_deadline`). An incoming message over [`MAX_INCOMING`] is answered with close
//! code 1009.

use std::{future::Future, io, sync::Arc, time::Duration};

use futures::{
    future::BoxFuture,
    stream::{BoxStream, SplitSink},
    Sink, SinkExt, StreamExt,
};
use metrics_types::ErrorCode;
use poem::{
    http::{header, StatusCode},
    web::websocket::{
        CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream, WebSocketUpgraded,
    },
    Request,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::Config;

/// The largest message (and frame) a client may send; clients send nothing but pongs and a close,
/// so this is generous (Centrifugo's `websocket_message_size_limit`).
pub(crate) const MAX_INCOMING: usize = 64 << 10;

/// Bytes read from a socket at a time. Clients only send pongs and a close: a small read buffer.
/// tungstenite zeroes the whole buffer before every read attempt, which the profile showed as 18%
/// of the fan-out's time with the default 128 KiB.
const READ_BUFFER: usize = 4096;

/// The subprotocol the server answers when a client offers it, e.g. a browser sending
/// `["metrics", "bearer.<token>"]`: the server must echo one it accepts, never the token.
pub(crate) const SUBPROTOCOL: &str = "metrics";

/// What a live route runs once its socket is upgraded (the type poem's `on_upgrade` is given).
pub(crate) type SocketTask =
    Box<dyn FnOnce(WebSocketStream) -> BoxFuture<'static, ()> + Send + Sync>;

/// The writing half of an upgraded socket, behind its [`Writer`].
pub(crate) type SocketSink = SplitSink<WebSocketStream, Message>;

/// The reading half of an upgraded socket.
pub(crate) type SocketReader = BoxStream<'static, Result<Message, ReadError>>;

/// Completes the handshake of `ws` as every live route does: the settings of [`config`], the
/// [`SUBPROTOCOL`], writes through a [`Writer`] with the admitted deadline. `serve` is the route's
/// own loop; the socket keeps its place under the cap until `serve` ends.
pub(crate) fn upgrade<F, Fut>(
    ws: WebSocket,
    admitted: Admitted,
    serve: F,
) -> WebSocketUpgraded<SocketTask>
where
    F: FnOnce(Writer<SocketSink>, SocketReader) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ws.config(config())
        .protocols([SUBPROTOCOL])
        .on_upgrade(Box::new(move |socket: WebSocketStream| {
            Box::pin(async move {
                let (sink, incoming) = socket.split();
                let writer = Writer::new(sink, admitted.write_timeout);
                serve(writer, incoming.map(|r| r.map_err(ReadError::from)).boxed()).await;
                drop(admitted);
            }) as BoxFuture<'static, ()>
        }))
}

/// The tungstenite settings of every live socket.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_INCOMING))
        .max_frame_size(Some(MAX_INCOMING))
}

/// The live sockets' limits, shared by both WebSocket routes; cheap to clone.
#[derive(Clone)]
pub(crate) struct LiveSockets {
    /// One permit per open socket (`--max-ws-connections`).
    slots: Arc<Semaphore>,
    /// The cap, for the 503's message.
    max: usize,
    /// How long a socket may stay unwritable before it is dropped (`--ws-write-timeout`).
    write_timeout: Duration,
    /// Origins allowed besides the server's own (`--allowed-origins`), normalised by
    /// [`normalise_origin`]; `*` allows any.
    allowed_origins: Arc<[String]>,
}

impl LiveSockets {
    pub(crate) fn new(config: &Config) -> Self {
        LiveSockets {
            // Semaphore::new panics above MAX_PERMITS (2^61): a cap that large means "no cap".
            slots: Arc::new(Semaphore::new(
                config.max_ws_connections.min(Semaphore::MAX_PERMITS),
            )),
            max: config.max_ws_connections,
            write_timeout: config.ws_write_timeout,
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| normalise_origin(o))
                .collect(),
        }
    }

    /// Lets a WebSocket upgrade through, or says why not (before any `101`): 403 `forbidden` for
    /// an `Origin` that is neither this server's nor allowed, 503 `unavailable` with
    /// `Retry-After` when every slot is taken. The slot is held as long as the returned value.
    pub(crate) fn admit(&self, req: &Request) -> Result<Admitted, ApiError> {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin, host) {
                tracing::info!(origin, "refused a WebSocket from a foreign origin");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    format!(
                        "Origin {origin:?} may not open a WebSocket here: only pages served by \
                         this server and the origins in --allowed-origins may"
                    ),
                ));
            }
        }
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!(
                    "the server holds its maximum of {} live sockets (--max-ws-connections); \
                     retry later",
                    self.max
                ),
            )
        })?;
        Ok(Admitted {
            _slot: slot,
            write_timeout: self.write_timeout,
        })
    }

    /// Same origin (the `Origin`'s host and port are the `Host` header's), or on the allow-list.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalise_origin(origin);
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
        {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false; // "null" (a sandboxed page, a file) and anything malformed
        };
        let default_port = match scheme {
            "http" => "80",
            "https" => "443",
            _ => return false,
        };
        let with_port = |authority: &str| -> String {
            if authority.ends_with(']') || !authority.contains(':') {
                format!("{authority}:{default_port}")
            } else {
                authority.to_owned()
            }
        };
        host.is_some_and(|host| with_port(&host.to_ascii_lowercase()) == with_port(authority))
    }
}

/// `Scheme://Host:Port/` as `scheme://host:port`: lower case, no trailing slash.
fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// A socket let through [`LiveSockets::admit`]: it holds one slot until dropped.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    /// The deadline of each write to this socket.
    pub(crate) write_timeout: Duration,
}

/// Why a socket's writer gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The socket is closed or broken.
    Closed,
    /// The socket stayed unwritable for the whole write timeout: the reader stopped reading.
    TimedOut,
}

/// The write half of a live socket: every frame must reach the socket within the deadline.
pub(crate) struct Writer<Si> {
    sink: Si,
    deadline: Duration,
}

impl<Si: Sink<Message> + Unpin> Writer<Si> {
    pub(crate) fn new(sink: Si, deadline: Duration) -> Self {
        Writer { sink, deadline }
    }

    /// Writes `messages` and flushes once: a burst costs one write system call, not one per frame
    /// (the profile of the fan-out showed the server's time going there). Each frame, and the
    /// flush, must be taken by the socket within the deadline.
    pub(crate) async fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<(), WriteError> {
        for message in messages {
            within(self.deadline, self.sink.feed(message)).await?;
        }
        within(self.deadline, self.sink.flush()).await
    }

    /// Writes one frame.
    pub(crate) async fn send(&mut self, message: Message) -> Result<(), WriteError> {
        self.send_all([message]).await
    }

    /// Sends a close frame, if the socket takes it within the deadline; either way the socket is
    /// done. A reader that stopped reading never sees it, and is dropped instead.
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let message = Message::Close(Some((code, reason.to_owned())));
        let _ = self.send(message).await;
    }
}

/// Runs one write; a write the socket does not take within `deadline` fails with
/// [`WriteError::TimedOut`].
async fn within<E>(
    deadline: Duration,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), WriteError> {
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteError::Closed),
        Err(_) => {
            tracing::info!(
                timeout = ?deadline,
                "dropping a WebSocket that stayed unwritable past the write timeout"
            );
            Err(WriteError::TimedOut)
        }
    }
}

/// Why reading from a socket stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client sent a message over [`MAX_INCOMING`]: answer with 1009.
    TooBig,
    /// The connection broke or the client broke the protocol.
    Broken,
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        // poem flattens tungstenite's errors into io::Error::other(message); tungstenite's
        // CapacityError::MessageTooLong reads "Space limit exceeded: Message too long: N > M"
        // (the faults suite's `an_oversized_frame_closes_with_1009` pins this).
        if err.kind() == io::ErrorKind::Other && err.to_string().contains("Message too long") {
            ReadError::TooBig
        } else {
            ReadError::Broken
        }
    }
}

/// What to do about a message that arrived from the client (clients send pongs, pings and a
/// close; the server has nothing to read).
pub(crate) enum Incoming {
    /// Anything but a close: the peer is alive.
    Alive,
    /// The client closed, or the connection broke: stop without writing more.
    Gone,
    /// The client sent a message over the limit: close with 1009, then stop.
    TooBig,
}

impl Incoming {
    pub(crate) fn of(message: Option<Result<Message, ReadError>>) -> Incoming {
        match message {
            Some(Ok(Message::Close(_))) | Some(Err(ReadError::Broken)) | None => Incoming::Gone,
            Some(Err(ReadError::TooBig)) => Incoming::TooBig,
            Some(Ok(_)) => Incoming::Alive,
        }
    }
}

/// The close sent for [`Incoming::TooBig`].
pub(crate) async fn close_too_big<Si: Sink<Message> + Unpin>(writer: &mut Writer<Si>) {
    let reason = format!("message too big: clients may send at most {MAX_INCOMING} bytes");
    writer.close(CloseCode::Size, &reason).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets(allowed: &[&str]) -> LiveSockets {
        let mut config = Config::with_database("sqlite::memory:");
        config.allowed_origins = allowed.iter().map(|s| s.to_string()).collect();
        config.max_ws_connections = 1;
        LiveSockets::new(&config)
    }

    #[test]
    fn same_origin_is_allowed_and_others_are_not() {
        let s = sockets(&[]);
        assert!(s.origin_allowed("http://127.0.0.1:5000", Some("127.0.0.1:5000")));
        assert!(s.origin_allowed("HTTP://Example.com", Some("example.com")));
        assert!(s.origin_allowed("http://example.com", Some("example.com:80")));
        assert!(s.origin_allowed("https://example.com", Some("example.com")));
        assert!(s.origin_allowed("http://[::1]:5000", Some("[::1]:5000")));
        assert!(!s.origin_allowed("http://[::1]", Some("[::1]:5000")));
        assert!(!s.origin_allowed("http://evil.example", Some("127.0.0.1:5000")));
        assert!(!s.origin_allowed("http://127.0.0.1:5001", Some("127.0.0.1:5000")));
        assert!(!s.origin_allowed("https://example.com", Some("example.com:80")));
        assert!(!s.origin_allowed("null", Some("127.0.0.1:5000")));
        assert!(!s.origin_allowed("http://127.0.0.1:5000", None));
    }

    #[test]
    fn the_allow_list_adds_origins() {
        let s = sockets(&["https://dash.example.com/"]);
        assert!(s.origin_allowed("https://Dash.example.com", Some("10.0.0.1:5000")));
        assert!(!s.origin_allowed("http://dash.example.com", Some("10.0.0.1:5000")));
        assert!(sockets(&["*"]).origin_allowed("http://evil.example", Some("h")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stays_blocked_times_out() {
        // A channel of capacity 0 whose receiver never reads: the second frame never fits.
        let (sink, _never_read) = futures::channel::mpsc::channel::<Message>(0);
        let mut writer = Writer::new(sink, Duration::from_millis(500));
        let started = tokio::time::Instant::now();
        let sent = writer
            .send_all([Message::Text("a".into()), Message::Text("b".into())])
            .await;
        assert_eq!(sent, Err(WriteError::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        // The close frame cannot get through either, and does not wait longer than the deadline.
        writer.close(CloseCode::Again, "lagged").await;
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
    }

    #[test]
    fn too_long_messages_are_recognised() {
        let err = io::Error::other("Space limit exceeded: Message too long: 70000 > 65536");
        assert!(matches!(ReadError::from(err), ReadError::TooBig));
        let err = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(ReadError::from(err), ReadError::Broken));
    }
}
