//! [`Client`]: the cheap, cloneable handle every request goes through, and its builder.

use std::{ops::Range, sync::Arc, time::Duration};

use metrics_types::{Limits, MetricValue, PostMetricsResponse, Timestamp};
use reqwest::{header, RequestBuilder, Url};

use crate::{
    delete::DeleteBuilder,
    error::{api_error, Failure},
    query::QueryBuilder,
    recorder::RecorderBuilder,
    subscription::SubscribeBuilder,
    Error, Metric, Result,
};

/// The header that makes a retried POST safe: the server stores a batch once per key.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A handle to one metrics server. Cloning is cheap (an `Arc`); clones share the connection pool.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> metrics_client::Result<()> {
/// let client = metrics_client::Client::new("http://127.0.0.1:5000")?;
/// client.record("cpu", 0.93, chrono::Utc::now()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The pool every HTTP request uses.
    http: reqwest::Client,
    /// The server's base URL, ending in `/`.
    base: Url,
    /// Sent as `Authorization: Bearer ..` on every request, WebSockets included.
    token: Option<Secret>,
    /// Sent as `User-Agent` on every request, WebSockets included.
    user_agent: String,
    /// Applied to every request except streamed queries, whose length has no bound.
    timeout: Option<Duration>,
    /// The server's limits, fetched on the first batch and again after a 413 (the server may
    /// have been restarted with other limits).
    limits: std::sync::Mutex<Option<Limits>>,
}

/// A credential that `Debug` prints as `***`, so that logging a client or its builder cannot
/// leak it.
#[derive(Clone)]
struct Secret(String);

impl Secret {
    /// The credential itself, for the one place that sends it.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Options of a [`Client`]: timeout, bearer token, user agent, or a reqwest client of your own.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let client = metrics_client::Client::builder()
///     .timeout(Duration::from_secs(5))
///     .bearer_token("s3cr3t")
///     .user_agent("my-app/1.0")
///     .build("http://127.0.0.1:5000")
///     .unwrap();
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    timeout: Option<Duration>,
    token: Option<Secret>,
    user_agent: Option<String>,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// The longest a request may take, answer included (not applied to [`QueryBuilder::stream`]
    /// or subscriptions, which last as long as you read them). Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::builder()
    ///     .timeout(std::time::Duration::from_secs(5))
    ///     .build("http://127.0.0.1:5000")
    ///     .unwrap();
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::builder()
    ///     .bearer_token("s3cr3t")
    ///     .build("http://127.0.0.1:5000")
    ///     .unwrap();
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

    /// The `User-Agent` header. Default: `metrics-client/<version>`.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::builder()
    ///     .user_agent("my-app/1.0")
    ///     .build("http://127.0.0.1:5000")
    ///     .unwrap();
    /// ```
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Uses this reqwest client (proxies, TLS roots, pool settings ...) instead of a default one.
    ///
    /// # Examples
    ///
    /// ```
    /// let http = reqwest::Client::builder().pool_max_idle_per_host(4).build().unwrap();
    /// let client = metrics_client::Client::builder()
    ///     .http_client(http)
    ///     .build("http://127.0.0.1:5000")
    ///     .unwrap();
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// A client for the server at `url` (`http://host:port`, optionally with a path prefix).
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::builder().build("http://127.0.0.1:5000/metrics/");
    /// assert!(client.is_ok());
    /// assert!(metrics_client::Client::builder().build("not a url").is_err());
    /// ```
    pub fn build(self, url: &str) -> Result<Client> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(url).map_err(|err| invalid(&err.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http: self.http.unwrap_or_default(),
                base,
                token: self.token,
                user_agent: self.user_agent.unwrap_or_else(|| {
                    concat!("metrics-client/", env!("CARGO_PKG_VERSION")).to_owned()
                }),
                timeout: self.timeout,
                limits: std::sync::Mutex::new(None),
            }),
        })
    }
}

impl Client {
    /// A client for the server at `url` with the default options.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::new("http://127.0.0.1:5000").unwrap();
    /// assert!(metrics_client::Client::new("ftp://nope").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Client> {
        ClientBuilder::default().build(url)
    }

    /// Options beyond the URL: see [`ClientBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// let client = metrics_client::Client::builder()
    ///     .user_agent("my-app/1.0")
    ///     .build("http://127.0.0.1:5000")
    ///     .unwrap();
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Records one metric; `Ok` means the server has committed it.
    ///
    /// `value` takes any integer or float, a string or a boolean; `ts` any chrono date-time.
    /// A non-finite float or an invalid name is refused before anything is sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// client.record("cpu", 0.93, chrono::Utc::now()).await?;
    /// client.record("deploys", 3, chrono::Utc::now()).await?;
    /// client.record("healthy", true, chrono::Utc::now()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn record(
        &self,
        name: impl Into<String>,
        value: impl Into<MetricValue>,
        ts: impl Into<Timestamp>,
    ) -> Result<()> {
        self.record_metric(Metric::new(name, value).at(ts)).await
    }

    /// Records one metric built with [`Metric`] (extra keys and all); `Ok` means committed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::Metric;
    ///
    /// client.record_metric(Metric::new("cpu", 0.93).with("host", "web-1")).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn record_metric(&self, metric: Metric) -> Result<()> {
        metric.validate()?;
        let body = serde_json::to_vec(&metric).map_err(|err| Error::Decode(err.to_string()))?;
        self.post(body, None).await.map_err(|f| f.error)?;
        Ok(())
    }

    /// Records many metrics; `Ok` carries how many were stored, all of them committed.
    ///
    /// The batch is split under the server's published body limit (`GET /v1/limits`), so it
    /// may be of any size; when the server answers 413 (its limit was lowered since), the limit
    /// is read again and the rest of the batch split anew. Every metric is checked before anything is sent. Each part is stored
    /// all or nothing; if a part fails, the parts before it stay committed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::Metric;
    ///
    /// let batch = (0..10_000).map(|i| Metric::new("requests", i).with("shard", i % 4));
    /// let stored = client.record_batch(batch).await?;
    /// assert_eq!(stored, 10_000);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn record_batch(&self, metrics: impl IntoIterator<Item = Metric>) -> Result<u64> {
        let metrics: Vec<Metric> = metrics.into_iter().collect();
        let mut stored = 0;
        let mut start = 0;
        let mut refreshed = false;
        'split: loop {
            let parts = self
                .encode_batch(&metrics[start..])
                .await
                .map_err(|f| f.error)?;
            for (range, body) in parts {
                let body_len = body.len();
                match self.post(body, None).await {
                    Ok(answer) => stored += answer.stored,
                    // The limit shrank since we read it: read it again and split the rest anew.
                    Err(failure) if !refreshed && self.limit_shrank(&failure, body_len).await => {
                        refreshed = true;
                        start += range.start;
                        continue 'split;
                    }
                    Err(failure) => return Err(failure.error),
                }
            }
            return Ok(stored);
        }
    }

    /// A query of stored metrics: see [`QueryBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let cpu = client.query().name("cpu").start(metrics_client::Timestamp::parse("2016-01-01")?).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn query(&self) -> QueryBuilder {
        QueryBuilder::new(self.clone())
    }

    /// A delete of stored metrics: see [`DeleteBuilder`]. `.await` it for the number deleted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let deleted = client.delete().name("cpu").tag("host", "web-9").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete(&self) -> DeleteBuilder {
        DeleteBuilder::new(self.clone())
    }

    /// A live subscription: see [`SubscribeBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut cpu = client.subscribe().name("cpu").await?;
    /// while let Some(metric) = cpu.next().await {
    ///     println!("{:?}", metric?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&self) -> SubscribeBuilder {
        SubscribeBuilder::new(self.clone())
    }

    /// A batching recorder for hot paths: see [`RecorderBuilder`] and [`Recorder`](crate::Recorder).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::Metric;
    ///
    /// let recorder = client.recorder().build();
    /// recorder.record(Metric::new("requests", 1))?;
    /// let undelivered = recorder.close().await?;
    /// assert!(undelivered.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn recorder(&self) -> RecorderBuilder {
        RecorderBuilder::new(self.clone())
    }

    /// The server's per-request limits (fetched once, then remembered).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let limits = client.limits().await?;
    /// println!("batches up to {} bytes", limits.max_body_bytes);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn limits(&self) -> Result<Limits> {
        self.limits_or_failure().await.map_err(|f| f.error)
    }

    async fn limits_or_failure(&self) -> Result<Limits, Failure> {
        if let Some(limits) = self.cached_limits().clone() {
            return Ok(limits);
        }
        let response = self
            .request(reqwest::Method::GET, "v1/limits")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let bytes = response.bytes().await?;
        let limits = serde_json::from_slice::<Limits>(&bytes)
            .map_err(|err| Failure::from(Error::Decode(format!("limits: {err}"))))?;
        *self.cached_limits() = Some(limits.clone());
        Ok(limits)
    }

    fn cached_limits(&self) -> std::sync::MutexGuard<'_, Option<Limits>> {
        // The cache is a plain value: a panic elsewhere cannot leave it half-written.
        self.inner
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a POST of `body_len` bytes failed because the server's limit is now lower than
    /// when we split the batch (after a restart with a lower `--body-limit`, say): then nothing
    /// of it was stored, and the rest of the batch must be split anew.
    ///
    /// A 413 says so directly. A server that refuses a large body may also close the connection
    /// before the client has finished sending it, which surfaces as a transport error; reading
    /// the limits again tells the two apart.
    pub(crate) async fn limit_shrank(&self, failure: &Failure, body_len: usize) -> bool {
        if !is_too_large(&failure.error) && !matches!(failure.error, Error::Transport(_)) {
            return false;
        }
        *self.cached_limits() = None;
        // The server may close the connection that carried the refused body, and the pool may
        // hand that connection to this request before noticing: a fresh one answers.
        let limits = match self.limits_or_failure().await {
            Err(failure) if matches!(failure.error, Error::Transport(_)) => {
                self.limits_or_failure().await
            }
            other => other,
        };
        match limits {
            Ok(limits) => u64::try_from(body_len).map_or(true, |len| len > limits.max_body_bytes),
            Err(_) => false,
        }
    }

    /// Checks and encodes `metrics` as JSON arrays under the server's body limit, each with the
    /// range of `metrics` it holds.
    pub(crate) async fn encode_batch(
        &self,
        metrics: &[Metric],
    ) -> Result<Vec<(Range<usize>, Vec<u8>)>, Failure> {
        for metric in metrics {
            metric.validate()?;
        }
        let limit =
            usize::try_from(self.limits_or_failure().await?.max_body_bytes).unwrap_or(usize::MAX);
        let mut parts = Vec::new();
        let mut body = Vec::new();
        let mut start = 0;
        for (i, metric) in metrics.iter().enumerate() {
            let encoded =
                serde_json::to_vec(metric).map_err(|err| Error::Decode(err.to_string()))?;
            if encoded.len() + 2 > limit {
                return Err(Error::InvalidMetric(format!(
                    "{}: {} bytes of JSON on its own, over the server's limit of {limit}",
                    metric.name,
                    encoded.len()
                ))
                .into());
            }
            // One more byte for the comma (or the opening bracket) and one for the closing one.
            if !body.is_empty() && body.len() + encoded.len() + 2 > limit {
                body.push(b']');
                parts.push((start..i, std::mem::take(&mut body)));
                start = i;
            }
            body.push(if body.is_empty() { b'[' } else { b',' });
            body.extend_from_slice(&encoded);
        }
        if !body.is_empty() {
            body.push(b']');
            parts.push((start..metrics.len(), body));
        }
        Ok(parts)
    }

    /// POSTs a JSON body to `/v1/metrics`, with an idempotency key when given.
    pub(crate) async fn post(
        &self,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<PostMetricsResponse, Failure> {
        let mut request = self
            .request(reqwest::Method::POST, "v1/metrics")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let bytes = response.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|err| Error::Decode(format!("POST /v1/metrics answer: {err}")).into())
    }

    /// A request to `path` (relative to the base URL) with the client's headers and timeout.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.request_url(method, self.url(path))
    }

    /// Like [`request`](Self::request), to a URL built already (from [`url`](Self::url)).
    pub(crate) fn request_url(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        let mut request = self.untimed_request_url(method, url);
        if let Some(timeout) = self.inner.timeout {
            request = request.timeout(timeout);
        }
        request
    }

    /// Like [`request`](Self::request), without the timeout: for answers of unbounded length.
    pub(crate) fn untimed_request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.untimed_request_url(method, self.url(path))
    }

    fn untimed_request_url(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        let mut request = self
            .inner
            .http
            .request(method, url)
            .header(header::USER_AGENT, &self.inner.user_agent);
        if let Some(token) = &self.inner.token {
            request = request.bearer_auth(token.expose());
        }
        request
    }

    /// The URL of `path` under the base URL.
    pub(crate) fn url(&self, path: &str) -> Url {
        // A relative path joined to a base ending in `/` cannot fail.
        self.inner
            .base
            .join(path)
            .unwrap_or_else(|_| self.inner.base.clone())
    }

    /// The headers a WebSocket handshake carries: user agent and bearer token.
    pub(crate) fn ws_headers(&self) -> Vec<(header::HeaderName, String)> {
        let mut headers = vec![(header::USER_AGENT, self.inner.user_agent.clone())];
        if let Some(token) = &self.inner.token {
            headers.push((header::AUTHORIZATION, format!("Bearer {}", token.expose())));
        }
        headers
    }
}

/// Whether the server refused a body as too large (its limit may have changed).
pub(crate) fn is_too_large(error: &Error) -> bool {
    matches!(error, Error::Api { status, .. } if *status == reqwest::StatusCode::PAYLOAD_TOO_LARGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_bearer_token() {
        let builder = Client::builder().bearer_token("s3cr3t-t0ken");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
        assert!(shown.contains("***"), "{shown}");

        let client = builder.build("http://127.0.0.1:5000").unwrap();
        for shown in [format!("{client:?}"), format!("{client:#?}")] {
            assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        // Hidden from Debug, still sent: on HTTP requests and on the WebSocket handshake.
        let request = client
            .request(reqwest::Method::GET, "v1/limits")
            .build()
            .unwrap();
        assert_eq!(
            request.headers()[header::AUTHORIZATION],
            "Bearer s3cr3t-t0ken"
        );
        assert!(client
            .ws_headers()
            .iter()
            .any(|(name, value)| name == header::AUTHORIZATION && value == "Bearer s3cr3t-t0ken"));
    }
}
