//! [`QueryBuilder`]: stored metrics by name and time range, whole or streamed as they arrive.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use futures::{stream::BoxStream, Stream, StreamExt, TryStreamExt};
use metrics_types::Timestamp;

use crate::{error::api_error, Client, Error, Metric, Result};

/// A query of stored metrics, built from [`Client::query`].
///
/// Every filter is optional; none at all returns every metric. Results come ordered by `ts`,
/// ties in storage order. `.await` (or [`send`](Self::send)) collects them; [`stream`](Self::stream)
/// yields them one by one as they arrive, in constant memory, for results of any size.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// let metrics = client
///     .query()
///     .name("foo")
///     .name("bar")
///     .start(metrics_client::Timestamp::parse("2016-01-01")?)
///     .end(metrics_client::Timestamp::parse("2016-01-02")?)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is awaited, sent or streamed"]
pub struct QueryBuilder {
    client: Client,
    names: Vec<String>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl QueryBuilder {
    pub(crate) fn new(client: Client) -> Self {
        QueryBuilder {
            client,
            names: Vec::new(),
            start: None,
            end: None,
        }
    }

    /// Only metrics with this name; call it again for any of several names.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let foo_or_bar = client.query().name("foo").name("bar").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Only metrics with `ts` at or after `start` (inclusive). Takes chrono date-times too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let since_2016 = client.query().start(metrics_client::Timestamp::parse("2016-01-01")?).await?;
    /// let last_hour = client.query().start(chrono::Utc::now() - chrono::Duration::hours(1)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(mut self, start: impl Into<Timestamp>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Only metrics with `ts` at or before `end` (inclusive): equal to `start`, an exact instant.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let day: metrics_client::Timestamp = "2016-01-02".parse().unwrap();
    /// let at_midnight = client.query().start(day).end(day).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn end(mut self, end: impl Into<Timestamp>) -> Self {
        self.end = Some(end.into());
        self
    }

    /// Runs the query and collects the results (the same as `.await` on the builder).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let all = client.query().send().await?;
    /// println!("{} metrics", all.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(self) -> Result<Vec<Metric>> {
        self.stream().try_collect().await
    }

    /// Runs the query and yields each metric as soon as it is read from the answer, holding only
    /// one network chunk at a time: memory stays flat however large the result.
    ///
    /// A connection that breaks mid-answer, or an answer cut short by the server, ends the
    /// stream with an error, never silently.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use futures::TryStreamExt;
    ///
    /// let mut metrics = client.query().name("cpu").stream();
    /// let mut sum = 0.0;
    /// while let Some(metric) = metrics.try_next().await? {
    ///     sum += metric.value.as_f64().unwrap_or(0.0);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(self) -> BoxStream<'static, Result<Metric>> {
        let QueryBuilder {
            client,
            names,
            start,
            end,
        } = self;
        let mut params: Vec<(&'static str, String)> =
            names.into_iter().map(|n| ("name", n)).collect();
        params.extend(start.map(|t| ("sts", t.to_string())));
        params.extend(end.map(|t| ("ets", t.to_string())));
        let request = client
            .untimed_request(reqwest::Method::GET, "v1/metrics")
            .query(&params);
        futures::stream::once(async move {
            let response = request.send().await?;
            if !response.status().is_success() {
                return Err(api_error(response).await.error);
            }
            let chunks = response.bytes_stream().map_err(Error::from);
            Ok(parse_array(chunks))
        })
        .try_flatten()
        .boxed()
    }
}

impl IntoFuture for QueryBuilder {
    type Output = Result<Vec<Metric>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Yields the objects of a JSON array as the array's bytes arrive.
fn parse_array(
    chunks: impl Stream<Item = Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = Result<Metric>> + Send + 'static {
    futures::stream::unfold(
        (chunks.boxed(), ArrayItems::default(), false),
        |(mut chunks, mut items, done)| async move {
            if done {
                return None;
            }
            loop {
                match items.next_item() {
                    Ok(Some(metric)) => return Some((Ok(metric), (chunks, items, false))),
                    Ok(None) => {}
                    Err(err) => return Some((Err(err), (chunks, items, true))),
                }
                match chunks.next().await {
                    Some(Ok(bytes)) => items.push(&bytes),
                    Some(Err(err)) => return Some((Err(err), (chunks, items, true))),
                    None if items.finished() => return None,
                    None => {
                        let err = Error::Decode("the answer ended before its array closed".into());
                        return Some((Err(err), (chunks, items, true)));
                    }
                }
            }
        },
    )
}

/// Where the scanner is in the array.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the opening `[`.
    #[default]
    Open,
    /// After `[` or `,`: an object or the closing `]`.
    Item,
    /// Inside an object.
    Object,
    /// After an object: `,` or `]`.
    Next,
    /// After the closing `]`.
    Closed,
}

/// An incremental splitter of a JSON array of objects: bytes in, one parsed metric at a time out.
///
/// It only tracks nesting and strings to find where each object ends; serde_json parses the
/// object. Consumed bytes are dropped on the next push, so the buffer holds at most one chunk
/// plus one partial object.
#[derive(Debug, Default)]
struct ArrayItems {
    buf: Vec<u8>,
    /// Next byte to scan.
    scan: usize,
    /// Bytes before this are done with.
    consumed: usize,
    /// Where the current object starts.
    start: usize,
    phase: Phase,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl ArrayItems {
    fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.scan -= self.consumed;
            self.start = self.start.saturating_sub(self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn next_item(&mut self) -> Result<Option<Metric>> {
        while self.scan < self.buf.len() {
            let b = self.buf[self.scan];
            self.scan += 1;
            let unexpected = || {
                Error::Decode(format!(
                    "unexpected {:?} in the answer; expected a JSON array of metric objects",
                    char::from(b)
                ))
            };
            match self.phase {
                _ if self.phase != Phase::Object && b.is_ascii_whitespace() => {}
                Phase::Open if b == b'[' => self.phase = Phase::Item,
                Phase::Item | Phase::Next if b == b']' => self.phase = Phase::Closed,
                Phase::Item if b == b'{' => {
                    self.phase = Phase::Object;
                    self.start = self.scan - 1;
                    self.depth = 1;
                }
                Phase::Next if b == b',' => self.phase = Phase::Item,
                Phase::Object => {
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                self.phase = Phase::Next;
                                self.consumed = self.scan;
                                let object = &self.buf[self.start..self.scan];
                                return serde_json::from_slice(object)
                                    .map(Some)
                                    .map_err(|err| Error::Decode(format!("a metric: {err}")));
                            }
                        }
                        _ => {}
                    }
                }
                _ => return Err(unexpected()),
            }
        }
        if self.phase != Phase::Object {
            self.consumed = self.scan;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Result<Vec<Metric>> {
        let mut items = ArrayItems::default();
        let mut out = Vec::new();
        for chunk in chunks {
            items.push(chunk.as_bytes());
            while let Some(m) = items.next_item()? {
                out.push(m);
            }
        }
        assert!(items.finished());
        Ok(out)
    }

    #[test]
    fn splits_objects_across_any_chunk_boundary() {
        let json = r#" [{"name":"a}{\"]","value":1,"ts":"2016-01-01","tags":{"x":[1,{"y":"]"}]}}, {"name":"b","value":"s","ts":"2016-01-02"}] "#;
        for cut in 0..json.len() {
            let got = split(&[&json[..cut], &json[cut..]]).unwrap();
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0].name, "a}{\"]");
            assert_eq!(got[1].name, "b");
        }
        assert!(split(&["[]"]).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_an_array_of_objects() {
        let mut items = ArrayItems::default();
        items.push(b"{\"a\":1}");
        assert!(items.next_item().is_err());
        let mut items = ArrayItems::default();
        items.push(b"[1]");
        assert!(items.next_item().is_err());
    }
}
