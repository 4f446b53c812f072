//! Points from other protocols (OTLP, line protocol, remote write), made into the metrics a user
//! would post.
//!
//! Every protocol's point becomes a [`Point`]: a name, a value, a timestamp and labels. A point is
//! then written as the JSON object text a client would send to `POST /v1/metrics`
//! (`{"name":..,"value":..,"ts":"<RFC 3339>",..labels}`) and read by [`super::parse`], so it is
//! validated, tagged and stored exactly like a posted metric, and a live subscriber sees it the
//! same way.
//!
//! The rules shared by every protocol (docs/integrations.md):
//! - labels keep their first position; a later source of the same key overwrites the value (the
//!   protocol modules add them from the widest source to the narrowest, so the narrowest wins);
//! - a label named `name`, `value` or `ts` is stored as `_name`, `_value` or `_ts`, since those
//!   keys are the metric's own;
//! - `ts` is RFC 3339 in UTC with as many fractional digits as the instant needs (0, 3, 6 or 9).

use chrono::{DateTime, SecondsFormat};
use metrics_types::ErrorCode;
use serde_json::Value;

use super::parse::{parse_metrics, ParseError, Precision};
use crate::store::NewMetric;

/// A point's value, in the JSON type it is stored as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PointValue {
    /// A float; must be finite (JSON has no NaN or infinity).
    F64(f64),
    /// A signed integer, stored as a JSON integer.
    I64(i64),
    /// An unsigned integer, stored as a JSON integer.
    U64(u64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// A point's extra keys, in the order they were first given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Labels(Vec<(String, Value)>);

impl Labels {
    /// Sets `key` (renamed when it is one of the metric's own keys); a key already present keeps
    /// its position and takes the new value.
    pub(crate) fn insert(&mut self, key: &str, value: Value) {
        let key = stored_key(key);
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Sets a string label.
    pub(crate) fn insert_str(&mut self, key: &str, value: &str) {
        self.insert(key, Value::String(value.to_owned()));
    }
}

/// The key a label is stored under: the metric's own keys get a leading underscore.
fn stored_key(key: &str) -> String {
    match key {
        "name" | "value" | "ts" => format!("_{key}"),
        _ => key.to_owned(),
    }
}

/// One point of another protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// The metric name.
    pub(crate) name: String,
    /// The value.
    pub(crate) value: PointValue,
    /// Nanoseconds since the Unix epoch.
    pub(crate) ts_nanos: i128,
    /// The extra keys.
    pub(crate) labels: Labels,
}

impl Point {
    /// The JSON object text a client would post for this point, or why there is none (a value
    /// JSON cannot hold, a time no date can show).
    pub(crate) fn to_json(&self) -> Result<String, String> {
        let mut out = String::with_capacity(64 + self.labels.0.len() * 24);
        out.push_str("{\"name\":");
        out.push_str(&json_string(&self.name));
        out.push_str(",\"value\":");
        match &self.value {
            PointValue::F64(v) if !v.is_finite() => {
                return Err(format!(
                    "the value {v} cannot be stored: JSON has no NaN or infinity"
                ))
            }
            PointValue::F64(v) => out.push_str(&Value::from(*v).to_string()),
            PointValue::I64(v) => out.push_str(&v.to_string()),
            PointValue::U64(v) => out.push_str(&v.to_string()),
            PointValue::Str(s) => out.push_str(&json_string(s)),
            PointValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
        out.push_str(",\"ts\":\"");
        out.push_str(&rfc3339(self.ts_nanos)?);
        out.push('"');
        for (key, value) in &self.labels.0 {
            out.push(',');
            out.push_str(&json_string(key));
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push('}');
        Ok(out)
    }

    /// The metric this point is, validated as a posted one would be.
    pub(crate) fn into_metric(self) -> Result<NewMetric, ParseError> {
        let text = self
            .to_json()
            .map_err(|message| ParseError::new(ErrorCode::InvalidField, message))?;
        let mut metrics = parse_metrics(text.as_bytes(), Precision::default())?;
        Ok(metrics.remove(0))
    }
}

fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// RFC 3339 in UTC, with 0, 3, 6 or 9 fractional digits as the instant needs.
pub(crate) fn rfc3339(ts_nanos: i128) -> Result<String, String> {
    let secs = ts_nanos.div_euclid(1_000_000_000);
    let nanos = ts_nanos.rem_euclid(1_000_000_000) as u32;
    i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, nanos))
        .filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok_or_else(|| {
            format!("the timestamp {ts_nanos} ns since 1970 is outside the years 0001 to 9999")
        })
}

/// Now, in nanoseconds since the Unix epoch: the time of a point that has none.
pub(crate) fn now_nanos() -> i128 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .map_or(0, i128::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_the_json_a_user_would_post() {
        let mut labels = Labels::default();
        labels.insert_str("host", "web-1");
        labels.insert_str("name", "shadowed");
        labels.insert("n", Value::from(3));
        labels.insert_str("host", "web-2");
        let point = Point {
            name: "cpu".into(),
            value: PointValue::F64(0.5),
            ts_nanos: 1_465_839_830_100_400_200,
            labels,
        };
        assert_eq!(
            point.to_json().unwrap(),
            r#"{"name":"cpu","value":0.5,"ts":"2016-06-13T17:43:50.100400200Z","host":"web-2","_name":"shadowed","n":3}"#
        );
        let metric = point.into_metric().unwrap();
        assert_eq!(metric.name, "cpu");
        assert_eq!(metric.value, Some(0.5));
        assert_eq!(metric.ts_micros, 1_465_839_830_100_400);
    }

    #[test]
    fn timestamps_at_the_precision_they_need() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000_000).unwrap(), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(-1).unwrap(), "1969-12-31T23:59:59.999999999Z");
        assert!(rfc3339(i128::from(i64::MAX) * 1_000_000).is_err());
    }

    #[test]
    fn values_keep_their_type_and_non_finite_floats_are_refused() {
        let point = |value| Point {
            name: "m".into(),
            value,
            ts_nanos: 0,
            labels: Labels::default(),
        };
        let json = |value| point(value).to_json().unwrap();
        assert!(json(PointValue::I64(-3)).contains(r#""value":-3,"#));
        assert!(json(PointValue::U64(u64::MAX)).contains(r#""value":18446744073709551615,"#));
        assert!(json(PointValue::F64(1.0)).contains(r#""value":1.0,"#));
        assert!(json(PointValue::Str("a\"b".into())).contains(r#""value":"a\"b","#));
        assert!(json(PointValue::Bool(true)).contains(r#""value":true,"#));
        assert!(point(PointValue::F64(f64::NAN)).to_json().is_err());
        assert!(point(PointValue::F64(f64::INFINITY)).into_metric().is_err());
    }
}
