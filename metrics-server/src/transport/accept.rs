//! The accept loop: takes connections until shutdown, backs off when `accept()` fails (at the
//! open-file limit), hands each connection to its task or to the cap, then drains them.

use std::{future::Future, io, sync::Arc, time::Duration};

use poem::Endpoint;
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    cap::{shed, SHED_AT_ONCE},
    connection::serve_connection,
    Limits, Shared,
};

/// Accept errors back off from here...
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...doubling up to here.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A repeating warning (accept errors, shedding) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

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
}
