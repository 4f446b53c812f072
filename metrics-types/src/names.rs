//! The catalog's answers: `GET /v1/names` (which metric names the server holds, how many, how
//! recent, with which tag keys), `GET /v1/tags` and `GET /v1/tags/{key}/values`; and the
//! answer of `DELETE /v1/metrics`.

use serde::{Deserialize, Serialize};

/// One metric name the server has stored, with how many metrics carry it and their time span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NameSummary {
    /// The metric name, as posted.
    pub name: String,
    /// How many stored metrics have this name.
    pub count: u64,
    /// The earliest `ts` among them, in UTC (RFC 3339 with microseconds, e.g.
    /// `2016-01-01T12:00:00.000000Z`): where a custom range over this name can start.
    pub first_ts: String,
    /// The latest `ts` among them, in UTC (RFC 3339 with microseconds): whether the name is
    /// still being written, and where its history ends.
    pub last_ts: String,
    /// The tag keys its metrics carry (every key but `name`, `value` and `ts`), sorted: what
    /// `tag.<key>=` and `match` can filter on.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Every metric name the server holds, ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NameList {
    /// One entry per distinct name, ordered by name (byte order); empty when nothing is stored.
    pub names: Vec<NameSummary>,
}

/// The answer to `GET /v1/tags`: the tag keys of the selected metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(example))]
pub struct TagKeys {
    /// Every tag key the selected metrics carry, sorted (byte order); empty when none.
    pub keys: Vec<String>,
}

#[cfg(feature = "openapi")]
impl poem_openapi::types::Example for TagKeys {
    fn example() -> Self {
        TagKeys {
            keys: vec!["host".into(), "region".into()],
        }
    }
}

/// The answer to `GET /v1/tags/{key}/values`: the texts one tag key takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(example))]
pub struct TagValues {
    /// The tag key asked about.
    pub key: String,
    /// Every text it takes among the selected metrics, sorted (byte order): a string as its
    /// content, a number or boolean as its JSON text (`80`, `true`); empty when none.
    pub values: Vec<String>,
}

#[cfg(feature = "openapi")]
impl poem_openapi::types::Example for TagValues {
    fn example() -> Self {
        TagValues {
            key: "host".into(),
            values: vec!["web-1".into(), "web-2".into()],
        }
    }
}

/// The answer to `DELETE /v1/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeleteResponse {
    /// How many metrics were deleted (0 when none matched).
    pub deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let list = NameList {
            names: vec![NameSummary {
                name: "cpu".into(),
                count: 2,
                first_ts: "2016-01-01T00:00:00.000000Z".into(),
                last_ts: "2016-01-01T00:00:01.000000Z".into(),
                tags: vec!["host".into()],
            }],
        };
        let json = serde_json::to_value(&list).expect("serializes");
        assert_eq!(json["names"][0]["count"], 2);
        assert_eq!(json["names"][0]["last_ts"], "2016-01-01T00:00:01.000000Z");
        assert_eq!(json["names"][0]["tags"][0], "host");
        assert_eq!(
            serde_json::from_value::<NameList>(json).expect("deserializes"),
            list
        );
    }
}
