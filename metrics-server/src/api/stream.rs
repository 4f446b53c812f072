//! `GET /v1/stream`: the resumable live stream, and `GET /v1/limits`: what clients must respect.
//!
//! Unlike `/v1/ws`, every frame carries the metric's stored id (a [`StreamFrame`]), and a client
//! that comes back with `since=<last id>` misses nothing and gets nothing twice:
//!
//! 1. the socket subscribes to the hub *first*, so nothing committed from then on can slip by;
//! 2. it replays from the database every committed metric after the cursor, page by page;
//! 3. it then forwards live metrics, dropping those with an id at or below the last one sent
//!    (they were already replayed).
//!
//! The writer commits one transaction at a time and publishes in commit order, so ids arrive in
//! increasing order and "at or below the cursor" is exactly "already sent". A reader that falls
//! behind the hub's ring is not disconnected as on `/v1/ws`: it catches up from the database and
//! carries on. Both ends ping: the server pings every [`HEARTBEAT`] and closes a socket from which
//! it heard nothing (not even a pong) for three heartbeats.

use std::{sync::Arc, time::Duration};

use futures::{Sink, Stream, StreamExt};
use metrics_types::{ErrorCode, Limits, StreamFrame, Timestamp};
use poem::{
    web::websocket::{CloseCode, Message, WebSocket, WebSocketUpgraded},
    IntoResponse, Request, Response,
};
use poem_openapi::{
    param::Query,
    payload::Json,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    ApiResponse, OpenApi,
};
use tokio::{
    sync::broadcast::{
        self,
        error::{RecvError, TryRecvError},
    },
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    error::ApiError,
    socket::{self, Incoming, ReadError, WriteError, Writer},
    ApiTags,
};
use crate::{
    hub::Committed,
    selection::Selection,
    store::{MetricStore, StoreError},
    AppState,
};

/// How often the server pings a stream socket; three silent heartbeats and it is closed.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);

/// Metrics read from the database per replay query.
const REPLAY_PAGE: u64 = 1000;

/// The resumable stream and the published limits.
pub(crate) struct StreamApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Live")]
impl StreamApi {
    /// Server limits
    ///
    /// The per-request limits clients split their batches under, and the idempotency window.
    #[oai(path = "/v1/limits", method = "get", operation_id = "limits")]
    async fn limits(&self) -> Result<Json<Limits>, ApiError> {
        // Never fails itself, but like every route it can answer 401/403 (auth on), 405, ...:
        // the error type puts those in the spec.
        Ok(Json(Limits {
            max_body_bytes: self.state.body_limit as u64,
            idempotency_window_secs: self.state.idempotency_window.as_secs(),
        }))
    }

    /// Resumable live metrics (WebSocket)
    ///
    /// Upgrades to a WebSocket on which the server sends one JSON text frame (`StreamFrame`) per
    /// committed metric the selection parameters select (those of `GET /v1/metrics`: `name`,
    /// `sts`, `ets`, `tag.<key>`, `match`; none means every metric), in commit order:
    /// `{"id": <cursor>, "metric": {...as posted}}`; replays apply the same filter. Without
    /// `since` or `since_ts` the stream starts from now, and its first frame is a checkpoint
    /// (`{"id": <cursor>}`, no metric) giving the current cursor. With `since=<cursor>` it first
    /// replays every stored metric after the cursor, then goes live without a gap or a duplicate:
    /// reconnect with the id of the last frame handled to resume exactly there. A reader that
    /// falls behind catches up from the database; it is never disconnected for lagging. The
    /// server pings every 15 s and closes a socket silent for 45 s; clients should ping too. On
    /// shutdown it closes with 1001; on a database failure with 1011 (reconnect with `since`).
    #[oai(path = "/v1/stream", method = "get", operation_id = "streamMetrics")]
    #[allow(clippy::too_many_arguments)] // the parameters, declared for the spec
    async fn stream(
        &self,
        req: &Request,
        ws: WebSocket,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, name = "name")]
        _name: Query<Vec<super::schema::NameFilter>>,
        /// Only metrics with `ts` at or after this instant (inclusive), live and replayed: the
        /// forms of `GET /v1/metrics`.
        #[oai(name = "sts")]
        _sts: Query<Option<super::param_types::TimeParam>>,
        /// Only metrics with `ts` at or before this instant (inclusive), live and replayed.
        #[oai(name = "ets")]
        _ets: Query<Option<super::param_types::TimeParam>>,
        /// Only metrics this Prometheus selector selects (`{host=~"web-.*", region!="eu"}`,
        /// optionally after a name); repeat for all of several. `tag.<key>=<text>` parameters
        /// filter on a tag as on `GET /v1/metrics`.
        #[oai(default, name = "match")]
        _match: Query<Vec<super::param_types::SelectorParam>>,
        /// Resume after this cursor (the `id` of the last frame handled).
        since: Query<Option<i64>>,
        /// Start by replaying the stored metrics whose `ts` is at or after this instant (the
        /// forms of `sts`), in storage order, then go live. Ignored when `since` is given.
        #[oai(name = "since_ts")]
        _since_ts: Query<Option<super::param_types::TimeParam>>,
    ) -> Result<StreamUpgraded, ApiError> {
        let params = super::params::Params::read(req, &["since", "since_ts"])?;
        params.one("since")?;
        let since_ts = params.one("since_ts")?.map(str::trim);
        let selection = params.selection()?;
        let admitted = self.state.live.admit(req)?;
        // Subscribe before anything is read from the database: nothing can fall in between.
        let rx = self.state.hub.subscribe();
        let start = match (since.0, since_ts) {
            (Some(cursor), _) if cursor < 0 => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParam,
                    format!("query parameter `since` must be a cursor (0 or more), not {cursor}"),
                ))
            }
            (Some(cursor), _) => Start::After(cursor),
            // "Now" is fixed before the handshake completes: whatever the client posts once it
            // sees the upgrade has a higher id and is delivered.
            (None, None | Some("")) => Start::Now(self.state.store.last_id().await?),
            (None, Some(text)) => Start::FromTs(
                Timestamp::parse_param(text, chrono::Utc::now())
                    .map_err(|err| {
                        ApiError::bad_request(
                            ErrorCode::InvalidTimestamp,
                            format!("query parameter `since_ts`: {err}"),
                        )
                    })?
                    .timestamp_micros(),
            ),
        };
        let stream = LiveStream {
            store: self.state.store.clone(),
            selection,
            shutdown: self.state.shutdown.clone(),
            heartbeat: HEARTBEAT,
        };
        Ok(StreamUpgraded(socket::upgrade(
            ws,
            admitted,
            move |writer, incoming| stream.serve(writer, incoming, rx, start),
        )))
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// From now on: after this cursor (the newest id when the request came), announced to the
    /// client with a checkpoint frame.
    Now(i64),
    /// After this cursor.
    After(i64),
    /// Every stored metric with `ts` at or after this instant (micros), then live.
    FromTs(i64),
}

/// One stream socket's settings.
pub(crate) struct LiveStream {
    /// Where replays read from.
    pub(crate) store: Arc<dyn MetricStore>,
    /// Which metrics the client wants, live and replayed alike.
    pub(crate) selection: Selection,
    /// Cancelled on server shutdown.
    pub(crate) shutdown: CancellationToken,
    /// Ping interval.
    pub(crate) heartbeat: Duration,
}

/// Why a socket stops.
enum Stop {
    /// The client left, the socket broke or stayed unwritable: nothing more to send.
    Gone,
    /// The client sent a message over the limit: close with 1009.
    TooBig,
    /// The database failed: tell the client, which may reconnect with its cursor.
    Store(StoreError),
}

impl From<WriteError> for Stop {
    fn from(_: WriteError) -> Self {
        Stop::Gone
    }
}

impl LiveStream {
    /// Serves one socket until it closes, goes silent, stalls, or the server shuts down.
    ///
    /// Generic over the socket's halves so that unit tests can drive it with channels.
    pub(crate) async fn serve<Si, St>(
        self,
        mut writer: Writer<Si>,
        mut incoming: St,
        mut rx: broadcast::Receiver<Arc<Committed>>,
        start: Start,
    ) where
        Si: Sink<Message> + Unpin,
        St: Stream<Item = Result<Message, ReadError>> + Unpin,
    {
        match self.run(&mut writer, &mut incoming, &mut rx, start).await {
            Stop::Gone => {}
            Stop::TooBig => socket::close_too_big(&mut writer).await,
            Stop::Store(err) => {
                tracing::warn!(error = %err, "stream socket closed on a database error");
                let reason = "database unavailable; reconnect with since=<last id>";
                writer.close(CloseCode::Error, reason).await;
            }
        }
        if self.shutdown.is_cancelled() {
            writer.close(CloseCode::Away, "server shutting down").await;
        }
    }

    async fn run<Si, St>(
        &self,
        writer: &mut Writer<Si>,
        incoming: &mut St,
        rx: &mut broadcast::Receiver<Arc<Committed>>,
        start: Start,
    ) -> Stop
    where
        Si: Sink<Message> + Unpin,
        St: Stream<Item = Result<Message, ReadError>> + Unpin,
    {
        let (mut cursor, mut start_micros) = match start {
            Start::Now(id) => {
                if writer.send(checkpoint(id)).await.is_err() {
                    return Stop::Gone;
                }
                (id, None)
            }
            Start::After(id) => (id, None),
            Start::FromTs(micros) => (0, Some(micros)),
        };
        if let Err(stop) = self
            .catch_up(writer, &mut cursor, start_micros.take())
            .await
        {
            return stop;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        let mut heard = Instant::now();
        loop {
            let mut lagged = false;
            let burst = tokio::select! {
                _ = self.shutdown.cancelled() => return Stop::Gone,
                message = incoming.next() => match Incoming::of(message) {
                    Incoming::Alive => {
                        heard = Instant::now();
                        continue;
                    }
                    Incoming::Gone => return Stop::Gone,
                    Incoming::TooBig => return Stop::TooBig,
                },
                _ = ping.tick() => {
                    if heard.elapsed() > self.heartbeat * 3 {
                        tracing::info!("closing a silent stream socket");
                        return Stop::Gone;
                    }
                    vec![Message::Ping(Vec::new())]
                }
                item = rx.recv() => match item {
                    Ok(metric) => {
                        // Metrics come in bursts (one per commit): take what is already there
                        // and write it with one flush.
                        let mut burst = Vec::new();
                        self.add(&mut burst, &mut cursor, &metric);
                        while burst.len() < MAX_BURST {
                            match rx.try_recv() {
                                Ok(metric) => self.add(&mut burst, &mut cursor, &metric),
                                Err(TryRecvError::Lagged(_)) => {
                                    lagged = true;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        burst
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "stream reader fell behind; catching up from the database");
                        lagged = true;
                        Vec::new()
                    }
                    Err(RecvError::Closed) => return Stop::Gone,
                },
            };
            if !burst.is_empty() {
                tokio::select! {
                    sent = writer.send_all(burst) => if sent.is_err() { return Stop::Gone },
                    _ = self.shutdown.cancelled() => return Stop::Gone,
                }
            }
            if lagged {
                if let Err(stop) = self.catch_up(writer, &mut cursor, None).await {
                    return stop;
                }
            }
        }
    }

    /// Adds a live metric's frame to `burst` unless it was already sent (replayed) or is
    /// filtered out; either way the cursor moves past it.
    fn add(&self, burst: &mut Vec<Message>, cursor: &mut i64, metric: &Committed) {
        if metric.id <= *cursor {
            return; // already replayed
        }
        *cursor = metric.id;
        if self
            .selection
            .matches(&metric.name, metric.ts_micros, &metric.tags)
        {
            burst.push(Message::Text(frame(metric.id, &metric.doc)));
        }
    }

    /// Sends every stored metric after `cursor`, advancing it, until the database has no more.
    async fn catch_up<Si>(
        &self,
        writer: &mut Writer<Si>,
        cursor: &mut i64,
        start_micros: Option<i64>,
    ) -> Result<(), Stop>
    where
        Si: Sink<Message> + Unpin,
    {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(Stop::Gone);
            }
            let mut selection = self.selection.clone();
            if let Some(from) = start_micros {
                selection.start_micros = Some(selection.start_micros.map_or(from, |s| s.max(from)));
            }
            let page = self
                .store
                .replay(&selection, *cursor, REPLAY_PAGE)
                .await
                .map_err(Stop::Store)?;
            let full = page.len() as u64 == REPLAY_PAGE;
            if let Some(last) = page.last() {
                let last = last.id;
                let frames: Vec<Message> = page
                    .iter()
                    .map(|metric| Message::Text(frame(metric.id, &metric.doc)))
                    .collect();
                writer.send_all(frames).await?;
                *cursor = last;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Frames written to a socket before one flush, at most.
const MAX_BURST: usize = 256;

/// A [`StreamFrame`] with a metric, written without re-parsing the stored document.
fn frame(id: i64, doc: &str) -> String {
    format!("{{\"id\":{id},\"metric\":{doc}}}")
}

fn checkpoint(id: i64) -> Message {
    Message::Text(format!("{{\"id\":{id}}}"))
}

/// The upgrade, documented as a 101 whose frames are [`StreamFrame`]s.
pub(crate) struct StreamUpgraded(WebSocketUpgraded<socket::SocketTask>);

impl IntoResponse for StreamUpgraded {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for StreamUpgraded {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![
                MetaResponse {
                    description: "Switching to the WebSocket protocol. Each text frame is a \
                              `StreamFrame` (JSON): a metric with its cursor, or a checkpoint.",
                    status: Some(101),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json",
                        schema: <StreamFrame as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                },
                super::error::upgrade_required_meta(),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        <StreamFrame as poem_openapi::types::Type>::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;
    use crate::{hub::Hub, store::StoredMetric};

    /// A store whose replay serves the ids it was given (the SQL store is covered end to end).
    #[derive(Default)]
    struct Stored(std::sync::Mutex<Vec<i64>>);

    impl Stored {
        fn commit(&self, ids: impl IntoIterator<Item = i64>) {
            self.0.lock().unwrap().extend(ids);
        }
    }

    #[async_trait::async_trait]
    impl MetricStore for Stored {
        async fn insert(&self, _: &[&crate::store::NewMetric]) -> Result<Vec<i64>, StoreError> {
            unreachable!("not used by the stream")
        }
        fn query(
            &self,
            _: Selection,
            _: crate::selection::Page,
            _: char,
        ) -> futures::stream::BoxStream<'static, Result<crate::store::Chunk, StoreError>> {
            unreachable!("not used by the stream")
        }
        async fn names(&self, _: &Selection) -> Result<Vec<crate::store::NameStats>, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn delete(&self, _: &Selection) -> Result<u64, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn aggregate(
            &self,
            _: &Selection,
            _: &crate::aggregation::Aggregation,
        ) -> Result<crate::store::Aggregated, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn delete_expired(
            &self,
            _: &crate::store::RetentionRule,
            _: u64,
        ) -> Result<u64, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn tag_keys(&self, _: &Selection) -> Result<Vec<String>, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn tag_values(&self, _: &str, _: &Selection) -> Result<Vec<String>, StoreError> {
            unreachable!("not used by the stream")
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn replay(
            &self,
            _: &Selection,
            after_id: i64,
            limit: u64,
        ) -> Result<Vec<StoredMetric>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|&&id| id > after_id)
                .take(limit as usize)
                .map(|&id| StoredMetric {
                    id,
                    name: "m".into(),
                    doc: format!("{{\"n\":{id}}}"),
                })
                .collect())
        }
        async fn last_id(&self) -> Result<i64, StoreError> {
            Ok(self.0.lock().unwrap().last().copied().unwrap_or(0))
        }
        async fn insert_once(
            &self,
            _: &str,
            _: i64,
            _: &[&crate::store::NewMetric],
        ) -> Result<crate::store::OnceOutcome, StoreError> {
            unreachable!("not used by the stream")
        }
    }

    fn committed(id: i64) -> Committed {
        Committed {
            id,
            name: "m".into(),
            ts_micros: 0,
            tags: Default::default(),
            doc: format!("{{\"n\":{id}}}"),
        }
    }

    fn metric_ids(frames: &[Message]) -> Vec<i64> {
        frames
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => serde_json::from_str::<StreamFrame>(t).ok(),
                _ => None,
            })
            .filter(|f| f.metric.is_some())
            .map(|f| f.id)
            .collect()
    }

    /// Commits `ids` to the store, then publishes them, as the ingest writer does.
    fn write(store: &Stored, hub: &Hub, ids: std::ops::RangeInclusive<i64>) {
        store.commit(ids.clone());
        hub.publish(ids.map(committed));
    }

    async fn frames_until(sent: &mut mpsc::UnboundedReceiver<Message>, n: usize) -> Vec<Message> {
        let mut frames = Vec::new();
        while metric_ids(&frames).len() < n {
            frames.push(sent.next().await.expect("the socket task is running"));
        }
        frames
    }

    #[tokio::test]
    async fn replays_after_the_cursor_then_goes_live_without_duplicates() {
        let hub = Hub::new(16);
        let store = Arc::new(Stored::default());
        write(&store, &hub, 1..=3);
        // Subscribed, then 4 and 5 committed: they are both in the store and in the hub.
        let rx = hub.subscribe();
        write(&store, &hub, 4..=5);
        let (sink, mut sent) = mpsc::unbounded();
        let (_from_client, incoming) = mpsc::unbounded::<Result<Message, ReadError>>();
        let stream = LiveStream {
            store: store.clone(),
            selection: Selection::default(),
            shutdown: CancellationToken::new(),
            heartbeat: HEARTBEAT,
        };
        tokio::spawn(stream.serve(
            Writer::new(sink, Duration::from_secs(10)),
            incoming,
            rx,
            Start::After(1),
        ));
        assert_eq!(
            metric_ids(&frames_until(&mut sent, 4).await),
            vec![2, 3, 4, 5]
        );
        write(&store, &hub, 6..=7);
        assert_eq!(metric_ids(&frames_until(&mut sent, 2).await), vec![6, 7]);
    }

    #[tokio::test]
    async fn a_lagging_reader_catches_up_from_the_store() {
        let hub = Hub::new(2);
        let store = Arc::new(Stored::default());
        let rx = hub.subscribe();
        let (sink, mut sent) = mpsc::unbounded();
        let (_from_client, incoming) = mpsc::unbounded::<Result<Message, ReadError>>();
        let stream = LiveStream {
            store: store.clone(),
            selection: Selection::default(),
            shutdown: CancellationToken::new(),
            heartbeat: HEARTBEAT,
        };
        tokio::spawn(stream.serve(
            Writer::new(sink, Duration::from_secs(10)),
            incoming,
            rx,
            Start::Now(0),
        ));
        // The checkpoint: the task has replayed (nothing) and now waits on the hub.
        let checkpoint = sent.next().await.expect("a checkpoint");
        assert!(metric_ids(&[checkpoint]).is_empty());
        // On this single-threaded runtime the socket task cannot read while 10 metrics go
        // through a ring of 2: it lags by 8, and must find them in the store.
        write(&store, &hub, 1..=10);
        assert_eq!(
            metric_ids(&frames_until(&mut sent, 10).await),
            (1..=10).collect::<Vec<_>>()
        );
        write(&store, &hub, 11..=11);
        assert_eq!(metric_ids(&frames_until(&mut sent, 1).await), vec![11]);
    }
}
