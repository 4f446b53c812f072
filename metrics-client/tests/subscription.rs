//! Subscriptions: live from now with name filters, from a cursor, from a timestamp, and through
//! a server restart without a gap or a duplicate.
//!
//! `cargo test -p metrics-client --test subscription` (both backends; `sqlite::` or `postgres::`
//! to filter one).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use metrics_client::{Metric, MetricValue, Subscription, Timestamp};

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(
    live_metrics_arrive_filtered_by_name,
    a_subscription_lives_through_a_server_restart,
    resumes_from_a_cursor_and_starts_from_a_timestamp,
);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn next(sub: &mut Subscription) -> Metric {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a metric within 30 s")
        .expect("the subscription is open")
        .expect("a metric, not an error")
}

fn value(metric: &Metric) -> i64 {
    match metric.value {
        MetricValue::Number(n) => n as i64,
        ref other => panic!("expected a number, got {other:?}"),
    }
}

async fn live_metrics_arrive_filtered_by_name(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    // Stored before the subscription: not part of "from now".
    client.record("cpu", -1, ts("2016-01-01")).await.unwrap();

    let mut sub = client.subscribe().name("cpu").name("mem").await.unwrap();
    for i in 0..10 {
        client.record("disk", i, ts("2016-01-01")).await.unwrap();
        client.record("cpu", i, ts("2016-01-01")).await.unwrap();
    }
    client.record("mem", 99, ts("2016-01-01")).await.unwrap();
    for i in 0..10 {
        let m = next(&mut sub).await;
        assert_eq!((m.name.as_str(), value(&m)), ("cpu", i));
    }
    let m = next(&mut sub).await;
    assert_eq!((m.name.as_str(), value(&m)), ("mem", 99));
}

async fn a_subscription_lives_through_a_server_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let addr = server.addr;
    let client = server.client();
    let mut sub = client.subscribe().name("seq").await.unwrap();

    for i in 0..5 {
        client.record("seq", i, ts("2016-01-01")).await.unwrap();
    }
    for i in 0..5 {
        assert_eq!(value(&next(&mut sub).await), i);
    }

    server.stop().await;
    // While it is down the subscription keeps trying; give it a few failed attempts.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let server = TestServer::start_at(db.config(), addr).await;
    // Posted at once, before the subscription is likely back: must be replayed.
    client
        .record_batch((5..10).map(|i| Metric::new("seq", i).at(ts("2016-01-01"))))
        .await
        .unwrap();
    for i in 5..10 {
        assert_eq!(value(&next(&mut sub).await), i);
    }
    for i in 10..15 {
        client.record("seq", i, ts("2016-01-01")).await.unwrap();
        client.record("other", i, ts("2016-01-01")).await.unwrap();
    }
    // Each exactly once, in order: a duplicate of an earlier one would show up here.
    for i in 10..15 {
        assert_eq!(value(&next(&mut sub).await), i);
    }
    server.stop().await;
}

async fn resumes_from_a_cursor_and_starts_from_a_timestamp(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();

    let mut sub = client.subscribe().await.unwrap();
    client.record("a", 1, ts("2015-06-01")).await.unwrap();
    client.record("a", 2, ts("2016-06-01")).await.unwrap();
    assert_eq!(value(&next(&mut sub).await), 1);
    let cursor = sub.cursor();
    drop(sub);

    // Committed while nobody listened.
    client.record("a", 3, ts("2014-01-01")).await.unwrap();
    let mut resumed = client.subscribe().after(cursor).await.unwrap();
    assert_eq!(value(&next(&mut resumed).await), 2);
    assert_eq!(value(&next(&mut resumed).await), 3);
    client.record("a", 4, ts("2016-01-01")).await.unwrap();
    assert_eq!(value(&next(&mut resumed).await), 4);

    // From a timestamp: the stored metrics at or after it, in storage order, then live ones.
    let mut since = client.subscribe().since(ts("2016-01-01")).await.unwrap();
    assert_eq!(value(&next(&mut since).await), 2);
    assert_eq!(value(&next(&mut since).await), 4);
    client.record("a", 5, ts("2010-01-01")).await.unwrap();
    assert_eq!(value(&next(&mut since).await), 5);
}
