//! `/v1/ws`: every committed metric pushed as posted, in commit order; the lag policy.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{protocol::frame::coding::CloseCode, Message},
};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    every_post_is_pushed_to_every_socket_in_order,
    a_stalled_reader_is_closed_without_slowing_writers,
    sockets_close_with_1001_on_shutdown,
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn every_post_is_pushed_to_every_socket_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut a, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();
    let (mut b, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();

    let single =
        r#"{"name": "cpu", "value": 0.5, "ts": "2016-01-01 12:00:00.000", "host": "web-1"}"#;
    assert_eq!(server.post(single).await.0, 200);
    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"name": "seq", "value": i, "ts": "2016-01-01"}))
        .collect();
    assert_eq!(server.post(&Value::Array(batch).to_string()).await.0, 200);

    for socket in [&mut a, &mut b] {
        // The object as posted (compacted), ts as written.
        assert_eq!(
            next_text(socket).await,
            r#"{"name":"cpu","value":0.5,"ts":"2016-01-01 12:00:00.000","host":"web-1"}"#
        );
        for i in 0..50 {
            let frame: Value = serde_json::from_str(&next_text(socket).await).unwrap();
            assert_eq!(frame["value"], i);
        }
    }

    // Concurrent writers: each socket sees every metric once, in the same (commit) order.
    let posts = (0..20).map(|w| {
        let server = &server;
        async move {
            for k in 0..5 {
                let body = json!({"name": "w", "value": w * 100 + k, "ts": "2016-01-01"});
                assert_eq!(server.post(&body.to_string()).await.0, 200);
            }
        }
    });
    futures::future::join_all(posts).await;
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..100 {
        seen_a.push(next_text(&mut a).await);
        seen_b.push(next_text(&mut b).await);
    }
    assert_eq!(seen_a, seen_b);
    let mut values: Vec<i64> = seen_a
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(t).unwrap()["value"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // Each writer's own metrics arrive in the order it wrote them.
    for w in 0..20 {
        let mine: Vec<i64> = values.iter().copied().filter(|v| v / 100 == w).collect();
        assert_eq!(mine, (0..5).map(|k| w * 100 + k).collect::<Vec<_>>());
    }
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 100);
    a.close(None).await.unwrap();
}

async fn a_stalled_reader_is_closed_without_slowing_writers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.subscriber_buffer = 16;
    // This reader comes back to read its 1013: the write timeout (which drops a reader that
    // never comes back, see the faults suite) must not run out while the writers post.
    config.ws_write_timeout = Duration::from_secs(120);
    let server = TestServer::start_with(config).await;
    let (mut stalled, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();

    // ~20 MB of metrics: far more than the socket buffers between us and the server hold, so
    // the server's writer to this socket stalls while the ring of 16 overflows.
    let pad = "p".repeat(32 * 1024);
    let total = 640;
    for chunk in 0..total / 32 {
        let batch: Vec<Value> = (0..32)
            .map(
                |i| json!({"name": "big", "value": chunk * 32 + i, "ts": "2016-01-01", "pad": pad}),
            )
            .collect();
        let (status, answer) = tokio::time::timeout(
            Duration::from_secs(30),
            server.post(&Value::Array(batch).to_string()),
        )
        .await
        .expect("writers are not held up by a stalled reader");
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(server.query("?name=big").await.len(), total as usize);

    // Now read: some metrics, in order, then a close frame saying how many were missed.
    let mut received = 0;
    let close = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stalled.next())
            .await
            .expect("a frame within 10 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    frame["value"], received,
                    "in order, without holes before the close"
                );
                received += 1;
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected frames then a close, got {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Again);
    assert!(close.reason.contains("metrics missed"), "{}", close.reason);
    assert!(
        received < total,
        "the stalled reader cannot have received everything"
    );
}

async fn sockets_close_with_1001_on_shutdown(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut socket, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();
    // A frame through the socket proves the server's side of it is up (a shutdown racing the
    // upgrade itself can only drop the connection: there is no socket yet to close politely).
    assert_eq!(
        server
            .post(r#"{"name":"x","value":1,"ts":"2016-01-01"}"#)
            .await
            .0,
        200
    );
    next_text(&mut socket).await;
    server.stop().await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.expect("a code").code, CloseCode::Away);
}
