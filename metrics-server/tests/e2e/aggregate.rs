//! `GET /v1/metrics` with `step` over HTTP: the columnar JSON, NDJSON and CSV answers, `by`,
//! `offset` and `fill`, the selection filters, and each bad parameter a 400 naming it (the
//! functions themselves are checked against independent values in the store's tests).

use metrics_types::AggregateAnswer;
use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    columnar_json_by_host,
    ndjson_and_csv,
    offsets_fills_and_filters,
    bad_parameters_are_400s_naming_them,
    the_spec_documents_aggregation,
);

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

async fn server_with_data(backend: Backend) -> (TestDb, TestServer) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!([
            { "name": "cpu", "value": 1, "ts": "2026-01-01T00:00:10Z", "host": "web-1" },
            { "name": "cpu", "value": 3, "ts": "2026-01-01T00:00:20Z", "host": "web-1" },
            { "name": "cpu", "value": "busy", "ts": "2026-01-01T00:00:50Z", "host": "web-1" },
            { "name": "cpu", "value": 10, "ts": "2026-01-01T00:02:05Z", "host": "web-1" },
            { "name": "cpu", "value": 2, "ts": "2026-01-01T00:00:30Z", "host": "web-2", "dc": "eu" },
            { "name": "cpu", "value": 4, "ts": "2026-01-01T00:01:00Z", "host": "web-2", "dc": "eu" },
            { "name": "cpu", "value": true, "ts": "2026-01-01T00:01:30Z", "host": "web-2", "dc": "eu" },
            { "name": "mem", "value": 100, "ts": "2026-01-01T00:00:00Z", "host": "web-1" },
        ]))
        .await;
    (db, server)
}

async fn get_text(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

async fn columnar_json_by_host(backend: Backend) {
    let (_db, server) = server_with_data(backend).await;
    let (status, answer) = server
        .get("/v1/metrics?name=cpu&step=1m&agg=count,avg,max,p50&by=host")
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "step": 60, "offset": 0, "fill": "none",
            "series": [
                { "name": "cpu", "tags": { "host": "web-1" }, "non_numeric": 1,
                  "ts": [T0, T0 + 120], "count": [3, 1], "avg": [2, 10], "max": [3, 10],
                  "p50": [2, 10] },
                { "name": "cpu", "tags": { "host": "web-2" }, "non_numeric": 1,
                  "ts": [T0, T0 + 60], "count": [1, 2], "avg": [2, 4], "max": [2, 4],
                  "p50": [2, 4] },
            ]
        })
    );
    // The wire type reads it.
    let typed: AggregateAnswer = serde_json::from_value(answer).unwrap();
    assert_eq!(
        typed.series[1].column("count"),
        Some(&[Some(1.0), Some(2.0)][..])
    );

    // Without `by`: one series per name; `agg` defaults to avg.
    let (status, answer) = server.get("/v1/metrics?step=1h").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["series"],
        json!([
            { "name": "cpu", "tags": {}, "non_numeric": 2, "ts": [T0], "avg": [4] },
            { "name": "mem", "tags": {}, "non_numeric": 0, "ts": [T0], "avg": [100] },
        ])
    );
    // by a key some metrics lack: those form the series without it, listed after.
    let (_, answer) = server
        .get("/v1/metrics?name=cpu&step=1h&agg=count&by=dc&by=host")
        .await;
    assert_eq!(
        answer["series"],
        json!([
            { "name": "cpu", "tags": { "dc": "eu", "host": "web-2" }, "non_numeric": 1, "ts": [T0], "count": [3] },
            { "name": "cpu", "tags": { "host": "web-1" }, "non_numeric": 1, "ts": [T0], "count": [4] },
        ])
    );
}

async fn ndjson_and_csv(backend: Backend) {
    let (_db, server) = server_with_data(backend).await;
    let query = "/v1/metrics?name=cpu&step=1m&agg=count,avg,p50&by=host";
    let (status, content_type, text) = get_text(&server, &format!("{query}&format=ndjson")).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/x-ndjson"),
        "{content_type}"
    );
    let rows: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            json!({ "name": "cpu", "tags": { "host": "web-1" }, "ts": T0, "count": 3, "avg": 2, "p50": 2, "non_numeric": 1 }),
            json!({ "name": "cpu", "tags": { "host": "web-1" }, "ts": T0 + 120, "count": 1, "avg": 10, "p50": 10 }),
            json!({ "name": "cpu", "tags": { "host": "web-2" }, "ts": T0, "count": 1, "avg": 2, "p50": 2 }),
            json!({ "name": "cpu", "tags": { "host": "web-2" }, "ts": T0 + 60, "count": 2, "avg": 4, "p50": 4, "non_numeric": 1 }),
        ]
    );
    let (status, content_type, text) = get_text(&server, &format!("{query}&format=csv")).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(
        text,
        format!(
            "name,ts,host,count,avg,p50,non_numeric\r\n\
             cpu,{T0},web-1,3,2,2,1\r\n\
             cpu,{},web-1,1,10,10,0\r\n\
             cpu,{T0},web-2,1,2,2,0\r\n\
             cpu,{},web-2,2,4,4,1\r\n",
            T0 + 120,
            T0 + 60
        )
    );
    // Accept chooses too; an empty answer is the header alone.
    let response = server
        .http
        .get(server.url("/v1/metrics?name=none&step=1m"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "name,ts,avg,non_numeric\r\n"
    );
    let (_, _, text) = get_text(&server, "/v1/metrics?name=none&step=1m&format=ndjson").await;
    assert_eq!(text, "");
}

async fn offsets_fills_and_filters(backend: Backend) {
    let (_db, server) = server_with_data(backend).await;
    // Buckets [T0-30, T0+30), [T0+30, T0+90), [T0+90, T0+150): an offset of 30 s or -30 s is
    // the same grid.
    for offset in ["30s", "-30s", "30", "-90"] {
        let (status, answer) = server
            .get(&format!(
                "/v1/metrics?name=cpu&step=1m&agg=count,sum&offset={offset}"
            ))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["series"],
            json!([{ "name": "cpu", "tags": {}, "non_numeric": 2, "ts": [T0 - 30, T0 + 30, T0 + 90],
                     "count": [2, 3, 2], "sum": [4, 6, 10] }]),
            "offset {offset}"
        );
    }
    // fill over sts..ets: the bucket of sts to that of ets.
    let range = "sts=2025-12-31T23:59:00Z&ets=2026-01-01T00:03:59Z";
    let (status, answer) = server
        .get(&format!(
            "/v1/metrics?name=cpu&step=1m&agg=count,sum,min&fill=-1&{range}"
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["fill"], json!(-1.0));
    assert_eq!(
        answer["series"][0]["ts"],
        json!([T0 - 60, T0, T0 + 60, T0 + 120, T0 + 180])
    );
    assert_eq!(answer["series"][0]["count"], json!([0, 4, 2, 1, 0]));
    assert_eq!(answer["series"][0]["sum"], json!([-1, 6, 4, 10, -1]));
    assert_eq!(answer["series"][0]["min"], json!([-1, 1, 4, 10, -1]));
    let (_, answer) = server
        .get(&format!(
            "/v1/metrics?name=cpu&step=1m&agg=max&fill=linear&tag.host=web-1&{range}"
        ))
        .await;
    assert_eq!(answer["series"][0]["max"], json!([null, 3, 6.5, 10, null]));
    let (_, answer) = server
        .get(&format!(
            "/v1/metrics?name=cpu&step=1m&agg=max&fill=prev&tag.host=web-1&{range}"
        ))
        .await;
    assert_eq!(answer["series"][0]["max"], json!([null, 3, 3, 10, 10]));
    let (_, answer) = server
        .get(&format!(
            "/v1/metrics?name=cpu&step=1m&agg=max&fill=null&tag.host=web-1&{range}"
        ))
        .await;
    assert_eq!(answer["series"][0]["max"], json!([null, 3, null, 10, null]));
    // Selectors and time bounds narrow what is aggregated.
    let (_, answer) = server
        .get("/v1/metrics?step=1d&agg=count&match=%7Bdc%3D%22%22%7D&sts=2026-01-01T00:00:15Z")
        .await;
    assert_eq!(
        answer["series"],
        json!([{ "name": "cpu", "tags": {}, "non_numeric": 1, "ts": [T0], "count": [3] }])
    );
}

async fn bad_parameters_are_400s_naming_them(backend: Backend) {
    let (_db, server) = server_with_data(backend).await;
    for (query, code, names) in [
        ("step=1m&stepp=2", "unknown_parameter", "`stepp`"),
        ("step=1m&agg=median", "invalid_param", "`agg`"),
        ("step=1m&fill=zero", "invalid_param", "`fill`"),
        ("step=1m&offset=1y", "invalid_param", "`offset`"),
        ("step=soon", "invalid_param", "`step`"),
        ("step=1m&limit=10", "invalid_param", "`limit`"),
        ("step=1m&columns=host", "invalid_param", "`columns`"),
        ("agg=avg", "invalid_param", "`step`"),
        ("by=host", "invalid_param", "`step`"),
        ("step=1m&format=xml", "invalid_param", "`format`"),
        ("step=1m&sts=m", "invalid_timestamp", "`sts`"),
        // A day in seconds is 86401 buckets: the message names a step that fits.
        (
            "step=1s&sts=2026-01-01T00:00:00Z&ets=2026-01-02T00:00:00Z",
            "invalid_param",
            "step=10s",
        ),
    ] {
        let (status, answer) = server.get(&format!("/v1/metrics?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["code"], code, "{query}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    // Without sts/ets the metrics' own span counts: 2 min 5 s in seconds fits.
    let (status, answer) = server.get("/v1/metrics?step=1&agg=count").await;
    assert_eq!(status, 200, "{answer}");
}

async fn the_spec_documents_aggregation(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (_, spec) = server.get("/openapi.json").await;
    let get = &spec["paths"]["/v1/metrics"]["get"];
    for name in ["step", "agg", "by", "offset", "fill"] {
        let param = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is documented"));
        assert_eq!(param["in"], "query");
        assert_ne!(param["required"], true, "{name} is optional");
        assert!(param["description"].as_str().unwrap().len() > 20, "{param}");
    }
    let json = &get["responses"]["200"]["content"]["application/json; charset=utf-8"]["schema"];
    let alternatives = json["oneOf"].as_array().unwrap();
    assert!(
        alternatives
            .iter()
            .any(|s| s["properties"]["series"]["type"] == "array"),
        "{json}"
    );
}
