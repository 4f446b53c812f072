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
//!   the socket lingers (reads and discards) for up to `LINGER` (5 s) before closing, so that a
//!   reset does not destroy the answer.
//!
//! The deadlines of a connection follow its `Phase`: the socket reports bytes read, the service
//! reports requests starting and their responses finishing, and a watchdog closes the connection
//! when the deadline of the phase it is in passes.
//!
//! | file | job |
//! | --- | --- |
//! | `accept.rs` | the accept loop: back-off, shutdown, raising the open-file limit |
//! | `cap.rs` | the connection cap: a connection over `max_connections` gets a 503 |
//! | `connection.rs` | one connection: its `Phase` and watchdog, the head size, the body deadline |
//! | `socket.rs` | the client socket: the write deadline, the cap's permit, the lingering close |

mod accept;
mod cap;
mod connection;
mod socket;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use self::accept::raise_fd_limit;
pub(crate) use self::accept::serve;
use crate::Config;

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
    pub(super) fn hyper_buffer(&self) -> usize {
        self.max_header_size
            .saturating_mul(4)
            .clamp(MIN_HYPER_BUFFER, MAX_HYPER_BUFFER)
    }
}

/// hyper refuses a buffer under 8 KiB.
const MIN_HYPER_BUFFER: usize = 8 << 10;
/// hyper's own default (about 400 KiB); a larger buffer only costs memory.
const MAX_HYPER_BUFFER: usize = 8192 + 4096 * 100;

/// What every connection task shares.
pub(super) struct Shared<E> {
    pub(super) endpoint: E,
    pub(super) limits: Limits,
    pub(super) local: SocketAddr,
    /// One per open connection: the cap.
    pub(super) permits: Arc<Semaphore>,
    /// One per connection being turned away with a 503.
    pub(super) shedding: Arc<Semaphore>,
    /// Cancelled on shutdown: finish what is in flight, take nothing new.
    pub(super) graceful: CancellationToken,
    /// Cancelled at the shutdown timeout: drop the connection.
    pub(super) hard: CancellationToken,
}
