//! [`Metric`]: a name, a value, a timestamp and any extra keys, as sent and as read back.

use std::fmt;

use metrics_types::{validate_name, MetricValue, Timestamp};
use serde::{
    de::{self, MapAccess, Visitor},
    Deserialize, Deserializer, Serialize,
};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The keys a metric's own fields use; they cannot be extra keys.
const RESERVED: [&str; 3] = ["name", "value", "ts"];

/// One metric: what [`Client::record_metric`](crate::Client::record_metric) sends and what
/// queries and subscriptions yield.
///
/// On the wire it is one flat JSON object: `{"name": .., "value": .., "ts": .., <extra keys>}`.
///
/// # Examples
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use metrics_client::Metric;
///
/// let metric = Metric::new("cpu", 0.93)
///     .at(Utc.with_ymd_and_hms(2016, 1, 1, 12, 0, 0).unwrap())
///     .with("host", "web-1");
/// assert_eq!(
///     serde_json::to_string(&metric).unwrap(),
///     r#"{"name":"cpu","value":0.93,"ts":"2016-01-01T12:00:00+00:00","host":"web-1"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// What is measured, e.g. `cpu.load`: queries and subscriptions filter on it.
    pub name: String,
    /// The measurement: a number, a string or a boolean.
    pub value: MetricValue,
    /// When it was measured; the server compares instants, and returns it as written.
    pub ts: Timestamp,
    /// Every other key of the object (tags such as `host`), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Metric {
    /// A metric measured now. `value` takes any integer or float, a string or a boolean.
    ///
    /// # Examples
    ///
    /// ```
    /// use metrics_client::{Metric, MetricValue};
    ///
    /// assert_eq!(Metric::new("up", true).value, MetricValue::Bool(true));
    /// assert_eq!(Metric::new("requests", 42_u32).value, MetricValue::Number(42.0));
    /// assert_eq!(Metric::new("state", "ok").value, MetricValue::String("ok".into()));
    /// ```
    pub fn new(name: impl Into<String>, value: impl Into<MetricValue>) -> Metric {
        Metric {
            name: name.into(),
            value: value.into(),
            ts: chrono::Utc::now().into(),
            extra: Map::new(),
        }
    }

    /// Sets when the metric was measured: any chrono `DateTime`, or a parsed [`Timestamp`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metrics_client::Metric;
    ///
    /// let ts = chrono::DateTime::parse_from_rfc3339("2016-01-01T12:00:00+02:00").unwrap();
    /// let metric = Metric::new("cpu", 1).at(ts);
    /// assert_eq!(metric.ts.to_string(), "2016-01-01T12:00:00+02:00");
    /// ```
    pub fn at(mut self, ts: impl Into<Timestamp>) -> Metric {
        self.ts = ts.into();
        self
    }

    /// Adds an extra key (a tag such as `host`), kept as sent and returned by queries.
    ///
    /// `name`, `value` and `ts` are the metric's own fields and are refused as extra keys when
    /// the metric is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use metrics_client::Metric;
    ///
    /// let metric = Metric::new("cpu", 1).with("host", "web-1").with("cores", 8);
    /// assert_eq!(metric.extra["host"], "web-1");
    /// assert_eq!(metric.extra["cores"], 8);
    /// ```
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Metric {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Checks what the server would refuse, and what JSON cannot carry, before sending.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_name(&self.name)
            .map_err(|err| Error::InvalidMetric(format!("name {:?} {err}", self.name)))?;
        if let MetricValue::Number(n) = self.value {
            if !n.is_finite() {
                return Err(Error::InvalidMetric(format!(
                    "{}: value {n} is not a finite number; JSON cannot carry it",
                    self.name
                )));
            }
        }
        if let Some(key) = RESERVED.iter().find(|k| self.extra.contains_key(**k)) {
            return Err(Error::InvalidMetric(format!(
                "{}: `{key}` is the metric's own field, not an extra key",
                self.name
            )));
        }
        Ok(())
    }
}

/// Read by hand rather than derived: `#[serde(flatten)]` and `#[serde(untagged)]` buffer every
/// field in an intermediate tree first, which doubles the cost of reading large query answers.
impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetricVisitor)
    }
}

struct MetricVisitor;

impl<'de> Visitor<'de> for MetricVisitor {
    type Value = Metric;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric object with name, value and ts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metric, A::Error> {
        let (mut name, mut value, mut ts) = (None, None, None);
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value::<String>()?),
                "value" => {
                    value = Some(match map.next_value::<Value>()? {
                        Value::Number(n) => MetricValue::Number(
                            n.as_f64()
                                .ok_or_else(|| de::Error::custom("value: a number out of range"))?,
                        ),
                        Value::String(s) => MetricValue::String(s),
                        Value::Bool(b) => MetricValue::Bool(b),
                        _ => {
                            return Err(de::Error::custom(
                                "value: expected a number, a string or a boolean",
                            ))
                        }
                    })
                }
                // A number is Unix seconds, as the server reads it by default. The server returns
                // `ts` as it was sent, so a number posted with `?precision=ms` (or us, ns) is
                // read here as seconds: far in the future, or refused beyond year 9999.
                "ts" => {
                    ts = Some(match map.next_value::<Value>()? {
                        Value::String(text) => {
                            Timestamp::parse(&text).map_err(de::Error::custom)?
                        }
                        Value::Number(n) => {
                            Timestamp::from_epoch(&n.to_string(), metrics_types::EpochUnit::Seconds)
                                .map_err(de::Error::custom)?
                        }
                        _ => return Err(de::Error::custom("ts: expected a string or a number")),
                    })
                }
                _ => {
                    extra.insert(key, map.next_value()?);
                }
            }
        }
        Ok(Metric {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            value: value.ok_or_else(|| de::Error::missing_field("value"))?,
            ts: ts.ok_or_else(|| de::Error::missing_field("ts"))?,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_ts_is_unix_seconds() {
        let metric: Metric =
            serde_json::from_str(r#"{"name":"a","value":1,"ts":1451649600.5}"#).unwrap();
        assert_eq!(metric.ts.timestamp_micros(), 1_451_649_600_500_000);
    }

    #[test]
    fn refuses_non_finite_values_and_reserved_keys() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                Metric::new("x", bad).validate(),
                Err(Error::InvalidMetric(_))
            ));
        }
        assert!(Metric::new("x", 1).with("ts", "now").validate().is_err());
        assert!(Metric::new("", 1).validate().is_err());
        assert!(Metric::new("x", 1.5).with("host", "a").validate().is_ok());
    }

    #[test]
    fn reads_back_what_the_server_returns() {
        let m: Metric = serde_json::from_str(
            r#"{"name":"cpu","value":"high","ts":"2016-01-01 12:00:00.000","host":"web-1"}"#,
        )
        .unwrap();
        assert_eq!(m.value, MetricValue::String("high".into()));
        assert_eq!(m.extra["host"], "web-1");
        assert_eq!(m.extra.len(), 1);
        let m: Metric =
            serde_json::from_str(r#"{"ts":"2016-01-01","value":true,"name":"up"}"#).unwrap();
        assert_eq!(
            (m.name.as_str(), &m.value),
            ("up", &MetricValue::Bool(true))
        );
        assert!(m.extra.is_empty());
        for bad in [
            r#"{"name":"a","value":1}"#,
            r#"{"name":"a","value":[1],"ts":"2016-01-01"}"#,
            r#"{"name":"a","value":1,"ts":"yesterday"}"#,
            r#"{"name":"a","value":1,"ts":true}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<Metric>(bad).is_err(), "{bad}");
        }
    }
}
