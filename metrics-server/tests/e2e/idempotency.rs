//! `Idempotency-Key` on `POST /v1/metrics`: a retried batch is stored once and answered with the
//! original result; keys are checked.

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(a_retried_batch_is_stored_once, bad_keys_are_refused);

async fn post_with_key(server: &TestServer, key: &str, body: &Value) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/v1/metrics"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn a_retried_batch_is_stored_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let batch = json!([
        {"name": "once", "value": 1, "ts": "2016-01-01"},
        {"name": "once", "value": 2, "ts": "2016-01-02"},
    ]);
    let first = post_with_key(&server, "key-1", &batch).await;
    assert_eq!(first, (200, json!({"resp": "success", "stored": 2})));
    // The same request again (its answer was lost, say): the original answer, nothing stored.
    for _ in 0..3 {
        assert_eq!(post_with_key(&server, "key-1", &batch).await, first);
    }
    assert_eq!(server.query("?name=once").await.len(), 2);
    // Another key is another request.
    assert_eq!(post_with_key(&server, "key-2", &batch).await.0, 200);
    assert_eq!(server.query("?name=once").await.len(), 4);

    // Remembered across a restart: the key is committed with the metrics.
    let config = db.config();
    server.stop().await;
    let server = TestServer::start_with(config).await;
    assert_eq!(post_with_key(&server, "key-1", &batch).await, first);
    assert_eq!(server.query("?name=once").await.len(), 4);
}

async fn bad_keys_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let body = json!({"name": "k", "value": 1, "ts": "2016-01-01"});
    let (status, answer) = post_with_key(&server, &"x".repeat(256), &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_param"))
    );
    // A key that is not printable ASCII (here Latin-1 bytes) is refused too, not ignored: a
    // write the client believes idempotent must not be stored without its key.
    let response = server
        .http
        .post(server.url("/v1/metrics"))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "invalid_param", "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    assert!(server.query("?name=k").await.is_empty());
}
