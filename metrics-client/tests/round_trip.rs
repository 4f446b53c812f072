//! Records and queries through the client: every value type, extra keys, the original README's
//! queries through the builder, streamed queries, errors, and batches over the server's limit.
//!
//! `cargo test -p metrics-client --test round_trip` (both backends; `sqlite::` or `postgres::`
//! to filter one).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use chrono::{TimeZone, Utc};
use futures::TryStreamExt;
use metrics_client::{Error, Metric, MetricValue, Timestamp};
use serde_json::json;

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(
    every_value_type_and_extra_keys_round_trip,
    the_original_queries_through_the_builder,
    bad_metrics_are_refused_before_sending_and_server_errors_are_typed,
    a_batch_over_the_body_limit_goes_through_whole,
    a_limit_lowered_by_a_restart_is_read_again,
);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn every_value_type_and_extra_keys_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    let noon = Utc.with_ymd_and_hms(2016, 1, 1, 12, 0, 0).unwrap();

    client.record("int", 42, noon).await.unwrap();
    client
        .record("uint", u64::from(u32::MAX), noon)
        .await
        .unwrap();
    client.record("float", -0.25_f32, noon).await.unwrap();
    client.record("string", "degraded", noon).await.unwrap();
    client.record("bool", false, noon).await.unwrap();
    let tagged = Metric::new("tagged", 1.5)
        .at(ts("2016-01-01T14:00:00+02:00"))
        .with("host", "web-1")
        .with("cores", 8)
        .with("labels", json!({"dc": "eu", "racks": [1, 2]}))
        .with("spare", serde_json::Value::Null);
    client.record_metric(tagged.clone()).await.unwrap();

    let all = client.query().send().await.unwrap();
    assert_eq!(all.len(), 6);
    let by_name = |n: &str| all.iter().find(|m| m.name == n).unwrap().clone();
    assert_eq!(by_name("int").value, MetricValue::Number(42.0));
    assert_eq!(by_name("uint").value, MetricValue::Number(4_294_967_295.0));
    assert_eq!(by_name("float").value, MetricValue::Number(-0.25));
    assert_eq!(
        by_name("string").value,
        MetricValue::String("degraded".into())
    );
    assert_eq!(by_name("bool").value, MetricValue::Bool(false));
    assert_eq!(by_name("int").ts.to_utc(), noon);
    // Extra keys and the timestamp's offset come back as sent.
    let back = by_name("tagged");
    assert_eq!(back, tagged);
    assert_eq!(back.ts.to_string(), "2016-01-01T14:00:00+02:00");
    assert_eq!(back.extra["labels"]["racks"][1], 2);
}

/// The original README's examples: by name, by range, exact instant, combinations.
async fn the_original_queries_through_the_builder(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    // The original test's 100 sample metrics.
    let names = ["foo", "bar", "baz"];
    let days = ["2016-01-01", "2016-01-02", "2016-01-03", "2016-01-04"];
    let batch = (0..100).map(|i| Metric::new(names[i % 3], (i % 4) as i64 + 1).at(ts(days[i % 4])));
    assert_eq!(client.record_batch(batch).await.unwrap(), 100);

    let foos = client.query().name("foo").await.unwrap();
    assert_eq!(foos.len(), 34);
    assert!(foos.iter().all(|m| m.name == "foo"));
    assert!(foos.windows(2).all(|w| w[0].ts <= w[1].ts), "ordered by ts");

    let foo_or_bar = client.query().name("foo").name("bar").await.unwrap();
    assert_eq!(foo_or_bar.len(), 67);

    // Inclusive bounds: the 2nd and 3rd of January.
    let range = client
        .query()
        .start(ts("2016-01-02"))
        .end(ts("2016-01-03"))
        .await
        .unwrap();
    assert_eq!(range.len(), 50);

    let exact = client
        .query()
        .name("baz")
        .start(ts("2016-01-04"))
        .end(ts("2016-01-04"))
        .await
        .unwrap();
    assert!(!exact.is_empty());
    assert!(exact
        .iter()
        .all(|m| m.name == "baz" && m.ts == ts("2016-01-04")));

    // The streamed form yields the same metrics in the same order.
    let streamed: Vec<Metric> = client
        .query()
        .name("foo")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, foos);
    assert!(client.query().name("nope").await.unwrap().is_empty());
}

async fn bad_metrics_are_refused_before_sending_and_server_errors_are_typed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();

    for bad in [f64::NAN, f64::INFINITY] {
        let err = client.record("cpu", bad, Utc::now()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidMetric(_)), "{err}");
    }
    // One bad metric refuses the whole batch before anything is sent.
    let batch = vec![Metric::new("ok", 1), Metric::new("bad\nname", 2)];
    assert!(matches!(
        client.record_batch(batch).await,
        Err(Error::InvalidMetric(_))
    ));
    assert!(client.query().await.unwrap().is_empty(), "nothing stored");

    // The server's JSON error body becomes Error::Api.
    let err = client
        .query()
        .start(ts("2016-02-01"))
        .end(ts("2016-01-01"))
        .await
        .unwrap_err();
    match err {
        Error::Api {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 400);
            assert_eq!(code, "invalid_range");
            assert!(message.contains("sts"), "{message}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn a_batch_over_the_body_limit_goes_through_whole(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.body_limit = 64 << 10;
    let server = TestServer::start_with(config).await;
    let client = server.client();
    let limits = client.limits().await.unwrap();
    assert_eq!(limits.max_body_bytes, 64 << 10);

    let batch: Vec<Metric> = (0..5000)
        .map(|i| {
            Metric::new("bulk", i)
                .at(ts("2016-01-01"))
                .with("host", format!("web-{}", i % 7))
        })
        .collect();
    let size = serde_json::to_vec(&batch).unwrap().len();
    assert!(
        size > 4 * (64 << 10),
        "the batch ({size} bytes) is several times the limit"
    );
    assert_eq!(client.record_batch(batch.clone()).await.unwrap(), 5000);

    let back = client.query().name("bulk").await.unwrap();
    assert_eq!(back, batch, "every metric once, in order");
}

async fn a_limit_lowered_by_a_restart_is_read_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let addr = server.addr;
    // Two clients that both remember the server's default limit.
    let client = server.client();
    let recorder_client = server.client();
    for c in [&client, &recorder_client] {
        assert_eq!(c.limits().await.unwrap().max_body_bytes, 16 << 20);
    }
    server.stop().await;
    // Back with a much smaller limit than they remember.
    let mut config = db.config();
    config.body_limit = 16 << 10;
    let server = TestServer::start_at(config, addr).await;

    let batch: Vec<Metric> = (0..2000)
        .map(|i| Metric::new("shrunk", i).at(ts("2016-01-01")))
        .collect();
    assert_eq!(client.record_batch(batch.clone()).await.unwrap(), 2000);
    assert_eq!(client.limits().await.unwrap().max_body_bytes, 16 << 10);

    let recorder = recorder_client.recorder().max_batch(5000).build();
    for m in &batch {
        recorder.record(m.clone()).unwrap();
    }
    assert!(recorder.close().await.unwrap().is_empty());
    assert_eq!(client.query().name("shrunk").await.unwrap().len(), 4000);
    server.stop().await;
}
