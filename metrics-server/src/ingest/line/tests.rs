//! Golden tests: the examples of InfluxDB's line protocol reference (docs-v2
//! `reference/syntax/line-protocol.md`) that apply, escaping corner cases, and errors.

use super::*;

const NOW: i128 = 1_700_000_000_000_000_000;

/// The stored documents of a body.
fn docs(text: &str) -> Vec<String> {
    parse(text, Precision::Nanos, None, NOW)
        .unwrap_or_else(|err| panic!("{text:?}: {err}"))
        .into_iter()
        .map(|m| m.doc)
        .collect()
}

fn error(text: &str) -> LineError {
    parse(text, Precision::Nanos, None, NOW).unwrap_err()
}

#[test]
fn the_reference_example() {
    assert_eq!(
        docs("myMeasurement,tag1=value1,tag2=value2 fieldKey=\"fieldValue\" 1556813561098000000"),
        [
            r#"{"name":"myMeasurement.fieldKey","value":"fieldValue","ts":"2019-05-02T16:12:41.098Z","tag1":"value1","tag2":"value2"}"#
        ]
    );
}

#[test]
fn one_metric_per_field_and_value_is_the_bare_measurement() {
    assert_eq!(
        docs(
            "home,room=Kitchen temp=21.0,hum=35.9,co=0i 1641024000\n"
                .replace("1641024000", "1641024000000000000")
                .as_str()
        ),
        [
            r#"{"name":"home.temp","value":21.0,"ts":"2022-01-01T08:00:00Z","room":"Kitchen"}"#,
            r#"{"name":"home.hum","value":35.9,"ts":"2022-01-01T08:00:00Z","room":"Kitchen"}"#,
            r#"{"name":"home.co","value":0,"ts":"2022-01-01T08:00:00Z","room":"Kitchen"}"#,
        ]
    );
    assert_eq!(
        docs("cpu value=0.64 0"),
        [r#"{"name":"cpu","value":0.64,"ts":"1970-01-01T00:00:00Z"}"#]
    );
}

#[test]
fn every_field_type() {
    let values: Vec<String> = docs(
        "m f=1.0,g=1,h=-1.234456e+78,i=1i,j=-1i,u=12485903u,s=\"x\",t=t,T=T,tr=true,Tr=True,TR=TRUE,\
         f1=f,F=F,fa=false,Fa=False,FA=FALSE 1",
    )
    .iter()
    .map(|doc| {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        v["value"].to_string()
    })
    .collect();
    assert_eq!(
        values,
        [
            "1.0",
            "1.0",
            "-1.234456e+78",
            "1",
            "-1",
            "12485903",
            "\"x\"",
            "true",
            "true",
            "true",
            "true",
            "true",
            "false",
            "false",
            "false",
            "false",
            "false"
        ]
    );
    // Integers keep every digit.
    assert!(
        docs("m i=9223372036854775807i,u=18446744073709551615u 1")[1]
            .contains(r#""value":18446744073709551615"#)
    );
}

#[test]
fn escaping_corner_cases() {
    let cases = [
        // Measurement: comma and space.
        (
            r#"my\,Measurement f=1 1"#,
            r#"{"name":"my,Measurement.f","value":1.0,"ts":"1970-01-01T00:00:00.000000001Z"}"#,
        ),
        (
            r#"my\ Measurement f=1 1"#,
            r#"{"name":"my Measurement.f","value":1.0,"ts":"1970-01-01T00:00:00.000000001Z"}"#,
        ),
        // Tag keys and values: comma, equals sign, space.
        (
            r#"m,tag\ Key1=tag\ Value1,tag\,Key2=tag\,Value2,tag\=Key3=tag\=Value3 f=1 1"#,
            r#"{"name":"m.f","value":1.0,"ts":"1970-01-01T00:00:00.000000001Z","tag Key1":"tag Value1","tag,Key2":"tag,Value2","tag=Key3":"tag=Value3"}"#,
        ),
        // Field keys: comma, equals sign, space.
        (
            r#"m field\ Key=1,field\,Key=2,field\=Key=3 1"#,
            r#"{"name":"m.field Key","value":1.0,"ts":"1970-01-01T00:00:00.000000001Z"}"#,
        ),
        // String fields: double quote and backslash; other characters as they are.
        (
            r#"m f="\"string\" within a string" 1"#,
            r#"{"name":"m.f","value":"\"string\" within a string","ts":"1970-01-01T00:00:00.000000001Z"}"#,
        ),
        (
            r#"m f="back\\slash, comma, space = equals" 1"#,
            r#"{"name":"m.f","value":"back\\slash, comma, space = equals","ts":"1970-01-01T00:00:00.000000001Z"}"#,
        ),
        // Emoji and other Unicode need no escape.
        (
            "myMeasurement,tagKey=🍭 fieldKey=\"Launch 🚀\" 1556813561098000000",
            r#"{"name":"myMeasurement.fieldKey","value":"Launch 🚀","ts":"2019-05-02T16:12:41.098Z","tagKey":"🍭"}"#,
        ),
        // A tag named like one of the metric's own keys is kept beside them.
        (
            "m,name=n,ts=t,value=v f=1 1",
            r#"{"name":"m.f","value":1.0,"ts":"1970-01-01T00:00:00.000000001Z","_name":"n","_ts":"t","_value":"v"}"#,
        ),
    ];
    for (line, doc) in cases {
        assert_eq!(docs(line)[0], doc, "{line}");
    }
    // The second and third fields of the field-key case.
    let three = docs(r#"m field\ Key=1,field\,Key=2,field\=Key=3 1"#);
    assert!(
        three[1].starts_with(r#"{"name":"m.field,Key","value":2.0"#),
        "{}",
        three[1]
    );
    assert!(
        three[2].starts_with(r#"{"name":"m.field=Key","value":3.0"#),
        "{}",
        three[2]
    );
}

#[test]
fn newlines_in_strings_comments_blank_lines_and_crlf() {
    let body = "# a comment\n\nm s=\"two\nlines\" 1\r\n   \nm v=2 2\r\n# end";
    let got = docs(body);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains(r#""value":"two\nlines""#), "{}", got[0]);
    assert!(got[1].contains(r#""value":2.0"#), "{}", got[1]);
}

#[test]
fn timestamps_in_each_precision_and_the_default_now() {
    let at = |precision, ts: &str| {
        parse(&format!("m v=1 {ts}"), precision, None, NOW).unwrap()[0].ts_micros
    };
    assert_eq!(
        at(Precision::Nanos, "1556813561098000123"),
        1_556_813_561_098_000
    );
    assert_eq!(
        at(Precision::Micros, "1556813561098000"),
        1_556_813_561_098_000
    );
    assert_eq!(
        at(Precision::Millis, "1556813561098"),
        1_556_813_561_098_000
    );
    assert_eq!(at(Precision::Seconds, "1556813561"), 1_556_813_561_000_000);
    assert_eq!(at(Precision::Minutes, "2"), 120_000_000);
    assert_eq!(at(Precision::Hours, "1"), 3_600_000_000);
    assert_eq!(at(Precision::Seconds, "-1"), -1_000_000);
    let doc = &parse("m value=1", Precision::Nanos, None, NOW).unwrap()[0].doc;
    assert_eq!(
        doc,
        r#"{"name":"m","value":1.0,"ts":"2023-11-14T22:13:20Z"}"#
    );
    for (text, precision) in [
        ("ns", Precision::Nanos),
        ("n", Precision::Nanos),
        ("", Precision::Nanos),
        ("u", Precision::Micros),
        ("us", Precision::Micros),
        ("ms", Precision::Millis),
        ("s", Precision::Seconds),
        ("m", Precision::Minutes),
        ("h", Precision::Hours),
    ] {
        assert_eq!(Precision::parse(text), Some(precision), "{text}");
    }
    assert_eq!(Precision::parse("d"), None);
}

#[test]
fn the_database_is_a_key_and_a_db_tag_wins() {
    let metrics = parse(
        "m v=1 1\nm,db=tagged v=1 1",
        Precision::Nanos,
        Some("telegraf"),
        NOW,
    )
    .unwrap();
    assert!(
        metrics[0].doc.ends_with(r#","db":"telegraf"}"#),
        "{}",
        metrics[0].doc
    );
    assert!(
        metrics[1].doc.ends_with(r#","db":"tagged"}"#),
        "{}",
        metrics[1].doc
    );
    assert_eq!(
        metrics[0].tags.get("db").map(String::as_str),
        Some("telegraf")
    );
}

#[test]
fn a_bad_line_names_its_number_and_the_problem() {
    let ns = Precision::Nanos;
    let cases = [
        ("m v=1 1\nm v=1 1\nm\n", ns, 3, "expected `measurement"),
        ("m v=1 1\n\n# c\nm v=abc 1", ns, 4, "invalid line protocol"),
        ("m v=1i1 1", ns, 1, "invalid line protocol"),
        ("m v=1 notatime", ns, 1, "invalid line protocol"),
        ("m v=1 99999999999999999999", ns, 1, "invalid line protocol"),
        ("m v=1e999 1", ns, 1, "out of range"),
        ("m v=\"unterminated 1", ns, 1, "invalid line protocol"),
        ("m,t=a,t=b v=1 1", ns, 1, "duplicate tags"),
        (
            "m v=1 1\nm s=\"x\ny\" 1\nbad",
            ns,
            4,
            "invalid line protocol",
        ),
        // A timestamp beyond the years 0001-9999 in its precision.
        (
            "m v=1 1\nm v=1 9223372036854775807",
            Precision::Hours,
            2,
            "outside the years",
        ),
    ];
    for (body, precision, line, problem) in cases {
        let err = parse(body, precision, None, NOW).unwrap_err();
        assert_eq!(err.line, line, "{body:?}: {err}");
        assert!(err.message.contains(problem), "{body:?}: {err}");
    }
    assert!(error("m\n").to_string().starts_with("line 1: "));
    // The message quotes the line.
    assert!(error("x v=1 1\nbad line here")
        .message
        .contains("`bad line here`"));
}
