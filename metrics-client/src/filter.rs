//! [`Filter`]: the selection every read, delete and subscription shares (names, time range, tags).

use std::fmt::Display;

use metrics_types::Timestamp;

/// Which metrics a query, a delete or a subscription is about, as the server's query parameters.
///
/// Every part is optional. Names are "any of"; tag filters on different keys are "all of", on
/// the same key "any of"; every `match` selector must hold. The server parses and checks the
/// selectors, so a bad one comes back as [`Error::Api`](crate::Error::Api) naming `match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) names: Vec<String>,
    pub(crate) start: Option<Timestamp>,
    pub(crate) end: Option<Timestamp>,
    /// `(key, text)`: `tag.<key>=<text>`.
    pub(crate) tags: Vec<(String, String)>,
    /// Prometheus-style selectors, sent as `match=`.
    pub(crate) selectors: Vec<String>,
}

impl Filter {
    pub(crate) fn name(&mut self, name: impl Into<String>) {
        self.names.push(name.into());
    }

    pub(crate) fn tag(&mut self, key: impl Into<String>, value: impl Display) {
        self.tags.push((key.into(), value.to_string()));
    }

    pub(crate) fn matching(&mut self, selector: impl Into<String>) {
        self.selectors.push(selector.into());
    }

    /// The query parameters, in a stable order: names, range, tags, selectors.
    pub(crate) fn params(&self) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = self
            .names
            .iter()
            .map(|n| ("name".to_owned(), n.clone()))
            .collect();
        params.extend(
            self.start
                .as_ref()
                .map(|t| ("sts".to_owned(), t.to_string())),
        );
        params.extend(self.end.as_ref().map(|t| ("ets".to_owned(), t.to_string())));
        params.extend(
            self.tags
                .iter()
                .map(|(k, v)| (format!("tag.{k}"), v.clone())),
        );
        params.extend(
            self.selectors
                .iter()
                .map(|s| ("match".to_owned(), s.clone())),
        );
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_becomes_its_parameter_in_order() {
        let mut filter = Filter::default();
        assert!(filter.params().is_empty());
        filter.name("cpu");
        filter.name("mem");
        filter.tag("host", "web-1");
        filter.tag("port", 80);
        filter.tag("canary", true);
        filter.matching(r#"{region=~"eu-.*"}"#);
        filter.start = Some("2016-01-01".parse().unwrap());
        filter.end = Some("2016-01-02T00:00:00Z".parse().unwrap());
        let params = filter.params();
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("name", "cpu"),
                ("name", "mem"),
                ("sts", "2016-01-01T00:00:00+00:00"),
                ("ets", "2016-01-02T00:00:00+00:00"),
                ("tag.host", "web-1"),
                ("tag.port", "80"),
                ("tag.canary", "true"),
                ("match", r#"{region=~"eu-.*"}"#),
            ]
        );
    }
}
