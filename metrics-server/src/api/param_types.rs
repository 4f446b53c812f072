//! The OpenAPI declarations of the read routes' query parameters. Each type states in the spec
//! exactly what its parameter accepts (a pattern, an enum, a range) but never rejects anything
//! itself: the route reads its parameters through [`super::params::Params`], which names the
//! parameter and the accepted forms when a value is wrong.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use serde_json::json;

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

fn string(pattern: Option<&str>) -> MetaSchema {
    let mut s = MetaSchema::new("string");
    s.pattern = pattern.map(str::to_owned);
    s
}

/// A string parameter declared with `$schema` in the spec, accepted as any text by poem-openapi.
macro_rules! declared_param {
    ($(#[$doc:meta])* $ty:ident, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub(crate) struct $ty(#[allow(dead_code)] pub(crate) String);

        impl poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let schema: fn() -> MetaSchemaRef = $schema;
                schema()
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl poem_openapi::types::ToJSON for $ty {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::String(self.0.clone()))
            }
        }

        impl poem_openapi::types::ParseFromParameter for $ty {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                Ok($ty(value.to_owned()))
            }
        }
    };
}
pub(crate) use declared_param;

// The time forms below are exact in one direction: every string they match is accepted (a
// generated client or a conformance tool sending one never gets a 400). They are a little
// narrower than what the server reads: years 1000 to 8999 (so that no offset pushes a time
// outside 0001..9999), no 29 February, epochs short enough to stay within those years.

/// The ISO-8601 forms [`metrics_types::Timestamp::parse`] reads: a real date, an optional time,
/// an optional offset (`Z`, `±HH`, `±HH:MM`, `±HHMM`; a space stands for a URL-decoded `+`).
const ISO: &str = r"^[1-8][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))([Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.,][0-9]{1,9})?)?( ?([Zz]|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)| ([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$";
/// A Unix epoch, seconds unless a unit says otherwise, with at most as many digits as keep it
/// within the years above: 11 for seconds (10 before 1970), 14 for ms (13), 17 for us (16), 19
/// for ns.
const EPOCH: &str = r"^(\+?[0-9]{1,11}(\.[0-9]{1,9})?s?|-[0-9]{1,10}(\.[0-9]{1,9})?s?|\+?[0-9]{1,14}(\.[0-9]{1,9})?ms|-[0-9]{1,13}(\.[0-9]{1,9})?ms|\+?[0-9]{1,17}(\.[0-9]{1,9})?(us|µs)|-[0-9]{1,16}(\.[0-9]{1,9})?(us|µs)|[+-]?[0-9]{1,19}(\.[0-9]{1,9})?ns)$";
/// `now`, optionally with an offset (a `+` in a URL decodes to a space) of at most 5 digits.
const RELATIVE: &str = r"^now([+ -][0-9]{1,5}(ms|s|m|h|d|w))?$";

/// A `match` selector the server always accepts (see `selection::selector`): empty (ignored), a
/// metric name, or an optional name then `{...}` with matchers `key="text"`, `key!="text"`,
/// `key=~"re"`, `key!~"re"`. Narrower than the parser: double quotes only, keys not starting
/// with `_` (no `__name__`), and regular expressions of letters, digits, `_`, `-`, spaces, `.`
/// and `.*` (so that every one compiles).
const SELECTOR: &str = concat!(
    r#"^[ ]*("#,
    // name
    r#"([^\s"'`{}=,!~\x00-\x1F\x7F-\x9F]{1,128}|"([^"\\\x00-\x1F\x7F-\x9F]|\\[\\"']){1,128}")"#,
    r#"|([^\s"'`{}=,!~\x00-\x1F\x7F-\x9F]{1,128}|"([^"\\\x00-\x1F\x7F-\x9F]|\\[\\"']){1,128}")?[ ]*\{[ ]*"#,
    // matchers
    r#"(([A-Za-z][A-Za-z0-9_.:-]*|"[^"\\_]([^"\\]|\\[\\"'nrt])*")[ ]*((=|!=)[ ]*"([^"\\]|\\[\\"'nrt])*"|(=~|!~)[ ]*"([A-Za-z0-9_ -]|\.\*?)*")[ ]*"#,
    r#"(,[ ]*([A-Za-z][A-Za-z0-9_.:-]*|"[^"\\_]([^"\\]|\\[\\"'nrt])*")[ ]*((=|!=)[ ]*"([^"\\]|\\[\\"'nrt])*"|(=~|!~)[ ]*"([A-Za-z0-9_ -]|\.\*?)*")[ ]*)*(,[ ]*)?)?"#,
    r#"\})?[ ]*$"#
);

declared_param!(
    /// `sts` / `ets`: a time in any of the accepted forms, or empty for no bound.
    TimeParam,
    || {
        let mut empty = MetaSchema::new("string");
        empty.max_length = Some(0);
        let mut s = MetaSchema::new("string");
        s.any_of = vec![
            inline(string(Some(ISO))),
            inline(string(Some(EPOCH))),
            inline(string(Some(RELATIVE))),
            inline(empty),
        ];
        s.example = Some(json!("now-15m"));
        inline(s)
    }
);

declared_param!(
    /// `match`: a Prometheus series selector.
    SelectorParam,
    || {
        let mut s = string(Some(SELECTOR));
        s.example = Some(json!(r#"cpu{host=~"web-.*",region!="eu"}"#));
        inline(s)
    }
);

declared_param!(
    /// `limit`: how many metrics at most.
    LimitParam,
    || {
        let mut s = MetaSchema::new("integer");
        s.format = Some("int64");
        s.minimum = Some(1.0);
        s.maximum = Some(1_000_000.0);
        s.example = Some(json!(100));
        inline(s)
    }
);

declared_param!(
    /// `order`: `asc` or `desc`.
    OrderParam,
    || {
        let mut s = string(None);
        s.enum_items = vec![json!("asc"), json!("desc")];
        s.default = Some(json!("asc"));
        inline(s)
    }
);

declared_param!(
    /// `cursor`: the opaque position of a `Link` header.
    CursorParam,
    || {
        let mut s = string(Some("^[A-Za-z0-9_-]*$"));
        s.example = Some(json!("djE6MTcwMDAwMDAwMDAwMDAwMDo0Mg"));
        inline(s)
    }
);

declared_param!(
    /// `format`: `json`, `ndjson` or `csv`.
    FormatParam,
    || {
        let mut s = string(None);
        s.enum_items = vec![json!("json"), json!("ndjson"), json!("csv")];
        s.example = Some(json!("csv"));
        inline(s)
    }
);

declared_param!(
    /// `columns`: comma-separated tag keys (CSV only).
    ColumnsParam,
    || {
        // Empty means no extra column.
        let mut s = string(Some(r"^([^,]+(,[^,]+)*)?$"));
        s.example = Some(json!("host,region"));
        inline(s)
    }
);

declared_param!(
    /// `all`: `true` to delete with no filter.
    AllParam,
    || {
        let mut s = string(None);
        s.enum_items = vec![json!("true"), json!("false")];
        s.example = Some(json!("true"));
        inline(s)
    }
);

declared_param!(
    /// A tag key in a path: non-empty, no control characters.
    TagKeyParam,
    || {
        let mut s = string(Some(r"^[^\x00-\x1F\x7F-\x9F]+$"));
        s.min_length = Some(1);
        s.example = Some(json!("host"));
        inline(s)
    }
);

#[cfg(test)]
mod tests {
    //! The declared patterns against the parsers: whatever a pattern matches, the route
    //! accepts (a generated client never gets a 400 for a schema-valid value), and the values
    //! the route refuses do not match.

    use chrono::{TimeZone, Utc};
    use metrics_types::Timestamp;
    use proptest::prelude::*;

    use super::*;

    fn unanchored(pattern: &str) -> &str {
        pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap()
    }

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    fn accepted_time(text: &str) -> bool {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Timestamp::parse_param(text, now).is_ok()
    }

    fn accepted_selector(text: &str) -> bool {
        let query = format!(
            "match={}",
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
        );
        let req = poem::Request::builder()
            .uri(format!("/v1/metrics?{query}").parse().unwrap())
            .finish();
        super::super::params::selection(&req, &[]).is_ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn every_iso_time_the_spec_allows_is_accepted(
            text in proptest::string::string_regex(unanchored(ISO)).unwrap()
        ) {
            prop_assert!(accepted_time(&text), "{text:?}");
        }

        #[test]
        fn every_epoch_the_spec_allows_is_accepted(
            text in proptest::string::string_regex(unanchored(EPOCH)).unwrap()
        ) {
            prop_assert!(accepted_time(&text), "{text:?}");
        }

        #[test]
        fn every_relative_time_the_spec_allows_is_accepted(
            text in proptest::string::string_regex(unanchored(RELATIVE)).unwrap()
        ) {
            prop_assert!(accepted_time(&text), "{text:?}");
        }

        #[test]
        fn every_selector_the_spec_allows_is_accepted(
            text in proptest::string::string_regex(unanchored(SELECTOR)).unwrap()
        ) {
            prop_assert!(accepted_selector(&text), "{text:?}");
        }
    }

    #[test]
    fn the_patterns_take_the_usual_forms_and_refuse_what_the_route_refuses() {
        let time = |text: &str| [ISO, EPOCH, RELATIVE].iter().any(|p| matches(p, text));
        for good in [
            "2016-01-01",
            "2016-01-01T12:00:00Z",
            "2016-01-01 12:00:00.123456+02:00",
            "2016-01-01T12:00:00 0200",
            "1700000000",
            "1700000000.5",
            "1700000000000ms",
            "1700000000000000000ns",
            "now",
            "now-15m",
            "now 1h",
        ] {
            assert!(time(good) && accepted_time(good), "{good}");
        }
        for bad in [
            "m",
            "0000-00-00",
            "2016-02-30",
            "2016-13-01",
            "2016-01-01T24:00",
            "1700000000000",
            "now-15y",
            "yesterday",
        ] {
            assert!(!time(bad), "{bad}");
            assert!(!accepted_time(bad), "{bad}");
        }
        for good in [
            "",
            "cpu",
            "cpu{}",
            r#"{host="web-1"}"#,
            r#"cpu{host=~"web-.*", region!="eu", canary="", }"#,
            r#""a b"{ "odd key" != "x\"y" }"#,
        ] {
            assert!(
                matches(SELECTOR, good) && accepted_selector(good),
                "{good:?}"
            );
        }
        for bad in [
            "{host}",
            r#"{h=~"("}"#,
            "{",
            r#"cpu{host="a""#,
            "a b",
            r#"{__name__!="x"}"#,
        ] {
            assert!(!matches(SELECTOR, bad), "{bad:?}");
            assert!(!accepted_selector(bad), "{bad:?}");
        }
    }
}
