//! Which metrics a read means, in domain terms: names, a time range and tag matchers
//! ([`Selection`]), and where a page of a raw query starts ([`Page`], [`Cursor`]).
//!
//! Every read route (`GET` and `DELETE /v1/metrics`, `/v1/stream`, `/v1/ws`, `/v1/names`,
//! `/v1/tags`) turns its parameters into a [`Selection`]; the store serves it from its indexes and
//! the live stream applies [`Selection::matches`] to each committed metric, so a replayed and a
//! live metric are judged by the same rule.
//!
//! # Tags
//!
//! The extra keys of a metric (every key but `name`, `value` and `ts`) are its tags. A tag is
//! compared by its *text*: a string by its content, a number by its JSON text as sent (`80` and
//! `"80"` both read `80`; `80.0` reads `80.0`), a boolean as `true` or `false`, an object or array
//! by its compact JSON, and `null` as the empty string. An absent tag reads as the empty string,
//! as in Prometheus: `key=""` selects metrics without `key`, `key!=""` those with it. Texts are
//! computed once, at ingest, in Rust ([`tags_of`]), so both backends compare the same strings.

pub mod selector;

use std::{collections::BTreeMap, fmt};

use base64::Engine as _;

/// A metric's tags by key, as their texts (see the [module docs](self)).
pub type Tags = BTreeMap<String, String>;

/// The keys of a metric object that are not tags.
pub const RESERVED_KEYS: [&str; 3] = ["name", "value", "ts"];

/// The text a tag value is compared by, from the value's JSON text as sent.
pub fn tag_text(raw: &serde_json::value::RawValue) -> String {
    let text = raw.get().trim();
    if text.starts_with('"') {
        serde_json::from_str(text).unwrap_or_default()
    } else if text == "null" {
        String::new()
    } else {
        text.to_owned()
    }
}

/// The tags of a metric object given as JSON text (compact, as stored): its keys other than
/// [`RESERVED_KEYS`], by text. A key given twice keeps its last value. `None` if `json` is not
/// an object.
pub fn tags_of(json: &str) -> Option<Tags> {
    let object: BTreeMap<String, &serde_json::value::RawValue> = serde_json::from_str(json).ok()?;
    Some(
        object
            .into_iter()
            .filter(|(key, _)| !RESERVED_KEYS.contains(&key.as_str()))
            .map(|(key, raw)| (key, tag_text(raw)))
            .collect(),
    )
}

/// Which metrics a read means: all of its conditions hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Any of these names; empty means every name.
    pub names: Vec<String>,
    /// Inclusive lower bound on `ts`, in microseconds since the epoch.
    pub start_micros: Option<i64>,
    /// Inclusive upper bound on `ts`, in microseconds since the epoch.
    pub end_micros: Option<i64>,
    /// Every one of these must hold.
    pub tags: Vec<TagMatcher>,
}

impl Selection {
    /// Whether a metric with this name, instant and tags is selected.
    pub fn matches(&self, name: &str, ts_micros: i64, tags: &Tags) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && self.start_micros.is_none_or(|start| ts_micros >= start)
            && self.end_micros.is_none_or(|end| ts_micros <= end)
            && self.tags.iter().all(|m| m.matches(tags))
    }

    /// Whether nothing narrows the selection (a `DELETE` of it must say `all=true`).
    pub fn is_everything(&self) -> bool {
        self.names.is_empty()
            && self.start_micros.is_none()
            && self.end_micros.is_none()
            && self.tags.is_empty()
    }
}

/// One condition on one tag.
#[derive(Debug, Clone)]
pub struct TagMatcher {
    /// The tag key.
    pub key: String,
    /// What its text must be.
    pub op: MatchOp,
}

impl TagMatcher {
    /// Whether `tags` satisfy this condition (an absent tag reads as `""`).
    pub fn matches(&self, tags: &Tags) -> bool {
        self.op
            .matches(tags.get(&self.key).map_or("", String::as_str))
    }
}

/// How a tag's text is compared.
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// Equal to any of these (`tag.k=a&tag.k=b`, or `k="a"` in a selector: one value).
    Equal(Vec<String>),
    /// Not equal to this (`k!="a"`).
    NotEqual(String),
    /// Matched whole by this expression (`k=~"a.*"`).
    Regex(AnchoredRegex),
    /// Not matched whole by this expression (`k!~"a.*"`).
    NotRegex(AnchoredRegex),
}

impl MatchOp {
    /// Whether a tag text satisfies this comparison.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            MatchOp::Equal(values) => values.iter().any(|v| v == text),
            MatchOp::NotEqual(value) => value != text,
            MatchOp::Regex(re) => re.is_match(text),
            MatchOp::NotRegex(re) => !re.is_match(text),
        }
    }

    /// Whether a metric *without* the tag satisfies it (its text is `""`): the store needs to
    /// know, since an absent tag has no index entry.
    pub fn matches_absent(&self) -> bool {
        self.matches("")
    }
}

/// A regular expression (Rust `regex` syntax, RE2-like as in Prometheus) anchored at both ends.
#[derive(Clone)]
pub struct AnchoredRegex {
    source: String,
    regex: regex::Regex,
}

impl AnchoredRegex {
    /// Compiles `source` so that it must match a whole text, as Prometheus does.
    pub fn new(source: &str) -> Result<AnchoredRegex, regex::Error> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(1 << 20)
            .build()?;
        Ok(AnchoredRegex {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `text` is matched whole.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The expression as given, unanchored.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for AnchoredRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// The order of a raw query: by `ts`, ties by storage order (id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Where a page of a raw query starts: strictly after this row in the query's order. Paging by
/// `(ts, id)` keys never skips nor repeats a row, whatever is written meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's `ts`, in microseconds since the epoch.
    pub ts_micros: i64,
    /// The last row's id.
    pub id: i64,
}

impl Cursor {
    /// The opaque text of the `cursor` parameter.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("v1:{}:{}", self.ts_micros, self.id))
    }

    /// Reads a `cursor` parameter back; `None` if it is not one this server made.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.strip_prefix("v1:")?.split(':');
        let ts_micros = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Cursor { ts_micros, id })
    }
}

/// Which part of a raw query's answer to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    /// The order of the rows.
    pub order: Order,
    /// At most this many rows; `None`: all.
    pub limit: Option<u64>,
    /// Start after this row (from a previous page's `Link`).
    pub after: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tag_texts_are_the_values_as_sent() {
        let json = r#"{"name":"cpu","value":1,"ts":"2016-01-01","port":80,"host":"web-1","up":true,"n":null,"o":{"a":[1,2]},"f":80.0,"e":"a\u00e9"}"#;
        assert_eq!(
            tags_of(json).unwrap(),
            tags(&[
                ("e", "a\u{e9}"),
                ("f", "80.0"),
                ("host", "web-1"),
                ("n", ""),
                ("o", r#"{"a":[1,2]}"#),
                ("port", "80"),
                ("up", "true")
            ])
        );
        assert_eq!(tags_of("[1]"), None);
    }

    #[test]
    fn absent_tags_read_as_empty() {
        let absent = TagMatcher {
            key: "canary".into(),
            op: MatchOp::Equal(vec![String::new()]),
        };
        assert!(absent.matches(&tags(&[("host", "a")])));
        assert!(!absent.matches(&tags(&[("canary", "yes")])));
        let web = TagMatcher {
            key: "host".into(),
            op: MatchOp::Regex(AnchoredRegex::new("web-.*").unwrap()),
        };
        assert!(web.matches(&tags(&[("host", "web-1")])));
        assert!(!web.matches(&tags(&[("host", "db-web-1")])));
        assert!(!web.op.matches_absent());
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = Cursor {
            ts_micros: -5,
            id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("bm9wZQ"), None);
        assert_eq!(Cursor::decode("!!"), None);
    }
}
