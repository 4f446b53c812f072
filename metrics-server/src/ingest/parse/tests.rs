//! Tests of parsing a body: what is kept, what is refused and how it is named, and property
//! tests that whatever arrives is parsed into metrics every reader decodes back, or refused.

use super::*;

/// The parsers with numbers read as seconds, the default.
fn parse_metrics(bytes: &[u8]) -> Result<Vec<NewMetric>, ParseError> {
    super::parse_metrics(bytes, Precision::Seconds)
}

fn parse_ndjson(bytes: &[u8]) -> Result<Vec<NewMetric>, ParseError> {
    super::parse_ndjson(bytes, Precision::Seconds)
}

fn error(body: &str) -> ParseError {
    parse_metrics(body.as_bytes()).expect_err(body)
}

#[test]
fn keeps_the_object_as_posted_without_whitespace() {
    let metrics = parse_metrics(
        br#"{ "ts": "2016-01-01 12:00:00.000", "name": "a b",
             "value": 1.50, "host": {"dc": "x \" y"} }"#,
    )
    .unwrap();
    assert_eq!(
        metrics[0].doc,
        r#"{"ts":"2016-01-01 12:00:00.000","name":"a b","value":1.50,"host":{"dc":"x \" y"}}"#
    );
    assert_eq!(metrics[0].value, Some(1.5));
    assert_eq!(metrics[0].ts_micros, 1_451_649_600_000_000);
}

#[test]
fn reads_batches_in_order() {
    let metrics = parse_metrics(
        br#"[{"name":"a","value":"x","ts":"2016-01-01"},{"name":"b","value":true,"ts":"2016-01-02"}]"#,
    )
    .unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!((metrics[0].name.as_str(), metrics[0].value), ("a", None));
    assert_eq!(metrics[1].name, "b");
    assert!(parse_metrics(b"[]").unwrap().is_empty());
}

#[test]
fn names_what_is_wrong() {
    let e = error(r#"{"name":"a","value":1}"#);
    assert_eq!(e.code(), ErrorCode::MissingField);
    assert!(e.to_string().contains("`ts`"), "{e}");

    let e = error(r#"{"name":1,"value":1,"ts":"2016-01-01"}"#);
    assert_eq!(e.code(), ErrorCode::InvalidField);
    assert!(e.to_string().contains("`name`"), "{e}");

    let e = error(r#"{"name":"a","value":null,"ts":"2016-01-01"}"#);
    assert!(e.to_string().contains("`value`"), "{e}");

    let e = error(r#"{"name":"a","value":1,"ts":"2016-99-01"}"#);
    assert_eq!(e.code(), ErrorCode::InvalidTimestamp);

    let e = error(
        r#"[{"name":"a","value":1,"ts":"2016-01-01"}, {"name":"","value":1,"ts":"2016-01-01"}]"#,
    );
    assert!(e.to_string().contains("index 1"), "{e}");

    assert_eq!(error("{\"name\":").code(), ErrorCode::InvalidJson);
    assert_eq!(error("").code(), ErrorCode::InvalidBody);
    assert_eq!(error("42").code(), ErrorCode::InvalidBody);
    assert_eq!(error("[42]").code(), ErrorCode::InvalidBody);
    assert_eq!(error("nope").code(), ErrorCode::InvalidJson);
}

#[test]
fn refuses_what_readers_could_not_decode_again() {
    let metric = |extra: &str| format!(r#"{{"name":"a","value":1,"ts":"2016-01-01",{extra}}}"#);
    let deep = format!(r#""deep":{}1{}"#, "[".repeat(10_000), "]".repeat(10_000));
    for (extra, field) in [
        (deep.as_str(), "`deep`"),
        (r#""x":"\ud800""#, "`x`"),
        (r#""x":{"y":["\udc00"]}"#, "`x`"),
        (r#""\ud800":1"#, "key"),
        (r#""x":1e400"#, "`x`"),
    ] {
        let body = format!("[{},{}]", metric(r#""ok":1"#), metric(extra));
        let e = error(&body);
        assert_eq!(e.code(), ErrorCode::InvalidField, "{extra}");
        let text = e.to_string();
        assert!(text.contains("index 1") && text.contains(field), "{text}");
        assert!(!text.contains("line 1"), "{text}");
    }
    let e = error(r#"{"name":"\ud800","value":1,"ts":"2016-01-01"}"#);
    assert!(e.to_string().contains("`name`"), "{e}");
    let e = error(r#"{"name":"a","value":"\udfff","ts":"2016-01-01"}"#);
    assert!(e.to_string().contains("`value`"), "{e}");
    let e = error(r#"{"name":"a","value":1,"ts":"2016-01-01","name":"b"}"#);
    assert!(e.to_string().contains("duplicate field `name`"), "{e}");
    let e = error(r#"{"name":"a\u0000b","value":1,"ts":"2016-01-01"}"#);
    assert!(e.to_string().contains("`name`"), "{e}");
}

#[test]
fn accepts_nesting_up_to_the_limit_and_valid_pairs() {
    // The metric object is level 1: 31 more levels fit.
    let nested = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    let body = format!(
        r#"{{"name":"a","value":1,"ts":"2016-01-01","n":{nested},"s":"\ud83d\ude00 \u0000"}}"#
    );
    let metrics = parse_metrics(body.as_bytes()).unwrap();
    assert_eq!(metrics[0].doc, body);
    let deeper = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    let body = format!(r#"{{"name":"a","value":1,"ts":"2016-01-01","n":{deeper}}}"#);
    let e = error(&body);
    assert!(e.to_string().contains("nested deeper than 32"), "{e}");
}

#[test]
fn reads_ndjson_line_by_line() {
    let metrics = parse_ndjson(
        b"{\"name\":\"a\",\"value\":1,\"ts\":\"2016-01-01\"}\r\n\n {\"name\":\"b\",\"value\":2,\"ts\":\"2016-01-02\"}",
    )
    .unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[1].name, "b");
    let e = parse_ndjson(b"{\"name\":\"a\",\"value\":1,\"ts\":\"2016-01-01\"}\n[1]\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert_eq!(
        parse_ndjson(b"\n\n").unwrap_err().code(),
        ErrorCode::InvalidBody
    );
}

mod props {
    use metrics_types::StreamFrame;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::*;
    use super::{parse_metrics, parse_ndjson};

    /// Any JSON value, nested a few levels, with arbitrary Unicode (NUL and controls too).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("name".to_owned()),
            Just("value".to_owned()),
            Just("ts".to_owned()),
            any::<String>(),
        ]
    }

    fn timestamp_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?( ?(Z|[+-][0-9]{2}(:?[0-9]{2})?))?",
            any::<String>(),
        ]
    }

    /// Objects that are metrics or nearly: each required field present or not, well typed
    /// or not, and arbitrary other keys.
    fn metricish() -> impl Strategy<Value = Value> {
        let name = prop_oneof![
            6 => "[a-z0-9_. é😀]{1,20}".prop_map(Value::String),
            1 => any::<String>().prop_map(Value::String),
            1 => json_value(),
        ];
        let value = prop_oneof![
            3 => any::<f64>().prop_map(Value::from),
            2 => any::<i64>().prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<String>().prop_map(Value::String),
            1 => json_value(),
        ];
        let ts = prop_oneof![
            6 => "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".prop_map(Value::String),
            2 => timestamp_text().prop_map(Value::String),
            1 => json_value(),
        ];
        (
            prop::option::weighted(0.95, name),
            prop::option::weighted(0.95, value),
            prop::option::weighted(0.95, ts),
            prop::collection::btree_map(any::<String>(), json_value(), 0..4),
        )
            .prop_map(|(name, value, ts, extra)| {
                let mut object: serde_json::Map<String, Value> = extra.into_iter().collect();
                for (key, field) in [("name", name), ("value", value), ("ts", ts)] {
                    match field {
                        Some(v) => {
                            object.insert(key.to_owned(), v);
                        }
                        None => {
                            object.remove(key);
                        }
                    }
                }
                Value::Object(object)
            })
    }

    /// JSON text written by hand, with escapes serde_json would never write: lone and
    /// paired surrogates, `\\u0000`, deep nesting.
    fn raw_json(depth: u32) -> BoxedStrategy<String> {
        let escape = prop_oneof![
            any::<u16>().prop_map(|u| format!("\\u{u:04x}")),
            (0xd800u16..0xdc00, 0xdc00u16..0xe000)
                .prop_map(|(h, l)| format!("\\u{h:04x}\\u{l:04x}")),
            prop::sample::select(vec!["\\n", "\\\"", "\\\\", "\\/", "\\t"]).prop_map(str::to_owned),
            "[a-z é😀]{0,3}",
        ];
        let string =
            prop::collection::vec(escape, 0..4).prop_map(|parts| format!("\"{}\"", parts.concat()));
        let leaf = prop_oneof![
            string.clone(),
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            Just("true".to_owned()),
            Just("null".to_owned()),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        let inner = raw_json(depth - 1);
        prop_oneof![
            2 => leaf,
            1 => prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| format!("[{}]", items.join(","))),
            1 => prop::collection::vec((string, inner), 0..3).prop_map(|pairs| {
                let pairs: Vec<String> =
                    pairs.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", pairs.join(","))
            }),
            1 => (0usize..80).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        ]
        .boxed()
    }

    /// What every reader must be able to do with a stored metric: decode it as a value, as
    /// a stream frame and inside a query answer, and get what was posted.
    fn assert_round_trips(stored: &NewMetric, posted: &str) {
        let posted: Value = serde_json::from_str(posted).expect("accepted means valid JSON");
        let doc: Value = serde_json::from_str(&stored.doc).expect("the stored doc decodes");
        assert_eq!(doc, posted);
        let frame = format!("{{\"id\":1,\"metric\":{}}}", stored.doc);
        let frame: StreamFrame = serde_json::from_str(&frame).expect("a stream frame decodes");
        assert_eq!(frame.metric.as_ref(), Some(&posted));
        let answer: Vec<Value> =
            serde_json::from_str(&format!("[{}]", stored.doc)).expect("a query answer decodes");
        assert_eq!(answer[0], posted);
        assert_eq!(posted["name"].as_str(), Some(stored.name.as_str()));
        let ts = metrics_types::Timestamp::parse(posted["ts"].as_str().unwrap()).unwrap();
        assert_eq!(ts.timestamp_micros(), stored.ts_micros);
        assert!(
            (metrics_types::Timestamp::MIN_MICROS..=metrics_types::Timestamp::MAX_MICROS)
                .contains(&stored.ts_micros)
        );
    }

    /// A refusal carries one of the body's own codes (each answered `400`).
    fn assert_client_error(err: &ParseError) {
        assert!(
            matches!(
                err.code(),
                ErrorCode::InvalidJson
                    | ErrorCode::InvalidBody
                    | ErrorCode::InvalidField
                    | ErrorCode::MissingField
                    | ErrorCode::InvalidTimestamp
            ),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn numeric_timestamps_are_read_exactly_in_every_unit(
            micros in metrics_types::Timestamp::MIN_MICROS..=metrics_types::Timestamp::MAX_MICROS
        ) {
            let sign = if micros < 0 { "-" } else { "" };
            let abs = micros.unsigned_abs();
            let seconds = format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000);
            prop_assert_eq!(number_micros(&seconds, Precision::Seconds), Some(micros));
            prop_assert_eq!(number_micros(&micros.to_string(), Precision::Micros), Some(micros));
            let nanos = format!("{sign}{abs}000");
            prop_assert_eq!(number_micros(&nanos, Precision::Nanos), Some(micros));
            let millis = format!("{sign}{}.{:03}", abs / 1000, abs % 1000);
            prop_assert_eq!(number_micros(&millis, Precision::Millis), Some(micros));
        }

        #[test]
        fn any_bytes_parse_or_get_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            for result in [parse_metrics(&bytes), parse_ndjson(&bytes)] {
                if let Err(err) = result {
                    assert_client_error(&err);
                }
            }
        }

        #[test]
        fn any_json_value_parses_or_gets_a_4xx(value in json_value()) {
            if let Err(err) = parse_metrics(value.to_string().as_bytes()) {
                assert_client_error(&err);
            }
        }

        #[test]
        fn metrics_round_trip_exactly_or_get_a_4xx(
            batch in prop::collection::vec(metricish(), 1..3),
            pretty in any::<bool>(),
        ) {
            let texts: Vec<String> = batch
                .iter()
                .map(|m| if pretty {
                    serde_json::to_string_pretty(m).unwrap()
                } else {
                    m.to_string()
                })
                .collect();
            let body = format!("[{}]", texts.join(",\n"));
            match parse_metrics(body.as_bytes()) {
                Ok(metrics) => {
                    prop_assert_eq!(metrics.len(), texts.len());
                    for (stored, posted) in metrics.iter().zip(&texts) {
                        assert_round_trips(stored, posted);
                    }
                }
                Err(err) => assert_client_error(&err),
            }
        }

        #[test]
        fn skipping_the_walk_never_lets_through_what_the_walk_refuses(
            extra in raw_json(3),
            key in "[a-z]{1,3}",
        ) {
            let body = format!(r#"{{"name":"m","value":1,"ts":"2016-01-01","x{key}":{extra}}}"#);
            let read = |walk: bool| {
                let mut de = serde_json::Deserializer::from_str(&body);
                FieldsVisitor { walk }.deserialize(&mut de).map(|_| ()).map_err(|e| e.to_string())
            };
            if !needs_walk(&body) {
                // (Their messages may differ: the walk names the field.)
                prop_assert_eq!(read(false).is_ok(), read(true).is_ok(), "{}", body);
            }
        }

        #[test]
        fn hand_written_json_is_stored_only_if_readers_can_decode_it(
            extra in raw_json(3),
            key in "[a-z]{1,3}",
            ts in timestamp_text(),
        ) {
            let ts = Value::String(ts).to_string();
            let body = format!(r#"{{"name":"m","value":1,"ts":{ts},"x{key}":{extra}}}"#);
            for result in [parse_metrics(body.as_bytes()), parse_ndjson(body.as_bytes())] {
                match result {
                    Ok(metrics) => assert_round_trips(&metrics[0], &body),
                    Err(err) => assert_client_error(&err),
                }
            }
        }
    }
}

#[test]
fn numeric_timestamps_are_seconds_unless_the_precision_says_otherwise() {
    let micros = |ts: &str, precision: Precision| {
        let body = format!(r#"{{"name":"a","value":1,"ts":{ts}}}"#);
        let metric = &super::parse_metrics(body.as_bytes(), precision).unwrap()[0];
        // The stored object keeps `ts` as sent.
        assert_eq!(metric.doc, body);
        metric.ts_micros
    };
    use Precision::*;
    assert_eq!(micros("1451649600", Seconds), 1_451_649_600_000_000);
    assert_eq!(micros("1451649600.5", Seconds), 1_451_649_600_500_000);
    assert_eq!(micros("1451649600.1234567", Seconds), 1_451_649_600_123_456);
    assert_eq!(micros("1.4516496e9", Seconds), 1_451_649_600_000_000);
    assert_eq!(micros("14516496E+2", Seconds), 1_451_649_600_000_000);
    assert_eq!(micros("0", Seconds), 0);
    assert_eq!(
        micros("0.0000000000000000000000000000001e40", Seconds),
        1_000_000_000_000_000
    );
    assert_eq!(micros("0.0000001", Seconds), 0);
    assert_eq!(micros("-1.5", Seconds), -1_500_000);
    // Below a microsecond is truncated towards the past, as for ISO-8601 strings.
    assert_eq!(micros("-0.0000001", Seconds), -1);
    assert_eq!(micros("1451649600123", Millis), 1_451_649_600_123_000);
    assert_eq!(micros("1451649600123456", Micros), 1_451_649_600_123_456);
    assert_eq!(micros("1451649600123456789", Nanos), 1_451_649_600_123_456);
    assert_eq!(micros("1451649600123.5", Millis), 1_451_649_600_123_500);
    // The limits: years 0001 and 9999.
    assert_eq!(
        micros("253402300799.999999", Seconds),
        Timestamp::MAX_MICROS
    );
    assert_eq!(micros("-62135596800", Seconds), Timestamp::MIN_MICROS);
}

#[test]
fn numeric_timestamps_beyond_year_9999_name_the_precision_parameter() {
    let refused = |ts: &str, precision: Precision| {
        let body = format!(r#"{{"name":"a","value":1,"ts":{ts}}}"#);
        let err = super::parse_metrics(body.as_bytes(), precision).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidTimestamp, "{ts}");
        err.to_string()
    };
    // Milliseconds sent without saying so: never guessed, refused with the hint.
    let message = refused("1451649600123", Precision::Seconds);
    assert!(
        message.contains("field `ts`")
            && message.contains("1451649600123 seconds")
            && message.contains("precision=ms"),
        "{message}"
    );
    let message = refused("1451649600123456789", Precision::Millis);
    assert!(
        message.contains("milliseconds") && message.contains("`precision`"),
        "{message}"
    );
    for ts in [
        "253402300800",
        "-62135596801",
        "1e20",
        "-1e300",
        "123456789012345678901234567890",
        "0.0000000000000000000000000000001e50",
    ] {
        refused(ts, Precision::Seconds);
    }
    // Other types are still refused as before, naming both forms.
    let message = error(r#"{"name":"a","value":1,"ts":true}"#).to_string();
    assert!(
        message.contains("ISO-8601") && message.contains("Unix seconds"),
        "{message}"
    );
    // In a batch, the metric is named.
    let message = refused("[1]", Precision::Seconds);
    assert!(message.contains("must be"), "{message}");
}
