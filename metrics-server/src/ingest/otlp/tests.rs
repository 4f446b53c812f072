//! Golden tests: the OTLP repository's JSON example (`examples/metrics.json`), and every metric
//! type, attribute type and rejection built as protobuf messages.

use opentelemetry_proto::tonic::{
    common::v1::{ArrayValue, InstrumentationScope, KeyValueList},
    metrics::v1::{
        summary_data_point::ValueAtQuantile, ExponentialHistogram, Gauge, Histogram, Metric,
        ResourceMetrics, ScopeMetrics, Sum, Summary,
    },
    resource::v1::Resource,
};

use super::*;

const NOW: i128 = 1_700_000_000_000_000_000;

fn docs(converted: &Converted) -> Vec<&str> {
    converted.metrics.iter().map(|m| m.doc.as_str()).collect()
}

/// The example of opentelemetry-proto's `examples/metrics.json`, as OTLP JSON (numbers where
/// the spec allows strings, integer enums). Its histogram has three bucket counts for one
/// bound, which the spec forbids: that data point is rejected, the others stored.
#[test]
fn the_upstream_json_example() {
    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
      "scopeMetrics":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
      "metrics":[
        {"name":"my.counter","unit":"1","description":"I`m a Counter","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asDouble":5,"startTimeUnixNano":1544712660300000000,"timeUnixNano":1544712660300000000,"attributes":[{"key":"my.counter.attr","value":{"stringValue":"some value"}}]}]}},
        {"name":"my.gauge","unit":"1","description":"I`m a Gauge","gauge":{"dataPoints":[{"asDouble":10,"timeUnixNano":1544712660300000000,"attributes":[{"key":"my.gauge.attr","value":{"stringValue":"some value"}}]}]}},
        {"name":"my.histogram","unit":"1","description":"I`m a Histogram","histogram":{"aggregationTemporality":1,"dataPoints":[{"startTimeUnixNano":1544712660300000000,"timeUnixNano":1544712660300000000,"count":3,"sum":3,"bucketCounts":[1,1,1],"explicitBounds":[1],"min":1,"max":1,"attributes":[{"key":"my.histogram.attr","value":{"stringValue":"some value"}}]}]}}
      ]}]}]}"#;
    let request: ExportMetricsServiceRequest = serde_json::from_str(json).unwrap();
    let converted = convert(&request, NOW);
    assert_eq!(
        docs(&converted),
        [
            r#"{"name":"my.counter","value":5.0,"ts":"2018-12-13T14:51:00.300Z","service.name":"my.service","my.scope.attribute":"some scope attribute","my.counter.attr":"some value"}"#,
            r#"{"name":"my.gauge","value":10.0,"ts":"2018-12-13T14:51:00.300Z","service.name":"my.service","my.scope.attribute":"some scope attribute","my.gauge.attr":"some value"}"#,
        ]
    );
    assert_eq!(converted.rejected, 1);
    assert!(
        converted.error_message().contains(
            "\"my.histogram\": a histogram data point with 3 bucket counts for 1 explicit bounds"
        ),
        "{}",
        converted.error_message()
    );
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.into())
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("svc")), kv("host", s("resource"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    attributes: vec![kv("host", s("scope"))],
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(value: Option<number_data_point::Value>, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: 1_000_000_001,
        value,
        ..Default::default()
    }
}

#[test]
fn gauges_and_sums_with_every_attribute_type_and_the_narrowest_key_winning() {
    let attributes = vec![
        kv("host", s("point")),
        kv("b", any_value::Value::BoolValue(true)),
        kv("i", any_value::Value::IntValue(-7)),
        kv("d", any_value::Value::DoubleValue(0.25)),
        kv("nan", any_value::Value::DoubleValue(f64::NAN)),
        kv(
            "arr",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(s("x")),
                    },
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                ],
            }),
        ),
        kv(
            "kv",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("z", s("1")), kv("a", any_value::Value::BoolValue(false))],
            }),
        ),
        kv("bytes", any_value::Value::BytesValue(vec![0, 255])),
        kv("value", s("renamed")),
        KeyValue {
            key: "empty".into(),
            value: None,
            ..Default::default()
        },
    ];
    let converted = convert(
        &request(vec![
            metric(
                "g",
                Data::Gauge(Gauge {
                    data_points: vec![number(
                        Some(number_data_point::Value::AsInt(42)),
                        attributes,
                    )],
                }),
            ),
            metric(
                "s",
                Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: 0,
                        ..number(Some(number_data_point::Value::AsDouble(1.5)), vec![])
                    }],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                }),
            ),
        ]),
        NOW,
    );
    assert_eq!(
        docs(&converted),
        [
            r#"{"name":"g","value":42,"ts":"1970-01-01T00:00:01.000000001Z","service.name":"svc","host":"point","b":true,"i":-7,"d":0.25,"nan":"NaN","arr":["x",1],"kv":{"a":false,"z":"1"},"bytes":"AP8=","_value":"renamed","empty":null}"#,
            r#"{"name":"s","value":1.5,"ts":"2023-11-14T22:13:20Z","service.name":"svc","host":"scope"}"#,
        ]
    );
    assert_eq!(converted.rejected, 0);
    assert_eq!(converted.metrics[0].value, Some(42.0));
}

#[test]
fn histograms_become_count_sum_min_max_and_cumulative_buckets() {
    let point = HistogramDataPoint {
        attributes: vec![kv("le", s("shadowed"))],
        time_unix_nano: 1_000_000_000,
        count: 6,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 0, 3],
        explicit_bounds: vec![0.5, 1.0, 2.5],
        min: Some(0.1),
        max: Some(f64::INFINITY),
        ..Default::default()
    };
    let converted = convert(
        &request(vec![metric(
            "lat",
            Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: 2,
            }),
        )]),
        NOW,
    );
    let short: Vec<String> = docs(&converted)
        .iter()
        .map(|d| {
            d.replace(
                r#","ts":"1970-01-01T00:00:01Z","service.name":"svc","host":"scope""#,
                "",
            )
        })
        .collect();
    assert_eq!(
        short,
        [
            r#"{"name":"lat_count","value":6,"le":"shadowed"}"#,
            r#"{"name":"lat_sum","value":12.5,"le":"shadowed"}"#,
            r#"{"name":"lat_min","value":0.1,"le":"shadowed"}"#,
            r#"{"name":"lat_bucket","value":1,"le":"0.5"}"#,
            r#"{"name":"lat_bucket","value":3,"le":"1"}"#,
            r#"{"name":"lat_bucket","value":3,"le":"2.5"}"#,
            r#"{"name":"lat_bucket","value":6,"le":"+Inf"}"#,
        ]
    );
}

#[test]
fn exponential_histograms_get_bounds_from_their_scale() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    // Scale 0: base 2. Positive index 1 holds (2, 4], index 2 (4, 8]; negative index 0 holds
    // [-2, -1).
    let point = ExponentialHistogramDataPoint {
        time_unix_nano: 1_000_000_000,
        count: 7,
        sum: Some(20.0),
        scale: 0,
        zero_count: 1,
        zero_threshold: 0.0,
        positive: Some(Buckets {
            offset: 1,
            bucket_counts: vec![2, 3],
        }),
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1],
        }),
        ..Default::default()
    };
    let converted = convert(
        &request(vec![metric(
            "e",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![point],
                aggregation_temporality: 2,
            }),
        )]),
        NOW,
    );
    let short: Vec<String> = docs(&converted)
        .iter()
        .map(|d| {
            d.replace(
                r#","ts":"1970-01-01T00:00:01Z","service.name":"svc","host":"scope""#,
                "",
            )
        })
        .collect();
    assert_eq!(
        short,
        [
            r#"{"name":"e_count","value":7}"#,
            r#"{"name":"e_sum","value":20.0}"#,
            r#"{"name":"e_bucket","value":1,"le":"-1"}"#,
            r#"{"name":"e_bucket","value":2,"le":"0"}"#,
            r#"{"name":"e_bucket","value":4,"le":"4"}"#,
            r#"{"name":"e_bucket","value":7,"le":"8"}"#,
            r#"{"name":"e_bucket","value":7,"le":"+Inf"}"#,
        ]
    );
}

#[test]
fn summaries_become_count_sum_and_quantiles() {
    let point = SummaryDataPoint {
        time_unix_nano: 1_000_000_000,
        count: 10,
        sum: 5.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.4,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 1.2,
            },
            ValueAtQuantile {
                quantile: 1.0,
                value: f64::NAN,
            },
        ],
        ..Default::default()
    };
    let converted = convert(
        &request(vec![metric(
            "rpc",
            Data::Summary(Summary {
                data_points: vec![point],
            }),
        )]),
        NOW,
    );
    let short: Vec<String> = docs(&converted)
        .iter()
        .map(|d| {
            d.replace(
                r#","ts":"1970-01-01T00:00:01Z","service.name":"svc","host":"scope""#,
                "",
            )
        })
        .collect();
    assert_eq!(
        short,
        [
            r#"{"name":"rpc_count","value":10}"#,
            r#"{"name":"rpc_sum","value":5.5}"#,
            r#"{"name":"rpc","value":0.4,"quantile":"0.5"}"#,
            r#"{"name":"rpc","value":1.2,"quantile":"0.99"}"#,
        ]
    );
}

#[test]
fn points_that_cannot_be_stored_are_rejected_alone() {
    let converted = convert(
        &request(vec![
            metric(
                "g",
                Data::Gauge(Gauge {
                    data_points: vec![
                        number(None, vec![]),
                        number(Some(number_data_point::Value::AsDouble(f64::NAN)), vec![]),
                        number(Some(number_data_point::Value::AsDouble(2.0)), vec![]),
                        NumberDataPoint {
                            flags: NO_RECORDED_VALUE,
                            ..number(None, vec![])
                        },
                    ],
                }),
            ),
            metric(
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(Some(number_data_point::Value::AsInt(1)), vec![])],
                }),
            ),
            Metric {
                name: "nodata".into(),
                ..Default::default()
            },
        ]),
        NOW,
    );
    assert_eq!(converted.metrics.len(), 1);
    assert_eq!(converted.metrics[0].value, Some(2.0));
    assert_eq!(converted.rejected, 3);
    assert_eq!(
        converted.error_message(),
        "metric \"g\": a data point without a value (asDouble or asInt) (and 2 more data points)"
    );
}
