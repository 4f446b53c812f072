//! `DELETE /v1/metrics`: the filters of `GET`, the `all=true` rule, the count, and nothing
//! deleted ever comes back (from a query, the catalog, or a stream's replay).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(deletes_exactly_what_it_selects);

async fn delete(server: &TestServer, query: &str) -> (u16, Value) {
    let response = server
        .http
        .delete(server.url(&format!("/v1/metrics{query}")))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn values(server: &TestServer, query: &str) -> BTreeSet<i64> {
    server
        .query(query)
        .await
        .iter()
        .map(|m| m["value"].as_i64().unwrap())
        .collect()
}

async fn deletes_exactly_what_it_selects(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!([
            { "name": "cpu", "value": 1, "ts": "2016-01-01", "host": "web-1" },
            { "name": "cpu", "value": 2, "ts": "2016-01-02", "host": "web-2" },
            { "name": "cpu", "value": 3, "ts": "2016-01-03", "host": "web-1" },
            { "name": "mem", "value": 4, "ts": "2016-01-01", "host": "web-1" },
            { "name": "debug.x", "value": 5, "ts": "2016-01-01", "port": 80 },
        ]))
        .await;

    // No filter: refused unless all=true, and nothing is deleted.
    for query in ["", "?all=false", "?name=&sts="] {
        let (status, body) = delete(&server, query).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_param")),
            "{query}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("all=true"),
            "{body}"
        );
    }
    assert_eq!(values(&server, "").await.len(), 5);

    // Name, range and tag together.
    let (status, body) = delete(&server, "?name=cpu&tag.host=web-1&ets=2016-01-02").await;
    assert_eq!((status, body), (200, json!({ "deleted": 1 })));
    assert_eq!(values(&server, "").await, BTreeSet::from([2, 3, 4, 5]));
    assert_eq!(
        values(&server, "?tag.host=web-1").await,
        BTreeSet::from([3, 4])
    );

    // A selector; then a tag compared by text (80 matches the number 80).
    let (status, body) = delete(&server, "?match=%7Bhost%3D~%22web-.*%22%7D&name=cpu").await;
    assert_eq!((status, body), (200, json!({ "deleted": 2 })));
    let (status, body) = delete(&server, "?tag.port=80").await;
    assert_eq!((status, body), (200, json!({ "deleted": 1 })));
    assert_eq!(values(&server, "").await, BTreeSet::from([4]));
    // Deleting what is gone deletes nothing.
    let (status, body) = delete(&server, "?name=cpu").await;
    assert_eq!((status, body), (200, json!({ "deleted": 0 })));

    // The catalog forgets the deleted: counts, names and tag values.
    let (_, names) = server.get("/v1/names").await;
    let listed: Vec<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["mem"], "{names}");
    let (_, hosts) = server.get("/v1/tags/host/values").await;
    assert_eq!(hosts["values"], json!(["web-1"]), "{hosts}");

    // all=true deletes the rest.
    let (status, body) = delete(&server, "?all=true").await;
    assert_eq!((status, body), (200, json!({ "deleted": 1 })));
    assert!(values(&server, "").await.is_empty());
    let (_, names) = server.get("/v1/names").await;
    assert_eq!(names, json!({ "names": [] }));
    server.stop().await;
}
