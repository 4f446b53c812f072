//! The answer of an aggregate query, `GET /v1/metrics?step=..` with `format=json` (the default):
//! columnar, one array per function, ready for a chart.
//!
//! ```
//! use metrics_types::AggregateAnswer;
//!
//! let text = r#"{"step":60,"offset":0,"fill":"none","series":[{"name":"cpu",
//!     "tags":{"host":"web-1"},"non_numeric":0,"ts":[1767225600,1767225660],
//!     "avg":[0.41,null],"p99":[0.9,0.7]}]}"#;
//! let answer: AggregateAnswer = serde_json::from_str(text).unwrap();
//! let cpu = &answer.series[0];
//! assert_eq!(cpu.tags["host"], "web-1");
//! assert_eq!(cpu.column("avg"), Some(&[Some(0.41), None][..]));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole answer: the grid it was computed on and the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateAnswer {
    /// The bucket width, in seconds.
    pub step: u64,
    /// The grid's shift from the Unix epoch, in seconds (buckets start at `offset + k·step`).
    pub offset: i64,
    /// The fill asked for: `"none"`, `"null"`, `"prev"`, `"linear"`, or the number.
    pub fill: serde_json::Value,
    /// One per name and values of the `by` keys, ordered by name, then by those values
    /// (absent last).
    pub series: Vec<AggregateSeries>,
}

/// One series: its buckets' starts and one column per function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateSeries {
    /// The metrics' name.
    pub name: String,
    /// The texts of the `by` keys (a key its metrics lack is left out).
    pub tags: BTreeMap<String, String>,
    /// How many of its metrics have a value that is not a number: counted by `count`, left out
    /// of every other function.
    pub non_numeric: u64,
    /// The buckets' starts, in Unix seconds, ascending.
    pub ts: Vec<i64>,
    /// One column per function asked (`avg`, `p99`, ...), each as long as `ts`; `None` where a
    /// bucket has no number (or is filled with `null`).
    #[serde(flatten)]
    pub columns: BTreeMap<String, Vec<Option<f64>>>,
}

impl AggregateSeries {
    /// The column of one function, by its name in the query (`avg`, `p99.9`).
    pub fn column(&self, function: &str) -> Option<&[Option<f64>]> {
        self.columns.get(function).map(Vec::as_slice)
    }
}
