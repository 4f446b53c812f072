//! The recorder while the server is away: `retry_for` bounds every flush and close whatever the
//! server does (refuses, resets, or accepts and never answers), every metric is handed back, and
//! a background task that died is reported as such, never as "all delivered".
//!
//! `cargo test -p metrics-client --test recorder_outage` (no database: these servers store
//! nothing). Time is tokio's paused, virtual clock: the bounds are checked on it, so the tests
//! take milliseconds of real time.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use metrics_client::{Client, Error, Metric, MetricValue, Recorder, Undelivered};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

/// Time to answer on top of `retry_for`: the bound is `retry_for`, not `retry_for` per batch.
const MARGIN: Duration = Duration::from_millis(100);

/// The address of a server that is not there: connections are refused.
async fn refusing() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A server that accepts each connection and resets it at once.
async fn resetting() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_zero_linger();
        }
    });
    (url, server)
}

/// A server that accepts connections and never answers (a hung process, a blackholing proxy).
async fn silent() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, server)
}

/// The count in a [`Error::RecorderStopped`], failing on anything else.
fn stopped<T>(result: metrics_client::Result<T>) -> u64 {
    match result {
        Err(Error::RecorderStopped { unconfirmed }) => unconfirmed,
        Err(other) => panic!("expected RecorderStopped, got {other:?}"),
        Ok(_) => panic!("a dead task taken for a live one"),
    }
}

/// Records `n` metrics valued 0..n.
fn record(recorder: &Recorder, n: i64) {
    for i in 0..n {
        recorder.record(Metric::new("outage", i)).unwrap();
    }
}

/// The values handed back, sorted, after checking every entry's error may pass later.
fn values(undelivered: &[Undelivered]) -> Vec<i64> {
    let mut values: Vec<i64> = undelivered
        .iter()
        .inspect(|u| assert!(u.error.is_retryable(), "{:?}", u.error))
        .flat_map(|u| &u.metrics)
        .map(|m| match m.value {
            MetricValue::Number(n) => n as i64,
            ref other => panic!("a number, got {other:?}"),
        })
        .collect();
    values.sort_unstable();
    values
}

/// Records 5,000 metrics with `retry_for`, then checks that a flush returns within it on the
/// virtual clock and hands back each metric exactly once.
async fn flush_is_bounded(url: &str, retry_for: Option<Duration>) {
    let client = Client::new(url).unwrap();
    let mut builder = client.recorder();
    if let Some(retry_for) = retry_for {
        builder = builder.retry_for(retry_for);
    }
    let retry_for = retry_for.unwrap_or(Duration::from_secs(60)); // the documented default
    let recorder = builder.build();
    record(&recorder, 5_000);

    let started = Instant::now();
    let undelivered = tokio::time::timeout(retry_for * 10, recorder.flush())
        .await
        .expect("flush returned")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took <= retry_for + MARGIN,
        "flush took {took:?} with retry_for {retry_for:?}"
    );
    assert_eq!(values(&undelivered), (0..5_000).collect::<Vec<_>>());

    // Reported once; close answers at once when nothing waits.
    let started = Instant::now();
    assert!(recorder.close().await.unwrap().is_empty());
    assert!(started.elapsed() <= MARGIN);
}

#[tokio::test(start_paused = true)]
async fn flush_returns_within_retry_for_when_connections_are_refused() {
    flush_is_bounded(&refusing().await, Some(Duration::from_secs(2))).await;
}

#[tokio::test(start_paused = true)]
async fn flush_returns_within_retry_for_when_connections_are_reset() {
    let (url, server) = resetting().await;
    flush_is_bounded(&url, Some(Duration::from_secs(2))).await;
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn flush_returns_within_the_default_retry_for_when_the_server_never_answers() {
    // The client has no request timeout of its own: only retry_for cuts the attempts off.
    let (url, server) = silent().await;
    flush_is_bounded(&url, None).await;
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn close_returns_within_retry_for_and_hands_back_every_metric() {
    let client = Client::new(&refusing().await).unwrap();
    let retry_for = Duration::from_secs(2);
    let recorder = client
        .recorder()
        .max_batch(100)
        .interval(Duration::from_millis(10))
        .retry_for(retry_for)
        .build();
    record(&recorder, 1_000);
    // Batches already retrying in the background share the bound: close waits for none of
    // them longer than retry_for.
    tokio::time::sleep(retry_for / 2).await;

    let started = Instant::now();
    let undelivered = recorder.close().await.unwrap();
    let took = started.elapsed();
    assert!(took <= retry_for + MARGIN, "close took {took:?}");
    assert_eq!(values(&undelivered), (0..1_000).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn batches_that_come_due_after_the_deadline_are_handed_back_unsent() {
    let (url, server) = silent().await;
    let client = Client::new(&url).unwrap();
    let retry_for = Duration::from_secs(1);
    let recorder = client.recorder().max_batch(10).retry_for(retry_for).build();
    record(&recorder, 50);
    let undelivered = tokio::time::timeout(retry_for * 10, recorder.flush())
        .await
        .expect("flush returned")
        .unwrap();
    assert_eq!(values(&undelivered), (0..50).collect::<Vec<_>>());
    // The first batch was tried until the deadline; the other four were not tried at all.
    assert!(undelivered
        .iter()
        .all(|u| matches!(u.error, Error::RetryExpired { retry_for: r } if r == retry_for)));
    server.abort();
}

#[test]
fn a_task_that_died_with_its_runtime_is_reported_not_taken_for_all_delivered() {
    let url = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(refusing());
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let recorder = first.block_on(async {
        let recorder = Client::new(&url).unwrap().recorder().max_batch(10).build();
        record(&recorder, 25);
        // Let the task take the first batch and start retrying it.
        tokio::task::yield_now().await;
        recorder
    });
    // The runtime shuts down, and aborts the task with it.
    drop(first);

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        assert_eq!(stopped(recorder.record(Metric::new("outage", 25))), 25);
        assert_eq!(stopped(recorder.flush().await), 25);
        let err = recorder.close().await.unwrap_err();
        assert!(err.to_string().contains("25"), "{err}");
        assert_eq!(stopped::<()>(Err(err)), 25);
    });
}
