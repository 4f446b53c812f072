//! OTLP metrics (`ExportMetricsServiceRequest`, protobuf or JSON), made into points.
//!
//! The mapping (docs/integrations.md):
//! - a gauge or sum data point is one metric named as the OTLP metric, its value a JSON integer
//!   (`asInt`) or number (`asDouble`);
//! - a histogram data point is `<name>_count`, `<name>_sum`, `<name>_min`, `<name>_max` (those
//!   present) and one `<name>_bucket` per bucket, with an `le` key holding the bucket's upper
//!   bound as Prometheus writes it (`"0.5"`, `"+Inf"`) and the cumulative count: the shape
//!   Prometheus's own histograms have, so both arrive alike;
//! - an exponential histogram likewise, its buckets' upper bounds computed from `scale` (the zero
//!   bucket's bound is its `zeroThreshold`);
//! - a summary data point is `<name>_count`, `<name>_sum` and one `<name>` per quantile with a
//!   `quantile` key (`"0.99"`), as in Prometheus;
//! - extra keys are the resource's attributes, then the scope's, then the data point's: a key
//!   given by more than one keeps the narrowest one's value (the data point wins), and `le` or
//!   `quantile` win over an attribute of that name. Attribute values keep their JSON type (string,
//!   boolean, integer, number, array, object; bytes as base64). Scope name and version, units,
//!   descriptions, temporality and exemplars are not stored;
//! - a data point without a time gets the time of receipt; one flagged "no recorded value" is
//!   skipped.
//!
//! A data point that cannot be stored (no value, a value that is not a finite number, a name or
//! attribute the API refuses) is rejected alone and counted in the answer's `partial_success`, as
//! the OTLP spec asks; non-finite sums, minimums and maximums of histograms are left out.

use base64::Engine;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{any_value, AnyValue, KeyValue},
    metrics::v1::{
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
    },
};
use serde_json::Value;

use super::points::{Labels, Point, PointValue};
use crate::store::NewMetric;

/// The flag of a data point that holds no value (`DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`).
const NO_RECORDED_VALUE: u32 = 1;

/// A request's metrics, and the data points that were rejected.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    /// What to store.
    pub(crate) metrics: Vec<NewMetric>,
    /// How many data points were rejected.
    pub(crate) rejected: i64,
    /// Why the first was rejected, and how many more were.
    pub(crate) first_error: Option<String>,
}

impl Converted {
    fn reject(&mut self, metric: &str, why: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("metric {metric:?}: {why}"));
        }
    }

    /// The `error_message` of the answer's partial success.
    pub(crate) fn error_message(&self) -> String {
        match (&self.first_error, self.rejected) {
            (Some(first), 1) => first.clone(),
            (Some(first), n) => format!("{first} (and {} more data points)", n - 1),
            (None, _) => String::new(),
        }
    }
}

/// Converts a request; `now_nanos` is the time of data points that have none.
pub(crate) fn convert(request: &ExportMetricsServiceRequest, now_nanos: i128) -> Converted {
    let mut out = Converted::default();
    for resource_metrics in &request.resource_metrics {
        let mut resource = Labels::default();
        if let Some(r) = &resource_metrics.resource {
            add_attributes(&mut resource, &r.attributes);
        }
        for scope_metrics in &resource_metrics.scope_metrics {
            let mut scope = resource.clone();
            if let Some(s) = &scope_metrics.scope {
                add_attributes(&mut scope, &s.attributes);
            }
            for metric in &scope_metrics.metrics {
                let name = metric.name.as_str();
                let mut context = Context {
                    out: &mut out,
                    name,
                    scope: &scope,
                    now_nanos,
                };
                match &metric.data {
                    Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| context.number(p)),
                    Some(Data::Sum(s)) => s.data_points.iter().for_each(|p| context.number(p)),
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter().for_each(|p| context.histogram(p))
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().for_each(|p| context.exponential(p))
                    }
                    Some(Data::Summary(s)) => s.data_points.iter().for_each(|p| context.summary(p)),
                    // A metric without data has no data points to store or reject.
                    None => {}
                }
            }
        }
    }
    out
}

/// What every data point of one metric shares.
struct Context<'a> {
    out: &'a mut Converted,
    name: &'a str,
    scope: &'a Labels,
    now_nanos: i128,
}

impl Context<'_> {
    fn labels(&self, attributes: &[KeyValue]) -> Labels {
        let mut labels = self.scope.clone();
        add_attributes(&mut labels, attributes);
        labels
    }

    fn time(&self, time_unix_nano: u64) -> i128 {
        if time_unix_nano == 0 {
            self.now_nanos
        } else {
            i128::from(time_unix_nano)
        }
    }

    /// Stores all of a data point's points, or rejects the data point.
    fn push(&mut self, points: Vec<Point>) {
        let mut metrics = Vec::with_capacity(points.len());
        for point in points {
            let name = point.name.clone();
            match point.into_metric() {
                Ok(metric) => metrics.push(metric),
                Err(err) => {
                    self.out.reject(&name, err.into_message());
                    return;
                }
            }
        }
        self.out.metrics.extend(metrics);
    }

    fn number(&mut self, p: &NumberDataPoint) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return;
        }
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => PointValue::F64(v),
            Some(number_data_point::Value::AsInt(v)) => PointValue::I64(v),
            None => {
                let name = self.name;
                self.out.reject(
                    name,
                    "a data point without a value (asDouble or asInt)".into(),
                );
                return;
            }
        };
        let point = Point {
            name: self.name.to_owned(),
            value,
            ts_nanos: self.time(p.time_unix_nano),
            labels: self.labels(&p.attributes),
        };
        self.push(vec![point]);
    }

    /// `_count`, then `_sum`, `_min` and `_max` when present and finite.
    fn totals(
        &self,
        labels: &Labels,
        ts_nanos: i128,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Vec<Point> {
        let point = |suffix: &str, value| Point {
            name: format!("{}_{suffix}", self.name),
            value,
            ts_nanos,
            labels: labels.clone(),
        };
        let mut points = vec![point("count", PointValue::U64(count))];
        for (suffix, value) in [("sum", sum), ("min", min), ("max", max)] {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                points.push(point(suffix, PointValue::F64(v)));
            }
        }
        points
    }

    /// One `_bucket` point per `(upper bound, cumulative count)`.
    fn buckets(
        &self,
        labels: &Labels,
        ts_nanos: i128,
        buckets: impl IntoIterator<Item = (f64, u64)>,
    ) -> Vec<Point> {
        buckets
            .into_iter()
            .map(|(le, cumulative)| {
                let mut labels = labels.clone();
                labels.insert_str("le", &prometheus_float(le));
                Point {
                    name: format!("{}_bucket", self.name),
                    value: PointValue::U64(cumulative),
                    ts_nanos,
                    labels,
                }
            })
            .collect()
    }

    fn histogram(&mut self, p: &HistogramDataPoint) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return;
        }
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            let name = self.name;
            self.out.reject(
                name,
                format!(
                    "a histogram data point with {} bucket counts for {} explicit bounds; it \
                     needs one more count than bounds",
                    p.bucket_counts.len(),
                    p.explicit_bounds.len()
                ),
            );
            return;
        }
        let labels = self.labels(&p.attributes);
        let ts = self.time(p.time_unix_nano);
        let mut points = self.totals(&labels, ts, p.count, p.sum, p.min, p.max);
        if !p.bucket_counts.is_empty() {
            let bounds = p
                .explicit_bounds
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY));
            let mut total = 0u64;
            let cumulative = p.bucket_counts.iter().map(|c| {
                total = total.saturating_add(*c);
                total
            });
            points.extend(self.buckets(&labels, ts, bounds.zip(cumulative)));
        }
        self.push(points);
    }

    fn exponential(&mut self, p: &ExponentialHistogramDataPoint) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return;
        }
        let labels = self.labels(&p.attributes);
        let ts = self.time(p.time_unix_nano);
        let mut points = self.totals(&labels, ts, p.count, p.sum, p.min, p.max);
        let base = 2f64.powf(2f64.powi(-p.scale));
        let mut bounds = Vec::new();
        // Negative buckets, most negative first: index k holds [-base^(k+1), -base^k).
        if let Some(negative) = &p.negative {
            for (i, count) in indexed(negative).rev() {
                bounds.push((-base.powf(i as f64), count));
            }
        }
        if p.zero_count > 0 || p.positive.is_some() || p.negative.is_some() {
            bounds.push((p.zero_threshold, p.zero_count));
        }
        // Positive buckets: index k holds (base^k, base^(k+1)].
        if let Some(positive) = &p.positive {
            for (i, count) in indexed(positive) {
                bounds.push((base.powf(i as f64 + 1.0), count));
            }
        }
        if !bounds.is_empty() {
            let mut total = 0u64;
            let mut cumulative: Vec<(f64, u64)> = bounds
                .into_iter()
                .map(|(le, count)| {
                    total = total.saturating_add(count);
                    (le, total)
                })
                .collect();
            cumulative.push((f64::INFINITY, p.count.max(total)));
            points.extend(self.buckets(&labels, ts, cumulative));
        }
        self.push(points);
    }

    fn summary(&mut self, p: &SummaryDataPoint) {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return;
        }
        let labels = self.labels(&p.attributes);
        let ts = self.time(p.time_unix_nano);
        let mut points = self.totals(&labels, ts, p.count, Some(p.sum), None, None);
        for q in &p.quantile_values {
            if !q.value.is_finite() {
                continue;
            }
            let mut labels = labels.clone();
            labels.insert_str("quantile", &prometheus_float(q.quantile));
            points.push(Point {
                name: self.name.to_owned(),
                value: PointValue::F64(q.value),
                ts_nanos: ts,
                labels,
            });
        }
        self.push(points);
    }
}

/// A bucket list's `(index, count)` pairs.
fn indexed(buckets: &Buckets) -> impl DoubleEndedIterator<Item = (i64, u64)> + '_ {
    buckets
        .bucket_counts
        .iter()
        .enumerate()
        .map(|(i, &count)| (i64::from(buckets.offset) + i as i64, count))
}

/// A float as Prometheus writes `le` and `quantile`: shortest decimal, `+Inf`, `-Inf`, `NaN`.
fn prometheus_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

fn add_attributes(labels: &mut Labels, attributes: &[KeyValue]) {
    for kv in attributes {
        labels.insert(&kv.key, any_value(kv.value.as_ref()));
    }
}

/// An attribute value as JSON; a non-finite double becomes the string OTLP JSON uses for it.
fn any_value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) if d.is_finite() => Value::from(*d),
        Some(any_value::Value::DoubleValue(d)) => Value::String(prometheus_float(*d)),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_value(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // An index into a dictionary only profiles have.
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
    }
}

#[cfg(test)]
mod tests;
