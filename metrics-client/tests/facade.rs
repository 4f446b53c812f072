//! The `metrics` facade recorder (feature `facade`): values recorded with `counter!`, `gauge!`
//! and `histogram!` arrive at a real server, sampled on the interval and on close, labels as
//! extra keys, histograms as `.count`, `.sum` and quantiles.
//!
//! `cargo test -p metrics-client --features facade --test facade` (both backends; `sqlite::` or
//! `postgres::` to filter one). `cargo test --workspace` runs it too: the examples crate turns
//! the feature on.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use metrics_client::{facade::FacadeBuilder, Client, Metric, MetricValue};

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(recorded_values_arrive_sampled_with_labels_and_histogram_forms);

fn number(metric: &Metric) -> f64 {
    match metric.value {
        MetricValue::Number(n) => n,
        ref other => panic!("expected a number, got {other:?}"),
    }
}

/// Waits (up to 30 s) until a stored metric named `name` satisfies `found`; returns it.
async fn wait_for(client: &Client, name: &str, found: impl Fn(&Metric) -> bool) -> Metric {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.query().name(name).await.unwrap();
        if let Some(metric) = metrics.into_iter().find(|m| found(m)) {
            return metric;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {name} as expected within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has(metric: &Metric, key: &str, value: &str) -> bool {
    metric.extra.get(key).and_then(|v| v.as_str()) == Some(value)
}

async fn recorded_values_arrive_sampled_with_labels_and_histogram_forms(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    let (recorder, handle) = FacadeBuilder::new(&client)
        .interval(Duration::from_millis(50))
        .global_label("service", "checkout")
        .quantiles(&[0.0, 0.5, 0.99, 1.0])
        .batching(client.recorder().interval(Duration::from_millis(20)))
        .build();

    // The application's code: the facade's macros only.
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("requests", "route" => "/").increment(3);
        metrics::counter!("requests", "route" => "/health").increment(1);
        metrics::gauge!("queue.depth").set(7.5);
        for i in 1..=100 {
            metrics::histogram!("latency.ms", "route" => "/").record(f64::from(i));
        }
    });

    // Sampled on the interval, with no flush: labels and global labels as extra keys. (A
    // sample may land between a series' registration and its first value: wait for the value.)
    let root = wait_for(&client, "requests", |m| {
        has(m, "route", "/") && number(m) == 3.0
    })
    .await;
    assert!(has(&root, "service", "checkout"), "{root:?}");
    assert_eq!(
        root.extra.len(),
        2,
        "the label and the global label: {root:?}"
    );
    wait_for(&client, "requests", |m| {
        has(m, "route", "/health") && number(m) == 1.0
    })
    .await;
    let gauge = wait_for(&client, "queue.depth", |m| number(m) == 7.5).await;
    assert_eq!(gauge.extra.len(), 1, "only the global label: {gauge:?}");

    // Counters are totals: a later sample carries the new total.
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("requests", "route" => "/").increment(2);
        metrics::gauge!("queue.depth").decrement(2.5);
    });
    wait_for(&client, "requests", |m| {
        has(m, "route", "/") && number(m) == 5.0
    })
    .await;
    wait_for(&client, "queue.depth", |m| number(m) == 5.0).await;

    // Histograms: the count and sum of every sample, and the quantiles of each interval.
    let count = wait_for(&client, "latency.ms.count", |m| number(m) == 100.0).await;
    assert!(has(&count, "route", "/"));
    wait_for(&client, "latency.ms.sum", |m| number(m) == 5050.0).await;
    // The extreme quantiles are exact whichever interval each sample fell in (the unit tests
    // check the others on known windows); every quantile is one of the samples.
    let quantile =
        |q: &'static str, v: f64| move |m: &Metric| has(m, "quantile", q) && number(m) == v;
    for (q, v) in [("0", 1.0), ("1", 100.0)] {
        let m = wait_for(&client, "latency.ms", quantile(q, v)).await;
        assert!(
            has(&m, "route", "/") && has(&m, "service", "checkout"),
            "{m:?}"
        );
    }
    for q in ["0.5", "0.99"] {
        let m = wait_for(&client, "latency.ms", move |m| has(m, "quantile", q)).await;
        assert!(
            (1.0..=100.0).contains(&number(&m)) && number(&m).fract() == 0.0,
            "{m:?}"
        );
    }

    // Close takes a last sample and delivers it before returning.
    metrics::with_local_recorder(&recorder, || {
        for i in 1000..1010 {
            metrics::histogram!("latency.ms", "route" => "/").record(f64::from(i));
        }
        metrics::counter!("requests", "route" => "/").increment(10);
    });
    let undelivered = handle.close().await.unwrap();
    assert!(undelivered.is_empty(), "{undelivered:?}");
    let stored = |name: &'static str| {
        let client = client.clone();
        async move { client.query().name(name).await.unwrap() }
    };
    assert!(stored("requests")
        .await
        .iter()
        .any(|m| has(m, "route", "/") && number(m) == 15.0));
    assert!(stored("latency.ms.count")
        .await
        .iter()
        .any(|m| number(m) == 110.0));
    assert!(stored("latency.ms.sum")
        .await
        .iter()
        .any(|m| number(m) == 15095.0));
    let latency = stored("latency.ms").await;
    // The first 100 samples were all sent before these were recorded: the windows holding the
    // new ones hold only them.
    assert!(latency
        .iter()
        .any(|m| has(m, "quantile", "0") && number(m) >= 1000.0));
    assert!(latency
        .iter()
        .any(|m| has(m, "quantile", "1") && number(m) == 1009.0));
    assert!(latency.iter().all(|m| number(m) <= 1009.0));
    server.stop().await;
}
