//! Hostile and broken WebSocket clients (defect 5, and the handshake of defect 6): a reader that
//! stops reading is dropped after the write timeout while writers keep going; the socket cap;
//! the Origin check; a handshake over HTTP/1.0; an oversized incoming message.
//!
//! ```text
//! cargo test -p metrics-server --test faults websocket
//! ```

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, protocol::frame::coding::CloseCode, Message},
};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    a_stalled_reader_is_dropped_after_the_write_timeout_while_writers_go_on,
    upgrades_over_the_cap_get_503_before_the_handshake,
    foreign_origins_get_403_before_the_handshake,
    a_handshake_over_http_1_0_gets_a_json_4xx,
    an_oversized_message_closes_with_1009,
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const LIVE_ROUTES: [&str; 2] = ["/v1/ws", "/v1/stream"];

/// The handshake a browser or SDK sends, by hand.
fn handshake(path: &str, version: &str, addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "GET {path} HTTP/{version}\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Reads a response head (up to the blank line), byte by byte so nothing after it is consumed.
async fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// Sends a WebSocket handshake with plain HTTP and returns the status, headers and JSON body of
/// a refusal (the server must answer before any upgrade).
async fn refused(
    server: &TestServer,
    path: &str,
    origin: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = server
        .http
        .get(server.url(path))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON body");
    (status, headers, body)
}

/// Opens a WebSocket with an optional `Origin`; `Ok` means 101.
async fn open(
    server: &TestServer,
    path: &str,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    connect_async(request).await.map(|(socket, _)| socket)
}

async fn a_stalled_reader_is_dropped_after_the_write_timeout_while_writers_go_on(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.ws_write_timeout = Duration::from_millis(500);
    // The stalled socket and a healthy reader; a third upgrade succeeds only once the server has
    // let go of the stalled one.
    config.max_ws_connections = 2;
    // Bounds what the hub's ring holds (256 metrics of 32 KiB).
    config.subscriber_buffer = 256;
    let server = TestServer::start_with(config).await;

    // A raw socket with a tiny receive window that upgrades, then never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(handshake("/v1/ws", "1.1", server.addr, "").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stalled).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let mut healthy = open(&server, "/v1/stream", None)
        .await
        .expect("a healthy reader");
    let reader = tokio::spawn(async move {
        let mut values = Vec::new();
        while let Some(Ok(message)) = healthy.next().await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                if let Some(value) = frame["metric"]["value"].as_i64() {
                    values.push(value);
                }
            }
        }
        values
    });

    // Writers keep posting 1 MiB batches until a new socket is let in.
    let pad = "p".repeat(32 * 1024);
    let started = Instant::now();
    let mut posted = 0i64;
    let freed_after = loop {
        let batch: Vec<Value> = (posted..posted + 32)
            .map(|i| json!({"name": "big", "value": i, "ts": "2016-01-01", "pad": pad}))
            .collect();
        let (status, answer) = tokio::time::timeout(
            Duration::from_secs(10),
            server.post(&Value::Array(batch).to_string()),
        )
        .await
        .expect("writers are not held up by a stalled reader");
        assert_eq!(status, 200, "{answer}");
        posted += 32;
        match open(&server, "/v1/ws", None).await {
            Ok(mut third) => {
                third.close(None).await.unwrap();
                break started.elapsed();
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 503);
            }
            Err(other) => panic!("unexpected handshake failure: {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stalled socket still holds its slot after 60 s ({posted} metrics posted)"
        );
    };
    eprintln!("stalled socket let go after {freed_after:?} and {posted} metrics posted");

    // The stalled reader, reading at last, finds the connection ended by the server: what the
    // kernel still held, then end of stream (or a reset), never an endless stream.
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
            .await
            .expect("the dropped socket ends")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    assert!(
        drained < 64 << 20,
        "read {drained} bytes from a dropped socket"
    );
    eprintln!("the dropped socket delivered {drained} buffered bytes, then ended");

    // The healthy reader got every metric, in order, while the other one stalled.
    server.stop().await;
    let values = reader.await.unwrap();
    assert_eq!(values, (0..posted).collect::<Vec<_>>());
}

async fn upgrades_over_the_cap_get_503_before_the_handshake(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.max_ws_connections = 2;
    let server = TestServer::start_with(config).await;
    // The cap counts both live routes together.
    let mut first = open(&server, "/v1/ws", None).await.expect("1st of 2");
    let _second = open(&server, "/v1/stream", None).await.expect("2nd of 2");
    for path in LIVE_ROUTES {
        let (status, headers, body) = refused(&server, path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("max-ws-connections"));
        assert!(headers.contains_key("retry-after"), "{headers:?}");
    }
    // A closed socket gives its slot back.
    first.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(&server, "/v1/ws", None).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("the slot was not given back: {err}"),
        }
    }
}

async fn foreign_origins_get_403_before_the_handshake(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.allowed_origins = vec!["https://dash.example".to_owned()];
    let server = TestServer::start_with(config).await;
    let own = server.base_url();
    for path in LIVE_ROUTES {
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:1",
            "https://dash.example.evil",
        ] {
            let (status, _, body) = refused(&server, path, Some(origin)).await;
            assert_eq!(status, 403, "{path} from {origin}: {body}");
            assert_eq!(body["code"], "forbidden", "{body}");
            assert!(body["message"].as_str().unwrap().contains(origin), "{body}");
        }
        // The server's own page, the allow-list, and clients that send no Origin.
        for origin in [Some(own.as_str()), Some("https://dash.example"), None] {
            let socket = open(&server, path, origin).await;
            assert!(socket.is_ok(), "{path} from {origin:?}: {:?}", socket.err());
        }
    }
}

async fn a_handshake_over_http_1_0_gets_a_json_4xx(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for path in LIVE_ROUTES {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket
            .write_all(handshake(path, "1.0", server.addr, "").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            socket.read_to_string(&mut response),
        )
        .await
        .expect("an answer, then the connection closes")
        .unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(status, 426, "{path}: {response}");
        let body: Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body["code"], "upgrade_required", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("HTTP/1.1"),
            "{body}"
        );
    }
}

async fn an_oversized_message_closes_with_1009(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for path in LIVE_ROUTES {
        let mut socket = open(&server, path, None).await.unwrap();
        // A message at the limit is fine (and ignored)...
        socket
            .send(Message::Binary(vec![0u8; 64 * 1024].into()))
            .await
            .unwrap();
        // ...one byte more is not.
        socket
            .send(Message::Text("x".repeat(64 * 1024 + 1).into()))
            .await
            .unwrap();
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("an answer within 10 s")
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("{path}: expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(close.expect("a close code").code, CloseCode::Size, "{path}");
    }
}
