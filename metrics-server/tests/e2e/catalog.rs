//! The catalog routes: `/v1/names` with tag keys, `/v1/tags`, `/v1/tags/{key}/values`, each
//! narrowed by `name`, `tag.<key>` and `match`.

use serde_json::json;

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(lists_names_tag_keys_and_values);

async fn lists_names_tag_keys_and_values(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (status, empty) = server.get("/v1/tags").await;
    assert_eq!((status, empty), (200, json!({ "keys": [] })));
    server
        .post_ok(&json!([
            { "name": "cpu", "value": 1, "ts": "2016-01-01", "host": "web-1", "region": "eu" },
            { "name": "cpu", "value": 2, "ts": "2016-01-02", "host": "web-2", "port": 80 },
            { "name": "mem", "value": 3, "ts": "2016-01-03", "host": "db-1", "up": true },
            { "name": "mem", "value": 4, "ts": "2016-01-04", "port": "80" },
            { "name": "disk", "value": 5, "ts": "2016-01-05" },
        ]))
        .await;

    let (status, names) = server.get("/v1/names").await;
    assert_eq!(status, 200, "{names}");
    let tags_of = |names: &serde_json::Value| {
        names["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["name"].as_str().unwrap().to_owned(), n["tags"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tags_of(&names),
        [
            ("cpu".to_owned(), json!(["host", "port", "region"])),
            ("disk".to_owned(), json!([])),
            ("mem".to_owned(), json!(["host", "port", "up"])),
        ]
    );
    // Narrowed to the names having such metrics.
    let (_, names) = server.get("/v1/names?tag.host=db-1").await;
    assert_eq!(tags_of(&names).len(), 1, "{names}");
    assert_eq!(names["names"][0]["name"], "mem");
    // Counts and keys are of the matching metrics.
    assert_eq!(names["names"][0]["count"], 1, "{names}");
    assert_eq!(names["names"][0]["tags"], json!(["host", "up"]), "{names}");
    let (_, names) = server.get("/v1/names?match=%7Bregion!%3D%22%22%7D").await;
    assert_eq!(names["names"][0]["name"], "cpu", "{names}");
    assert_eq!(names["names"].as_array().unwrap().len(), 1, "{names}");

    for (path, want) in [
        (
            "/v1/tags",
            json!({ "keys": ["host", "port", "region", "up"] }),
        ),
        (
            "/v1/tags?name=cpu",
            json!({ "keys": ["host", "port", "region"] }),
        ),
        (
            "/v1/tags?name=cpu&name=disk",
            json!({ "keys": ["host", "port", "region"] }),
        ),
        ("/v1/tags?tag.port=80", json!({ "keys": ["host", "port"] })),
        (
            "/v1/tags?match=mem",
            json!({ "keys": ["host", "port", "up"] }),
        ),
        (
            "/v1/tags/host/values",
            json!({ "key": "host", "values": ["db-1", "web-1", "web-2"] }),
        ),
        (
            "/v1/tags/host/values?name=cpu",
            json!({ "key": "host", "values": ["web-1", "web-2"] }),
        ),
        (
            "/v1/tags/host/values?match=%7Bhost%3D~%22web-.*%22%7D",
            json!({ "key": "host", "values": ["web-1", "web-2"] }),
        ),
        // Numbers and booleans by their JSON text: 80 and "80" are one value.
        (
            "/v1/tags/port/values",
            json!({ "key": "port", "values": ["80"] }),
        ),
        (
            "/v1/tags/up/values",
            json!({ "key": "up", "values": ["true"] }),
        ),
        (
            "/v1/tags/nope/values",
            json!({ "key": "nope", "values": [] }),
        ),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!((status, &body), (200, &want), "{path}");
    }
    server.stop().await;
}
