//! [`Recorder`]: fire-and-forget recording for hot paths, batched and retried in the background.
//!
//! `record` only puts the metric in a bounded buffer and returns. A background task sends the
//! buffer in batches, when `max_batch` metrics are waiting or every `interval`, whichever comes
//! first. A batch that fails for a reason that may pass (the server is down or restarting,
//! answers 5xx or 429) is retried with exponential backoff, waiting at least the server's
//! `Retry-After`, for up to `retry_for`. Every attempt of a batch carries the same
//! `Idempotency-Key`, so a batch whose answer was lost is stored once however often it is sent.
//! A batch refused with another 4xx is never retried. Nothing is dropped silently: what could
//! not be delivered is handed back by [`Recorder::flush`] and [`Recorder::close`].
//!
//! **When the buffer is full** (the server is slower than the application, or unreachable while
//! a batch is being retried), [`Recorder::record`] refuses the metric with
//! [`Error::RecorderFull`] instead of blocking the hot path or dropping the metric unseen: the
//! caller decides.

use std::time::Duration;

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{error::Failure, Client, Error, Metric, Result};

/// Metrics that could not be delivered, and why.
#[derive(Debug)]
pub struct Undelivered {
    /// The metrics, none of which is stored.
    pub metrics: Vec<Metric>,
    /// The last error met trying to deliver them.
    pub error: Error,
}

/// Settings of a [`Recorder`], from [`Client::recorder`].
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) {
/// use std::time::Duration;
///
/// let recorder = client
///     .recorder()
///     .max_batch(500)
///     .interval(Duration::from_millis(200))
///     .capacity(50_000)
///     .retry_for(Duration::from_secs(300))
///     .build();
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RecorderBuilder {
    client: Client,
    max_batch: usize,
    interval: Duration,
    capacity: usize,
    retry_for: Duration,
}

impl RecorderBuilder {
    pub(crate) fn new(client: Client) -> Self {
        RecorderBuilder {
            client,
            max_batch: 1000,
            interval: Duration::from_secs(1),
            capacity: 100_000,
            retry_for: Duration::from_secs(60),
        }
    }

    /// Send as soon as this many metrics wait. Default: 1000.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// let recorder = client.recorder().max_batch(500).build();
    /// # }
    /// ```
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Send what waits at least this often. Default: 1 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// let recorder = client.recorder().interval(std::time::Duration::from_millis(200)).build();
    /// # }
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many metrics may wait to be sent before `record` refuses more. Default: 100,000.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// let recorder = client.recorder().capacity(10_000).build();
    /// # }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How long a failing batch is retried before it is reported undelivered. Default: 60 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// let recorder = client.recorder().retry_for(std::time::Duration::from_secs(300)).build();
    /// # }
    /// ```
    pub fn retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Starts the background task. Must be called inside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) {
    /// let recorder = client.recorder().build();
    /// # }
    /// ```
    pub fn build(self) -> Recorder {
        let (tx, rx) = mpsc::channel(self.capacity);
        let capacity = self.capacity;
        tokio::spawn(run(self, rx));
        Recorder { tx, capacity }
    }
}

/// What the task is asked to do, in order.
enum Command {
    Record(Metric),
    Flush(oneshot::Sender<Vec<Undelivered>>),
}

/// A batching recorder: a cheap `Clone` handle on a background sender.
///
/// Dropping every handle lets the task send what it holds and stop; call
/// [`close`](Self::close) to wait for that and learn what could not be delivered.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    capacity: usize,
}

impl Recorder {
    /// Buffers `metric` for sending and returns at once.
    ///
    /// Refused with [`Error::InvalidMetric`] when the server would refuse it, with
    /// [`Error::RecorderFull`] when the buffer is full, and with [`Error::RecorderClosed`] after
    /// [`close`](Self::close).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use metrics_client::{Error, Metric};
    ///
    /// let recorder = client.recorder().build();
    /// match recorder.record(Metric::new("requests", 1).with("route", "/")) {
    ///     Ok(()) | Err(Error::RecorderFull { .. }) => {} // shed load rather than block
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn record(&self, metric: Metric) -> Result<()> {
        metric.validate()?;
        self.tx
            .try_send(Command::Record(metric))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => Error::RecorderFull {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => Error::RecorderClosed,
            })
    }

    /// Sends everything recorded so far (retrying as configured) and returns what could not be
    /// delivered since the last flush; empty means every metric is committed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let recorder = client.recorder().build();
    /// recorder.record(metrics_client::Metric::new("requests", 1))?;
    /// for lost in recorder.flush().await? {
    ///     eprintln!("{} metrics not delivered: {}", lost.metrics.len(), lost.error);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush(&self) -> Result<Vec<Undelivered>> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .await
            .map_err(|_| Error::RecorderClosed)?;
        answer.await.map_err(|_| Error::RecorderClosed)
    }

    /// Sends everything recorded so far and stops this handle; returns what could not be
    /// delivered. Other clones of the recorder keep working.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let recorder = client.recorder().build();
    /// recorder.record(metrics_client::Metric::new("requests", 1))?;
    /// let undelivered = recorder.close().await;
    /// assert!(undelivered.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(self) -> Vec<Undelivered> {
        self.flush().await.unwrap_or_default()
    }
}

/// The background task: batches, sends, retries, and answers flushes.
async fn run(settings: RecorderBuilder, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut undelivered = Vec::new();
    // The first tick comes one interval from now, not at once: an immediate tick would send
    // whatever single metric happened to be recorded first as a batch of its own.
    let mut tick = tokio::time::interval_at(Instant::now() + settings.interval, settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Record(metric)) => {
                    batch.push(metric);
                    if batch.len() >= settings.max_batch {
                        deliver(&settings, std::mem::take(&mut batch), &mut undelivered).await;
                    }
                }
                Some(Command::Flush(done)) => {
                    deliver(&settings, std::mem::take(&mut batch), &mut undelivered).await;
                    let _ = done.send(std::mem::take(&mut undelivered));
                }
                None => {
                    deliver(&settings, std::mem::take(&mut batch), &mut undelivered).await;
                    for lost in undelivered {
                        tracing::error!(metrics = lost.metrics.len(), error = %lost.error, "recorder stopped with undelivered metrics");
                    }
                    return;
                }
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    deliver(&settings, std::mem::take(&mut batch), &mut undelivered).await;
                }
            }
        }
    }
}

/// Sends one batch (in parts under the server's limit), retrying what may pass.
async fn deliver(
    settings: &RecorderBuilder,
    batch: Vec<Metric>,
    undelivered: &mut Vec<Undelivered>,
) {
    if batch.is_empty() {
        return;
    }
    let deadline = Instant::now() + settings.retry_for;
    let key = uuid::Uuid::new_v4().simple().to_string();
    let mut backoff = Duration::from_millis(100);
    let mut start = 0;
    let mut refreshed = false;
    'split: loop {
        // Encoding needs the server's limits: that too is retried while the server is away.
        let parts = loop {
            match settings.client.encode_batch(&batch[start..]).await {
                Ok(parts) => break parts,
                Err(failure) => {
                    if !wait_to_retry(&failure, deadline, &mut backoff).await {
                        undelivered.push(Undelivered {
                            metrics: batch[start..].to_vec(),
                            error: failure.error,
                        });
                        return;
                    }
                }
            }
        };
        // A new split gets new keys: its parts are not the requests sent before.
        let split = if refreshed { "r" } else { "" };
        for (i, (range, body)) in parts.into_iter().enumerate() {
            let range = start + range.start..start + range.end;
            let part_key = format!("{key}-{split}{i}");
            loop {
                match settings.client.post(body.clone(), Some(&part_key)).await {
                    Ok(_) => break,
                    // The limit shrank since we read it: read it again and split the rest anew.
                    Err(failure)
                        if !refreshed
                            && settings.client.limit_shrank(&failure, body.len()).await =>
                    {
                        refreshed = true;
                        start = range.start;
                        continue 'split;
                    }
                    Err(failure) => {
                        if !wait_to_retry(&failure, deadline, &mut backoff).await {
                            tracing::warn!(error = %failure.error, metrics = range.len(), "recorder gave up on a batch");
                            undelivered.push(Undelivered {
                                metrics: batch[range].to_vec(),
                                error: failure.error,
                            });
                            break;
                        }
                    }
                }
            }
        }
        return;
    }
}

/// Sleeps before the next attempt when `failure` may pass and time remains; false otherwise.
async fn wait_to_retry(failure: &Failure, deadline: Instant, backoff: &mut Duration) -> bool {
    if !failure.error.is_retryable() {
        return false;
    }
    let wait = failure.retry_after.unwrap_or(*backoff);
    if Instant::now() + wait > deadline {
        return false;
    }
    tracing::debug!(error = %failure.error, ?wait, "recorder retrying a batch");
    tokio::time::sleep(wait).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}
