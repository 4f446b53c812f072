//! The write path: parsing posted metrics, group commit, then hand-off to the [`Hub`].
//!
//! Every POST hands its validated metrics to one writer task through a bounded queue and waits
//! for the answer. The writer takes whatever requests are queued (up to `max_batch` metrics),
//! stores them in one transaction, and only after the commit answers each request and publishes
//! the metrics, with their ids and in commit order, to the hub. Under load many requests share
//! one commit, which is what makes writes fast while every acknowledgement stays durable. If a
//! shared transaction fails with a database error, each request in it is retried alone, so one
//! request's failure is never another's. A transient failure or a full disk is nobody's request:
//! every request of the group gets it as it is, unretried, since a lost connection may leave the
//! commit in doubt and a retry could store the group twice.
//!
//! What the writer stores was validated before: `parse` turns a posted body into metrics (JSON or
//! NDJSON framing, each metric's fields), or says what is wrong with it.

pub(crate) mod line;
pub(crate) mod otlp;
pub(crate) mod parse;
pub(crate) mod points;
pub(crate) mod remote_write;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    hub::{Committed, Hub},
    monitor::Monitor,
    store::{MetricStore, NewMetric, OnceOutcome, StoreError},
};

/// Requests that may wait for the writer; beyond this, POSTs wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 1024;

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The writer has stopped: the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The store failed; nothing of the request was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One POST's metrics and the way to answer it.
struct WriteRequest {
    metrics: Vec<NewMetric>,
    /// An `Idempotency-Key` and its window: such a write is committed alone, with its key.
    key: Option<(String, Duration)>,
    done: oneshot::Sender<Result<OnceOutcome, IngestError>>,
}

/// The handle POSTs write through; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<WriteRequest>,
}

impl Ingest {
    /// Starts the writer task. It ends once every `Ingest` handle is dropped and the queue is
    /// drained, which is how shutdown finishes the writes in flight.
    pub fn start(
        store: Arc<dyn MetricStore>,
        hub: Hub,
        max_batch: usize,
        monitor: Arc<Monitor>,
    ) -> (Ingest, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = tokio::spawn(run_writer(store, hub, rx, max_batch.max(1), monitor));
        (Ingest { tx }, writer)
    }

    /// How many write requests wait for the writer now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Stores `metrics` atomically; `Ok` carries their ids once the transaction is committed.
    pub async fn write(&self, metrics: Vec<NewMetric>) -> Result<Vec<i64>, IngestError> {
        if metrics.is_empty() {
            return Ok(Vec::new());
        }
        match self.send(metrics, None).await? {
            OnceOutcome::Stored(ids) => Ok(ids),
            // Only a write with a key can be a repeat.
            OnceOutcome::Repeated { .. } => Ok(Vec::new()),
        }
    }

    /// Stores `metrics` atomically unless a write with the same `key` was committed within
    /// `window`; then nothing is stored and the outcome carries the original count.
    pub async fn write_once(
        &self,
        key: String,
        window: Duration,
        metrics: Vec<NewMetric>,
    ) -> Result<OnceOutcome, IngestError> {
        self.send(metrics, Some((key, window))).await
    }

    async fn send(
        &self,
        metrics: Vec<NewMetric>,
        key: Option<(String, Duration)>,
    ) -> Result<OnceOutcome, IngestError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(WriteRequest { metrics, key, done })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }
}

/// Commits each keyed request alone, in the writer, so ids stay in commit order.
async fn write_keyed(
    store: &Arc<dyn MetricStore>,
    hub: &Hub,
    keyed: Vec<WriteRequest>,
    monitor: &Monitor,
) {
    for request in keyed {
        let Some((key, window)) = request.key.as_ref() else {
            continue;
        };
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let rows: Vec<&NewMetric> = request.metrics.iter().collect();
        let started = Instant::now();
        let outcome = store.insert_once(key, window, &rows).await;
        drop(rows);
        match outcome {
            Ok(OnceOutcome::Stored(ids)) => {
                monitor.committed(ids.len(), started.elapsed());
                finish(hub, vec![request], ids)
            }
            Ok(repeated) => {
                let _ = request.done.send(Ok(repeated));
            }
            Err(err) => {
                monitor.commit_failed();
                let _ = request.done.send(Err(err.into()));
            }
        }
    }
}

async fn run_writer(
    store: Arc<dyn MetricStore>,
    hub: Hub,
    mut rx: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    monitor: Arc<Monitor>,
) {
    while let Some(first) = rx.recv().await {
        let mut count = 0;
        let mut keyed = Vec::new();
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            if request.key.is_some() {
                keyed.push(request);
            } else {
                count += request.metrics.len();
                group.push(request);
            }
            if count < max_batch {
                next = rx.try_recv().ok();
            }
        }
        write_keyed(&store, &hub, keyed, &monitor).await;
        if group.is_empty() {
            continue;
        }
        let rows: Vec<&NewMetric> = group.iter().flat_map(|r| &r.metrics).collect();
        let started = Instant::now();
        match store.insert(&rows).await {
            Ok(ids) => {
                drop(rows);
                monitor.committed(ids.len(), started.elapsed());
                finish(&hub, group, ids);
            }
            Err(err @ StoreError::Database(_)) if group.len() > 1 => {
                drop(rows);
                tracing::warn!(error = %err, requests = group.len(), "group commit failed; retrying each request alone");
                monitor.commit_failed();
                for request in group {
                    let rows: Vec<&NewMetric> = request.metrics.iter().collect();
                    let started = Instant::now();
                    match store.insert(&rows).await {
                        Ok(ids) => {
                            drop(rows);
                            monitor.committed(ids.len(), started.elapsed());
                            finish(&hub, vec![request], ids);
                        }
                        Err(err) => {
                            monitor.commit_failed();
                            drop(rows);
                            let _ = request.done.send(Err(err.into()));
                        }
                    }
                }
            }
            Err(err) => {
                drop(rows);
                monitor.commit_failed();
                if group.len() > 1 {
                    tracing::warn!(error = %err, requests = group.len(), "group commit failed");
                }
                for request in group {
                    let _ = request.done.send(Err(err.clone().into()));
                }
            }
        }
    }
    tracing::debug!("ingest writer stopped");
}

/// Publishes a committed group to the hub, then answers each request with its ids.
fn finish(hub: &Hub, group: Vec<WriteRequest>, ids: Vec<i64>) {
    let mut ids = ids.into_iter();
    let mut answers = Vec::with_capacity(group.len());
    let mut committed = Vec::new();
    for request in group {
        let request_ids: Vec<i64> = ids.by_ref().take(request.metrics.len()).collect();
        committed.extend(
            request
                .metrics
                .into_iter()
                .zip(&request_ids)
                .map(|(m, &id)| Committed {
                    id,
                    name: m.name,
                    ts_micros: m.ts_micros,
                    tags: m.tags,
                    doc: m.doc,
                }),
        );
        answers.push((request.done, request_ids));
    }
    hub.publish(committed);
    for (done, request_ids) in answers {
        // The client may have gone; its metrics are committed all the same.
        let _ = done.send(Ok(OnceOutcome::Stored(request_ids)));
    }
}
