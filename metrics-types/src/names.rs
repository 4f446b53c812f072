//! The answer to `GET /v1/names`: which metric names the server holds, how many and how recent.

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
}

/// Every metric name the server holds, ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NameList {
    /// One entry per distinct name, ordered by name (byte order); empty when nothing is stored.
    pub names: Vec<NameSummary>,
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
            }],
        };
        let json = serde_json::to_value(&list).expect("serializes");
        assert_eq!(json["names"][0]["count"], 2);
        assert_eq!(json["names"][0]["last_ts"], "2016-01-01T00:00:01.000000Z");
        assert_eq!(
            serde_json::from_value::<NameList>(json).expect("deserializes"),
            list
        );
    }
}
