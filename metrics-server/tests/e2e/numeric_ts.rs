//! `POST /v1/metrics` with a numeric `ts`: Unix seconds, or the unit of `?precision=`; stored as
//! sent, found by range; a number beyond year 9999 is refused with a hint naming `precision`.

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

async fn post_at(server: &TestServer, query: &str, body: &Value) -> (u16, Value) {
    let response = server
        .http
        .post(server.url(&format!("/v1/metrics{query}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn numbers_are_seconds_unless_the_precision_says_otherwise(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;

    // 2016-01-01T12:00:00Z in each unit, and with a fraction of a second.
    for (query, body) in [
        ("", json!({"name": "s", "value": 1, "ts": 1451649600})),
        ("", json!({"name": "f", "value": 1, "ts": 1451649600.25})),
        (
            "?precision=s",
            json!({"name": "s2", "value": 1, "ts": 1451649600}),
        ),
        (
            "?precision=ms",
            json!({"name": "ms", "value": 1, "ts": 1451649600000_i64}),
        ),
        (
            "?precision=us",
            json!([{"name": "us", "value": 1, "ts": 1451649600000000_i64}]),
        ),
        (
            "?precision=ns",
            json!({"name": "ns", "value": 1, "ts": 1451649600000000000_i64}),
        ),
    ] {
        let (status, answer) = post_at(&server, query, &body).await;
        assert_eq!(status, 200, "{query} {body}: {answer}");
    }
    // NDJSON reads the parameter too.
    let response = server
        .http
        .post(server.url("/v1/metrics?precision=ms"))
        .header("content-type", "application/x-ndjson")
        .body("{\"name\":\"nd\",\"value\":1,\"ts\":1451649600000}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Every one landed at the same instant (the fraction just after it), and is stored as sent.
    let at_noon = server
        .query("?sts=2016-01-01T12:00:00Z&ets=2016-01-01T12:00:00Z")
        .await;
    let mut names: Vec<&str> = at_noon
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ms", "nd", "ns", "s", "s2", "us"]);
    let ms = at_noon.iter().find(|m| m["name"] == "ms").unwrap();
    assert_eq!(
        ms,
        &json!({"name": "ms", "value": 1, "ts": 1451649600000_i64})
    );
    let fraction = server
        .query("?sts=2016-01-01T12:00:00.25Z&ets=2016-01-01T12:00:00.25Z")
        .await;
    assert_eq!(
        fraction,
        [json!({"name": "f", "value": 1, "ts": 1451649600.25})]
    );
    server.stop().await;
}

async fn out_of_range_numbers_and_bad_precisions_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;

    // Milliseconds sent as seconds: refused, never guessed, with the hint.
    let (status, answer) = post_at(
        &server,
        "",
        &json!([{"name": "a", "value": 1, "ts": 1}, {"name": "a", "value": 1, "ts": 1451649600000_i64}]),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_timestamp");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("index 1") && message.contains("precision=ms"),
        "{message}"
    );

    let (status, answer) = post_at(
        &server,
        "?precision=ns",
        &json!({"name": "a", "value": 1, "ts": -1e30}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_timestamp")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("`precision`"),
        "{answer}"
    );

    let (status, answer) = post_at(
        &server,
        "?precision=seconds",
        &json!({"name": "a", "value": 1, "ts": 1}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_param")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("`precision`"),
        "{answer}"
    );

    // Nothing of the refused requests was stored.
    assert_eq!(server.query("").await, Vec::<Value>::new());
    server.stop().await;
}

crate::on_both_backends!(
    numbers_are_seconds_unless_the_precision_says_otherwise,
    out_of_range_numbers_and_bad_precisions_are_refused,
);
