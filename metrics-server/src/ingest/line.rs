//! InfluxDB line protocol: `measurement[,tag=v...] field=v[,field=v...] [timestamp]`, one point
//! per line, parsed by InfluxData's own `influxdb-line-protocol` crate (escaping, quoting and
//! field types as InfluxDB defines them).
//!
//! Each field of a line becomes one metric (docs/integrations.md):
//! - named `measurement.field`, or just `measurement` for a field named `value`;
//! - its value keeps its type: a float or an integer (`1i`, `1u`) is a JSON number, a string a
//!   JSON string, a boolean a JSON boolean;
//! - the line's tags become extra keys (strings), after a `db` key holding the request's
//!   database or bucket when one was given (a tag named `db` overrides it);
//! - the timestamp is read in the request's precision (nanoseconds by default); a line without
//!   one gets the time the request arrived.
//!
//! A body is stored all or nothing: the first line that cannot be parsed or stored is a
//! [`LineError`] naming its line number and the problem.

use influxdb_line_protocol::{parse_lines, split_lines, FieldValue};

use super::points::{Labels, Point, PointValue};
use crate::store::NewMetric;

/// The unit of the timestamps of a write (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    /// Nanoseconds (`ns`, v1 `n`): the default.
    Nanos,
    /// Microseconds (`us`, v1 `u`).
    Micros,
    /// Milliseconds (`ms`).
    Millis,
    /// Seconds (`s`).
    Seconds,
    /// Minutes (v1 `m`).
    Minutes,
    /// Hours (v1 `h`).
    Hours,
}

impl Precision {
    /// Reads `precision=` as either API version spells it.
    pub(crate) fn parse(text: &str) -> Option<Precision> {
        Some(match text {
            "" | "n" | "ns" => Precision::Nanos,
            "u" | "us" | "µ" | "µs" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    fn nanos(self) -> i128 {
        match self {
            Precision::Nanos => 1,
            Precision::Micros => 1_000,
            Precision::Millis => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// The first bad line of a body: its 1-based number and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct LineError {
    /// The line number, counting from 1 (a string field may span lines).
    pub(crate) line: usize,
    /// What is wrong, quoting the start of the line.
    pub(crate) message: String,
}

/// Parses a body of line protocol into metrics; `db` is the request's database or bucket and
/// `now_nanos` the time of the lines that have none.
pub(crate) fn parse(
    text: &str,
    precision: Precision,
    db: Option<&str>,
    now_nanos: i128,
) -> Result<Vec<NewMetric>, LineError> {
    let mut metrics = Vec::with_capacity(text.len() / 48 + 1);
    let base = text.as_ptr() as usize;
    let mut line_number = 1;
    let mut counted_to = 0;
    for segment in split_lines(text) {
        let start = segment.as_ptr() as usize - base;
        line_number += text[counted_to..start].matches('\n').count();
        counted_to = start;
        // Lines ending in \r\n (Windows) are as good as lines ending in \n.
        let segment = segment.strip_suffix('\r').unwrap_or(segment);
        let Some(parsed) = parse_lines(segment).next() else {
            continue; // blank or a comment
        };
        // Comments and blank lines before the point do not move the error's line.
        let skipped = segment.len() - segment.trim_start_matches([' ', '\t']).len();
        let fail = |message: String| LineError {
            line: line_number,
            message: format!("{message} (in `{}`)", excerpt(&segment[skipped..])),
        };
        let line =
            parsed.map_err(|err| fail(format!("invalid line protocol: {}", explain(&err))))?;
        let ts_nanos = match line.timestamp {
            Some(ts) => i128::from(ts) * precision.nanos(),
            None => now_nanos,
        };
        let measurement = line.series.measurement.as_str();
        let mut labels = Labels::default();
        if let Some(db) = db.filter(|db| !db.is_empty()) {
            labels.insert_str("db", db);
        }
        let tags = line.series.tag_set.as_deref().unwrap_or_default();
        for (i, (key, value)) in tags.iter().enumerate() {
            if tags[..i].iter().any(|(k, _)| k == key) {
                return Err(fail(format!(
                    "duplicate tags: `{}` is given twice",
                    key.as_str()
                )));
            }
            labels.insert_str(key.as_str(), value.as_str());
        }
        for (field, value) in &line.field_set {
            let name = if field.as_str() == "value" {
                measurement.to_owned()
            } else {
                format!("{measurement}.{}", field.as_str())
            };
            let value = match value {
                FieldValue::F64(v) if !v.is_finite() => {
                    return Err(fail(format!(
                        "field `{}`: the float is out of range",
                        field.as_str()
                    )))
                }
                FieldValue::F64(v) => PointValue::F64(*v),
                FieldValue::I64(v) => PointValue::I64(*v),
                FieldValue::U64(v) => PointValue::U64(*v),
                FieldValue::String(s) => PointValue::Str(s.as_str().to_owned()),
                FieldValue::Boolean(b) => PointValue::Bool(*b),
            };
            let point = Point {
                name,
                value,
                ts_nanos,
                labels: labels.clone(),
            };
            let metric = point.into_metric().map_err(|err| {
                fail(format!(
                    "field `{}`: {}",
                    field.as_str(),
                    err.into_message()
                ))
            })?;
            metrics.push(metric);
        }
    }
    Ok(metrics)
}

/// The parser's error in words; its generic one says what a line looks like instead.
fn explain(err: &influxdb_line_protocol::Error) -> String {
    match err {
        influxdb_line_protocol::Error::GenericParsingError { .. } => "expected \
            `measurement[,tag=value...] field=value[,field=value...] [timestamp]` with commas, \
            spaces and equals signs escaped by a backslash and string fields in double quotes"
            .to_owned(),
        other => other.to_string(),
    }
}

/// The start of a line, for an error message.
fn excerpt(line: &str) -> String {
    const MAX: usize = 80;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests;
