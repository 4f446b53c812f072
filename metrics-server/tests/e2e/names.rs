//! `GET /v1/names`: every stored name with its count and time span, in the OpenAPI spec.

use serde_json::json;

use crate::common::{Backend, TestDb, TestServer};

async fn lists_names_with_counts_and_time_spans(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;

    let (status, empty) = server.get("/v1/names").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty, json!({ "names": [] }));

    server
        .post_ok(&json!([
            { "name": "mem", "value": 1, "ts": "2016-01-01T00:00:00.5Z" },
            { "name": "cpu", "value": 0.5, "ts": "2016-01-02 10:00:00+02:00" },
            { "name": "cpu", "value": "high", "ts": "2016-01-01", "host": "a" },
            { "name": "cpu", "value": 2, "ts": "2016-01-03T00:00:00.000001Z" },
        ]))
        .await;

    let (status, names) = server.get("/v1/names").await;
    assert_eq!(status, 200, "{names}");
    assert_eq!(
        names,
        json!({ "names": [
            {
                "name": "cpu",
                "count": 3,
                "first_ts": "2016-01-01T00:00:00.000000Z",
                "last_ts": "2016-01-03T00:00:00.000001Z",
                "tags": ["host"],
            },
            {
                "name": "mem",
                "count": 1,
                "first_ts": "2016-01-01T00:00:00.500000Z",
                "last_ts": "2016-01-01T00:00:00.500000Z",
                "tags": [],
            },
        ]})
    );
    server.stop().await;
}

async fn is_in_the_openapi_spec(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, spec) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let op = &spec["paths"]["/v1/names"]["get"];
    assert_eq!(op["operationId"], "listNames", "{op}");
    let schema = &spec["components"]["schemas"]["NameSummary"];
    for field in ["name", "count", "first_ts", "last_ts", "tags"] {
        let doc = schema["properties"][field]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !doc.is_empty(),
            "NameSummary.{field} has no description: {schema}"
        );
    }
    server.stop().await;
}

async fn a_plain_get_of_the_websocket_says_what_to_do(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let response = server
        .http
        .get(server.url("/v1/ws"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 426);
    assert_eq!(response.headers()["upgrade"], "websocket");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "upgrade_required", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("WebSocket"), "{message}");
    assert!(message.contains("GET /v1/metrics"), "{message}");
    server.stop().await;
}

async fn serves_the_page_and_its_embedded_assets(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let page = server
        .http
        .get(server.url("/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("text");
    for (path, content_type) in [
        ("/assets/uplot.min.js", "text/javascript"),
        ("/assets/uplot.min.css", "text/css"),
        ("/assets/dashboard.js", "text/javascript"),
        ("/assets/dashboard.css", "text/css"),
    ] {
        assert!(html.contains(path), "the page does not load {path}");
        let response = server
            .http
            .get(server.url(path))
            .send()
            .await
            .expect("GET asset");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let got = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
        assert!(
            !response.bytes().await.expect("body").is_empty(),
            "{path} is empty"
        );
    }
    let (status, missing) = server.get("/assets/nope.js").await;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "not_found");
    server.stop().await;
}

crate::on_both_backends!(
    lists_names_with_counts_and_time_spans,
    is_in_the_openapi_spec,
    a_plain_get_of_the_websocket_says_what_to_do,
    serves_the_page_and_its_embedded_assets,
);
