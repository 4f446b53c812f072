//! Bulk ingest: `application/x-ndjson` bodies, gzip-compressed bodies, and the size limit applied
//! to the decompressed body (a gzip bomb gets 413).
//!
//! ```text
//! cargo test -p metrics-server --test e2e bulk::sqlite::
//! cargo test -p metrics-server --test e2e bulk::postgres::
//! ```

use std::io::Write;

use flate2::{write::GzEncoder, Compression};
use serde_json::Value;

use crate::{
    common::{Backend, TestDb, TestServer},
    on_both_backends,
};

on_both_backends!(
    ndjson_lines_are_stored_in_order,
    gzip_bodies_are_decompressed,
    a_bad_ndjson_line_stores_nothing_and_names_the_line,
    a_gzip_bomb_gets_413,
    unknown_encodings_get_415,
    large_answers_keep_ts_then_storage_order_across_pages,
);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

async fn post_raw(
    server: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = server
        .http
        .post(server.url("/v1/metrics"))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"name\":\"bulk\",\"ts\":\"2016-01-01T00:00:{:02}Z\",\"value\":{i}}}\n",
                i % 60
            )
        })
        .collect()
}

async fn ndjson_lines_are_stored_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let body = format!(
        "{}\n\r\n{}",
        lines(3).trim_end(),
        "{\"name\":\"bulk\",\"ts\":\"2016-01-01T00:00:03Z\",\"value\":\"x\",\"k\":[1, 2]}\n"
    );
    let (status, answer) = post_raw(&server, "application/x-ndjson", None, body.into_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let stored = server.query("?name=bulk").await;
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[1]["value"], 1);
    assert_eq!(stored[3]["k"], serde_json::json!([1, 2]));
    server.stop().await;
}

async fn gzip_bodies_are_decompressed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, answer) = post_raw(
        &server,
        "application/x-ndjson",
        Some("gzip"),
        gzip(lines(50).as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let array = r#"[{"name":"arr","ts":"2016-01-01","value":1},{"name":"arr","ts":"2016-01-02","value":2}]"#;
    let (status, answer) = post_raw(
        &server,
        "application/json",
        Some("gzip"),
        gzip(array.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.query("?name=bulk").await.len(), 50);
    assert_eq!(server.query("?name=arr").await.len(), 2);

    let (status, answer) = post_raw(
        &server,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}

async fn a_bad_ndjson_line_stores_nothing_and_names_the_line(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let body = format!("{}{{\"name\":\"bulk\",\"value\":1}}\n", lines(2));
    let (status, answer) = post_raw(&server, "application/x-ndjson", None, body.into_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "missing_field", "{answer}");
    assert!(
        answer["message"].as_str().unwrap_or("").contains("line 3"),
        "{answer}"
    );

    let (status, answer) = post_raw(
        &server,
        "application/x-ndjson",
        None,
        b"{\"name\":\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(server.query("?name=bulk").await.is_empty());
    server.stop().await;
}

async fn a_gzip_bomb_gets_413(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.body_limit = 64 << 10;
    let server = TestServer::start_with(config).await;
    // 8 MiB of spaces compress to about 8 KiB: far over the limit once decompressed.
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "the bomb itself is under the limit");
    let (status, answer) = post_raw(&server, "application/x-ndjson", Some("gzip"), bomb).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["code"], "payload_too_large", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("decompressed"),
        "{answer}"
    );

    // Just under the limit once decompressed still passes.
    let (status, answer) = post_raw(
        &server,
        "application/x-ndjson",
        Some("gzip"),
        gzip(lines(100).as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;
}

async fn unknown_encodings_get_415(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, answer) = post_raw(
        &server,
        "application/x-ndjson",
        Some("br"),
        lines(1).into_bytes(),
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer) = post_raw(&server, "text/csv", None, b"a,b".to_vec()).await;
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("x-ndjson"),
        "{answer}"
    );
    server.stop().await;
}

/// More rows than one page of the store's paged reads (4,096), with many ties on `ts` across
/// page boundaries: the answer is every row once, by `ts` and then in the order stored.
async fn large_answers_keep_ts_then_storage_order_across_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let n = 9_000;
    let second = |i: usize| i * 7919 % 3000;
    let body: String = (0..n)
        .map(|i| {
            let s = second(i);
            format!(
                "{{\"name\":\"paged\",\"ts\":\"2016-01-01T{:02}:{:02}:{:02}Z\",\"value\":{i}}}\n",
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        })
        .collect();
    let (status, answer) = post_raw(
        &server,
        "application/x-ndjson",
        Some("gzip"),
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut expected: Vec<usize> = (0..n).collect();
    expected.sort_by_key(|&i| second(i)); // stable: ties stay in storage order
    for query in [
        "?name=paged",
        "",
        "?sts=2016-01-01T00:00:00Z&ets=2016-01-01T01:00:00Z",
    ] {
        let got: Vec<usize> = server
            .query(query)
            .await
            .iter()
            .map(|m| m["value"].as_u64().expect("value") as usize)
            .collect();
        assert_eq!(got.len(), n, "{query}");
        assert!(got == expected, "{query}: rows out of order or repeated");
    }
    server.stop().await;
}
