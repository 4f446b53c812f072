//! What is posted comes back as posted: extra keys, value types, timestamps as written, order.

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    extra_keys_and_value_types_round_trip,
    timestamps_compare_on_the_instant,
    results_are_ordered_by_ts_then_storage_order,
    batches_are_stored_whole,
);

async fn extra_keys_and_value_types_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let body = r#"{ "ts": "2016-01-01 12:00:00.000", "name": "cpu",
        "value": 1.50, "host": "web-1", "tags": {"dc": "eu", "rack": [1, 2]},
        "note": "naïve \"quoted\" ✓", "ratio": 1e-3, "nothing": null }"#;
    let (status, answer) = server.post(body).await;
    assert_eq!((status, answer["stored"].clone()), (200, json!(1)));
    for value in [
        json!(-42),
        json!("text"),
        json!(true),
        json!(false),
        json!(12345678901234u64),
    ] {
        server
            .post_ok(&json!({"name": "types", "value": value, "ts": "2016-01-02"}))
            .await;
    }

    // The raw answer keeps key order and number spelling, not just the same JSON value.
    let raw = server
        .http
        .get(server.url("/v1/metrics?name=cpu"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        raw,
        r#"[{"ts":"2016-01-01 12:00:00.000","name":"cpu","value":1.50,"host":"web-1","tags":{"dc":"eu","rack":[1,2]},"note":"naïve \"quoted\" ✓","ratio":1e-3,"nothing":null}]"#
    );

    let values: Vec<Value> = server
        .query("?name=types")
        .await
        .into_iter()
        .map(|m| m["value"].clone())
        .collect();
    assert_eq!(
        values,
        [
            json!(-42),
            json!("text"),
            json!(true),
            json!(false),
            json!(12345678901234u64)
        ]
    );
}

async fn timestamps_compare_on_the_instant(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let forms = [
        "2016-03-01T10:00:00+02:00",
        "2016-03-01T08:00:00Z",
        "2016-03-01 08:00:00",
        "2016-03-01 08:00:00.000",
        "2016-03-01T09:00:00+0100",
        "2016-03-01T03:00:00-05:00",
    ];
    for ts in forms {
        server
            .post_ok(&json!({"name": "t", "value": 1, "ts": ts}))
            .await;
    }
    server
        .post_ok(&json!({"name": "t", "value": 2, "ts": "2016-03-01T08:00:00.001Z"}))
        .await;

    // The exact instant, however the bounds are written, returns every form as written.
    for bound in [
        "2016-03-01T08:00:00Z",
        "2016-03-01T10:00:00%2B02:00",
        "2016-03-01%2008:00:00",
    ] {
        let rows = server
            .query(&format!("?name=t&sts={bound}&ets={bound}"))
            .await;
        let written: Vec<&str> = rows.iter().map(|r| r["ts"].as_str().unwrap()).collect();
        assert_eq!(written, forms, "{bound}");
    }
    // A '+' left unencoded in a URL arrives as a space; it still means the offset.
    let rows = server
        .query("?name=t&sts=2016-03-01T10:00:00+02:00&ets=2016-03-01T10:00:00+02:00")
        .await;
    assert_eq!(rows.len(), forms.len());
    // Microseconds count: one millisecond later is outside the exact bound, inside a range.
    assert_eq!(
        server
            .query("?name=t&sts=2016-03-01T08:00:00.0005Z")
            .await
            .len(),
        1
    );
    assert_eq!(
        server
            .query("?name=t&ets=2016-03-01T08:00:00.001Z")
            .await
            .len(),
        7
    );
}

async fn results_are_ordered_by_ts_then_storage_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let posted = [
        ("2016-01-03", "a"),
        ("2016-01-01", "b"),
        ("2016-01-02", "c"),
        ("2016-01-01", "d"),
        ("2016-01-01T00:00:00+01:00", "e"), // 2015-12-31T23:00Z: first
    ];
    for (ts, tag) in posted {
        server
            .post_ok(&json!({"name": "o", "value": 0, "ts": ts, "tag": tag}))
            .await;
    }
    let tags: Vec<String> = server
        .query("?name=o")
        .await
        .iter()
        .map(|r| r["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, ["e", "b", "d", "c", "a"]);
}

async fn batches_are_stored_whole(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let batch: Vec<Value> = (0..2500)
        .map(|i| json!({"name": format!("b{}", i % 5), "value": i, "ts": "2016-01-01T00:00:00Z", "i": i}))
        .collect();
    let (status, answer) = server.post(&Value::Array(batch).to_string()).await;
    assert_eq!((status, answer["stored"].clone()), (200, json!(2500)));
    let rows = server.query("").await;
    let order: Vec<u64> = rows.iter().map(|r| r["i"].as_u64().unwrap()).collect();
    assert_eq!(order, (0..2500).collect::<Vec<u64>>());

    // One bad metric anywhere rejects the whole batch: nothing more is stored.
    let mut bad: Vec<Value> = (0..10)
        .map(|i| json!({"name": "x", "value": i, "ts": "2016-01-01"}))
        .collect();
    bad[7] = json!({"name": "x", "value": 7, "ts": "2016-01-32"});
    let (status, answer) = server.post(&Value::Array(bad).to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("index 7"),
        "{answer}"
    );
    assert_eq!(server.query("?name=x").await.len(), 0);
    assert_eq!(server.query("").await.len(), 2500);
}
