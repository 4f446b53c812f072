//! The inputs of defect 6 that used to be stored (and then broke every reader) or were read
//! wrongly: nesting depth, lone surrogates, NUL and control characters, the timestamp range, a
//! repeated `sts`/`ets`, a query that is not UTF-8. Each gets a 400 JSON error naming the field
//! or parameter (and the batch index), nothing of the batch is stored, both backends store the
//! same things, and afterwards a query and a subscription over everything still decode.
//!
//! ```text
//! cargo test -p metrics-server --test faults bad_input
//! ```

use std::time::Duration;

use futures::StreamExt;
use metrics_types::{NameList, StreamFrame};
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    bodies_readers_could_not_decode_are_refused,
    timestamps_outside_years_1_to_9999_are_refused,
    query_parameters_are_read_strictly,
);

/// Asserts a 400 JSON error with `code` whose message mentions each of `mentions`.
fn assert_refused(status: u16, body: &Value, code: &str, mentions: &[&str]) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().expect("a message");
    for m in mentions {
        assert!(message.contains(m), "{message:?} should mention {m:?}");
    }
}

fn metric(extra: &str) -> String {
    format!(r#"{{"name":"m","value":1,"ts":"2016-01-01T00:00:00Z"{extra}}}"#)
}

/// After the refusals: everything stored still decodes, through a query and a subscription.
async fn everything_still_decodes(server: &TestServer, expected: usize) -> Vec<Value> {
    let all = server.query("").await;
    assert_eq!(all.len(), expected, "{all:?}");
    let (status, names) = server.get("/v1/names").await;
    assert_eq!(status, 200);
    serde_json::from_value::<NameList>(names).expect("/v1/names decodes");

    let (mut socket, _) = connect_async(server.ws_url("/v1/stream?since=0"))
        .await
        .expect("a subscription");
    let mut streamed = Vec::new();
    while streamed.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let frame: StreamFrame = serde_json::from_str(text.as_str()).expect("frames decode");
            streamed.extend(frame.metric);
        }
    }
    assert_eq!(streamed, all);
    all
}

async fn bodies_readers_could_not_decode_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let deep = format!(r#","deep":{}1{}"#, "[".repeat(10_000), "]".repeat(10_000));
    let cases = [
        (
            deep.as_str(),
            "invalid_field",
            vec!["`deep`", "nested deeper than 32"],
        ),
        (
            r#","x":"\ud800""#,
            "invalid_field",
            vec!["`x`", "valid Unicode"],
        ),
        (
            r#","x":{"y":["a\udfffb"]}"#,
            "invalid_field",
            vec!["`x`", "valid Unicode"],
        ),
        (
            r#","\ud800":1"#,
            "invalid_field",
            vec!["key", "valid Unicode"],
        ),
        (r#","x":1e999"#, "invalid_field", vec!["`x`"]),
    ];
    for (extra, code, mentions) in &cases {
        // In a batch: the index is named and nothing of the batch is stored.
        let body = format!("[{},{}]", metric(""), metric(extra));
        let (status, answer) = server.post(&body).await;
        let mut mentions = mentions.clone();
        mentions.push("index 1");
        assert_refused(status, &answer, code, &mentions);
    }
    for name in [r#""a\u0000b""#, r#""a\nb""#, r#""\u001f""#, r#""\ud800""#] {
        let body = format!(r#"{{"name":{name},"value":1,"ts":"2016-01-01"}}"#);
        let (status, answer) = server.post(&body).await;
        assert_refused(status, &answer, "invalid_field", &["`name`"]);
    }

    // What is accepted is stored the same on both backends and read back as posted: NUL and
    // control characters escaped in other keys, astral characters as surrogate pairs, 31 levels.
    let nested = format!("{}{}", "[".repeat(31), "]".repeat(31));
    let kept = [
        metric(r#","s":"nul \u0000 bell \u0007""#),
        metric(r#","s":"\ud83d\ude00 \u00e9""#),
        metric(&format!(r#","n":{nested}"#)),
    ];
    for body in &kept {
        let (status, answer) = server.post(body).await;
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let all = everything_still_decodes(&server, kept.len()).await;
    for (stored, posted) in all.iter().zip(&kept) {
        assert_eq!(stored, &serde_json::from_str::<Value>(posted).unwrap());
    }
    assert_eq!(all[0]["s"], "nul \u{0} bell \u{7}");
    assert_eq!(all[1]["s"], "\u{1F600} é");
}

async fn timestamps_outside_years_1_to_9999_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for ts in [
        "0000-01-01",
        "0000-12-31T23:59:59.999999Z",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "10000-01-01",
        "-0001-01-01",
    ] {
        let body = json!([{"name": "t", "value": 1, "ts": "2016-01-01"}, {"name": "t", "value": 1, "ts": ts}]);
        let (status, answer) = server.post(&body.to_string()).await;
        assert_refused(status, &answer, "invalid_timestamp", &["`ts`", "index 1"]);
        for param in ["sts", "ets"] {
            let (status, answer) = server
                .get(&format!("/v1/metrics?{param}={}", ts.replace('+', "%2B")))
                .await;
            assert_refused(status, &answer, "invalid_timestamp", &[param]);
        }
    }
    // The bounds themselves are stored, and /v1/names prints them with four-digit years.
    for ts in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
        server
            .post_ok(&json!({"name": "t", "value": 1, "ts": ts}))
            .await;
    }
    let (_, names) = server.get("/v1/names").await;
    let names: NameList = serde_json::from_value(names).unwrap();
    assert_eq!(names.names.len(), 1);
    assert_eq!(names.names[0].first_ts, "0001-01-01T00:00:00.000000Z");
    assert_eq!(names.names[0].last_ts, "9999-12-31T23:59:59.999999Z");
    let over_everything = server
        .query("?sts=0001-01-01&ets=9999-12-31T23:59:59.999999999Z")
        .await;
    assert_eq!(over_everything.len(), 2);
    everything_still_decodes(&server, 2).await;
}

async fn query_parameters_are_read_strictly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!({"name": "cpu", "value": 1, "ts": "2016-01-01"}))
        .await;
    for (query, mentions) in [
        ("sts=2016-01-01&sts=2017-01-01", "`sts`"),
        ("ets=2016-01-01&name=cpu&ets=2017-01-01", "`ets`"),
        ("name=%FF%FE", "`name`"),
        ("name=cpu&name=%C3%28", "`name`"),
        ("name=a%00b", "`name`"),
        ("name=a%0Ab", "`name`"),
    ] {
        let (status, answer) = server.get(&format!("/v1/metrics?{query}")).await;
        assert_refused(status, &answer, "invalid_param", &[mentions]);
    }
    // The same rules before a stream's upgrade.
    for query in [
        "since=1&since=2",
        "since_ts=2016-01-01&since_ts=2017-01-01",
        "name=%FF",
    ] {
        let url = server.ws_url(&format!("/v1/stream?{query}"));
        match connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400, "{query}");
            }
            other => panic!("{query}: expected a 400 before the upgrade, got {other:?}"),
        }
    }
    // Ordinary queries are unaffected: repeated names, an encoded `+` offset, UTF-8.
    assert_eq!(
        server
            .query("?name=cpu&name=caf%C3%A9&sts=2016-01-01T01:00:00%2B01:00&ets=2016-01-01")
            .await
            .len(),
        1
    );
}
