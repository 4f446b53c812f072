//! `GET /v1/ws`: the original live stream, every committed metric pushed as posted.
//!
//! Lag policy: a socket whose reader falls more than `--subscriber-buffer` metrics behind the
//! writers is closed with code 1013 ("try again later") and a reason that says how many metrics
//! it missed. Writers never wait for a reader and the server never buffers more than that ring,
//! and a reader never believes it saw everything when it did not. The socket is also pinged every
//! [`HEARTBEAT`] so that dead peers are noticed, and closed with 1001 when the server shuts down.

use std::{sync::Arc, time::Duration};

use futures::{future::BoxFuture, Sink, SinkExt, Stream, StreamExt};
use poem::web::websocket::{
    CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream, WebSocketUpgraded,
};
use poem_openapi::OpenApi;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio_util::sync::CancellationToken;

use super::ApiTags;
use crate::{hub::Committed, AppState};

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4096;

/// The subprotocol the server answers when a client offers it, e.g. a browser sending
/// `["metrics", "bearer.<token>"]`: the server must echo one it accepts, never the token.
pub(crate) const SUBPROTOCOL: &str = "metrics";

/// How often an idle socket is pinged.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

type SocketTask = Box<dyn FnOnce(WebSocketStream) -> BoxFuture<'static, ()> + Send + Sync>;

/// The live stream.
pub(crate) struct LiveApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Live")]
impl LiveApi {
    /// Live metrics (WebSocket)
    ///
    /// Upgrades to a WebSocket on which the server sends, as one text frame each, every metric
    /// committed from the moment of the request on: the JSON object as posted, in commit order.
    /// Messages from the client are ignored. A reader that falls more than the server's
    /// subscriber buffer behind is disconnected with close code 1013 and a reason saying how many
    /// metrics it missed; query `GET /v1/metrics` to fill the gap. On shutdown the server closes
    /// with 1001. A request without the WebSocket handshake gets 426 with the JSON error
    /// `upgrade_required`.
    #[oai(path = "/v1/ws", method = "get", operation_id = "liveMetrics")]
    async fn live(&self, ws: WebSocket) -> WebSocketUpgraded<SocketTask> {
        // Subscribe now, not after the handshake: a metric posted as soon as the client sees
        // the upgrade must reach it.
        let rx = self.state.hub.subscribe();
        let shutdown = self.state.shutdown.clone();
        // Clients only send pongs and a close: a small read buffer. tungstenite zeroes the
        // whole buffer before every read attempt, which the profile showed as 18% of the
        // fan-out's time with the default 128 KiB.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        ws.config(config)
            .protocols([SUBPROTOCOL])
            .on_upgrade(Box::new(move |socket| {
                Box::pin(async move {
                    let (sink, incoming) = socket.split();
                    serve_socket(sink, incoming, rx, shutdown, HEARTBEAT).await
                })
            }))
    }
}

/// Forwards committed metrics to one socket until it closes, lags, or the server shuts down.
///
/// Generic over the socket's halves so that unit tests can drive it with channels.
pub(crate) async fn serve_socket<Si, St, E>(
    mut sink: Si,
    mut incoming: St,
    mut rx: broadcast::Receiver<Arc<Committed>>,
    shutdown: CancellationToken,
    heartbeat: Duration,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let outgoing = tokio::select! {
            // Shutdown first: once the server is gone the hub closes too, and a socket that saw
            // that first would drop without its 1001.
            biased;
            _ = shutdown.cancelled() => {
                let reason = "server shutting down".to_owned();
                let _ = sink.send(Message::Close(Some((CloseCode::Away, reason)))).await;
                break;
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Vec::new()),
            item = rx.recv() => match item {
                Ok(metric) => Message::Text(metric.doc.clone()),
                Err(RecvError::Lagged(missed)) => {
                    close_lagging(&mut sink, missed).await;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
        };
        // Metrics come in bursts (one per commit): write what is already there and flush once.
        // The profile of the fan-out showed the server's time going to one write system call
        // per frame per socket.
        let mut burst = Vec::new();
        let mut lagged = None;
        if matches!(outgoing, Message::Text(_)) {
            while burst.len() < MAX_BURST {
                match rx.try_recv() {
                    Ok(metric) => burst.push(Message::Text(metric.doc.clone())),
                    Err(TryRecvError::Lagged(missed)) => {
                        lagged = Some(missed);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let write = async {
            sink.feed(outgoing).await?;
            for message in burst {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            sent = write => if sent.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
        if let Some(missed) = lagged {
            close_lagging(&mut sink, missed).await;
            break;
        }
    }
}

/// Frames written to a socket before one flush, at most.
const MAX_BURST: usize = 256;

/// Tells a reader that fell behind how many metrics it missed, with close code 1013.
async fn close_lagging<Si: Sink<Message> + Unpin>(sink: &mut Si, missed: u64) {
    tracing::info!(missed, "closing a WebSocket that fell behind");
    let reason = format!("fell behind: {missed} metrics missed; reconnect and query the gap");
    let _ = sink
        .send(Message::Close(Some((CloseCode::Again, reason))))
        .await;
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;
    use crate::hub::Hub;

    /// A fake socket: what the server sends comes out of `sent`; `from_client` feeds it.
    struct Fake {
        sent: mpsc::UnboundedReceiver<Message>,
        from_client: mpsc::UnboundedSender<Result<Message, ()>>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(hub: &Hub, shutdown: CancellationToken) -> Fake {
        let (sink, sent) = mpsc::unbounded();
        let (from_client, incoming) = mpsc::unbounded();
        let task = tokio::spawn(serve_socket(
            sink,
            incoming,
            hub.subscribe(),
            shutdown,
            HEARTBEAT,
        ));
        Fake {
            sent,
            from_client,
            task,
        }
    }

    fn metric(id: i64) -> Committed {
        Committed {
            id,
            name: "m".into(),
            doc: format!("{{\"n\":{id}}}"),
        }
    }

    #[tokio::test]
    async fn forwards_metrics_as_posted_then_closes_on_shutdown() {
        let hub = Hub::new(8);
        let shutdown = CancellationToken::new();
        let mut fake = start(&hub, shutdown.clone());
        hub.publish([metric(1), metric(2)]);
        assert_eq!(
            fake.sent.next().await,
            Some(Message::Text("{\"n\":1}".into()))
        );
        assert_eq!(
            fake.sent.next().await,
            Some(Message::Text("{\"n\":2}".into()))
        );
        shutdown.cancel();
        match fake.sent.next().await {
            Some(Message::Close(Some((code, _)))) => assert_eq!(code, CloseCode::Away),
            other => panic!("expected a close frame, got {other:?}"),
        }
        fake.task.await.unwrap();
        drop(fake.from_client);
    }

    #[tokio::test]
    async fn closes_a_lagging_reader_with_1013() {
        let hub = Hub::new(2);
        let mut fake = start(&hub, CancellationToken::new());
        // Published before the task reads anything: 3 of 5 are lost to the ring.
        hub.publish((1..=5).map(metric));
        let mut frames = Vec::new();
        while let Some(frame) = fake.sent.next().await {
            frames.push(frame);
        }
        match frames.last() {
            Some(Message::Close(Some((code, reason)))) => {
                assert_eq!(*code, CloseCode::Again);
                assert!(reason.contains("metrics missed"), "{reason}");
            }
            other => panic!("expected a 1013 close, got {other:?}"),
        }
        fake.task.await.unwrap();
    }

    #[tokio::test]
    async fn stops_when_the_client_closes() {
        let hub = Hub::new(2);
        let fake = start(&hub, CancellationToken::new());
        fake.from_client
            .unbounded_send(Ok(Message::Close(None)))
            .unwrap();
        fake.task.await.unwrap();
    }
}
