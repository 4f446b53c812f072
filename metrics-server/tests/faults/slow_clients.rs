//! Slow and stalled HTTP clients are cut off on time (issue 8, defect 3): a slowloris client
//! sending its headers a byte at a time, a body that stops short of its `Content-Length`, an
//! idle keep-alive connection, a client that stops reading its answer. The server runs with
//! short configured timeouts (hundreds of milliseconds); each test waits for the close with a
//! bound well under the timeouts that must not be the ones firing.
//!
//! These are transport tests: they never touch what the database stores, so they run on SQLite
//! only.
//!
//! ```text
//! cargo test -p metrics-server --test faults slow_clients
//! ```

use std::time::{Duration, Instant};

use futures::StreamExt;
use metrics_server::Config;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    common::{Backend, TestDb, TestServer},
    raw::{closed_within, connect, read_response, HEALTHZ},
};

/// A server with every transport timeout long, but for the ones a test sets.
async fn server_with(db: &TestDb, set: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = db.config();
    config.header_timeout = Duration::from_secs(60);
    config.body_timeout = Duration::from_secs(60);
    config.idle_timeout = Duration::from_secs(60);
    set(&mut config);
    TestServer::start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_closed_at_the_header_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| c.header_timeout = Duration::from_millis(300)).await;

    // 50 clients, each sending its request head a byte every 50 ms: the head would take seconds.
    let head =
        "POST /v1/metrics HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nX-Slow: ";
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut stream = connect(addr).await;
                let started = Instant::now();
                for byte in head.bytes().chain(std::iter::repeat(b'a')).take(2000) {
                    if stream.write_all(&[byte]).await.is_err() {
                        break; // the server closed the connection under us
                    }
                    if closed_within(&mut stream, Duration::from_millis(50)).await {
                        break;
                    }
                }
                started.elapsed()
            })
        })
        .collect();

    // Meanwhile the server serves everyone else.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);

    for client in clients {
        let held = client.await.unwrap();
        assert!(
            held < Duration::from_secs(5),
            "a slowloris client was held {held:?} with a 300 ms header timeout"
        );
        assert!(
            held >= Duration::from_millis(250),
            "closed after {held:?}, before the header timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| c.header_timeout = Duration::from_millis(300)).await;
    let mut silent = connect(server.addr).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_short_of_its_length_gets_408_at_the_body_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| c.body_timeout = Duration::from_millis(300)).await;

    let mut stream = connect(server.addr).await;
    let body = &br#"{"name":"slow","value":1,"ts":"2016-01-01"}"#[..40]; // of the 100 declared
    stream
        .write_all(
            b"POST /v1/metrics HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();

    let response = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer within 5 s with a 300 ms body timeout");
    assert_eq!(response.status, 408);
    let answer = response.json();
    assert_eq!(answer["code"], "request_timeout", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("body"),
        "{answer}"
    );
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    assert!(server.query("").await.is_empty(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_at_the_idle_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| c.idle_timeout = Duration::from_millis(300)).await;

    let mut stream = connect(server.addr).await;
    // Two requests on one connection: keep-alive works...
    for _ in 0..2 {
        stream.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(response.status, 200);
    }
    // ...and once idle, the connection is closed: well before the 60 s header timeout.
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_and_header_timeouts_spare_websockets() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| {
        c.idle_timeout = Duration::from_millis(200);
        c.header_timeout = Duration::from_millis(200);
    })
    .await;

    let (mut socket, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();
    // The socket outlives several idle and header timeouts without a byte from the client...
    tokio::time::sleep(Duration::from_millis(800)).await;
    server
        .post_ok(&json!({"name": "live", "value": 1, "ts": "2016-01-01"}))
        .await;
    // ...and still delivers.
    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a frame")
        .expect("an open socket")
        .unwrap();
    let Message::Text(text) = frame else {
        panic!("a text frame, got {frame:?}")
    };
    assert!(text.contains("\"live\""), "{text}");
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_dropped_at_the_write_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    // About 8 MiB of answer: more than the kernel buffers on both ends of a loopback socket
    // with a small receive buffer.
    let writer = TestServer::start(&db).await;
    let pad = "p".repeat(1000);
    for batch in 0..4 {
        let metrics: Vec<_> = (0..2000)
            .map(|i| json!({"name": "big", "value": batch * 2000 + i, "ts": "2016-01-01", "pad": pad}))
            .collect();
        writer.post_ok(&Value::Array(metrics)).await;
    }
    writer.stop().await;
    // A single place under the cap, so that whether the stalled client still holds it shows.
    let server = server_with(&db, |c| {
        c.write_timeout = Duration::from_millis(300);
        c.max_connections = 1;
    })
    .await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /v1/metrics?name=big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();

    // The stalled reader holds the only place under the cap until the server drops it; it is
    // never read from, so only the write timeout can free the place.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = connect(server.addr).await;
        probe.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let response = read_response(&mut probe, Duration::from_secs(5))
            .await
            .expect("an answer");
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{response:?}");
        assert!(
            Instant::now() < deadline,
            "a client that reads nothing still holds its connection after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_up_a_shutdown_past_its_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, |c| c.shutdown_timeout = Duration::from_millis(300)).await;

    // A POST whose body stops short (in flight, waiting for its body), a client halfway through
    // its headers, and one that sends nothing: with 60 s timeouts, none ends by itself.
    let mut short_body = connect(server.addr).await;
    short_body
        .write_all(
            b"POST /v1/metrics HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    let mut half_head = connect(server.addr).await;
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut silent = connect(server.addr).await;
    // Accepted in order: once this is answered, the three above are being served.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);

    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stopped within 5 s with a 300 ms shutdown timeout");
    for stream in [&mut short_body, &mut half_head, &mut silent] {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
}
