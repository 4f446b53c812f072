//! [`Subscription`]: live metrics over `GET /v1/stream`, resumed without gaps after a reconnect.
//!
//! A background task owns the WebSocket. It remembers the cursor of the last frame received and,
//! when the connection drops (network, server restart), reconnects with backoff and asks for
//! everything after that cursor: the server replays what was committed meanwhile from its
//! database, then carries on live, so nothing is missed and nothing is delivered twice. Dropping
//! the [`Subscription`] stops the task and closes the socket.

use std::{
    fmt::Display,
    future::{Future, IntoFuture},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{SinkExt, Stream, StreamExt};
use metrics_types::{StreamFrame, Timestamp};
use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle, time::Instant};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::{filter::Filter, Client, Error, Metric, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often the client pings the server; a server silent for three of these is taken for dead.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// First wait before reconnecting (or before the recorder resends a batch); it doubles on each
/// failure up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnection (or resending) attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Metrics received but not yet read by the application.
const BUFFER: usize = 1024;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Now,
    After(i64),
    FromTime(Timestamp),
}

/// A subscription being set up, from [`Client::subscribe`]. `.await` it to connect.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use futures::StreamExt;
///
/// // From now on (the default), cpu and mem only:
/// let mut live = client.subscribe().name("cpu").name("mem").await?;
/// while let Some(metric) = live.next().await {
///     let metric = metric?;
///     println!("{} = {:?}", metric.name, metric.value);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a subscription does nothing until it is awaited"]
pub struct SubscribeBuilder {
    client: Client,
    /// Names, tags and selectors; subscriptions have no time range (see `since`).
    filter: Filter,
    start: Start,
}

impl SubscribeBuilder {
    pub(crate) fn new(client: Client) -> Self {
        SubscribeBuilder {
            client,
            filter: Filter::default(),
            start: Start::Now,
        }
    }

    /// Only metrics with this name; call it again for any of several names.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let cpu_and_mem = client.subscribe().name("cpu").name("mem").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.filter.name(name);
        self
    }

    /// Only metrics whose extra key `key` reads `value`, as [`QueryBuilder::tag`](crate::QueryBuilder::tag):
    /// the same key again for any of several values, another key for all of them. Applies live
    /// and to what is replayed on a resume.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let web_1 = client.subscribe().name("cpu").tag("host", "web-1").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.filter.tag(key, value);
        self
    }

    /// Only metrics matching a selector, as [`QueryBuilder::matching`](crate::QueryBuilder::matching);
    /// applies live and to what is replayed on a resume. A bad selector fails the `.await` with
    /// an [`Error::Api`] naming `match`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let errors = client.subscribe().matching(r#"http{status=~"5.."}"#).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn matching(mut self, selector: impl Into<String>) -> Self {
        self.filter.matching(selector);
        self
    }

    /// Starts after `cursor` (from [`Subscription::cursor`]): every metric committed after it,
    /// replayed from the database, then live. This is how an application resumes across restarts
    /// of its own.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client, saved_cursor: i64) -> metrics_client::Result<()> {
    /// let resumed = client.subscribe().after(saved_cursor).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn after(mut self, cursor: i64) -> Self {
        self.start = Start::After(cursor);
        self
    }

    /// Starts with the stored metrics whose `ts` is at or after `ts` (in storage order), then
    /// goes live.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let last_hour = client
    ///     .subscribe()
    ///     .since(chrono::Utc::now() - chrono::Duration::hours(1))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn since(mut self, ts: impl Into<Timestamp>) -> Self {
        self.start = Start::FromTime(ts.into());
        self
    }

    /// Connects. Once this returns, every metric committed afterwards will be delivered.
    async fn connect(self) -> Result<Subscription> {
        let SubscribeBuilder {
            client,
            filter,
            start,
        } = self;
        let mut link = Link {
            client,
            filter,
            start,
            cursor: None,
        };
        let mut socket = link.connect().await?;
        if start == Start::Now {
            // The first frame is the checkpoint that tells where "now" is; without it a
            // reconnect could not resume without a gap.
            link.read_checkpoint(&mut socket).await?;
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        let cursor = match (link.cursor, start) {
            (Some(cursor), _) | (None, Start::After(cursor)) => Some(cursor),
            _ => None,
        };
        let task = tokio::spawn(link.run(socket, tx));
        Ok(Subscription {
            rx,
            task,
            cursor: cursor.unwrap_or(0),
        })
    }
}

impl IntoFuture for SubscribeBuilder {
    type Output = Result<Subscription>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.connect())
    }
}

/// What the task hands the application.
enum Item {
    Metric(i64, Metric),
    Checkpoint(i64),
    Error(Error),
}

/// A live stream of metrics: a `Stream<Item = Result<Metric>>` that reconnects by itself.
///
/// Errors in the stream are either one undecodable frame (the stream goes on) or the end of the
/// subscription (the server refused to resume it; the stream ends after the error). Dropping the
/// subscription closes its socket.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use futures::StreamExt;
///
/// let mut live = client.subscribe().await?;
/// if let Some(metric) = live.next().await {
///     println!("{:?}, resume after {}", metric?, live.cursor());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Item>,
    task: JoinHandle<()>,
    cursor: i64,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Metric(id, _) => write!(f, "Metric({id})"),
            Item::Checkpoint(id) => write!(f, "Checkpoint({id})"),
            Item::Error(err) => write!(f, "Error({err})"),
        }
    }
}

impl Subscription {
    /// The cursor of the last metric this subscription yielded (or of where it started): pass
    /// it to [`SubscribeBuilder::after`] to resume later exactly there.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let live = client.subscribe().await?;
    /// let saved = live.cursor();
    /// drop(live);
    /// let resumed = client.subscribe().after(saved).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}

impl Stream for Subscription {
    type Item = Result<Metric>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Item::Metric(id, metric))) => {
                    self.cursor = id;
                    Poll::Ready(Some(Ok(metric)))
                }
                Poll::Ready(Some(Item::Checkpoint(id))) => {
                    self.cursor = self.cursor.max(id);
                    continue;
                }
                Poll::Ready(Some(Item::Error(err))) => Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Dropping the task drops the socket, which closes the connection.
        self.task.abort();
    }
}

/// Why the pump stopped.
enum Ended {
    /// The application dropped the subscription.
    Dropped,
    /// The connection broke or closed; reconnect.
    Disconnected(String),
}

/// The connection side: where to connect and where the stream is.
struct Link {
    client: Client,
    filter: Filter,
    start: Start,
    /// The id of the last frame received; reconnects resume after it.
    cursor: Option<i64>,
}

impl Link {
    /// The stream's URL: from the cursor when there is one, else from the requested start.
    fn url(&self) -> reqwest::Url {
        let mut url = self.client.url("v1/stream");
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // http -> ws and https -> wss are always valid scheme changes.
        let _ = url.set_scheme(scheme);
        {
            let mut query = url.query_pairs_mut();
            for (key, value) in self.filter.params() {
                query.append_pair(&key, &value);
            }
            match (self.cursor, self.start) {
                (Some(cursor), _) | (None, Start::After(cursor)) => {
                    query.append_pair("since", &cursor.to_string());
                }
                (None, Start::FromTime(ts)) => {
                    query.append_pair("since_ts", &ts.to_string());
                }
                (None, Start::Now) => {}
            }
        }
        url
    }

    /// Opens the socket at [`url`](Self::url).
    async fn connect(&self) -> Result<Socket> {
        let mut request = self
            .url()
            .as_str()
            .into_client_request()
            .map_err(|err| Error::Subscription(err.to_string()))?;
        for (name, value) in self.client.ws_headers() {
            let value = HeaderValue::from_str(&value)
                .map_err(|err| Error::Subscription(format!("header {name}: {err}")))?;
            request.headers_mut().insert(name, value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response.into_body().unwrap_or_default();
                Err(
                    match serde_json::from_slice::<metrics_types::ErrorBody>(&body) {
                        Ok(err) => Error::Api {
                            status: reqwest::StatusCode::from_u16(status.as_u16())
                                .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                            code: err.code,
                            message: err.message,
                        },
                        Err(_) => Error::Subscription(format!("the server answered {status}")),
                    },
                )
            }
            Err(err) => Err(Error::Subscription(err.to_string())),
        }
    }

    /// Reads the first frame of a stream "from now": the checkpoint with the current cursor.
    async fn read_checkpoint(&mut self, socket: &mut Socket) -> Result<()> {
        let deadline = Instant::now() + HEARTBEAT * 3;
        loop {
            let message = tokio::time::timeout_at(deadline, socket.next())
                .await
                .map_err(|_| Error::Subscription("no checkpoint from the server".into()))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: StreamFrame = serde_json::from_str(text.as_str())
                        .map_err(|err| Error::Decode(format!("stream frame: {err}")))?;
                    self.cursor = Some(frame.id);
                    return Ok(());
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(Error::Subscription("the server closed the stream".into()))
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(Error::Subscription(err.to_string())),
            }
        }
    }

    /// Pumps frames to the application, reconnecting until the application goes away or the
    /// server refuses the subscription.
    async fn run(mut self, mut socket: Socket, tx: mpsc::Sender<Item>) {
        if let Some(cursor) = self.cursor {
            if tx.send(Item::Checkpoint(cursor)).await.is_err() {
                return;
            }
        }
        loop {
            match self.pump(&mut socket, &tx).await {
                Ended::Dropped => return,
                Ended::Disconnected(why) => {
                    tracing::debug!(reason = %why, cursor = ?self.cursor, "stream disconnected; reconnecting");
                }
            }
            let mut backoff = FIRST_BACKOFF;
            socket = loop {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return,
                }
                match self.connect().await {
                    Ok(socket) => break socket,
                    // The server understood and refused: retrying the same request cannot help.
                    Err(err @ Error::Api { status, .. }) if status.is_client_error() => {
                        let _ = tx.send(Item::Error(err)).await;
                        return;
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, ?backoff, "reconnect failed");
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            };
        }
    }

    /// Forwards frames from one connection until it ends.
    async fn pump(&mut self, socket: &mut Socket, tx: &mpsc::Sender<Item>) -> Ended {
        let mut ping = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        let mut heard = Instant::now();
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = ping.tick() => {
                    if heard.elapsed() > HEARTBEAT * 3 {
                        return Ended::Disconnected("the server went silent".into());
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return Ended::Disconnected("ping failed".into());
                    }
                    continue;
                }
                _ = tx.closed() => return Ended::Dropped,
            };
            heard = Instant::now();
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Disconnected(format!("closed by the server: {frame:?}"))
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Ended::Disconnected(err.to_string()),
                None => return Ended::Disconnected("connection closed".into()),
            };
            let item = match serde_json::from_str::<StreamFrame>(text.as_str()) {
                Ok(frame) if self.cursor.is_some_and(|c| frame.id <= c) => continue,
                Ok(frame) => {
                    self.cursor = Some(frame.id);
                    match frame.metric {
                        None => Item::Checkpoint(frame.id),
                        Some(value) => match serde_json::from_value::<Metric>(value) {
                            Ok(metric) => Item::Metric(frame.id, metric),
                            Err(err) => {
                                Item::Error(Error::Decode(format!("metric {}: {err}", frame.id)))
                            }
                        },
                    }
                }
                Err(err) => Item::Error(Error::Decode(format!("stream frame: {err}"))),
            };
            if tx.send(item).await.is_err() {
                return Ended::Dropped;
            }
            // Time spent waiting for the application is not the server's silence.
            heard = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(builder: SubscribeBuilder, cursor: Option<i64>) -> Link {
        Link {
            client: builder.client,
            filter: builder.filter,
            start: builder.start,
            cursor,
        }
    }

    #[test]
    fn the_stream_url_carries_the_filters_and_where_to_resume() {
        let client = Client::new("https://example.com/metrics").unwrap();
        let builder = client
            .subscribe()
            .name("cpu")
            .tag("host", "web-1")
            .tag("port", 443)
            .matching(r#"{dc=~"eu-.*"}"#);
        let url = link(builder.clone(), None).url();
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.path(), "/metrics/v1/stream");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let want = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            [
                ("name", "cpu"),
                ("tag.host", "web-1"),
                ("tag.port", "443"),
                ("match", r#"{dc=~"eu-.*"}"#),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
        };
        assert_eq!(pairs, want(&[]));
        // A reconnect resumes after the last frame with the same filters.
        let resumed: Vec<(String, String)> = link(builder.clone(), Some(42))
            .url()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(resumed, want(&[("since", "42")]));
        let since = builder.since(Timestamp::parse("2016-01-01").unwrap());
        let from_time: Vec<(String, String)> =
            link(since, None).url().query_pairs().into_owned().collect();
        assert_eq!(
            from_time,
            want(&[("since_ts", "2016-01-01T00:00:00+00:00")])
        );
    }
}
