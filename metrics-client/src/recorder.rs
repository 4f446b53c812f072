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
//! **`retry_for` bounds every wait**: each attempt is cut off at its batch's deadline, and a
//! flush returns within `retry_for` of being called. Its deadline applies to every batch sent on
//! its behalf; batches that come due after it are handed back unsent, as
//! [`Error::RetryExpired`].
//!
//! **When the buffer is full** (the server is slower than the application, or unreachable while
//! a batch is being retried), [`Recorder::record`] refuses the metric with
//! [`Error::RecorderFull`] instead of blocking the hot path or dropping the metric unseen: the
//! caller decides.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    error::Failure,
    subscription::{FIRST_BACKOFF, MAX_BACKOFF},
    Client, Error, Metric, Result,
};

/// Metrics that could not be delivered, and why.
#[derive(Debug)]
pub struct Undelivered {
    /// The metrics, none of which is stored.
    pub metrics: Vec<Metric>,
    /// The last error met trying to deliver them, or [`Error::RetryExpired`] when `retry_for`
    /// ran out first.
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

    /// How long delivery may keep trying. A failing batch is retried for up to this long, then
    /// reported undelivered; [`Recorder::flush`] and [`Recorder::close`] return within this long
    /// of being called (plus the time to answer), handing back what is still unsent. Default:
    /// 60 s.
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
        let shared = Arc::new(Shared::default());
        let recorder = Recorder {
            tx,
            shared: shared.clone(),
            capacity: self.capacity,
            retry_for: self.retry_for,
        };
        tokio::spawn(run(self, shared, rx));
        recorder
    }
}

/// What the task is asked to do, in order.
enum Command {
    Record(Metric),
    /// Send everything so far, giving up at the deadline, and answer with what failed.
    Flush {
        /// Identifies the deadline in [`Shared::flush_deadlines`].
        id: u64,
        deadline: Instant,
        done: oneshot::Sender<Vec<Undelivered>>,
    },
}

/// What the handles and the task share.
#[derive(Debug, Default)]
struct Shared {
    /// Metrics taken by `record` and neither confirmed stored nor handed back by a flush: what
    /// is lost if the task dies.
    unconfirmed: AtomicU64,
    /// The deadlines of the flushes under way, by id. A batch sent while a flush waits must
    /// give up by the earliest of them, or the flush would wait for it longer than `retry_for`.
    flush_deadlines: Mutex<Vec<(u64, Instant)>>,
    /// The id of the next flush.
    next_flush: AtomicU64,
}

impl Shared {
    fn deadlines(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Instant)>> {
        // A list of instants: a panic elsewhere cannot leave it half-written.
        self.flush_deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The deadline of a batch starting now: its own, or an earlier flush's.
    fn deadline(&self, own: Instant) -> Instant {
        self.deadlines()
            .iter()
            .map(|(_, at)| *at)
            .fold(own, Instant::min)
    }

    /// Forgets a flush's deadline once it is answered (or given up on).
    fn end_flush(&self, id: u64) {
        self.deadlines().retain(|(flush, _)| *flush != id);
    }

    fn confirm(&self, metrics: usize) {
        self.unconfirmed.fetch_sub(
            u64::try_from(metrics).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn stopped(&self) -> Error {
        Error::RecorderStopped {
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
        }
    }
}

/// A flush's deadline, listed in [`Shared`] until the task answers the flush or the waiting
/// future is dropped.
struct FlushDeadline<'a> {
    shared: &'a Shared,
    id: u64,
    at: Instant,
}

impl<'a> FlushDeadline<'a> {
    fn new(shared: &'a Shared, at: Instant) -> Self {
        let id = shared.next_flush.fetch_add(1, Ordering::Relaxed);
        shared.deadlines().push((id, at));
        FlushDeadline { shared, id, at }
    }
}

impl Drop for FlushDeadline<'_> {
    fn drop(&mut self) {
        self.shared.end_flush(self.id);
    }
}

/// A batching recorder: a cheap `Clone` handle on a background sender.
///
/// Dropping every handle lets the task send what it holds and stop; call
/// [`close`](Self::close) to wait for that and learn what could not be delivered.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    capacity: usize,
    retry_for: Duration,
}

impl Recorder {
    /// Buffers `metric` for sending and returns at once.
    ///
    /// Refused with [`Error::InvalidMetric`] when the server would refuse it, with
    /// [`Error::RecorderFull`] when the buffer is full, and with [`Error::RecorderStopped`] if
    /// the background task has died.
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
        // Counted before it is sent, so the task can never confirm more than was counted.
        self.shared.unconfirmed.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(Command::Record(metric)).map_err(|err| {
            self.shared.confirm(1);
            match err {
                mpsc::error::TrySendError::Full(_) => Error::RecorderFull {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => self.shared.stopped(),
            }
        })
    }

    /// Sends everything recorded so far and returns what could not be delivered since the last
    /// flush; empty means every metric is committed.
    ///
    /// Returns within `retry_for` of being called (plus the time to answer): failing batches
    /// are retried until then, and what is still unsent at that point is handed back, as
    /// [`Error::RetryExpired`] when it was not even tried. Fails with
    /// [`Error::RecorderStopped`] if the background task has died.
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
        let deadline = FlushDeadline::new(&self.shared, after(self.retry_for));
        let (done, answer) = oneshot::channel();
        let flush = Command::Flush {
            id: deadline.id,
            deadline: deadline.at,
            done,
        };
        if self.tx.send(flush).await.is_err() {
            return Err(self.shared.stopped());
        }
        answer.await.map_err(|_| self.shared.stopped())
    }

    /// Flushes (see [`flush`](Self::flush)), then drops this handle; returns what could not be
    /// delivered.
    ///
    /// This closes only this handle: clones of it keep recording, and the background task
    /// stops once the last handle is closed or dropped. Fails with [`Error::RecorderStopped`]
    /// if the background task has died, never with an empty list.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let recorder = client.recorder().build();
    /// recorder.record(metrics_client::Metric::new("requests", 1))?;
    /// let undelivered = recorder.close().await?;
    /// assert!(undelivered.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(self) -> Result<Vec<Undelivered>> {
        self.flush().await
    }
}

/// The background task: batches, sends, retries, and answers flushes.
async fn run(settings: RecorderBuilder, shared: Arc<Shared>, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut undelivered = Vec::new();
    let task = Task {
        settings: &settings,
        shared: &shared,
    };
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
                        task.deliver(std::mem::take(&mut batch), None, &mut undelivered).await;
                    }
                }
                Some(Command::Flush { id, deadline, done }) => {
                    task.deliver(std::mem::take(&mut batch), Some(deadline), &mut undelivered).await;
                    shared.end_flush(id);
                    let handed: usize = undelivered.iter().map(|u| u.metrics.len()).sum();
                    match done.send(std::mem::take(&mut undelivered)) {
                        Ok(()) => shared.confirm(handed),
                        // The flush was given up on: keep its answer for the next one.
                        Err(answer) => undelivered = answer,
                    }
                }
                None => {
                    task.deliver(std::mem::take(&mut batch), None, &mut undelivered).await;
                    for lost in undelivered {
                        tracing::error!(metrics = lost.metrics.len(), error = %lost.error, "recorder stopped with undelivered metrics");
                    }
                    return;
                }
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    task.deliver(std::mem::take(&mut batch), None, &mut undelivered).await;
                }
            }
        }
    }
}

/// What [`deliver`](Task::deliver) needs of the task.
struct Task<'a> {
    settings: &'a RecorderBuilder,
    shared: &'a Shared,
}

impl Task<'_> {
    /// Sends one batch (in parts under the server's limit), retrying what may pass until the
    /// batch's deadline: `retry_for` from now, or a waiting flush's if that is earlier.
    async fn deliver(
        &self,
        batch: Vec<Metric>,
        flush_deadline: Option<Instant>,
        undelivered: &mut Vec<Undelivered>,
    ) {
        if batch.is_empty() {
            return;
        }
        let own = after(self.settings.retry_for);
        let deadline = self
            .shared
            .deadline(flush_deadline.map_or(own, |flush| flush.min(own)));
        let client = &self.settings.client;
        let key = uuid::Uuid::new_v4().simple().to_string();
        let mut backoff = FIRST_BACKOFF;
        let mut start = 0;
        let mut refreshed = false;
        'split: loop {
            // Encoding needs the server's limits: that too is retried while the server is away.
            let parts = loop {
                match self
                    .attempt(deadline, client.encode_batch(&batch[start..]))
                    .await
                {
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
                    let failure = match self
                        .attempt(deadline, client.post(body.clone(), Some(&part_key)))
                        .await
                    {
                        Ok(_) => {
                            self.shared.confirm(range.len());
                            break;
                        }
                        Err(failure) => failure,
                    };
                    // The limit shrank since we read it: read it again and split the rest anew.
                    if !refreshed
                        && self
                            .attempt(deadline, async {
                                Ok(client.limit_shrank(&failure, body.len()).await)
                            })
                            .await
                            .unwrap_or(false)
                    {
                        refreshed = true;
                        start = range.start;
                        continue 'split;
                    }
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
            return;
        }
    }

    /// Runs one attempt, cut off at `deadline`; past the deadline, makes none.
    async fn attempt<T>(
        &self,
        deadline: Instant,
        attempt: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let expired = || {
            Failure::from(Error::RetryExpired {
                retry_for: self.settings.retry_for,
            })
        };
        if Instant::now() >= deadline {
            return Err(expired());
        }
        tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(expired()))
    }
}

/// The instant `wait` from now; a `retry_for` too large to add (`Duration::MAX` for "forever")
/// means a deadline decades away.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Sleeps before the next attempt when `failure` may pass and time remains; false otherwise.
async fn wait_to_retry(failure: &Failure, deadline: Instant, backoff: &mut Duration) -> bool {
    if !failure.error.is_retryable() || matches!(failure.error, Error::RetryExpired { .. }) {
        return false;
    }
    let wait = failure.retry_after.unwrap_or(*backoff);
    if after(wait) > deadline {
        return false;
    }
    tracing::debug!(error = %failure.error, ?wait, "recorder retrying a batch");
    tokio::time::sleep(wait).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panicked_is_reported_with_what_it_held() {
        let (tx, mut rx) = mpsc::channel(16);
        let recorder = Recorder {
            tx,
            shared: Arc::new(Shared::default()),
            capacity: 16,
            retry_for: Duration::from_secs(1),
        };
        // A task that takes metrics and dies on the flush, as a bug in the real one would.
        let task = tokio::spawn(async move {
            while let Some(Command::Record(_)) = rx.recv().await {}
            panic!("the recorder's task died");
        });
        for i in 0..3 {
            recorder.record(Metric::new("held", i)).unwrap();
        }
        match recorder.close().await {
            Err(Error::RecorderStopped { unconfirmed }) => assert_eq!(unconfirmed, 3),
            other => panic!("expected RecorderStopped, got {other:?}"),
        }
        assert!(task.await.unwrap_err().is_panic());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_for_may_be_forever() {
        let far = after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(10 * 365 * 86_400));
    }
}
