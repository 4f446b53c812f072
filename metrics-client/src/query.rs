//! [`QueryBuilder`]: stored metrics by name, time range and tags; whole, streamed, or page by page.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use futures::{stream::BoxStream, Stream, StreamExt, TryStreamExt};
use metrics_types::Timestamp;
use reqwest::{header, RequestBuilder};

use crate::{
    aggregate::{AggregateQuery, Step},
    error::api_error,
    filter::Filter,
    Client, Error, Metric, Result,
};

/// The page size of [`QueryBuilder::pages`] when no [`limit`](QueryBuilder::limit) is given.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// A query of stored metrics, built from [`Client::query`].
///
/// Every filter is optional; none at all returns every metric. Results come ordered by `ts`
/// (oldest first unless [`descending`](Self::descending)), ties in storage order.
/// `.await` (or [`send`](Self::send)) collects them; [`stream`](Self::stream) yields them one
/// by one as they arrive, in constant memory, for results of any size; [`pages`](Self::pages)
/// walks them a page at a time with the server's cursors.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use metrics_client::Timestamp;
///
/// let metrics = client
///     .query()
///     .name("foo")
///     .name("bar")
///     .tag("host", "web-1")
///     .start(Timestamp::parse("2016-01-01")?)
///     .end(Timestamp::parse("2016-01-02")?)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is awaited, sent or streamed"]
pub struct QueryBuilder {
    client: Client,
    filter: Filter,
    limit: Option<usize>,
    descending: bool,
    /// Where to start: a cursor from an earlier [`Page`].
    cursor: Option<String>,
}

impl QueryBuilder {
    pub(crate) fn new(client: Client) -> Self {
        QueryBuilder {
            client,
            filter: Filter::default(),
            limit: None,
            descending: false,
            cursor: None,
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
        self.filter.name(name);
        self
    }

    /// Only metrics with `ts` at or after `start` (inclusive). Takes chrono date-times too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let since_2016 = client.query().start(metrics_client::Timestamp::parse("2016-01-01")?).await?;
    /// let last_15_minutes = client.query().start(chrono::Utc::now() - chrono::Duration::minutes(15)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(mut self, start: impl Into<Timestamp>) -> Self {
        self.filter.start = Some(start.into());
        self
    }

    /// Only metrics with `ts` at or before `end` (inclusive): equal to `start`, an exact instant.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let day: metrics_client::Timestamp = "2016-01-02".parse()?;
    /// let at_midnight = client.query().start(day).end(day).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn end(mut self, end: impl Into<Timestamp>) -> Self {
        self.filter.end = Some(end.into());
        self
    }

    /// Only metrics whose extra key `key` reads `value` (`tag.<key>=<value>` on the wire).
    ///
    /// Call it again with the same key for any of several values, with another key for all of
    /// them. Values are compared as text, the way the server compares them: `.tag("port", 80)`
    /// matches `"port": 80` and `"port": "80"`; `.tag("canary", true)` matches `true`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// // host web-1 or web-2, and region eu:
    /// let cpu = client
    ///     .query()
    ///     .name("cpu")
    ///     .tag("host", "web-1")
    ///     .tag("host", "web-2")
    ///     .tag("region", "eu")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.filter.tag(key, value);
        self
    }

    /// Only metrics matching a Prometheus-style selector (`match=` on the wire):
    /// `{k="v", k!="v", k=~"re", k!~"re"}`, optionally after a metric name (`cpu{host="a"}`).
    /// Regular expressions are anchored; `k=""` means the key is absent. Several selectors must
    /// all hold. The server checks the syntax: a bad selector is an [`Error::Api`] naming `match`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let web_outside_eu = client
    ///     .query()
    ///     .matching(r#"cpu{host=~"web-.*", region!="eu", canary=""}"#)
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn matching(mut self, selector: impl Into<String>) -> Self {
        self.filter.matching(selector);
        self
    }

    /// At most `n` metrics (the server takes 1 to 1,000,000). With [`pages`](Self::pages), the
    /// size of each page.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let latest = client.query().name("cpu").descending().limit(1).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Newest first (`order=desc`): by `ts` descending, ties in reverse storage order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let last_ten = client.query().name("cpu").descending().limit(10).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Starts after the position a [`Page::cursor`] designates: how to carry on paging later,
    /// in another process even. The cursor is opaque; it is only a position, so it may be used
    /// with either order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client, saved: String) -> metrics_client::Result<()> {
    /// let next_hundred = client.query().name("cpu").limit(100).cursor(saved).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Makes this an aggregate query: buckets of `step` (a [`Step`] or a
    /// [`std::time::Duration`]), with the functions of [`AggregateQuery::agg`], split by
    /// [`AggregateQuery::by`]; its `.await` returns one [`Series`](crate::Series) per name and
    /// values of the `by` keys instead of metrics. The filters carry over and more can be added
    /// after; [`limit`](Self::limit), [`descending`](Self::descending) and
    /// [`cursor`](Self::cursor) belong to raw queries, and an aggregation given one is refused
    /// with [`Error::InvalidQuery`] when sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::{Agg, Step};
    ///
    /// let per_minute = client.query().name("cpu").step(Step::minutes(1)).await?;
    /// let avg = per_minute[0].values(Agg::Avg);
    /// # Ok(())
    /// # }
    /// ```
    pub fn step(self, step: impl Into<Step>) -> AggregateQuery {
        let raw_only = if self.limit.is_some() {
            Some("limit")
        } else if self.descending {
            Some("descending")
        } else if self.cursor.is_some() {
            Some("cursor")
        } else {
            None
        };
        AggregateQuery::new(self.client, self.filter, step.into(), raw_only)
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
        let request = self.request(false, self.cursor.as_deref());
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

    /// Walks the results a page at a time: [`limit`](Self::limit) metrics per page
    /// ([`DEFAULT_PAGE_SIZE`] without one), each page fetched when the stream is polled, by
    /// following the server's `Link: <...>; rel="next"` header.
    ///
    /// Paging is by position, not by offset: metrics written while paging never make a page
    /// skip or repeat one. The stream ends after the last page; it yields no empty page. Each
    /// [`Page::cursor`] can be saved to carry on later with [`cursor`](Self::cursor).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use futures::TryStreamExt;
    ///
    /// let mut pages = client.query().name("cpu").tag("host", "web-1").limit(500).pages();
    /// while let Some(page) = pages.try_next().await? {
    ///     println!("{} metrics; next page at {:?}", page.metrics.len(), page.cursor);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn pages(self) -> BoxStream<'static, Result<Page>> {
        let first = self.cursor.clone();
        let query = QueryBuilder {
            limit: Some(self.limit.unwrap_or(DEFAULT_PAGE_SIZE)),
            ..self
        };
        futures::stream::try_unfold(
            (query, Some(first)),
            |(query, next): (QueryBuilder, Option<Option<String>>)| async move {
                let Some(cursor) = next else {
                    return Ok(None);
                };
                let response = query.request(true, cursor.as_deref()).send().await?;
                if !response.status().is_success() {
                    return Err(api_error(response).await.error);
                }
                let next = next_cursor(response.headers())?;
                let bytes = response.bytes().await?;
                let metrics: Vec<Metric> = serde_json::from_slice(&bytes)
                    .map_err(|err| Error::Decode(format!("a page of metrics: {err}")))?;
                if metrics.is_empty() {
                    return Ok(None);
                }
                let page = Page {
                    metrics,
                    cursor: next.clone(),
                };
                Ok(Some((page, (query, next.map(Some)))))
            },
        )
        .boxed()
    }

    /// `GET /v1/metrics` with this query's parameters, starting after `cursor`. Pages are
    /// bounded and get the client's timeout; a whole answer may be of any length and does not.
    fn request(&self, timed: bool, cursor: Option<&str>) -> RequestBuilder {
        let mut params = self.filter.params();
        params.extend(self.limit.map(|n| ("limit".to_owned(), n.to_string())));
        if self.descending {
            params.push(("order".to_owned(), "desc".to_owned()));
        }
        params.extend(cursor.map(|c| ("cursor".to_owned(), c.to_owned())));
        let request = if timed {
            self.client.request(reqwest::Method::GET, "v1/metrics")
        } else {
            self.client
                .untimed_request(reqwest::Method::GET, "v1/metrics")
        };
        request
            .header(header::ACCEPT, "application/json")
            .query(&params)
    }
}

impl IntoFuture for QueryBuilder {
    type Output = Result<Vec<Metric>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// One page of a query's results, from [`QueryBuilder::pages`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The metrics of this page, in the query's order.
    pub metrics: Vec<Metric>,
    /// Where the next page starts, for [`QueryBuilder::cursor`]; `None` on the last page. Opaque:
    /// save it and pass it back, nothing more.
    pub cursor: Option<String>,
}

/// The `cursor` of the `rel="next"` link among the `Link` headers, if there is one.
///
/// The link's own URL is not followed: it is an absolute path on the server, which would be
/// wrong behind a proxy serving the API under a prefix. Its cursor is what matters; the next
/// request repeats this query's parameters with it.
fn next_cursor(headers: &header::HeaderMap) -> Result<Option<String>> {
    for value in headers.get_all(header::LINK) {
        let value = value
            .to_str()
            .map_err(|_| Error::Decode("a Link header that is not text".into()))?;
        for (target, params) in link_values(value) {
            let next = params.split(';').any(|param| {
                param.trim().split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_ascii_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
            });
            if !next {
                continue;
            }
            // Any base will do: only the query of the target is read.
            let url = reqwest::Url::parse("http://link.invalid/")
                .and_then(|base| base.join(target))
                .map_err(|err| Error::Decode(format!("Link target {target:?}: {err}")))?;
            return match url.query_pairs().find(|(k, _)| k == "cursor") {
                Some((_, cursor)) => Ok(Some(cursor.into_owned())),
                None => Err(Error::Decode(format!(
                    "the next-page link {target:?} has no cursor"
                ))),
            };
        }
    }
    Ok(None)
}

/// The `(target, parameters)` of each link in a `Link` header value (RFC 8288): `<target>`
/// then `;`-separated parameters, links separated by commas outside the angle brackets.
fn link_values(value: &str) -> Vec<(&str, &str)> {
    let mut links = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let target = &rest[open + 1..open + close];
        let after = &rest[open + close + 1..];
        // The parameters run to the next link; a quoted comma does not end them.
        let mut in_quotes = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                c == ',' && !in_quotes
            })
            .map_or(after.len(), |(i, _)| i);
        links.push((target, &after[..end]));
        rest = &after[end..];
    }
    links
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

    fn query_of(request: RequestBuilder) -> Vec<(String, String)> {
        let request = request.build().unwrap();
        assert_eq!(request.url().path(), "/base/v1/metrics");
        assert_eq!(request.headers()[header::ACCEPT], "application/json");
        request.url().query_pairs().into_owned().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_query_sends_every_filter_and_option_as_the_contract_names_it() {
        let client = Client::new("http://127.0.0.1:5000/base").unwrap();
        assert!(query_of(client.query().request(false, None)).is_empty());
        let query = client
            .query()
            .name("cpu")
            .name("a b&c")
            .start(Timestamp::parse("2016-01-01").unwrap())
            .end(Timestamp::parse("2016-01-02T00:00:00+02:00").unwrap())
            .tag("host", "web-1")
            .tag("port", 80)
            .matching(r#"cpu{host=~"web-.*",canary=""}"#)
            .limit(100)
            .descending();
        let expected = [
            ("name", "cpu"),
            ("name", "a b&c"),
            ("sts", "2016-01-01T00:00:00+00:00"),
            ("ets", "2016-01-02T00:00:00+02:00"),
            ("tag.host", "web-1"),
            ("tag.port", "80"),
            ("match", r#"cpu{host=~"web-.*",canary=""}"#),
            ("limit", "100"),
            ("order", "desc"),
        ];
        assert_eq!(query_of(query.request(false, None)), pairs(&expected));
        let mut with_cursor = expected.to_vec();
        with_cursor.push(("cursor", "opaque+/="));
        assert_eq!(
            query_of(query.request(true, Some("opaque+/="))),
            pairs(&with_cursor)
        );
    }

    fn link_headers(values: &[&str]) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        for value in values {
            headers.append(header::LINK, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_next_cursor_is_read_from_the_link_header() {
        let cursor = |values: &[&str]| next_cursor(&link_headers(values));
        assert_eq!(cursor(&[]).unwrap(), None);
        assert_eq!(
            cursor(&[r#"</v1/metrics?name=cpu&limit=2&cursor=AbC%2B%2F%3D>; rel="next""#])
                .unwrap()
                .as_deref(),
            Some("AbC+/=")
        );
        // Other links, unquoted and multiple relations, commas inside the target and in quotes.
        assert_eq!(
            cursor(&[
                r#"</v1/metrics?columns=a,b&cursor=1>; rel="prev", </docs>; title="a, b"; rel=describedby"#,
                r#"</v1/metrics?columns=a,b&cursor=xyz>; title="x,y"; REL="last next""#,
            ])
            .unwrap()
            .as_deref(),
            Some("xyz")
        );
        assert_eq!(
            cursor(&[r#"</v1/metrics?cursor=1>; rel="prev""#]).unwrap(),
            None
        );
        assert!(matches!(
            cursor(&[r#"</v1/metrics?limit=2>; rel="next""#]),
            Err(Error::Decode(_))
        ));
    }
}
