//! `GET /v1/ws`: the original live stream, every committed metric pushed as posted.
//!
//! Lag policy: a socket whose reader falls more than `--subscriber-buffer` metrics behind the
//! writers is closed with code 1013 ("try again later") and a reason that says how many metrics
//! it missed. Writers never wait for a reader and the server never buffers more than that ring,
//! and a reader never believes it saw everything when it did not. The socket is also pinged every
//! [`HEARTBEAT`] so that dead peers are noticed, and closed with 1001 when the server shuts down.
//! A reader that stops reading altogether cannot even take the 1013: every write, the close
//! included, has the `--ws-write-timeout` deadline of the shared [`Writer`], past which the socket
//! is dropped.

use std::{sync::Arc, time::Duration};

use futures::{Sink, Stream, StreamExt};
use poem::{
    web::websocket::{CloseCode, Message, WebSocket, WebSocketUpgraded},
    IntoResponse, Request, Response,
};
use poem_openapi::{
    param::Query,
    registry::{MetaResponse, MetaResponses, Registry},
    ApiResponse, OpenApi,
};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio_util::sync::CancellationToken;

use super::{
    error::ApiError,
    socket::{self, Incoming, ReadError, Writer},
    ApiTags,
};
use crate::{hub::Committed, monitor::Monitor, selection::Selection, AppState};

/// How often an idle socket is pinged.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

/// The live stream.
pub(crate) struct LiveApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Live")]
impl LiveApi {
    /// Live metrics (WebSocket)
    ///
    /// Upgrades to a WebSocket on which the server sends, as one text frame each, every metric
    /// committed from the moment of the request on that the selection parameters select (those
    /// of `GET /v1/metrics`: `name`, `sts`, `ets`, `tag.<key>`, `match`; none means every
    /// metric): the JSON object as posted, in commit order. An unknown parameter or a bad value
    /// is a 400 before the upgrade.
    /// Messages from the client are ignored; one over 64 KiB closes the socket with 1009. A
    /// reader that falls more than the server's subscriber buffer behind is disconnected with
    /// close code 1013 and a reason saying how many metrics it missed; query `GET /v1/metrics` to
    /// fill the gap. A socket that stays unwritable past the server's write timeout is dropped.
    /// On shutdown the server closes with 1001. A request without the WebSocket handshake gets
    /// 426 with the JSON error `upgrade_required`; a browser page of a foreign `Origin` gets 403
    /// `forbidden`, and an upgrade over the server's socket cap 503 with `Retry-After`.
    #[oai(path = "/v1/ws", method = "get", operation_id = "liveMetrics")]
    async fn live(
        &self,
        req: &Request,
        ws: WebSocket,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, name = "name")]
        _name: Query<Vec<super::schema::NameFilter>>,
        /// Only metrics with `ts` at or after this instant (inclusive): the forms of
        /// `GET /v1/metrics`.
        #[oai(name = "sts")]
        _sts: Query<Option<super::param_types::TimeParam>>,
        /// Only metrics with `ts` at or before this instant (inclusive).
        #[oai(name = "ets")]
        _ets: Query<Option<super::param_types::TimeParam>>,
        /// Only metrics this Prometheus selector selects (`{host=~"web-.*", region!="eu"}`,
        /// optionally after a name); repeat for all of several. `tag.<key>=<text>` parameters
        /// filter on a tag as on `GET /v1/metrics`.
        #[oai(default, name = "match")]
        _match: Query<Vec<super::param_types::SelectorParam>>,
    ) -> Result<LiveUpgraded, ApiError> {
        let selection = super::params::selection(req, &[])?;
        let admitted = self.state.live.admit(req)?;
        // Subscribe now, not after the handshake: a metric posted as soon as the client sees
        // the upgrade must reach it.
        let rx = self.state.hub.subscribe();
        let shutdown = self.state.shutdown.clone();
        let monitor = self.state.monitor.clone();
        Ok(LiveUpgraded(socket::upgrade(
            ws,
            admitted,
            move |writer, incoming| {
                serve_socket(
                    writer, incoming, rx, selection, shutdown, HEARTBEAT, monitor,
                )
            },
        )))
    }
}

/// The upgrade, documented as a 101 (or a 426 without the handshake).
pub(crate) struct LiveUpgraded(WebSocketUpgraded<socket::SocketTask>);

impl IntoResponse for LiveUpgraded {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for LiveUpgraded {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![
                MetaResponse {
                    description: "Switching to the WebSocket protocol. Each text frame is a \
                                  metric as posted (JSON).",
                    status: Some(101),
                    status_range: None,
                    content: vec![],
                    headers: vec![],
                },
                super::error::upgrade_required_meta(),
            ],
        }
    }

    fn register(_: &mut Registry) {}
}

/// Forwards the committed metrics `selection` selects to one socket until it closes, lags,
/// stalls, or the server shuts down.
///
/// Generic over the socket's halves so that unit tests can drive it with channels.
pub(crate) async fn serve_socket<Si, St>(
    mut writer: Writer<Si>,
    mut incoming: St,
    mut rx: broadcast::Receiver<Arc<Committed>>,
    selection: Selection,
    shutdown: CancellationToken,
    heartbeat: Duration,
    monitor: Arc<Monitor>,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, ReadError>> + Unpin,
{
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let outgoing = tokio::select! {
            // Shutdown first: once the server is gone the hub closes too, and a socket that saw
            // that first would drop without its 1001.
            biased;
            _ = shutdown.cancelled() => {
                writer.close(CloseCode::Away, "server shutting down").await;
                break;
            }
            message = incoming.next() => match Incoming::of(message) {
                Incoming::Alive => continue,
                Incoming::Gone => break,
                Incoming::TooBig => {
                    socket::close_too_big(&mut writer).await;
                    break;
                }
            },
            _ = ping.tick() => Message::Ping(Vec::new()),
            item = rx.recv() => match item {
                Ok(metric) if !wanted(&selection, &metric) => continue,
                Ok(metric) => Message::Text(metric.doc.clone()),
                Err(RecvError::Lagged(missed)) => {
                    monitor.lagged(missed);
                    close_lagging(&mut writer, missed).await;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
        };
        // Metrics come in bursts (one per commit): write what is already there and flush once.
        let mut burst = vec![outgoing];
        let mut lagged = None;
        if matches!(burst[0], Message::Text(_)) {
            while burst.len() <= MAX_BURST {
                match rx.try_recv() {
                    Ok(metric) if !wanted(&selection, &metric) => {}
                    Ok(metric) => burst.push(Message::Text(metric.doc.clone())),
                    Err(TryRecvError::Lagged(missed)) => {
                        lagged = Some(missed);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        tokio::select! {
            // Closed, or unwritable past the write timeout: drop the socket.
            sent = writer.send_all(burst) => if sent.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
        if let Some(missed) = lagged {
            monitor.lagged(missed);
            close_lagging(&mut writer, missed).await;
            break;
        }
    }
}

/// Whether a socket with this selection gets this metric.
fn wanted(selection: &Selection, metric: &Committed) -> bool {
    selection.matches(&metric.name, metric.ts_micros, &metric.tags)
}

/// Frames written to a socket before one flush, at most.
const MAX_BURST: usize = 256;

/// Tells a reader that fell behind how many metrics it missed, with close code 1013, if its
/// socket takes the frame within the write timeout.
async fn close_lagging<Si: Sink<Message> + Unpin>(writer: &mut Writer<Si>, missed: u64) {
    tracing::info!(missed, "closing a WebSocket that fell behind");
    let reason = format!("fell behind: {missed} metrics missed; reconnect and query the gap");
    writer.close(CloseCode::Again, &reason).await;
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;
    use crate::hub::Hub;

    /// A fake socket: what the server sends comes out of `sent`; `from_client` feeds it.
    struct Fake {
        sent: mpsc::UnboundedReceiver<Message>,
        from_client: mpsc::UnboundedSender<Result<Message, ReadError>>,
        task: tokio::task::JoinHandle<()>,
        monitor: Arc<Monitor>,
    }

    fn start(hub: &Hub, shutdown: CancellationToken) -> Fake {
        start_with(hub, shutdown, Selection::default())
    }

    fn start_with(hub: &Hub, shutdown: CancellationToken, selection: Selection) -> Fake {
        let (sink, sent) = mpsc::unbounded();
        let (from_client, incoming) = mpsc::unbounded();
        let monitor = Arc::new(Monitor::new());
        let task = tokio::spawn(serve_socket(
            Writer::new(sink, Duration::from_secs(10)),
            incoming,
            hub.subscribe(),
            selection,
            shutdown,
            HEARTBEAT,
            monitor.clone(),
        ));
        Fake {
            sent,
            from_client,
            task,
            monitor,
        }
    }

    fn metric(id: i64) -> Committed {
        Committed {
            id,
            name: "m".into(),
            ts_micros: 0,
            tags: Default::default(),
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
    async fn forwards_only_what_the_selection_selects() {
        use crate::selection::{MatchOp, TagMatcher};
        let hub = Hub::new(16);
        let shutdown = CancellationToken::new();
        let selection = Selection {
            names: vec!["cpu".into()],
            start_micros: Some(10),
            tags: vec![TagMatcher {
                key: "host".into(),
                op: MatchOp::Equal(vec!["a".into()]),
            }],
            ..Selection::default()
        };
        let mut fake = start_with(&hub, shutdown.clone(), selection);
        let tagged = |id: i64, name: &str, ts_micros: i64, host: &str| Committed {
            id,
            name: name.into(),
            ts_micros,
            tags: [("host".to_owned(), host.to_owned())].into_iter().collect(),
            doc: format!("{{\"n\":{id}}}"),
        };
        hub.publish([
            tagged(1, "cpu", 10, "b"), // another host
            tagged(2, "mem", 10, "a"), // another name
            tagged(3, "cpu", 9, "a"),  // before the range
            tagged(4, "cpu", 10, "a"),
            tagged(5, "cpu", 11, "b"),
        ]);
        hub.publish([tagged(6, "cpu", 12, "b"), tagged(7, "cpu", 12, "a")]);
        assert_eq!(
            fake.sent.next().await,
            Some(Message::Text("{\"n\":4}".into()))
        );
        assert_eq!(
            fake.sent.next().await,
            Some(Message::Text("{\"n\":7}".into()))
        );
        shutdown.cancel();
        assert!(matches!(fake.sent.next().await, Some(Message::Close(_))));
        fake.task.await.unwrap();
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
        // `GET /metrics` tells the operator: one socket closed, the 3 metrics it missed.
        let scraped = fake.monitor.scrape(0, 0);
        assert!(
            scraped.contains("metrics_ws_lag_closes_total 1"),
            "{scraped}"
        );
        assert!(
            scraped.contains("metrics_ws_lag_missed_frames_total 3"),
            "{scraped}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stopped_reading_is_dropped_after_the_write_timeout() {
        let hub = Hub::new(2);
        // The socket takes one frame and then nothing: its reader stopped reading.
        let (sink, _unread) = mpsc::channel::<Message>(0);
        let (_from_client, incoming) = mpsc::unbounded::<Result<Message, ReadError>>();
        let task = tokio::spawn(serve_socket(
            Writer::new(sink, Duration::from_millis(500)),
            incoming,
            hub.subscribe(),
            Selection::default(),
            CancellationToken::new(),
            HEARTBEAT,
            Arc::new(Monitor::new()),
        ));
        // It lags; the 1013 cannot be written either, and must not be waited for forever.
        hub.publish((1..=5).map(metric));
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the socket task ends after the write timeout")
            .unwrap();
    }

    #[tokio::test]
    async fn an_oversized_message_closes_with_1009() {
        let hub = Hub::new(2);
        let mut fake = start(&hub, CancellationToken::new());
        fake.from_client
            .unbounded_send(Err(ReadError::TooBig))
            .unwrap();
        match fake.sent.next().await {
            Some(Message::Close(Some((code, _)))) => assert_eq!(code, CloseCode::Size),
            other => panic!("expected a 1009 close, got {other:?}"),
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
