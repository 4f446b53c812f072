//! Hand-written OpenAPI schemas for the metric object, which poem-openapi's derives cannot say:
//! three required fields plus any other keys, kept as posted.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use serde_json::json;

const METRIC: &str = "Metric";

/// A string without control characters (Unicode's `Cc`, what `char::is_control` refuses).
const NO_CONTROL_CHARACTERS: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";

/// Registers the `Metric` schema.
pub(crate) fn register(registry: &mut Registry) {
    registry.create_schema::<MetricSchema, _>(METRIC.to_owned(), |_| {
        let mut schema = MetaSchema::new("object");
        schema.description = Some(
            "A metric as posted. `name`, `value` and `ts` are required; every other key is kept \
             and returned exactly as sent.",
        );
        schema.required = vec!["name", "value", "ts"];
        schema.properties = vec![
            ("name", {
                let mut s = MetaSchema::new("string");
                s.description = Some("The metric's name: non-empty, at most 512 bytes of UTF-8, no control characters.");
                s.min_length = Some(1);
                s.max_length = Some(512);
                s.pattern = Some(NO_CONTROL_CHARACTERS.to_owned());
                inline(s)
            }),
            ("value", {
                let mut s = MetaSchema::new("");
                s.description = Some("The value: a number (also stored as a number for aggregations), a string or a boolean.");
                s.one_of = vec![
                    inline(MetaSchema::new("number")),
                    inline(MetaSchema::new("string")),
                    inline(MetaSchema::new("boolean")),
                ];
                inline(s)
            }),
            ("ts", {
                let mut iso = MetaSchema::new("string");
                iso.format = Some("date-time");
                let mut epoch = MetaSchema::new("number");
                // Years 0001 to 9999 in seconds; in a smaller unit (`?precision=`) the same
                // numbers are always within range too.
                epoch.minimum = Some(-62_135_596_800.0);
                epoch.maximum = Some(253_402_300_799.0);
                let mut s = MetaSchema::new("");
                s.any_of = vec![inline(iso), inline(epoch)];
                s.description = Some(
                    "When it was measured. ISO-8601: `2016-01-01`, `2016-01-01 12:00:00.000`, \
                     `2016-01-01T12:00:00Z`, `2016-01-01T12:00:00+02:00` or `+0200`; no offset \
                     means UTC. Or a number: Unix seconds (`1451649600.5`), or the unit of the \
                     request's `precision` parameter. Years 0001 to 9999. Returned as written; \
                     compared on the instant.",
                );
                inline(s)
            }),
        ];
        schema.additional_properties = Some(Box::new(inline(MetaSchema::ANY)));
        schema.example = Some(json!({"name": "cpu", "value": 0.93, "ts": "2016-01-01T12:00:00Z", "host": "web-1"}));
        schema
    });
}

/// A reference to the registered `Metric` schema.
pub(crate) fn metric() -> MetaSchemaRef {
    MetaSchemaRef::Reference(METRIC.to_owned())
}

/// An array of metrics.
pub(crate) fn metric_array() -> MetaSchemaRef {
    let mut s = MetaSchema::new("array");
    s.items = Some(Box::new(metric()));
    inline(s)
}

/// One metric or an array of them (a batch).
pub(crate) fn metric_or_batch() -> MetaSchemaRef {
    let mut s = MetaSchema::new("");
    s.one_of = vec![metric(), metric_array()];
    inline(s)
}

/// An `application/x-ndjson` body, described as the array of its lines: one metric object per
/// line, at least one line (an empty body has no metrics and is refused).
pub(crate) fn ndjson_lines() -> MetaSchemaRef {
    let mut s = MetaSchema::new("array");
    s.items = Some(Box::new(metric()));
    s.min_items = Some(1);
    s.description = Some("One metric object per line; at least one.");
    inline(s)
}

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

/// The type the `Metric` schema is registered under (the registry checks names are unique).
struct MetricSchema;

/// A string whose schema states exactly what its route accepts (a pattern, a format, a length),
/// so that generated clients and conformance tools send only what passes. The route keeps its
/// own checks and their precise messages: as a parameter the type never rejects anything, and in
/// a JSON body it only insists on a string (poem-openapi's `String` would also take `false` or
/// `5` and store their text).
macro_rules! documented_string {
    ($(#[$doc:meta])* $ty:ident, pattern = $pattern:expr, format = $format:expr, max_length = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub(crate) struct $ty(pub(crate) String);

        impl poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> std::borrow::Cow<'static, str> {
                "string".into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut s = MetaSchema::new("string");
                let pattern: Option<&str> = $pattern;
                s.pattern = pattern.map(str::to_owned);
                s.format = $format;
                s.max_length = $max;
                inline(s)
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

        impl poem_openapi::types::ParseFromJSON for $ty {
            fn parse_from_json(
                value: Option<serde_json::Value>,
            ) -> poem_openapi::types::ParseResult<Self> {
                match value {
                    Some(serde_json::Value::String(text)) => Ok($ty(text)),
                    value => Err(poem_openapi::types::ParseError::expected_type(
                        value.unwrap_or_default(),
                    )),
                }
            }
        }

        impl poem_openapi::types::ParseFromParameter for $ty {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                Ok($ty(value.to_owned()))
            }
        }
    };
}

documented_string!(
    /// A `name` filter of a query: empty (any name), or a name the server could have stored
    /// (no control characters; at most 512 bytes, checked by the route).
    NameFilter,
    pattern = Some(NO_CONTROL_CHARACTERS),
    format = None,
    max_length = None
);

documented_string!(
    /// An `Idempotency-Key`: 1 to 255 printable ASCII characters, not starting or ending with a
    /// space (HTTP trims those), as the route checks.
    IdempotencyKey,
    pattern = Some(r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$"),
    format = None,
    max_length = Some(255)
);

documented_string!(
    /// A string field of a JSON body that must be a JSON string.
    Text,
    pattern = None,
    format = None,
    max_length = None
);
