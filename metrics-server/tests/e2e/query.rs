//! `GET /v1/metrics` as issue 9 made it: filters on tags (simple and selector), paging by the
//! `Link` header under concurrent writes, the three formats, every time form, and a 400 naming
//! the parameter for each bad one.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    filters_by_every_operator,
    paging_follows_link_under_concurrent_writes,
    every_format,
    every_time_form,
    each_bad_parameter_is_a_400_naming_it,
);

/// The `value`s of a query's answer, as a set (each test metric has a distinct value).
async fn values(server: &TestServer, query: &str) -> BTreeSet<i64> {
    server
        .query(&format!("?{query}"))
        .await
        .iter()
        .map(|m| m["value"].as_i64().unwrap_or_else(|| panic!("{m}")))
        .collect()
}

fn set(values: &[i64]) -> BTreeSet<i64> {
    values.iter().copied().collect()
}

/// A query string with its value percent-encoded, as a client would send it.
fn q(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn filters_by_every_operator(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!([
            { "name": "cpu", "value": 1, "ts": "2016-01-01", "host": "web-1", "region": "eu", "port": 80, "up": true },
            { "name": "cpu", "value": 2, "ts": "2016-01-02", "host": "web-2", "region": "us", "port": "80", "up": "true" },
            { "name": "cpu", "value": 3, "ts": "2016-01-03", "host": "db-1", "port": 443, "up": false, "canary": "yes" },
            { "name": "mem", "value": 4, "ts": "2016-01-04", "host": "web-1", "region": "eu", "port": 80.0 },
            { "name": "mem", "value": 5, "ts": "2016-01-05" },
        ]))
        .await;

    for (query, want) in [
        // tag.<key>: a repeated key is any of them, different keys all of them.
        (q(&[("tag.host", "web-1")]), set(&[1, 4])),
        (
            q(&[("tag.host", "web-1"), ("tag.host", "db-1")]),
            set(&[1, 3, 4]),
        ),
        (
            q(&[("tag.host", "web-1"), ("tag.region", "eu"), ("name", "cpu")]),
            set(&[1]),
        ),
        // Compared by text: 80 and "80" alike, 80.0 is not 80; true and "true" alike.
        (q(&[("tag.port", "80")]), set(&[1, 2])),
        (q(&[("tag.port", "80.0")]), set(&[4])),
        (q(&[("tag.up", "true")]), set(&[1, 2])),
        (q(&[("tag.up", "false")]), set(&[3])),
        // An empty value means the key is absent.
        (q(&[("tag.region", "")]), set(&[3, 5])),
        (q(&[("tag.nope", "x")]), set(&[])),
        // Selectors: every operator; absent reads as "".
        (q(&[("match", r#"{host="web-2"}"#)]), set(&[2])),
        (q(&[("match", r#"{region!="eu"}"#)]), set(&[2, 3, 5])),
        (q(&[("match", r#"{host=~"web-.*"}"#)]), set(&[1, 2, 4])),
        (q(&[("match", r#"{host=~"web"}"#)]), set(&[])),
        (q(&[("match", r#"{host!~"web-.*"}"#)]), set(&[3, 5])),
        (q(&[("match", r#"{canary=""}"#)]), set(&[1, 2, 4, 5])),
        (q(&[("match", r#"{canary!=""}"#)]), set(&[3])),
        (q(&[("match", r#"{port="80"}"#)]), set(&[1, 2])),
        // A name before the braces; several selectors must all hold; with name=.
        (q(&[("match", r#"cpu{host=~"web-.*"}"#)]), set(&[1, 2])),
        (q(&[("match", "mem")]), set(&[4, 5])),
        (
            q(&[("match", r#"{host=~".+"}"#), ("match", r#"{region="eu"}"#)]),
            set(&[1, 4]),
        ),
        (
            q(&[("name", "cpu"), ("match", r#"{host=~"web-.*"}"#)]),
            set(&[1, 2]),
        ),
        (
            q(&[("name", "cpu"), ("match", r#"mem{host="web-1"}"#)]),
            set(&[]),
        ),
        // With a time range.
        (
            q(&[("tag.host", "web-1"), ("sts", "2016-01-02")]),
            set(&[4]),
        ),
    ] {
        assert_eq!(values(&server, &query).await, want, "{query}");
    }
    // Tag filters on a page keep working, in both orders.
    let page = server.query("?tag.port=80&order=desc&limit=1").await;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["value"], 2);
    server.stop().await;
}

/// The next-page URL of a `Link` header, if any.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().unwrap().to_owned();
    let url = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("not a next link: {link}"))
        .0;
    Some(url.to_owned())
}

async fn paging_follows_link_under_concurrent_writes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // 60 metrics, with ties on ts (pairs share a second), over two names.
    let batch: Vec<Value> = (0..60)
        .map(|i| {
            json!({
                "name": if i % 3 == 0 { "mem" } else { "cpu" },
                "value": i,
                "ts": format!("2016-01-01T00:{:02}:00Z", i / 2),
            })
        })
        .collect();
    server.post_ok(&Value::Array(batch)).await;

    // Values of the metrics written while paging: distinct across both passes.
    let mut extra = 1000;
    for order in ["asc", "desc"] {
        let mut url = format!("/v1/metrics?name=cpu&order={order}&limit=7");
        let mut seen: Vec<i64> = Vec::new();
        let mut pages = 0;
        loop {
            let response = server.http.get(server.url(&url)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let link = next_link(&response);
            let page: Vec<Value> = response.json().await.unwrap();
            assert!(page.len() <= 7, "{url}");
            if page.len() < 7 {
                assert_eq!(link, None, "a short page is the last");
            }
            seen.extend(page.iter().map(|m| m["value"].as_i64().unwrap()));
            pages += 1;
            let Some(next) = link else { break };
            assert!(next.starts_with("/v1/metrics?"), "{next}");
            assert!(
                next.contains("name=cpu") && next.contains(&format!("order={order}")),
                "{next}"
            );
            // Writes land between pages: before, within and after the pages read so far.
            extra += 1;
            assert!(extra < 1400, "paging does not end");
            server
                .post_ok(&json!([
                    { "name": "cpu", "value": extra, "ts": "2016-01-01T00:10:00Z" },
                    { "name": "cpu", "value": extra + 1000, "ts": "2015-01-01T00:00:00Z" },
                    { "name": "mem", "value": extra + 2000, "ts": "2016-01-01T00:15:00Z" },
                ]))
                .await;
            url = next;
            assert!(pages < 100, "paging does not end");
        }
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{order}: a metric was repeated: {seen:?}"
        );
        let originals: BTreeSet<i64> = (0..60).filter(|i| i % 3 != 0).collect();
        assert!(
            originals.is_subset(&unique),
            "{order}: skipped {:?}",
            originals.difference(&unique).collect::<Vec<_>>()
        );
        // The order holds across pages: ts never goes back (or forward, descending).
        let all = server.query(&format!("?name=cpu&order={order}")).await;
        let rank = |v: i64| all.iter().position(|m| m["value"] == v).unwrap();
        assert!(
            seen.windows(2).all(|w| rank(w[0]) < rank(w[1])),
            "{order}: pages out of order: {seen:?}"
        );
    }
    server.stop().await;
}

async fn every_format(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!([
            { "name": "cpu", "value": 0.5, "ts": "2016-01-01T00:00:00Z", "host": "web-1", "note": "a,\"b\"" },
            { "name": "cpu", "value": "high", "ts": "2016-01-02", "port": 80 },
        ]))
        .await;
    let get = |query: &'static str, accept: Option<&'static str>| {
        let mut request = server.http.get(server.url(&format!("/v1/metrics{query}")));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{query}");
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (content_type, response.text().await.unwrap())
        }
    };

    let (ct, json_text) = get("", None).await;
    assert!(ct.starts_with("application/json"), "{ct}");
    let rows: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(rows[0]["note"], "a,\"b\"");
    for (query, accept) in [
        ("?format=json", Some("text/csv")),
        ("", Some("application/json")),
    ] {
        let (ct, text) = get(query, accept).await;
        assert!(
            ct.starts_with("application/json"),
            "{query} {accept:?}: {ct}"
        );
        assert_eq!(text, json_text);
    }

    let ndjson_want = rows
        .iter()
        .map(|r| r.to_string() + "\n")
        .collect::<String>();
    for (query, accept) in [("?format=ndjson", None), ("", Some("application/x-ndjson"))] {
        let (ct, text) = get(query, accept).await;
        assert!(ct.starts_with("application/x-ndjson"), "{ct}");
        assert_eq!(text, ndjson_want, "{query}");
    }

    for (query, accept) in [
        ("?format=csv", Some("application/json")),
        ("", Some("text/csv")),
    ] {
        let (ct, text) = get(query, accept).await;
        assert!(ct.starts_with("text/csv"), "{ct}");
        assert_eq!(
            text, "name,ts,value\r\ncpu,2016-01-01T00:00:00Z,0.5\r\ncpu,2016-01-02,high\r\n",
            "{query}"
        );
    }
    // `columns` implies CSV, whatever `Accept` says.
    let (ct, text) = get("?columns=host,port,note", Some("application/json")).await;
    assert!(ct.starts_with("text/csv"), "{ct}");
    assert_eq!(
        text,
        "name,ts,value,host,port,note\r\n\
         cpu,2016-01-01T00:00:00Z,0.5,web-1,,\"a,\"\"b\"\"\"\r\n\
         cpu,2016-01-02,high,,80,\r\n"
    );
    // An empty answer: [] in JSON, nothing in NDJSON, the header row in CSV.
    assert_eq!(get("?name=none", None).await.1, "[]");
    assert_eq!(get("?name=none&format=ndjson", None).await.1, "");
    assert_eq!(
        get("?name=none&format=csv&columns=host", None).await.1,
        "name,ts,value,host\r\n"
    );
    // Paged answers in every format carry the Link.
    for format in ["json", "ndjson", "csv"] {
        let response = server
            .http
            .get(server.url(&format!("/v1/metrics?limit=1&format={format}")))
            .send()
            .await
            .unwrap();
        assert!(next_link(&response).is_some_and(|l| l.contains(&format!("format={format}"))));
    }
    server.stop().await;
}

async fn every_time_form(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    // 1700000000 is 2023-11-14T22:13:20Z.
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::minutes(5)).to_rfc3339();
    server
        .post_ok(&json!([
            { "name": "t", "value": 1, "ts": "2023-11-14T22:13:20Z" },
            { "name": "t", "value": 2, "ts": "2023-11-14T22:13:20.5Z" },
            { "name": "t", "value": 3, "ts": recent },
        ]))
        .await;
    for (sts, ets, want) in [
        ("1700000000", "1700000000", set(&[1])),
        ("1700000000s", "1700000000.4", set(&[1])),
        ("1700000000000ms", "1700000000500ms", set(&[1, 2])),
        ("1700000000000000us", "1700000000000000us", set(&[1])),
        (
            "1700000000000000000ns",
            "1700000000500000000ns",
            set(&[1, 2]),
        ),
        ("1700000000.5", "2023-11-14T22:13:20.5Z", set(&[2])),
        (
            "2023-11-14T23:13:20+01:00",
            "2023-11-14 22:13:20",
            set(&[1]),
        ),
        ("now-15m", "now", set(&[3])),
        ("now-15m", "now+1h", set(&[3])),
        ("now+1h", "", set(&[])),
        ("", "now-1d", set(&[1, 2])),
        ("now-1w", "now-2m", set(&[3])),
    ] {
        let query = q(&[("name", "t"), ("sts", sts), ("ets", ets)]);
        assert_eq!(values(&server, &query).await, want, "{query}");
    }
    // Milliseconds without the unit are refused, with the suffix to add.
    let (status, body) = server.get("/v1/metrics?sts=1700000000000").await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_timestamp");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`sts`") && message.contains("1700000000000ms"),
        "{message}"
    );
    server.stop().await;
}

async fn each_bad_parameter_is_a_400_naming_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    server
        .post_ok(&json!({ "name": "cpu", "value": 1, "ts": "2016-01-01" }))
        .await;
    for (method, path, code, needle) in [
        (
            "GET",
            "/v1/metrics?host=web-1",
            "unknown_parameter",
            "`host`",
        ),
        (
            "GET",
            "/v1/metrics?name=cpu&lmit=2",
            "unknown_parameter",
            "`lmit`",
        ),
        ("GET", "/v1/metrics?limit=0", "invalid_param", "`limit`"),
        (
            "GET",
            "/v1/metrics?limit=1000001",
            "invalid_param",
            "`limit`",
        ),
        ("GET", "/v1/metrics?limit=two", "invalid_param", "`limit`"),
        (
            "GET",
            "/v1/metrics?limit=1&limit=2",
            "invalid_param",
            "`limit`",
        ),
        ("GET", "/v1/metrics?order=up", "invalid_param", "`order`"),
        (
            "GET",
            "/v1/metrics?cursor=nope",
            "invalid_param",
            "`cursor`",
        ),
        ("GET", "/v1/metrics?format=xml", "invalid_param", "`format`"),
        (
            "GET",
            "/v1/metrics?columns=host&format=json",
            "invalid_param",
            "`columns`",
        ),
        (
            "GET",
            "/v1/metrics?format=csv&columns=host,,x",
            "invalid_param",
            "`columns`",
        ),
        ("GET", "/v1/metrics?sts=m", "invalid_timestamp", "`sts`"),
        (
            "GET",
            "/v1/metrics?ets=now-5y",
            "invalid_timestamp",
            "`ets`",
        ),
        (
            "GET",
            "/v1/metrics?sts=now&ets=now-1h",
            "invalid_range",
            "sts",
        ),
        (
            "GET",
            "/v1/metrics?match=%7Bhost%7D",
            "invalid_param",
            "`match`",
        ),
        (
            "GET",
            "/v1/metrics?match=%7Bh%3D~%22(%22%7D",
            "invalid_param",
            "`match`",
        ),
        ("GET", "/v1/metrics?tag.=x", "invalid_param", "`tag.`"),
        ("GET", "/v1/metrics?name=%FF", "invalid_param", "`name`"),
        ("GET", "/v1/names?limit=3", "unknown_parameter", "`limit`"),
        (
            "GET",
            "/v1/names?sts=2016-01-01",
            "unknown_parameter",
            "`sts`",
        ),
        (
            "GET",
            "/v1/tags?format=csv",
            "unknown_parameter",
            "`format`",
        ),
        (
            "GET",
            "/v1/tags/host/values?match=%7B",
            "invalid_param",
            "`match`",
        ),
        ("DELETE", "/v1/metrics", "invalid_param", "`all`"),
        ("DELETE", "/v1/metrics?all=yes", "invalid_param", "`all`"),
        (
            "DELETE",
            "/v1/metrics?limit=1&name=cpu",
            "unknown_parameter",
            "`limit`",
        ),
        (
            "DELETE",
            "/v1/metrics?sts=17000000000000",
            "invalid_timestamp",
            "ms",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = server
            .http
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{method} {path}: {message}");
    }
    // Nothing was deleted by the refused deletes.
    assert_eq!(server.query("").await.len(), 1);
    server.stop().await;
}
