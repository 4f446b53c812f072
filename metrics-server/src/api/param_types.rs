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

/// The ISO-8601 forms [`metrics_types::Timestamp::parse`] reads.
const ISO: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?( ?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)| [0-9]{2}(:?[0-9]{2})?)?)?$";
/// A Unix epoch, seconds unless a unit says otherwise.
const EPOCH: &str = r"^[+-]?[0-9]+(\.[0-9]+)?(s|ms|us|µs|ns)?$";
/// `now`, optionally with an offset (a `+` in a URL decodes to a space).
const RELATIVE: &str = r"^now([+ -][0-9]+(ms|s|m|h|d|w))?$";

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
        let mut s = string(None);
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
        let mut s = string(Some(r"^[^,]+(,[^,]+)*$"));
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
