//! `/v1/stream`: frames with cursors, replay after a cursor then live with no gap and no
//! duplicate, catch-up of a lagging reader from the database, `/v1/limits`.

use std::time::Duration;

use futures::StreamExt;
use metrics_types::StreamFrame;
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    replays_after_a_cursor_then_goes_live,
    a_lagging_reader_catches_up_instead_of_losing_metrics,
    bad_parameters_are_refused_before_the_upgrade,
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(socket: &mut Socket) -> StreamFrame {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

fn batch(name: &str, values: std::ops::Range<i64>) -> Value {
    Value::Array(
        values
            .map(|i| json!({"name": name, "value": i, "ts": "2016-01-01"}))
            .collect(),
    )
}

async fn replays_after_a_cursor_then_goes_live(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut now, _) = connect_async(server.ws_url("/v1/stream?name=a"))
        .await
        .unwrap();
    // From now: a checkpoint first, with the current cursor.
    let start = next_frame(&mut now).await;
    assert!(start.metric.is_none());

    server.post_ok(&batch("a", 0..3)).await;
    server.post_ok(&batch("b", 0..3)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let frame = next_frame(&mut now).await;
        let metric = frame.metric.unwrap();
        assert_eq!(
            (metric["name"].as_str(), metric["value"].as_i64()),
            (Some("a"), Some(i))
        );
        assert!(frame.id > start.id);
        ids.push(frame.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Resume after the first: the other two replayed, then live ones, each once.
    let url = server.ws_url(&format!("/v1/stream?name=a&since={}", ids[0]));
    let (mut resumed, _) = connect_async(url).await.unwrap();
    server.post_ok(&batch("a", 3..5)).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let frame = next_frame(&mut resumed).await;
        got.push(frame.metric.unwrap()["value"].as_i64().unwrap());
    }
    assert_eq!(got, vec![1, 2, 3, 4]);
}

async fn a_lagging_reader_catches_up_instead_of_losing_metrics(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.subscriber_buffer = 2;
    let server = TestServer::start_with(config).await;
    let (mut socket, _) = connect_async(server.ws_url("/v1/stream")).await.unwrap();
    next_frame(&mut socket).await; // the checkpoint
    for chunk in 0..10 {
        server
            .post_ok(&batch("burst", chunk * 50..chunk * 50 + 50))
            .await;
    }
    let mut last = 0;
    for i in 0..500 {
        let frame = next_frame(&mut socket).await;
        assert!(frame.id > last, "ids only grow");
        last = frame.id;
        assert_eq!(frame.metric.unwrap()["value"].as_i64(), Some(i));
    }
}

async fn bad_parameters_are_refused_before_the_upgrade(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for (query, code) in [
        ("since=-1", "invalid_param"),
        ("since_ts=yesterday", "invalid_timestamp"),
    ] {
        let response = server
            .http
            .get(server.url(&format!("/v1/stream?{query}")))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{query}");
    }
    let (status, limits) = server.get("/v1/limits").await;
    assert_eq!(status, 200);
    assert_eq!(limits["max_body_bytes"], 16 << 20);
    assert_eq!(limits["idempotency_window_secs"], 24 * 3600);
}
