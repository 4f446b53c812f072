//! Hand-written OpenAPI schemas for the metric object, which poem-openapi's derives cannot say:
//! three required fields plus any other keys, kept as posted.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use serde_json::json;

const METRIC: &str = "Metric";

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
                let mut s = MetaSchema::new("string");
                s.description = Some(
                    "When it was measured, ISO-8601: `2016-01-01`, `2016-01-01 12:00:00.000`, \
                     `2016-01-01T12:00:00Z`, `2016-01-01T12:00:00+02:00` or `+0200`; no offset \
                     means UTC. Returned as written; compared on the instant.",
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

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

/// The type the `Metric` schema is registered under (the registry checks names are unique).
struct MetricSchema;
