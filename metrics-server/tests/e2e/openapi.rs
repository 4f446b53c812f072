//! The OpenAPI spec: served, complete, documented, and the committed copy up to date.

use serde_json::Value;

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    spec_is_served_complete_and_committed,
    swagger_ui_and_page_are_served,
    required_flags_match_behaviour,
);

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

async fn spec_is_served_complete_and_committed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, spec) = server.get("/openapi.json").await;
    assert_eq!(status, 200);

    for (path, method) in [
        ("/v1/metrics", "post"),
        ("/v1/metrics", "get"),
        ("/v1/ws", "get"),
        ("/v1/stream", "get"),
        ("/v1/limits", "get"),
        ("/healthz", "get"),
        ("/", "get"),
    ] {
        let op = &spec["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is in the spec");
        assert!(op["summary"].is_string(), "{method} {path} has a summary");
    }
    let post = &spec["paths"]["/v1/metrics"]["post"]["responses"];
    for status in ["200", "400", "413", "415", "500", "503"] {
        assert!(post[status].is_object(), "POST documents {status}");
    }
    assert_eq!(
        post["400"]["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(spec["paths"]["/v1/ws"]["get"]["responses"]["101"].is_object());
    // Which routes need a token (auth on) is in the spec, for clients and `ignored_auth`.
    assert_eq!(
        spec["paths"]["/v1/metrics"]["get"]["security"],
        serde_json::json!([{"bearer": []}])
    );
    assert!(spec["paths"]["/healthz"]["get"].get("security").is_none());
    for path in ["/v1/ws", "/v1/stream"] {
        assert!(
            spec["paths"][path]["get"]["responses"]["426"].is_object(),
            "{path} documents its 426 upgrade_required"
        );
    }
    assert_eq!(
        spec["paths"]["/v1/stream"]["get"]["responses"]["101"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/StreamFrame",
        "the stream's frame schema is documented"
    );

    // Every field of every schema has a doc line.
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}.{field} has no description"
            );
        }
    }
    for param in spec["paths"]["/v1/metrics"]["get"]["parameters"]
        .as_array()
        .unwrap()
    {
        assert!(param["description"].is_string(), "{param}");
    }

    // The committed copy is this spec. Regenerate with UPDATE_OPENAPI=1.
    let served = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &served).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(COMMITTED).expect("docs/openapi.json exists"),
    )
    .unwrap();
    assert!(
        committed == spec,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p metrics-server --test e2e openapi` and commit it"
    );
}

async fn swagger_ui_and_page_are_served(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for (path, needle) in [("/docs", "swagger"), ("/", "/assets/dashboard.js")] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(response.text().await.unwrap().contains(needle), "{path}");
    }
    // Swagger UI embeds the spec as served, security scheme included ("Authorize" takes a token).
    let docs = server.http.get(server.url("/docs")).send().await.unwrap();
    assert!(docs.text().await.unwrap().contains("securitySchemes"));
    let (status, health) = server.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

/// A parameter's example from the spec, as the query-string values it stands for.
fn example_values(param: &Value) -> Vec<String> {
    let example = param["schema"]
        .get("example")
        .or_else(|| param["schema"]["items"].get("example"))
        .or_else(|| param.get("example"));
    match example {
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(value) => vec![text(value)],
        None => Vec::new(),
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// Every parameter's `required` flag says what the server does: with every parameter at its
/// example the operation answers 200, and leaving out any one parameter the spec calls
/// optional still answers 200 (a required one, left out, does not). WebSocket routes (101),
/// the admin routes and writes are left to their own tests.
async fn required_flags_match_behaviour(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post(r#"{"name":"cpu","value":1,"ts":"2016-01-01","host":"web-1","region":"us"}"#)
        .await;
    let (_, spec) = server.get("/openapi.json").await;
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if method == "post"
                || path.starts_with("/v1/tokens")
                || op["responses"].get("101").is_some()
            {
                continue;
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let request = |omit: Option<&str>| {
                let mut url = path.clone();
                let mut query = form_urlencoded::Serializer::new(String::new());
                for param in &params {
                    let name = param["name"].as_str().unwrap();
                    let values = example_values(param);
                    if param["in"] == "path" {
                        url = url.replace(&format!("{{{name}}}"), &values[0]);
                    } else if Some(name) != omit {
                        for value in values {
                            query.append_pair(name, &value);
                        }
                    }
                }
                let url = format!("{url}?{}", query.finish());
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let server = &server;
                async move {
                    let response = server
                        .http
                        .request(method, server.url(&url))
                        .send()
                        .await
                        .unwrap();
                    (
                        url,
                        response.status().as_u16(),
                        response.text().await.unwrap(),
                    )
                }
            };
            let (url, status, body) = request(None).await;
            assert_eq!(status, 200, "{method} {url} with every example: {body}");
            for param in params.iter().filter(|p| p["in"] == "query") {
                let name = param["name"].as_str().unwrap();
                let (url, status, body) = request(Some(name)).await;
                if param["required"] == true {
                    assert_ne!(status, 200, "{method} {url}: `{name}` is required: {body}");
                } else {
                    assert_eq!(status, 200, "{method} {url}: `{name}` is optional: {body}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} parameters checked");
    server.stop().await;
}
