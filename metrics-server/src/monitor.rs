//! Self-monitoring: the server's own metrics, served by `GET /metrics` in the Prometheus text
//! format (OpenMetrics, which Prometheus scrapes), with the `prometheus-client` crate.
//!
//! | metric | what |
//! | --- | --- |
//! | `metrics_http_requests_total{route,method,status}` | requests answered, by route template |
//! | `metrics_http_request_duration_seconds{route}` | time to the response head, by route |
//! | `metrics_commit_rows` | rows per committed group (group commit's batch size) |
//! | `metrics_commit_duration_seconds` | time of each commit, from the writer's view |
//! | `metrics_rows_stored_total` | rows committed |
//! | `metrics_commit_failures_total` | commits that failed (each request is answered the error) |
//! | `metrics_writer_queue_depth` | write requests waiting for the writer, at scrape time |
//! | `metrics_live_subscribers` | live stream subscribers (WebSockets), at scrape time |
//!
//! Routes are labelled by template (`/v1/tokens/:id`), unknown paths as `other`, so the number
//! of series stays bounded whatever clients request.

use std::time::Duration;

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

type Labels = Vec<(&'static str, String)>;

/// The server's own metrics; shared through `AppState`.
pub struct Monitor {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    commit_rows: Histogram,
    commit_seconds: Histogram,
    rows_stored: Counter,
    commit_failures: Counter,
    queue_depth: Gauge,
    subscribers: Gauge,
    lag_closes: Counter,
    lag_missed: Counter,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Monitor {
    /// A registry with every metric at zero.
    pub fn new() -> Monitor {
        let mut registry = Registry::with_prefix("metrics");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency =
            Family::<Labels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request to its response head, by route template",
            latency.clone(),
        );
        let commit_rows = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        registry.register(
            "commit_rows",
            "Rows per committed group (requests that share one transaction)",
            commit_rows.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "commit_duration_seconds",
            "Time of each group commit, as the writer sees it",
            commit_seconds.clone(),
        );
        let rows_stored = Counter::default();
        registry.register("rows_stored", "Rows committed", rows_stored.clone());
        let commit_failures = Counter::default();
        registry.register(
            "commit_failures",
            "Commits that failed",
            commit_failures.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Write requests waiting for the writer",
            queue_depth.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "live_subscribers",
            "Live stream subscribers",
            subscribers.clone(),
        );
        let lag_closes = Counter::default();
        registry.register(
            "ws_lag_closes",
            "WebSockets on /v1/ws closed with 1013 because they fell behind the live ring",
            lag_closes.clone(),
        );
        let lag_missed = Counter::default();
        registry.register(
            "ws_lag_missed_frames",
            "Metrics those lagging WebSockets missed (not sent to them)",
            lag_missed.clone(),
        );
        Monitor {
            registry,
            requests,
            latency,
            commit_rows,
            commit_seconds,
            rows_stored,
            commit_failures,
            queue_depth,
            subscribers,
            lag_closes,
            lag_missed,
        }
    }

    /// Counts a live socket closed for lagging, and the metrics it missed.
    pub(crate) fn lagged(&self, missed: u64) {
        self.lag_closes.inc();
        self.lag_missed.inc_by(missed);
    }

    /// Counts an answered request.
    pub(crate) fn request(&self, route: &'static str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_owned())])
            .observe(took.as_secs_f64());
    }

    /// Records a committed group of `rows` rows.
    pub(crate) fn committed(&self, rows: usize, took: Duration) {
        self.commit_rows.observe(rows as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.rows_stored.inc_by(rows as u64);
    }

    /// Records a failed commit.
    pub(crate) fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// The text of a scrape, with the gauges read now.
    pub(crate) fn scrape(&self, queue_depth: usize, subscribers: usize) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The route template of a path, for labels: the fixed routes as they are, the others by their
/// template, anything else `other`.
pub(crate) fn route_of(path: &str) -> &'static str {
    const FIXED: [&str; 18] = [
        "/",
        "/healthz",
        "/openapi.json",
        "/metrics",
        "/v1/metrics",
        "/v1/names",
        "/v1/ws",
        "/v1/stream",
        "/v1/limits",
        "/v1/tokens",
        "/write",
        "/api/v2/write",
        "/api/v1/write",
        "/otlp/v1/metrics",
        "/docs",
        "/docs/",
        "/v1/query",
        "/v1/tags",
    ];
    if let Some(route) = FIXED.iter().find(|r| **r == path) {
        return route;
    }
    if path.starts_with("/v1/tokens/") {
        "/v1/tokens/:id"
    } else if path.starts_with("/v1/tags/") {
        "/v1/tags/:key/values"
    } else if path.starts_with("/assets/") {
        "/assets/:file"
    } else if path.starts_with("/docs/") {
        "/docs/*"
    } else if path.starts_with("/prometheus/") {
        "/prometheus/*"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_holds_every_metric() {
        let monitor = Monitor::new();
        monitor.request(
            route_of("/v1/metrics"),
            "POST",
            200,
            Duration::from_millis(3),
        );
        monitor.request(
            route_of("/v1/tokens/7"),
            "DELETE",
            204,
            Duration::from_millis(1),
        );
        monitor.request(route_of("/nope/1"), "GET", 404, Duration::from_millis(1));
        monitor.committed(5, Duration::from_millis(2));
        monitor.commit_failed();
        monitor.lagged(3);
        let text = monitor.scrape(3, 2);
        for line in [
            "metrics_http_requests_total{route=\"/v1/metrics\",method=\"POST\",status=\"200\"} 1",
            "metrics_http_requests_total{route=\"/v1/tokens/:id\",method=\"DELETE\",status=\"204\"} 1",
            "metrics_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1",
            "metrics_http_request_duration_seconds_count{route=\"/v1/metrics\"} 1",
            "metrics_commit_rows_sum 5.0",
            "metrics_commit_duration_seconds_count 1",
            "metrics_rows_stored_total 5",
            "metrics_ws_lag_closes_total 1",
            "metrics_ws_lag_missed_frames_total 3",
            "metrics_commit_failures_total 1",
            "metrics_writer_queue_depth 3",
            "metrics_live_subscribers 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
