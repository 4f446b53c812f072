//! The catalog: `GET /v1/names` (the metric names the server holds, for pickers such as the live
//! page's), `GET /v1/tags` and `GET /v1/tags/{key}/values` (the tag keys and their texts).
//!
//! All three take the selection parameters `name`, `tag.<key>` and `match` to narrow what they
//! list; the catalog does not know time, so `sts`/`ets` are refused rather than ignored.

use chrono::{DateTime, SecondsFormat};
use metrics_types::{ErrorCode, NameList, NameSummary, TagKeys, TagValues};
use poem::Request;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    OpenApi,
};

use super::{
    error::ApiError,
    param_types::{SelectorParam, TagKeyParam},
    params::{invalid, Params},
    schema, ApiTags,
};
use crate::{selection::Selection, store::NameStats, AppState};

/// Listing metric names and tags.
pub(crate) struct NamesApi {
    pub(crate) state: AppState,
}

#[OpenApi(tag = "ApiTags::Metrics")]
impl NamesApi {
    /// List metric names
    ///
    /// Every distinct metric name stored, ordered by name, with how many metrics carry it, the
    /// earliest and latest `ts` among them (UTC) and its tag keys. Use a name and its span to
    /// query `GET /v1/metrics?name=..&sts=..&ets=..`. `name`, `tag.<key>=<text>` and `match`
    /// narrow the list, and each name's count, span and tag keys, to the matching metrics.
    #[oai(path = "/v1/names", method = "get", operation_id = "listNames")]
    async fn list_names(
        &self,
        req: &Request,
        /// Only this name; repeat the parameter for any of several names.
        #[oai(default)]
        name: Query<Vec<schema::NameFilter>>,
        /// Only names with metrics matching this Prometheus selector, e.g. `{host="web-1"}`.
        #[oai(name = "match", default, example = "super::metrics::example_match")]
        matches: Query<Vec<SelectorParam>>,
    ) -> Result<Json<NameList>, ApiError> {
        let _ = (name, matches);
        let selection = catalog_selection(req)?;
        let mut names = self.state.store.names(&selection).await?;
        // A token confined to name prefixes sees only the names within them.
        if let Some(grant) = req.extensions().get::<crate::auth::Grant>() {
            names.retain(|stats| grant.allows_name(&stats.name));
        }
        Ok(Json(NameList {
            names: names.into_iter().map(summary).collect(),
        }))
    }

    /// List tag keys
    ///
    /// The tag keys (every key of a metric but `name`, `value` and `ts`) that the selected
    /// metrics carry, sorted: what `tag.<key>=` and `match` can filter on. `name`,
    /// `tag.<key>=<text>` and `match` narrow it, e.g. `GET /v1/tags?name=cpu`.
    #[oai(path = "/v1/tags", method = "get", operation_id = "listTagKeys")]
    async fn list_tag_keys(
        &self,
        req: &Request,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, example = "example_name")]
        name: Query<Vec<schema::NameFilter>>,
        /// Only metrics matching this Prometheus selector.
        #[oai(name = "match", default, example = "super::metrics::example_match")]
        matches: Query<Vec<SelectorParam>>,
    ) -> Result<Json<TagKeys>, ApiError> {
        let _ = (name, matches);
        let selection = catalog_selection(req)?;
        let keys = self.state.store.tag_keys(&selection).await?;
        Ok(Json(TagKeys { keys }))
    }

    /// List a tag's values
    ///
    /// The texts tag `key` takes among the selected metrics, sorted: a string as its content, a
    /// number or boolean as its JSON text (`80` for both `80` and `"80"`). `name`,
    /// `tag.<key>=<text>` and `match` narrow it, e.g. `GET /v1/tags/host/values?name=cpu`.
    #[oai(
        path = "/v1/tags/:key/values",
        method = "get",
        operation_id = "listTagValues"
    )]
    async fn list_tag_values(
        &self,
        req: &Request,
        /// The tag key (percent-encoded in the path if it holds `/` or other reserved
        /// characters).
        #[oai(example = "example_key")]
        key: Path<TagKeyParam>,
        /// Only metrics with this name; repeat the parameter for any of several names.
        #[oai(default, example = "example_name")]
        name: Query<Vec<schema::NameFilter>>,
        /// Only metrics matching this Prometheus selector.
        #[oai(name = "match", default, example = "super::metrics::example_match")]
        matches: Query<Vec<SelectorParam>>,
    ) -> Result<Json<TagValues>, ApiError> {
        let _ = (name, matches);
        let key = key.0 .0;
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(invalid(format!(
                "path parameter `key`: {key:?} is not a tag key (non-empty, no control \
                 characters)"
            )));
        }
        let selection = catalog_selection(req)?;
        let values = self.state.store.tag_values(&key, &selection).await?;
        Ok(Json(TagValues { key, values }))
    }
}

/// The selection of a catalog route: names, tags and selectors; a time bound is refused, since
/// the catalog does not know time.
fn catalog_selection(req: &Request) -> Result<Selection, ApiError> {
    let params = Params::read(req, &[])?;
    for bound in ["sts", "ets"] {
        if params.all(bound).next().is_some() {
            return Err(ApiError::bad_request(
                ErrorCode::UnknownParameter,
                format!(
                    "query parameter `{bound}` is not known here: the catalog lists names and \
                     tags whatever their time; filter with name, tag.<key> or match, and query \
                     GET /v1/metrics for a time range"
                ),
            ));
        }
    }
    params.selection()
}

fn example_name() -> Vec<schema::NameFilter> {
    vec![schema::NameFilter("cpu".to_owned())]
}

fn example_key() -> TagKeyParam {
    TagKeyParam("host".to_owned())
}

fn summary(stats: NameStats) -> NameSummary {
    NameSummary {
        name: stats.name,
        count: stats.count,
        first_ts: rfc3339(stats.first_micros),
        last_ts: rfc3339(stats.last_micros),
        tags: stats.tag_keys,
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
