//! Bad input gets one JSON error shape with a 4xx status and a stable code, and stores nothing.

use serde_json::Value;

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(bad_requests_get_clear_json_errors, oversized_bodies_get_413);

/// Asserts the one error shape: exactly `code` and `message`, both non-empty strings.
fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str, mentions: &str) {
    assert_eq!(status, want_status, "{body}");
    let obj = body.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "only code and message: {body}");
    assert_eq!(body["code"], want_code, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

async fn bad_requests_get_clear_json_errors(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;

    let posts = [
        (
            r#"{"name": "a", "value": 1, "ts": "#,
            "invalid_json",
            "not valid JSON",
        ),
        ("", "invalid_body", "empty"),
        ("[1, 2]", "invalid_body", "JSON object"),
        (r#""just a string""#, "invalid_body", "metric object"),
        (
            r#"{"value": 1, "ts": "2016-01-01"}"#,
            "missing_field",
            "`name`",
        ),
        (
            r#"{"name": "a", "ts": "2016-01-01"}"#,
            "missing_field",
            "`value`",
        ),
        (r#"{"name": "a", "value": 1}"#, "missing_field", "`ts`"),
        (
            r#"{"name": 5, "value": 1, "ts": "2016-01-01"}"#,
            "invalid_field",
            "`name`",
        ),
        (
            r#"{"name": "", "value": 1, "ts": "2016-01-01"}"#,
            "invalid_field",
            "`name`",
        ),
        (
            r#"{"name": "a\nb", "value": 1, "ts": "2016-01-01"}"#,
            "invalid_field",
            "control",
        ),
        (
            r#"{"name": "a", "value": [1], "ts": "2016-01-01"}"#,
            "invalid_field",
            "`value`",
        ),
        (
            r#"{"name": "a", "value": null, "ts": "2016-01-01"}"#,
            "invalid_field",
            "`value`",
        ),
        (
            // A number is Unix seconds: milliseconds sent as such land past year 9999.
            r#"{"name": "a", "value": 1, "ts": 1451606400000}"#,
            "invalid_timestamp",
            "precision=ms",
        ),
        (
            r#"{"name": "a", "value": 1, "ts": "2016-02-30"}"#,
            "invalid_timestamp",
            "`ts`",
        ),
        (
            r#"{"name": "a", "value": 1, "ts": "tomorrow"}"#,
            "invalid_timestamp",
            "ISO-8601",
        ),
        (
            r#"[{"name": "a", "value": 1, "ts": "2016-01-01"}, {"name": "a", "value": 1}]"#,
            "missing_field",
            "index 1",
        ),
    ];
    let long_name = format!(
        r#"{{"name": "{}", "value": 1, "ts": "2016-01-01"}}"#,
        "n".repeat(513)
    );
    for (body, code, mentions) in
        posts
            .iter()
            .copied()
            .chain([(long_name.as_str(), "invalid_field", "512")])
    {
        let (status, answer) = server.post(body).await;
        assert_error(status, &answer, 400, code, mentions);
    }

    for (query, code, mentions) in [
        ("?sts=yesterday", "invalid_timestamp", "`sts`"),
        ("?ets=2016-13-01", "invalid_timestamp", "`ets`"),
        ("?sts=2016-01-02&ets=2016-01-01", "invalid_range", "after"),
    ] {
        let (status, answer) = server.get(&format!("/v1/metrics{query}")).await;
        assert_error(status, &answer, 400, code, mentions);
    }

    let (status, answer) = server.get("/v2/nothing").await;
    assert_error(status, &answer, 404, "not_found", "/v2/nothing");

    let response = server
        .http
        .put(server.url("/v1/metrics"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let allow = response.headers().get("allow").cloned();
    assert_error(
        status,
        &response.json().await.unwrap(),
        405,
        "method_not_allowed",
        "PUT",
    );
    // A 405 says what the route does accept (RFC 9110), on every route, templated ones too.
    assert_eq!(allow.unwrap(), "GET, HEAD, POST, DELETE");
    for (method, path, allowed) in [
        ("TRACE", "/", "GET, HEAD"),
        ("PUT", "/healthz", "GET, HEAD"),
        ("PATCH", "/v1/ws", "GET, HEAD"),
        ("POST", "/v1/tokens/7", "DELETE"),
        ("DELETE", "/v1/tokens", "GET, HEAD, POST"),
        ("POST", "/assets/live.js", "GET, HEAD"),
    ] {
        let response = server
            .http
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(
            response.headers().get("allow").unwrap(),
            allowed,
            "{method} {path}"
        );
    }

    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = server
            .http
            .post(server.url("/v1/metrics"))
            .header("content-type", content_type)
            .body(r#"{"name": "a", "value": 1, "ts": "2016-01-01"}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_error(
            status,
            &response.json().await.unwrap(),
            415,
            "unsupported_media_type",
            content_type,
        );
    }

    // A plain GET on the WebSocket route is a client error too, in the same shape.
    let (status, answer) = server.get("/v1/ws").await;
    assert_error(status, &answer, 426, "upgrade_required", "WebSocket");

    // Nothing of any rejected request was stored.
    assert!(server.query("").await.is_empty());
}

async fn oversized_bodies_get_413(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.body_limit = 4096;
    let server = TestServer::start_with(config).await;

    let padding = "x".repeat(5000);
    let body = format!(r#"{{"name": "big", "value": 1, "ts": "2016-01-01", "pad": "{padding}"}}"#);
    let (status, answer) = server.post(&body).await;
    assert_error(status, &answer, 413, "payload_too_large", "4096");

    // Chunked, without a Content-Length: the limit holds while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(body[..3000].to_owned()), Ok(body[3000..].to_owned())];
    let response = server
        .http
        .post(server.url("/v1/metrics"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        413,
        "payload_too_large",
        "limit",
    );

    let (status, _) = server
        .post(r#"{"name": "small", "value": 1, "ts": "2016-01-01"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.query("").await.len(), 1);
}
