//! `GET /v1/names`: the metric names the server holds, for pickers such as the live page's.

use chrono::{DateTime, SecondsFormat};
use metrics_types::{NameList, NameSummary};
use poem_openapi::{payload::Json, OpenApi};

use super::{error::ApiError, ApiTags};
use crate::{selection::Selection, store::NameStats, AppState};

/// Listing metric names.
pub(crate) struct NamesApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Metrics")]
impl NamesApi {
    /// List metric names
    ///
    /// Every distinct metric name stored, ordered by name, with how many metrics carry it and the
    /// earliest and latest `ts` among them (UTC). Use a name and its span to query
    /// `GET /v1/metrics?name=..&sts=..&ets=..`.
    #[oai(path = "/v1/names", method = "get", operation_id = "listNames")]
    async fn list_names(&self, req: &poem::Request) -> Result<Json<NameList>, ApiError> {
        let mut names = self.state.store.names(&Selection::default()).await?;
        // A token confined to name prefixes sees only the names within them.
        if let Some(grant) = req.extensions().get::<crate::auth::Grant>() {
            names.retain(|stats| grant.allows_name(&stats.name));
        }
        Ok(Json(NameList {
            names: names.into_iter().map(summary).collect(),
        }))
    }
}

fn summary(stats: NameStats) -> NameSummary {
    NameSummary {
        name: stats.name,
        count: stats.count,
        first_ts: rfc3339(stats.first_micros),
        last_ts: rfc3339(stats.last_micros),
    }
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds.
fn rfc3339(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(
            super::rfc3339(1_451_649_600_000_001),
            "2016-01-01T12:00:00.000001Z"
        );
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }
}
