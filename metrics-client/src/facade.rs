//! A recorder for the [`metrics`] crate's facade: what `counter!`, `gauge!` and `histogram!`
//! record goes to the server through the batching [`Recorder`]. Behind the `facade` feature.
//!
//! Libraries and applications instrumented with the `metrics` macros need no change: install
//! the recorder once, at the start of `main`, and every value they record is sampled on an
//! interval and sent, like metrics-exporter-prometheus does for Prometheus.
//!
//! ```no_run
//! # async fn run() -> metrics_client::Result<()> {
//! let client = metrics_client::Client::new("http://127.0.0.1:5000")?;
//! let facade = metrics_client::facade::install(&client)?;
//!
//! metrics::counter!("requests", "route" => "/").increment(1);
//! metrics::gauge!("queue.depth").set(12.0);
//! metrics::histogram!("latency.ms").record(3.5);
//!
//! // At the end of main: a last sample, sent before returning.
//! let undelivered = facade.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What reaches the server
//!
//! Every `interval` (default 10 s), one metric per registered series, all with the same `ts`
//! (the time of sampling); the labels of a series become its extra keys (as strings), beside
//! any [`global_label`](FacadeBuilder::global_label)s:
//!
//! | recorded with | sent as | value |
//! | --- | --- | --- |
//! | `counter!("requests")` | `requests` | the total since the recorder started (as Prometheus counters) |
//! | `gauge!("queue.depth")` | `queue.depth` | the current value |
//! | `histogram!("latency")` | `latency.count`, `latency.sum` | the number and the sum of every sample since the start |
//! | | `latency` with extra key `quantile` (`"0"`, `"0.5"`, `"0.9"`, `"0.99"`, `"1"`) | that quantile of the samples recorded since the previous sampling: `"0"` is the minimum, `"1"` the maximum; none when there was no sample |
//!
//! So `name=latency&tag.quantile=0.99` is the 99th percentile over time, and the difference of
//! two `latency.sum` values divided by that of `latency.count` is the mean between them.
//! Quantiles are exact (the samples of an interval are sorted, nearest rank).
//!
//! Labels named `name`, `value` or `ts` (the metric's own fields), and `quantile` on a
//! histogram, are sent as `label_name`, `label_value`, `label_ts`, `label_quantile`. Counter
//! totals beyond 2^53 lose precision (values are JSON numbers). Units and descriptions given
//! to `describe_*!` are not sent.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use tokio::task::JoinHandle;

use crate::{Client, Error, Metric, Recorder, RecorderBuilder, Result, Timestamp, Undelivered};

/// The default quantiles of histograms: minimum, median, 90th and 99th percentiles, maximum.
pub const DEFAULT_QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// Installs a [`FacadeRecorder`] for `client` with the default settings as the process's
/// global `metrics` recorder: see [`FacadeBuilder::install`].
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// let facade = metrics_client::facade::install(&client)?;
/// metrics::counter!("started").increment(1);
/// facade.close().await?;
/// # Ok(())
/// # }
/// ```
pub fn install(client: &Client) -> Result<FacadeHandle> {
    FacadeBuilder::new(client).install()
}

/// Settings of the facade's recorder, in the shape of the `metrics` exporters' builders.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
/// use std::time::Duration;
/// use metrics_client::facade::FacadeBuilder;
///
/// let facade = FacadeBuilder::new(&client)
///     .interval(Duration::from_secs(15))
///     .global_label("service", "checkout")
///     .quantiles(&[0.5, 0.99])
///     .batching(client.recorder().retry_for(Duration::from_secs(300)))
///     .install()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct FacadeBuilder {
    batching: RecorderBuilder,
    interval: Duration,
    global_labels: Vec<(String, String)>,
    quantiles: Vec<f64>,
}

impl FacadeBuilder {
    /// Settings for sending to `client`'s server: every 10 s, [`DEFAULT_QUANTILES`], the
    /// batching recorder's defaults.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client).install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(client: &Client) -> Self {
        FacadeBuilder {
            batching: client.recorder(),
            interval: Duration::from_secs(10),
            global_labels: Vec::new(),
            quantiles: DEFAULT_QUANTILES.to_vec(),
        }
    }

    /// How often every counter, gauge and histogram is sampled and sent. Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// use std::time::Duration;
    ///
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client)
    ///     .interval(Duration::from_secs(1))
    ///     .install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// An extra key on every metric sent (the host, the service, the version, ...); a label of
    /// the same key on a series takes precedence.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client)
    ///     .global_label("host", "web-1")
    ///     .global_label("version", env!("CARGO_PKG_VERSION"))
    ///     .install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((key.into(), value.into()));
        self
    }

    /// The quantiles sent for each histogram, each within 0 and 1 (others are ignored).
    /// Default: [`DEFAULT_QUANTILES`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client)
    ///     .quantiles(&[0.5, 0.95, 0.999])
    ///     .install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn quantiles(mut self, quantiles: &[f64]) -> Self {
        self.quantiles = quantiles
            .iter()
            .copied()
            .filter(|q| (0.0..=1.0).contains(q))
            .collect();
        self
    }

    /// The batching recorder that delivers the samples (its batch size, buffer and
    /// `retry_for`): see [`RecorderBuilder`]. Default: `client.recorder()`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client)
    ///     .batching(client.recorder().capacity(10_000))
    ///     .install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn batching(mut self, batching: RecorderBuilder) -> Self {
        self.batching = batching;
        self
    }

    /// Builds the recorder without installing it, and starts sampling: for
    /// `metrics::with_local_recorder`, layers of `metrics-util`, or installing it yourself.
    /// Must be called inside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let (recorder, facade) = metrics_client::facade::FacadeBuilder::new(&client).build();
    /// metrics::with_local_recorder(&recorder, || metrics::counter!("jobs").increment(1));
    /// facade.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> (FacadeRecorder, FacadeHandle) {
        let shared = Arc::new(Shared {
            registry: Registry::atomic(),
            global_labels: self.global_labels,
            quantiles: self.quantiles,
            totals: Mutex::new(HashMap::new()),
        });
        let recorder = self.batching.build();
        let sampler = tokio::spawn(sample_every(
            self.interval,
            shared.clone(),
            recorder.clone(),
        ));
        let handle = FacadeHandle {
            shared: shared.clone(),
            recorder,
            sampler,
        };
        (FacadeRecorder { shared }, handle)
    }

    /// Builds the recorder, starts sampling and installs it as the process's global `metrics`
    /// recorder; fails with [`Error::FacadeInstalled`] if one is installed already. Must be
    /// called inside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::FacadeBuilder::new(&client).install()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn install(self) -> Result<FacadeHandle> {
        let (recorder, handle) = self.build();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => Ok(handle),
            Err(_) => {
                handle.sampler.abort();
                Err(Error::FacadeInstalled)
            }
        }
    }
}

/// The `metrics` recorder: holds every series the macros register, in atomics and lock-free
/// buckets (`metrics-util`'s registry); a background task samples them.
#[derive(Debug, Clone)]
pub struct FacadeRecorder {
    shared: Arc<Shared>,
}

impl metrics::Recorder for FacadeRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.shared
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.shared
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.shared
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// The handle of a running facade recorder: flush it, or close it at the end of `main`.
///
/// Dropping it does not stop the sampling (an installed recorder keeps working for the life of
/// the process); [`close`](Self::close) does, after a last sample.
#[derive(Debug)]
pub struct FacadeHandle {
    shared: Arc<Shared>,
    recorder: Recorder,
    sampler: JoinHandle<()>,
}

impl FacadeHandle {
    /// Samples every series now and waits until everything sampled so far is delivered; returns
    /// what could not be (see [`Recorder::flush`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(facade: metrics_client::facade::FacadeHandle) -> metrics_client::Result<()> {
    /// metrics::gauge!("ready").set(1.0);
    /// let undelivered = facade.flush().await?;
    /// assert!(undelivered.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush(&self) -> Result<Vec<Undelivered>> {
        self.shared.sample(&self.recorder);
        self.recorder.flush().await
    }

    /// Stops sampling, takes a last sample and delivers it with everything before; returns what
    /// could not be delivered. Values recorded afterwards are kept but never sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: metrics_client::Client) -> metrics_client::Result<()> {
    /// let facade = metrics_client::facade::install(&client)?;
    /// // ... the program ...
    /// for lost in facade.close().await? {
    ///     eprintln!("{} samples not delivered: {}", lost.metrics.len(), lost.error);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(self) -> Result<Vec<Undelivered>> {
        self.sampler.abort();
        // A sample under way in the task finishes first: both take the totals' lock.
        self.shared.sample(&self.recorder);
        self.recorder.close().await
    }
}

/// What the recorder, the sampling task and the handle share.
#[derive(Debug)]
struct Shared {
    registry: Registry<Key, AtomicStorage>,
    global_labels: Vec<(String, String)>,
    quantiles: Vec<f64>,
    /// Each histogram's count and sum since the start; the lock also keeps two samplings (the
    /// task's and a flush's) from interleaving.
    totals: Mutex<HashMap<Key, (u64, f64)>>,
}

impl Shared {
    /// Sends one sample of every series through `recorder`, all at the same `ts`.
    fn sample(&self, recorder: &Recorder) {
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let ts = Timestamp::from(chrono::Utc::now());
        let mut metrics = Vec::new();
        self.registry.visit_counters(|key, counter| {
            let total = counter.load(std::sync::atomic::Ordering::Acquire);
            // As JSON numbers: exact up to 2^53.
            metrics.push(self.metric(key, "", total as f64, None, &ts));
        });
        self.registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(std::sync::atomic::Ordering::Acquire));
            metrics.push(self.metric(key, "", value, None, &ts));
        });
        self.registry.visit_histograms(|key, bucket| {
            let mut samples = Vec::new();
            bucket.clear_with(|block| samples.extend_from_slice(block));
            let (count, sum) = totals.entry(key.clone()).or_insert((0, 0.0));
            *count += samples.len() as u64;
            *sum += samples.iter().sum::<f64>();
            metrics.push(self.metric(key, ".count", *count as f64, None, &ts));
            metrics.push(self.metric(key, ".sum", *sum, None, &ts));
            for (quantile, value) in quantiles(&mut samples, &self.quantiles) {
                metrics.push(self.metric(key, "", value, Some(quantile), &ts));
            }
        });
        drop(totals);
        for metric in metrics {
            if let Err(err) = recorder.record(metric) {
                tracing::warn!(error = %err, "metrics facade: a sample was not taken");
            }
        }
    }

    /// The metric for series `key` (name + `suffix`), its labels and the global ones as extra
    /// keys, and the `quantile` key of a histogram's quantile.
    fn metric(
        &self,
        key: &Key,
        suffix: &str,
        value: f64,
        quantile: Option<f64>,
        ts: &Timestamp,
    ) -> Metric {
        let mut metric = Metric::new(format!("{}{suffix}", key.name()), value).at(*ts);
        for (k, v) in &self.global_labels {
            metric
                .extra
                .insert(extra_key(k, quantile.is_some()), v.clone().into());
        }
        for label in key.labels() {
            metric.extra.insert(
                extra_key(label.key(), quantile.is_some()),
                label.value().into(),
            );
        }
        if let Some(q) = quantile {
            metric = metric.with("quantile", q.to_string());
        }
        metric
    }
}

/// The extra key a label is sent as: renamed where it would clash with a field of the metric.
fn extra_key(label: &str, is_quantile: bool) -> String {
    match label {
        "name" | "value" | "ts" => format!("label_{label}"),
        "quantile" if is_quantile => "label_quantile".to_owned(),
        _ => label.to_owned(),
    }
}

/// Each of `quantiles` of `samples` (nearest rank; NaN samples left out); none without samples.
fn quantiles(samples: &mut Vec<f64>, quantiles: &[f64]) -> Vec<(f64, f64)> {
    samples.retain(|s| !s.is_nan());
    if samples.is_empty() {
        return Vec::new();
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    quantiles
        .iter()
        .map(|&q| {
            let rank = (q * n as f64).ceil() as usize;
            (q, samples[rank.clamp(1, n) - 1])
        })
        .collect()
}

/// The sampling task: one sample every `interval`, until the handle's `close` aborts it.
async fn sample_every(interval: Duration, shared: Arc<Shared>, recorder: Recorder) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.sample(&recorder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_over_the_samples() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        samples.push(f64::NAN);
        let got = quantiles(&mut samples, &DEFAULT_QUANTILES);
        assert_eq!(
            got,
            [
                (0.0, 1.0),
                (0.5, 50.0),
                (0.9, 90.0),
                (0.99, 99.0),
                (1.0, 100.0)
            ]
        );
        assert_eq!(
            quantiles(&mut vec![7.0], &[0.0, 0.5, 1.0]),
            [(0.0, 7.0), (0.5, 7.0), (1.0, 7.0)]
        );
        assert!(quantiles(&mut Vec::new(), &DEFAULT_QUANTILES).is_empty());
    }

    #[test]
    fn labels_become_extra_keys_without_clashing_with_the_metric_fields() {
        let shared = Shared {
            registry: Registry::atomic(),
            global_labels: vec![
                ("service".into(), "api".into()),
                ("host".into(), "x".into()),
            ],
            quantiles: DEFAULT_QUANTILES.to_vec(),
            totals: Mutex::new(HashMap::new()),
        };
        let key = Key::from_parts(
            "latency",
            vec![
                metrics::Label::new("host", "web-1"),
                metrics::Label::new("name", "n"),
                metrics::Label::new("quantile", "q"),
            ],
        );
        let ts = Timestamp::parse("2016-01-01T00:00:00Z").unwrap();
        let metric = shared.metric(&key, ".count", 3.0, None, &ts);
        assert_eq!(metric.name, "latency.count");
        assert_eq!(metric.ts, ts);
        assert_eq!(
            serde_json::to_value(&metric.extra).unwrap(),
            serde_json::json!({"service": "api", "host": "web-1", "label_name": "n", "quantile": "q"})
        );
        assert!(metric.validate().is_ok());
        let metric = shared.metric(&key, "", 9.0, Some(0.99), &ts);
        assert_eq!(metric.name, "latency");
        assert_eq!(metric.extra["quantile"], "0.99");
        assert_eq!(metric.extra["label_quantile"], "q");
        assert!(metric.validate().is_ok());
    }
}
