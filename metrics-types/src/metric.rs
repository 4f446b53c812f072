//! What a metric is made of: a name, a value and the server's answer to a write.

use serde::{Deserialize, Serialize};

/// The longest metric name the server accepts, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 512;

/// Why a metric name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("is {0} bytes long; the limit is {MAX_NAME_BYTES}")]
    TooLong(usize),
    /// The name holds a control character (newline, tab, NUL, ...).
    #[error("contains the control character {0:?}")]
    ControlCharacter(char),
}

/// Checks a metric name: non-empty, at most [`MAX_NAME_BYTES`] bytes, no control characters.
///
/// # Examples
///
/// ```
/// assert!(metrics_types::validate_name("http.requests").is_ok());
/// assert!(metrics_types::validate_name("bad\nname").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter(c));
    }
    Ok(())
}

/// The value of a metric: a JSON number, string or boolean, as in the original API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricValue {
    /// A number; the server also stores it in a numeric column for aggregations.
    Number(f64),
    /// A string, kept as sent.
    String(String),
    /// A boolean, kept as sent.
    Bool(bool),
}

impl MetricValue {
    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetricValue::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// The answer to a successful `POST /v1/metrics`: every metric in the request is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct PostMetricsResponse {
    /// Always `"success"`, as the original API answered.
    pub resp: String,
    /// How many metrics were stored (and committed) by this request.
    pub stored: u64,
}

impl PostMetricsResponse {
    /// The answer for `stored` committed metrics.
    pub fn success(stored: u64) -> Self {
        PostMetricsResponse {
            resp: "success".to_owned(),
            stored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"a".repeat(513)),
            Err(NameError::TooLong(513))
        );
        assert!(validate_name(&"é".repeat(256)).is_ok());
        assert_eq!(
            validate_name("a\tb"),
            Err(NameError::ControlCharacter('\t'))
        );
        assert!(validate_name("cpu load, host=web-1 ✓").is_ok());
    }

    #[test]
    fn values_deserialize_from_each_json_type() {
        let v: Vec<MetricValue> = serde_json::from_str(r#"[1, 2.5, "x", true]"#).unwrap();
        assert_eq!(
            v,
            vec![
                MetricValue::Number(1.0),
                MetricValue::Number(2.5),
                MetricValue::String("x".into()),
                MetricValue::Bool(true)
            ]
        );
        assert_eq!(v[1].as_f64(), Some(2.5));
        assert_eq!(v[2].as_f64(), None);
    }
}
