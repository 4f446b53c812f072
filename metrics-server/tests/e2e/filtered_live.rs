//! Filtered subscriptions: `/v1/ws` and `/v1/stream` take the selection parameters of
//! `GET /v1/metrics` (`name`, `sts`, `ets`, `tag.<key>`, `match`) and send only the metrics they
//! select, live and on replay (a resumed stream included); a metric deleted before a resume never
//! comes back; bad parameters are refused before the upgrade.

use std::time::Duration;

use futures::StreamExt;
use metrics_types::StreamFrame;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    ws_sends_only_what_the_filters_select,
    stream_filters_live_and_replayed_metrics_alike,
    a_metric_deleted_before_a_resume_never_comes_back,
    bad_filters_are_refused_before_the_upgrade,
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn next_frame(socket: &mut Socket) -> StreamFrame {
    serde_json::from_str(&next_text(socket).await).unwrap()
}

/// `match=<selector>`, encoded.
fn matching(selector: &str) -> String {
    format!("match={}", utf8_percent_encode(selector, NON_ALPHANUMERIC))
}

/// The metrics every test posts: `value` numbers them; `want` says whether the filter
/// `name=cpu & tag.host in {a, b} & match={region!="eu", canary=""} & sts=2016-01-02` takes it.
fn mixed() -> Vec<(Value, bool)> {
    let m = |value: i64, name: &str, ts: &str, tags: Value| {
        let mut metric = json!({"name": name, "value": value, "ts": ts});
        metric
            .as_object_mut()
            .unwrap()
            .extend(tags.as_object().unwrap().clone());
        metric
    };
    vec![
        (
            m(1, "cpu", "2016-01-02", json!({"host": "a", "region": "us"})),
            true,
        ),
        (
            m(2, "cpu", "2016-01-02", json!({"host": "c", "region": "us"})),
            false,
        ),
        (
            m(3, "cpu", "2016-01-02", json!({"host": "a", "region": "eu"})),
            false,
        ),
        (m(4, "mem", "2016-01-02", json!({"host": "a"})), false),
        (m(5, "cpu", "2016-01-01", json!({"host": "b"})), false),
        (m(6, "cpu", "2016-01-03", json!({"host": "b"})), true),
        (
            m(7, "cpu", "2016-01-03", json!({"host": "a", "canary": true})),
            false,
        ),
        (
            m(8, "cpu", "2016-01-03", json!({"host": "a", "canary": null})),
            true,
        ),
        (m(9, "cpu", "2016-01-04", json!({"region": "us"})), false),
    ]
}

fn filter() -> String {
    format!(
        "name=cpu&tag.host=a&tag.host=b&{}&sts=2016-01-02",
        matching(r#"{region!="eu", canary=""}"#)
    )
}

fn values(metrics: impl IntoIterator<Item = Value>) -> Vec<i64> {
    metrics
        .into_iter()
        .map(|m| m["value"].as_i64().unwrap())
        .collect()
}

fn wanted() -> Vec<i64> {
    mixed()
        .into_iter()
        .filter(|(_, want)| *want)
        .map(|(m, _)| m["value"].as_i64().unwrap())
        .collect()
}

async fn post_mixed(server: &TestServer) {
    let all: Vec<Value> = mixed().into_iter().map(|(m, _)| m).collect();
    server.post_ok(&Value::Array(all)).await;
}

/// A metric every filter of these tests selects, posted last: once it arrives, everything
/// before it has been judged.
fn sentinel() -> Value {
    json!({"name": "cpu", "value": 100, "ts": "2016-02-01", "host": "a"})
}

async fn ws_sends_only_what_the_filters_select(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut filtered, _) = connect_async(server.ws_url(&format!("/v1/ws?{}", filter())))
        .await
        .unwrap();
    // Only a time range, from the other end, in another form (Unix seconds).
    let (mut until, _) = connect_async(server.ws_url("/v1/ws?ets=1451692800"))
        .await
        .unwrap();
    post_mixed(&server).await;
    server.post_ok(&sentinel()).await;

    let mut got = Vec::new();
    loop {
        let metric: Value = serde_json::from_str(&next_text(&mut filtered).await).unwrap();
        got.push(metric);
        if got.last().unwrap()["value"] == 100 {
            break;
        }
    }
    let mut expected = wanted();
    expected.push(100);
    assert_eq!(values(got), expected);

    // ets=2016-01-02T00:00:00Z: metrics 1 to 5 (the sentinel is later); the next one it gets
    // after them is a later post at an early time.
    let mut early = Vec::new();
    for _ in 0..5 {
        early.push(serde_json::from_str::<Value>(&next_text(&mut until).await).unwrap());
    }
    assert_eq!(values(early), [1, 2, 3, 4, 5]);
    server
        .post_ok(&json!({"name": "x", "value": 200, "ts": "2015-12-31"}))
        .await;
    let next: Value = serde_json::from_str(&next_text(&mut until).await).unwrap();
    assert_eq!(next["value"], 200);
    server.stop().await;
}

async fn stream_filters_live_and_replayed_metrics_alike(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut live, _) = connect_async(server.ws_url(&format!("/v1/stream?{}", filter())))
        .await
        .unwrap();
    let checkpoint = next_frame(&mut live).await;
    assert!(checkpoint.metric.is_none());
    post_mixed(&server).await;
    server.post_ok(&sentinel()).await;

    let mut frames = Vec::new();
    loop {
        let frame = next_frame(&mut live).await;
        let done = frame.metric.as_ref().unwrap()["value"] == 100;
        frames.push(frame);
        if done {
            break;
        }
    }
    let mut expected = wanted();
    expected.push(100);
    assert_eq!(
        values(frames.iter().map(|f| f.metric.clone().unwrap())),
        expected
    );

    // Resume after the first frame: the rest is replayed from the database, filtered the same
    // way, then live metrics follow, filtered too.
    let url = format!("/v1/stream?{}&since={}", filter(), frames[0].id);
    let (mut resumed, _) = connect_async(server.ws_url(&url)).await.unwrap();
    for (i, frame) in frames.iter().enumerate().skip(1) {
        let replayed = next_frame(&mut resumed).await;
        assert_eq!(
            (replayed.id, &replayed.metric),
            (frame.id, &frame.metric),
            "frame {i}"
        );
    }
    post_mixed(&server).await;
    server.post_ok(&sentinel()).await;
    let mut again = Vec::new();
    loop {
        let metric = next_frame(&mut resumed).await.metric.unwrap();
        let done = metric["value"] == 100;
        again.push(metric);
        if done {
            break;
        }
    }
    assert_eq!(values(again), expected);

    // A stream from a time replays only what the filter selects too.
    let url = format!("/v1/stream?{}&since_ts=2016-01-03", filter());
    let (mut from_ts, _) = connect_async(server.ws_url(&url)).await.unwrap();
    let mut replayed = Vec::new();
    // Stored twice: 6, 8 and the sentinel (ts at or after 2016-01-03), in storage order.
    for _ in 0..6 {
        replayed.push(next_frame(&mut from_ts).await.metric.unwrap());
    }
    assert_eq!(values(replayed), [6, 8, 100, 6, 8, 100]);
    server.stop().await;
}

async fn a_metric_deleted_before_a_resume_never_comes_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut live, _) = connect_async(server.ws_url("/v1/stream?tag.host=a"))
        .await
        .unwrap();
    let checkpoint = next_frame(&mut live).await;
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"name": "cpu", "value": i, "ts": "2016-01-01", "host": "a", "odd": i % 2 == 1}))
        .collect();
    server.post_ok(&Value::Array(batch)).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let frame = next_frame(&mut live).await;
        assert_eq!(frame.metric.unwrap()["value"], i);
        ids.push(frame.id);
    }
    drop(live);

    let response = server
        .http
        .delete(server.url("/v1/metrics?tag.odd=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"deleted": 3}));

    // Resume from before all of them: only the even ones are left to replay.
    let url = format!("/v1/stream?tag.host=a&since={}", checkpoint.id);
    let (mut resumed, _) = connect_async(server.ws_url(&url)).await.unwrap();
    server
        .post_ok(&json!({"name": "cpu", "value": 100, "ts": "2016-01-01", "host": "a"}))
        .await;
    let mut got = Vec::new();
    loop {
        let frame = next_frame(&mut resumed).await;
        let metric = frame.metric.unwrap();
        let done = metric["value"] == 100;
        got.push((frame.id, metric["value"].as_i64().unwrap()));
        if done {
            break;
        }
    }
    assert_eq!(got[..3], [(ids[0], 0), (ids[2], 2), (ids[4], 4)]);
    assert_eq!(got.len(), 4, "{got:?}");
    server.stop().await;
}

async fn bad_filters_are_refused_before_the_upgrade(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for route in ["/v1/ws", "/v1/stream"] {
        for (query, code, named) in [
            ("host=web-1".to_owned(), "unknown_parameter", "`host`"),
            (matching("{host}"), "invalid_param", "`match`"),
            (matching(r#"{host=~"("}"#), "invalid_param", "`match`"),
            ("sts=m".to_owned(), "invalid_timestamp", "`sts`"),
            (
                "ets=1700000000000".to_owned(),
                "invalid_timestamp",
                "1700000000000ms",
            ),
            ("sts=now&ets=now-1h".to_owned(), "invalid_range", "sts"),
            ("tag.=x".to_owned(), "invalid_param", "`tag.`"),
            (
                "since_ts=1700000000000".to_owned(),
                "invalid_timestamp",
                "`since_ts`",
            ),
        ] {
            if route == "/v1/ws" && query.starts_with("since") {
                continue;
            }
            let response = server
                .http
                .get(server.url(&format!("{route}?{query}")))
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{route}?{query}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], code, "{route}?{query}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(named), "{route}?{query}: {message}");
        }
    }
    server.stop().await;
}
