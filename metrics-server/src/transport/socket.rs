//! The client socket under guard: a write deadline, reads reported to the connection's
//! [`Phase`], the connection's place under the cap, and the lingering close after an answer
//! given before the request body was read.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};

use super::connection::{Phase, PhaseCell};

/// After answering a request whose body it did not read, the server reads and discards what the
/// client still sends for up to this long before closing: closing with unread data would send a
/// reset, which can destroy the answer before the client reads it (nginx's `lingering_close`).
const LINGER: Duration = Duration::from_secs(5);

/// A client socket with a write deadline, which reports reads to its connection's phase and
/// holds the connection's place under the cap for as long as it lives (through a WebSocket
/// upgrade too).
pub(super) struct GuardedIo {
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
    pub(super) fn new(
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
