//! The one reader of read routes' query strings: strict about which parameters a route knows,
//! and the turning of the selection parameters (`name`, `sts`, `ets`, `tag.<key>`, `match`)
//! into a [`Selection`].
//!
//! ```ignore
//! // In a handler: the selection parameters plus this route's own.
//! let params = Params::read(req, &["limit", "order"])?;
//! let selection = params.selection()?;
//! let limit = params.one("limit")?;
//! ```

use chrono::{DateTime, Utc};
use metrics_types::{validate_name, ErrorCode, Timestamp, MAX_NAME_BYTES};
use poem::Request;

use super::error::ApiError;
use crate::selection::{selector, MatchOp, Selection, TagMatcher};

/// The parameters every read route knows, besides `tag.<key>`.
pub(crate) const SELECTION_PARAMS: [&str; 4] = ["name", "sts", "ets", "match"];

/// The prefix of the simple tag filter, `tag.host=web-1`.
const TAG_PREFIX: &str = "tag.";

/// A request's query parameters, percent-decoded, in order, every one known to the route.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// Reads the request's selection (see [`Params::selection`]) after checking that every
/// parameter is a selection parameter or one of `extra_known`: what `/v1/stream` and `/v1/ws`
/// call with their own parameters (`since`, ...).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn selection(req: &Request, extra_known: &[&str]) -> Result<Selection, ApiError> {
    Params::read(req, extra_known)?.selection()
}

impl Params {
    /// Reads and checks the query string: every name and value must be UTF-8 once
    /// percent-decoded (`+` is a space), and every name a selection parameter, a `tag.<key>`,
    /// or one of `extra_known`; anything else is 400 `unknown_parameter` naming it. The time
    /// parameters `sts` and `ets` may be given at most once.
    pub(crate) fn read(req: &Request, extra_known: &[&str]) -> Result<Params, ApiError> {
        Params::parse(req.uri().query().unwrap_or(""), extra_known)
    }

    fn parse(query: &str, extra_known: &[&str]) -> Result<Params, ApiError> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name).ok_or_else(|| {
                invalid(format!(
                    "the query parameter name {raw_name:?} is not UTF-8 once percent-decoded"
                ))
            })?;
            let value = decode(raw_value).ok_or_else(|| {
                invalid(format!(
                    "query parameter `{name}`: the value {raw_value:?} is not UTF-8 once \
                     percent-decoded"
                ))
            })?;
            let known = SELECTION_PARAMS.contains(&name.as_str())
                || name.starts_with(TAG_PREFIX)
                || extra_known.contains(&name.as_str());
            if !known {
                let mut names: Vec<&str> = SELECTION_PARAMS.to_vec();
                names.push("tag.<key>");
                names.extend_from_slice(extra_known);
                return Err(ApiError::bad_request(
                    ErrorCode::UnknownParameter,
                    format!(
                        "unknown query parameter `{name}`; this route knows {} (to filter on a \
                         tag, write tag.{name}=...)",
                        names.join(", ")
                    ),
                ));
            }
            pairs.push((name, value));
        }
        let params = Params { pairs };
        params.one("sts")?;
        params.one("ets")?;
        Ok(params)
    }

    /// Every value of parameter `name`, in order.
    pub(crate) fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_owned();
        self.pairs
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that may be given at most once (a repeat is 400
    /// `invalid_param`); an empty value counts as absent.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(invalid(format!(
                "query parameter `{name}` is given more than once; give it once"
            )));
        }
        Ok(first.filter(|v| !v.trim().is_empty()))
    }

    /// The parameters as decoded, in order (to rebuild a query, as the `Link` header does).
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The selection the parameters say, with relative times counted from now.
    pub(crate) fn selection(&self) -> Result<Selection, ApiError> {
        self.selection_at(Utc::now())
    }

    /// The selection the parameters say, relative times counted from `now`:
    ///
    /// - `name` (repeatable: any of; empty values ignored);
    /// - `sts`, `ets`: inclusive bounds in any [`Timestamp::parse_param`] form; a bad one is
    ///   400 `invalid_timestamp`, `sts` after `ets` 400 `invalid_range`;
    /// - `tag.<key>=<text>`: the same key repeated means any of them, different keys all of them;
    /// - `match=<selector>` (see [`selector`]): all of them must hold; a name in a selector
    ///   narrows the `name`s (names that contradict select nothing).
    pub(crate) fn selection_at(&self, now: DateTime<Utc>) -> Result<Selection, ApiError> {
        let mut names = names(self.all("name"))?;
        let start = bound("sts", self.one("sts")?, now)?;
        let end = bound("ets", self.one("ets")?, now)?;
        if let (Some(start), Some(end)) = (&start, &end) {
            if start.timestamp_micros() > end.timestamp_micros() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRange,
                    format!("sts ({start}) is after ets ({end}); swap them or widen the range"),
                ));
            }
        }

        // tag.<key>: one matcher per key, in the order the keys first appear.
        let mut tags: Vec<TagMatcher> = Vec::new();
        for (name, value) in &self.pairs {
            let Some(key) = name.strip_prefix(TAG_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                return Err(invalid(
                    "query parameter `tag.`: the tag key is missing; write tag.<key>=<value>, \
                     e.g. tag.host=web-1"
                        .to_owned(),
                ));
            }
            match tags.iter_mut().find(|m| m.key == key) {
                Some(TagMatcher {
                    op: MatchOp::Equal(values),
                    ..
                }) => values.push(value.clone()),
                _ => tags.push(TagMatcher {
                    key: key.to_owned(),
                    op: MatchOp::Equal(vec![value.clone()]),
                }),
            }
        }

        // match=<selector>: every one must hold.
        for text in self.all("match").filter(|t| !t.trim().is_empty()) {
            let parsed = selector::parse(text).map_err(|err| {
                invalid(format!(
                    "query parameter `match`: {err} in {text:?}; expected a Prometheus selector \
                     such as cpu{{host=\"web-1\", region!=\"eu\", dc=~\"fra.*\"}}"
                ))
            })?;
            if let Some(name) = parsed.name {
                validate_name(&name)
                    .map_err(|err| invalid(format!("query parameter `match`: the name {err}")))?;
                names = if names.is_empty() || names.contains(&name) {
                    vec![name]
                } else {
                    // A name no metric can have: the selection is empty, as asked.
                    vec!["\u{1}".repeat(MAX_NAME_BYTES + 1)]
                };
            }
            tags.extend(parsed.matchers);
        }

        Ok(Selection {
            names,
            start_micros: start.map(|t| t.timestamp_micros()),
            end_micros: end.map(|t| t.timestamp_micros()),
            tags,
        })
    }
}

/// The `name` filter: empty values mean "any name" and are dropped; any other value must be a
/// name the server could have stored (no control characters, at most 512 bytes), or no metric
/// could ever match it. Repeats are dropped.
fn names<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ApiError> {
    let mut names: Vec<String> = Vec::new();
    for name in values.filter(|n| !n.is_empty()) {
        validate_name(name).map_err(|err| invalid(format!("query parameter `name` {err}")))?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A time bound: absent or empty means unbounded.
fn bound(
    param: &str,
    value: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Timestamp>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => Timestamp::parse_param(text, now).map(Some).map_err(|err| {
            ApiError::bad_request(
                ErrorCode::InvalidTimestamp,
                format!("query parameter `{param}`: {err}"),
            )
        }),
    }
}

/// 400 `invalid_param` with this message.
pub(crate) fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidParam, message)
}

/// Percent-decodes one part of a query (`+` is a space); `None` if it is not UTF-8.
fn decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::selection::Tags;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    fn select(query: &str) -> Result<Selection, ApiError> {
        Params::parse(query, &["limit"])?.selection_at(now())
    }

    fn refused(query: &str) -> (ErrorCode, String) {
        let err = select(query).expect_err(query);
        (err.code(), err.to_string())
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_parameters_are_named() {
        let (code, message) = refused("name=cpu&host=web-1");
        assert_eq!(code, ErrorCode::UnknownParameter);
        assert!(message.contains("`host`"), "{message}");
        assert!(message.contains("tag.host="), "{message}");
        assert!(message.contains("limit"), "{message}");
        let (code, message) = refused("lmit=3");
        assert_eq!(code, ErrorCode::UnknownParameter);
        assert!(message.contains("`lmit`"), "{message}");
        assert!(select("limit=3&name=cpu").is_ok());
        // `flag` with no value is still a parameter.
        assert_eq!(refused("flag").0, ErrorCode::UnknownParameter);
    }

    #[test]
    fn names_times_and_ranges() {
        let s = select("name=cpu&name=&name=mem&name=cpu&sts=1700000000&ets=now").unwrap();
        assert_eq!(s.names, ["cpu", "mem"]);
        assert_eq!(s.start_micros, Some(1_700_000_000_000_000));
        assert_eq!(s.end_micros, Some(now().timestamp_micros()));
        let s = select("sts=&ets=2016-01-01T00:00:00%2B02:00").unwrap();
        assert_eq!(s.start_micros, None);
        assert_eq!(s.end_micros, Some(1_451_599_200_000_000));
        assert!(select("").unwrap().is_everything());

        let (code, message) = refused("sts=1700000000000");
        assert_eq!(code, ErrorCode::InvalidTimestamp);
        assert!(
            message.contains("`sts`") && message.contains("1700000000000ms"),
            "{message}"
        );
        let (code, message) = refused("ets=m");
        assert_eq!(code, ErrorCode::InvalidTimestamp);
        assert!(
            message.contains("`ets`") && message.contains("now-15m"),
            "{message}"
        );
        assert_eq!(refused("sts=now&ets=now-1h").0, ErrorCode::InvalidRange);
        let (code, message) = refused("sts=1&sts=2");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("`sts`"), "{message}");
        let (code, message) = refused("name=a%00b");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("`name`"), "{message}");
        let (code, message) = refused("name=%FF");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("`name`"), "{message}");
    }

    #[test]
    fn simple_tags_any_of_a_key_all_of_the_keys() {
        let s = select("tag.host=a&tag.port=80&tag.host=b&tag.dc=").unwrap();
        assert_eq!(s.tags.len(), 3);
        let m = |pairs: &[(&str, &str)]| s.matches("cpu", 0, &tags(pairs));
        assert!(m(&[("host", "a"), ("port", "80")]));
        assert!(m(&[("host", "b"), ("port", "80")]));
        assert!(!m(&[("host", "c"), ("port", "80")]));
        assert!(!m(&[("host", "a")]));
        assert!(
            !m(&[("host", "a"), ("port", "80"), ("dc", "x")]),
            "tag.dc= means absent"
        );
        let s = select("tag.host+name=x%20y").unwrap();
        assert_eq!(s.tags[0].key, "host name");
        let (code, message) = refused("tag.=x");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("`tag.`"), "{message}");
    }

    #[test]
    fn selectors_narrow_and_combine() {
        let s =
            select("match=cpu%7Bhost%3D~%22web-.*%22%7D&match=%7Bregion!%3D%22eu%22%7D").unwrap();
        assert_eq!(s.names, ["cpu"]);
        assert_eq!(s.tags.len(), 2);
        assert!(s.matches("cpu", 0, &tags(&[("host", "web-1"), ("region", "us")])));
        assert!(!s.matches("cpu", 0, &tags(&[("host", "web-1"), ("region", "eu")])));
        assert!(!s.matches("mem", 0, &tags(&[("host", "web-1")])));
        // A selector's name narrows the `name`s; a contradiction selects nothing.
        let s = select("name=cpu&name=mem&match=mem").unwrap();
        assert_eq!(s.names, ["mem"]);
        let s = select("name=cpu&match=mem").unwrap();
        assert!(!s.matches("cpu", 0, &Tags::new()) && !s.matches("mem", 0, &Tags::new()));
        assert!(!s.is_everything());
        assert!(select("match=").unwrap().is_everything());

        let (code, message) = refused("match=%7Bhost%7D");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(
            message.contains("`match`") && message.contains("character 6"),
            "{message}"
        );
        let (code, message) = refused("match=%7Bh%3D~%22(%22%7D");
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("regular expression"), "{message}");
    }

    #[test]
    fn the_shared_reader_takes_a_request() {
        let req = Request::builder()
            .uri("/v1/stream?name=cpu&since=3&tag.host=a".parse().unwrap())
            .finish();
        let s = selection(&req, &["since"]).unwrap();
        assert_eq!(s.names, ["cpu"]);
        assert_eq!(s.tags.len(), 1);
        let err = selection(&req, &[]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownParameter);
    }
}
