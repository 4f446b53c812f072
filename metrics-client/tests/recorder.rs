//! The batching recorder: delivery through an outage, each metric once; what it cannot deliver
//! is reported by `flush`.
//!
//! `cargo test -p metrics-client --test recorder` (both backends; `sqlite::` or `postgres::` to
//! filter one).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use metrics_client::{Error, Metric, MetricValue, Timestamp};

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(
    delivers_everything_once_the_server_is_back,
    flush_reports_what_could_not_be_delivered,
    a_batch_refused_with_a_4xx_is_reported_not_retried,
);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn delivers_everything_once_the_server_is_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let addr = server.addr;
    let client = server.client();
    let recorder = client
        .recorder()
        .max_batch(50)
        .interval(Duration::from_millis(20))
        .retry_for(Duration::from_secs(60))
        .build();

    for i in 0..100 {
        recorder
            .record(Metric::new("rec", i).at(ts("2016-01-01")))
            .unwrap();
    }
    server.stop().await;
    for i in 100..300 {
        recorder
            .record(Metric::new("rec", i).at(ts("2016-01-01")))
            .unwrap();
    }
    // Down for a while: the recorder retries meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = TestServer::start_at(db.config(), addr).await;
    let undelivered = recorder.flush().await.unwrap();
    assert!(undelivered.is_empty(), "{undelivered:?}");

    let mut values: Vec<i64> = client
        .query()
        .name("rec")
        .await
        .unwrap()
        .iter()
        .map(|m| match m.value {
            MetricValue::Number(n) => n as i64,
            _ => panic!("a number"),
        })
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..300).collect::<Vec<_>>(),
        "each metric exactly once"
    );
    assert!(recorder.close().await.unwrap().is_empty());
    server.stop().await;
}

async fn flush_reports_what_could_not_be_delivered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let addr = server.addr;
    let client = server.client();
    let recorder = client
        .recorder()
        .max_batch(8)
        .retry_for(Duration::from_millis(500))
        .build();
    // Learn the limits while the server is up, then take it down.
    client.limits().await.unwrap();
    server.stop().await;

    for i in 0..20 {
        recorder
            .record(Metric::new("lost", i).at(ts("2016-01-01")))
            .unwrap();
    }
    let undelivered = recorder.flush().await.unwrap();
    let lost: usize = undelivered.iter().map(|u| u.metrics.len()).sum();
    assert_eq!(lost, 20);
    // Refused connections, or retry_for ran out before the last batch could be tried.
    assert!(undelivered.iter().all(|u| matches!(
        u.error,
        Error::Transport(_) | Error::RetryExpired { .. }
    ) && u.error.is_retryable()));
    // Reported once: a second flush has nothing more to say.
    assert!(recorder.flush().await.unwrap().is_empty());

    // Invalid metrics are refused on the spot, never buffered.
    assert!(matches!(
        recorder.record(Metric::new("bad", f64::NAN)),
        Err(Error::InvalidMetric(_))
    ));

    let server = TestServer::start_at(db.config(), addr).await;
    for i in 0..5 {
        recorder
            .record(Metric::new("kept", i).at(ts("2016-01-01")))
            .unwrap();
    }
    assert!(recorder.close().await.unwrap().is_empty());
    assert!(client.query().name("lost").await.unwrap().is_empty());
    assert_eq!(client.query().name("kept").await.unwrap().len(), 5);
    server.stop().await;
}

async fn a_batch_refused_with_a_4xx_is_reported_not_retried(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    // Retrying for an hour: were a 400 retried, the flush below would not end in time.
    // An hour-long interval: only the flush sends, so both metrics travel in one batch.
    let recorder = client
        .recorder()
        .max_batch(1000)
        .interval(Duration::from_secs(3600))
        .retry_for(Duration::from_secs(3600))
        .build();
    // The server takes four-digit years only; the client leaves that judgement to it.
    let far = chrono::NaiveDate::from_ymd_opt(12_000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    recorder
        .record(Metric::new("ok", 1).at(ts("2016-01-01")))
        .unwrap();
    recorder.record(Metric::new("too.late", 2).at(far)).unwrap();
    let undelivered = tokio::time::timeout(Duration::from_secs(30), recorder.flush())
        .await
        .expect("a 400 is not retried")
        .unwrap();
    assert_eq!(undelivered.len(), 1);
    assert_eq!(
        undelivered[0].metrics.len(),
        2,
        "the batch is all or nothing"
    );
    match &undelivered[0].error {
        Error::Api { status, code, .. } => {
            assert_eq!((status.as_u16(), code.as_str()), (400, "invalid_timestamp"));
        }
        other => panic!("expected the server's 400, got {other:?}"),
    }
    assert!(client.query().await.unwrap().is_empty());
    server.stop().await;
}
