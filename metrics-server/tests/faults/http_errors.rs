//! Requests refused at the HTTP layer get their JSON error at once (issue 8, defects 3, 6, 7):
//! a `Content-Length` over the body limit is 413 before any body is sent, headers over the limit
//! are 431, and a write without a JSON content type (what a cross-site browser form or no-cors
//! `fetch` sends) is 415 and stores nothing.
//!
//! These are transport tests: they never touch what the database stores beyond "nothing", so
//! they run on SQLite only.
//!
//! ```text
//! cargo test -p metrics-server --test faults http_errors
//! ```

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{
    common::{Backend, TestDb, TestServer},
    raw::{closed_within, connect, exchange, read_response},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_gets_413_before_the_body() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    // Only an answer that does not wait for the body can come within the bound below.
    config.body_timeout = Duration::from_secs(60);
    let server = TestServer::start_with(config).await;

    for length in [
        "9000000000000000000",
        &(16u64 << 20).saturating_add(1).to_string(),
    ] {
        let mut stream = connect(server.addr).await;
        stream
            .write_all(
                format!(
                    "POST /v1/metrics HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                     Content-Length: {length}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("Content-Length {length}: no answer without the body"));
        assert_eq!(response.status, 413, "Content-Length {length}");
        assert_eq!(response.header("connection"), Some("close"));
        let answer = response.json();
        assert_eq!(answer["code"], "payload_too_large", "{answer}");
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    }
    // A body that fits is still read and stored.
    let (status, _) = server
        .post(r#"{"name": "fits", "value": 1, "ts": "2016-01-01"}"#)
        .await;
    assert_eq!(status, 200);
}

/// An answer given before the body is read must still reach a client that is busy sending it
/// (closing a socket with unread data resets it, which can destroy the answer), and the client
/// must not reuse the connection the server is about to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_reaches_a_client_still_sending_its_body() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.body_limit = 16 << 10;
    let server = TestServer::start_with(config).await;
    let big = format!(
        r#"{{"name": "big", "value": 1, "ts": "2016-01-01", "pad": "{}"}}"#,
        "x".repeat(4 << 20)
    );
    // One pooled client, as an SDK would use: every answer arrives, and the next request on the
    // same client finds a working connection.
    for _ in 0..10 {
        let response = server
            .http
            .post(server.url("/v1/metrics"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("the 413 arrives, not a reset");
        assert_eq!(response.status(), 413);
        assert_eq!(response.headers()["connection"], "close");
        let (status, _) = server.get("/healthz").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limit_get_431_json() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await; // --max-header-size 32KiB

    // 20 KiB of headers pass (a long token, a big cookie)...
    let response = server
        .http
        .get(server.url("/healthz"))
        .header("x-padding", "a".repeat(20 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // ...64 KiB do not: one header, or many.
    let one = "a".repeat(64 << 10);
    let many: Vec<(String, String)> = (0..64)
        .map(|i| (format!("x-pad-{i}"), "b".repeat(1000)))
        .collect();
    for headers in [vec![("x-padding".to_owned(), one)], many] {
        let mut request = server.http.get(server.url("/healthz"));
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 431);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "headers_too_large", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("32768"),
            "{answer}"
        );
    }

    // A long URL counts too.
    let path = format!("/v1/metrics?name={}", "n".repeat(40 << 10));
    let response = exchange(
        server.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status, 431);
    assert_eq!(response.json()["code"], "headers_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_json_content_type() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let body = r#"{"name": "cross-site", "value": 1, "ts": "2016-01-01"}"#;

    // What a browser may send from any page without a CORS preflight: no type (a Blob body),
    // text/plain (a string body), a form.
    for content_type in [
        None,
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
    ] {
        let mut request = server
            .http
            .post(server.url("/v1/metrics"))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "unsupported_media_type", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{answer}"
        );
    }
    assert!(server.query("").await.is_empty(), "nothing was stored");

    // The original's curl examples send application/json; parameters are fine; so is NDJSON.
    for (content_type, body) in [
        ("application/json", body.to_owned()),
        ("application/json; charset=utf-8", body.to_owned()),
        ("application/x-ndjson", format!("{body}\n{body}\n")),
    ] {
        let response = server
            .http
            .post(server.url("/v1/metrics"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{content_type}");
    }
    assert_eq!(server.query("").await.len(), 4);
}

/// The documented exception (docs/api.md, "Answers that are not JSON"): requests hyper cannot
/// parse into a request at all are answered by hyper itself, before the service, with an empty
/// body, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_requests_get_hyper_s_bare_answers_as_documented() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;

    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_head = format!("x-padding: {}\r\n", "a".repeat(200 << 10));
    let long_uri = format!("/{}", "u".repeat(70 << 10));
    for (request, status) in [
        ("GARBAGE\r\n\r\n".to_owned(), 400),
        (
            "GET /healthz HTTP/1.1\r\nHost: test\r\nBad Header\r\n\r\n".to_owned(),
            400,
        ),
        (
            "POST /v1/metrics HTTP/1.1\r\nHost: test\r\nContent-Length: x\r\n\r\n".to_owned(),
            400,
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: test\r\n{many_headers}\r\n"),
            431,
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: test\r\n{huge_head}\r\n"),
            431,
        ),
        (
            format!("GET {long_uri} HTTP/1.1\r\nHost: test\r\n\r\n"),
            414,
        ),
    ] {
        let response = exchange(server.addr, &request)
            .await
            .unwrap_or_else(|| panic!("an answer to {:?}", &request[..40.min(request.len())]));
        assert_eq!(
            response.status,
            status,
            "{:?}",
            &request[..40.min(request.len())]
        );
        assert!(response.body.is_empty(), "{response:?}");
    }
    // Nothing of that disturbed the server.
    assert_eq!(server.get("/healthz").await.0, 200);
}
