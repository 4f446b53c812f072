//! The query engine through the client: tag and selector filters, limit and order, paging by
//! cursor (with writes landing meanwhile), delete by filter, tag-filtered subscriptions (live
//! and replayed), and the catalog of names and tags; against the real server on both backends.
//!
//! `cargo test -p metrics-client --test query_engine` (both backends; `sqlite::` or `postgres::`
//! to filter one). Needs the server side of issue 9 (tags, paging, delete: the `store` and
//! `http` branches, and `streams` for the subscription test).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::{collections::HashSet, time::Duration};

use chrono::{TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use metrics_client::{Client, Error, Metric, MetricValue, Subscription, Timestamp};

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(
    tag_and_selector_filters_select_exactly,
    limit_order_and_cursor_pages,
    pages_never_skip_or_repeat_while_writes_land,
    delete_by_filter_answers_the_count_and_refuses_an_empty_filter,
    subscriptions_filter_by_tag_live_and_replayed,
    the_catalog_lists_names_tag_keys_and_values,
);

/// `2016-01-01T00:00:00Z` plus `secs` seconds.
fn at(secs: i64) -> Timestamp {
    (Utc.with_ymd_and_hms(2016, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)).into()
}

fn value(metric: &Metric) -> i64 {
    match metric.value {
        MetricValue::Number(n) => n as i64,
        ref other => panic!("expected a number, got {other:?}"),
    }
}

fn values(metrics: &[Metric]) -> Vec<i64> {
    metrics.iter().map(value).collect()
}

/// Expects the server's JSON error with this status and code, its message naming `param`.
fn assert_refused(result: Result<impl std::fmt::Debug, Error>, code: &str, param: &str) {
    match result {
        Err(Error::Api {
            status,
            code: got,
            message,
        }) => {
            assert_eq!(status.as_u16(), 400, "{got}: {message}");
            assert_eq!(got, code, "{message}");
            assert!(message.contains(param), "{message:?} should name {param}");
        }
        other => panic!("expected a 400 {code}, got {other:?}"),
    }
}

/// Six cpu metrics with tags of every kind, one mem metric; values 0..=6 in `ts` order.
async fn seed_tagged(client: &Client) {
    let batch = vec![
        Metric::new("cpu", 0)
            .at(at(0))
            .with("host", "web-1")
            .with("region", "eu")
            .with("port", 80),
        Metric::new("cpu", 1)
            .at(at(1))
            .with("host", "web-2")
            .with("region", "eu")
            .with("port", "80"),
        Metric::new("cpu", 2)
            .at(at(2))
            .with("host", "web-3")
            .with("region", "us")
            .with("canary", true),
        Metric::new("cpu", 3)
            .at(at(3))
            .with("host", "db-1")
            .with("region", "eu"),
        Metric::new("cpu", 4)
            .at(at(4))
            .with("host", "web-1")
            .with("region", "us"),
        Metric::new("cpu", 5).at(at(5)),
        Metric::new("mem", 6)
            .at(at(6))
            .with("host", "web-1")
            .with("region", "eu"),
    ];
    assert_eq!(client.record_batch(batch).await.unwrap(), 7);
}

async fn tag_and_selector_filters_select_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    seed_tagged(&client).await;
    let q = || client.query();

    // One key; the same key twice is any of; different keys are all of.
    assert_eq!(values(&q().tag("host", "web-1").await.unwrap()), [0, 4, 6]);
    assert_eq!(
        values(
            &q().name("cpu")
                .tag("host", "web-1")
                .tag("host", "db-1")
                .await
                .unwrap()
        ),
        [0, 3, 4]
    );
    assert_eq!(
        values(&q().tag("host", "web-1").tag("region", "eu").await.unwrap()),
        [0, 6]
    );
    // Compared as text: 80 and "80" alike; a boolean by its JSON text.
    assert_eq!(values(&q().tag("port", 80).await.unwrap()), [0, 1]);
    assert_eq!(values(&q().tag("port", "80").await.unwrap()), [0, 1]);
    assert_eq!(values(&q().tag("canary", true).await.unwrap()), [2]);
    assert!(q().tag("host", "nowhere").await.unwrap().is_empty());

    // Selectors: all four operators, anchored regexes, `=""` for absent, a leading name.
    assert_eq!(
        values(&q().matching(r#"{host=~"web-.*"}"#).await.unwrap()),
        [0, 1, 2, 4, 6]
    );
    assert!(
        q().matching(r#"{host=~"web"}"#).await.unwrap().is_empty(),
        "anchored: `web` alone matches no host"
    );
    assert_eq!(
        values(&q().matching(r#"cpu{host!~"web-.*"}"#).await.unwrap()),
        [3, 5]
    );
    assert_eq!(
        values(&q().matching(r#"cpu{region!="eu", host=""}"#).await.unwrap()),
        [5]
    );
    assert_eq!(
        values(
            &q().matching(r#"{region="eu"}"#)
                .matching(r#"{host!="web-1"}"#)
                .await
                .unwrap()
        ),
        [1, 3]
    );
    // Filters combine with the range and names, and with tags.
    assert_eq!(
        values(
            &q().name("cpu")
                .start(at(1))
                .end(at(4))
                .tag("region", "eu")
                .matching(r#"{host=~"web-.*|db-.*"}"#)
                .await
                .unwrap()
        ),
        [1, 3]
    );
    // A streamed query takes the same filters.
    let streamed: Vec<Metric> = q()
        .tag("region", "us")
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(values(&streamed), [2, 4]);
    assert_eq!(
        streamed[0].extra["canary"], true,
        "extra keys come back as sent"
    );

    // Bad input: a 400 naming the parameter.
    assert_refused(
        q().matching(r#"{host=~"("}"#).await,
        "invalid_param",
        "match",
    );
    assert_refused(q().matching("{host=web-1}").await, "invalid_param", "match");
    assert_refused(q().limit(0).await, "invalid_param", "limit");
    assert_refused(
        q().limit(2).cursor("not-a-cursor").await,
        "invalid_param",
        "cursor",
    );
}

async fn limit_order_and_cursor_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    // 25 metrics at distinct times, and 5 more sharing one instant (ties go by storage order).
    let batch = (0..25)
        .map(|i| Metric::new("seq", i).at(at(i)).with("host", "web-1"))
        .chain((25..30).map(|i| Metric::new("seq", i).at(at(25)).with("host", "web-1")))
        .chain((0..10).map(|i| Metric::new("other", i).at(at(i))));
    assert_eq!(client.record_batch(batch).await.unwrap(), 40);
    let seq = || client.query().name("seq");
    let all: Vec<i64> = (0..30).collect();
    let reversed: Vec<i64> = all.iter().rev().copied().collect();

    assert_eq!(values(&seq().limit(10).await.unwrap()), all[..10]);
    assert_eq!(
        values(&seq().descending().limit(3).await.unwrap()),
        [29, 28, 27]
    );
    assert_eq!(values(&seq().descending().await.unwrap()), reversed);
    assert_eq!(values(&seq().limit(1_000_000).await.unwrap()), all);

    // Pages of 7: 7, 7, 7, 7, 2; each with the cursor of the next but the last.
    let pages: Vec<_> = seq()
        .tag("host", "web-1")
        .limit(7)
        .pages()
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.metrics.len()).collect();
    assert_eq!(sizes, [7, 7, 7, 7, 2]);
    assert!(pages[..4].iter().all(|p| p.cursor.is_some()));
    assert_eq!(pages[4].cursor, None);
    let paged: Vec<i64> = pages.iter().flat_map(|p| values(&p.metrics)).collect();
    assert_eq!(paged, all);

    // A page boundary that falls on the end: no empty page after it.
    let pages: Vec<_> = seq().limit(10).pages().try_collect().await.unwrap();
    assert_eq!(
        pages.iter().map(|p| p.metrics.len()).collect::<Vec<_>>(),
        [10, 10, 10]
    );

    // Newest first, through the ties.
    let paged: Vec<i64> = seq()
        .descending()
        .limit(4)
        .pages()
        .map_ok(|p| values(&p.metrics))
        .try_concat()
        .await
        .unwrap();
    assert_eq!(paged, reversed);

    // The default page size holds everything here: one page.
    let pages: Vec<_> = seq().pages().try_collect().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(values(&pages[0].metrics), all);

    // A saved cursor carries on where its page ended, as pages or as a plain query.
    let first = seq().limit(12).pages().next().await.unwrap().unwrap();
    let saved = first.cursor.clone().unwrap();
    assert_eq!(
        values(&seq().limit(12).cursor(saved.clone()).await.unwrap()),
        all[12..24]
    );
    let rest: Vec<i64> = seq()
        .limit(5)
        .cursor(saved)
        .pages()
        .map_ok(|p| values(&p.metrics))
        .try_concat()
        .await
        .unwrap();
    assert_eq!(rest, all[12..]);

    // Nothing matches: no page at all.
    let none: Vec<_> = client
        .query()
        .name("nothing")
        .pages()
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn pages_never_skip_or_repeat_while_writes_land(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    assert_eq!(
        client
            .record_batch((0..100).map(|i| Metric::new("busy", i).at(at(i * 10))))
            .await
            .unwrap(),
        100
    );
    // While paging in time order, metrics land both before the position (at earlier times,
    // between existing ones) and after it (beyond the end).
    let mut seen = Vec::new();
    let mut pages = client.query().name("busy").limit(9).pages();
    let mut written = 0;
    while let Some(page) = pages.try_next().await.unwrap() {
        seen.extend(values(&page.metrics));
        let early = Metric::new("busy", 1000 + written).at(at(written * 10 + 5));
        let late = Metric::new("busy", 2000 + written).at(at(10_000 + written));
        client.record_batch([early, late]).await.unwrap();
        written += 1;
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no metric twice: {seen:?}");
    let originals: Vec<i64> = seen.iter().copied().filter(|v| *v < 1000).collect();
    assert_eq!(
        originals,
        (0..100).collect::<Vec<_>>(),
        "every original, in order"
    );
    // Metrics written behind the position are not read; those written ahead of it are, in
    // order: every one written before the last page was fetched (the last write follows it).
    assert!(seen.iter().all(|v| !(1000..2000).contains(v)), "{seen:?}");
    let late: Vec<i64> = seen.iter().copied().filter(|v| *v >= 2000).collect();
    assert!(written > 12, "the late metrics made more pages: {written}");
    assert_eq!(late, (2000..2000 + written - 1).collect::<Vec<_>>());
}

async fn delete_by_filter_answers_the_count_and_refuses_an_empty_filter(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    seed_tagged(&client).await;

    // An empty filter is refused, and nothing is deleted.
    assert_refused(client.delete().await, "invalid_param", "all");
    assert_eq!(client.query().await.unwrap().len(), 7);

    assert_eq!(
        client
            .delete()
            .tag("host", "web-1")
            .name("cpu")
            .await
            .unwrap(),
        2
    );
    assert_eq!(values(&client.query().await.unwrap()), [1, 2, 3, 5, 6]);
    assert_eq!(
        client
            .delete()
            .matching(r#"{region="eu"}"#)
            .end(at(3))
            .send()
            .await
            .unwrap(),
        2
    );
    assert_eq!(values(&client.query().await.unwrap()), [2, 5, 6]);
    assert_eq!(client.delete().name("nothing").await.unwrap(), 0);
    assert_refused(
        client.delete().matching("{").await,
        "invalid_param",
        "match",
    );
    // Deleted metrics do not come back in a replay either.
    let mut replay = client.subscribe().since(at(0)).await.unwrap();
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(value(&next(&mut replay).await));
    }
    assert_eq!(replayed, [2, 5, 6]);

    assert_eq!(client.delete().all().await.unwrap(), 3);
    assert!(client.query().await.unwrap().is_empty());
    assert_eq!(client.delete().all().await.unwrap(), 0);
}

async fn next(sub: &mut Subscription) -> Metric {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a metric within 30 s")
        .expect("the subscription is open")
        .expect("a metric, not an error")
}

async fn subscriptions_filter_by_tag_live_and_replayed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    seed_tagged(&client).await;

    // Replayed from a time, then live: only web-1 in eu, or db-1.
    let mut replayed = client
        .subscribe()
        .since(at(0))
        .tag("host", "web-1")
        .tag("host", "db-1")
        .tag("region", "eu")
        .await
        .unwrap();
    let mut live = client
        .subscribe()
        .name("cpu")
        .matching(r#"{host=~"web-.*", canary=""}"#)
        .await
        .unwrap();
    for i in 0..3 {
        let host = ["web-1", "db-1", "web-9"][i];
        let region = ["eu", "us", "eu"][i];
        client
            .record_metric(
                Metric::new("cpu", 100 + i as i64)
                    .at(at(100))
                    .with("host", host)
                    .with("region", region),
            )
            .await
            .unwrap();
        client
            .record_metric(
                Metric::new("cpu", 200 + i as i64)
                    .at(at(100))
                    .with("canary", true)
                    .with("host", "web-1"),
            )
            .await
            .unwrap();
    }
    // The marker: the last metric both subscriptions see.
    client
        .record_metric(
            Metric::new("cpu", 999)
                .at(at(100))
                .with("host", "web-1")
                .with("region", "eu"),
        )
        .await
        .unwrap();

    let mut got = Vec::new();
    loop {
        let v = value(&next(&mut replayed).await);
        got.push(v);
        if v == 999 {
            break;
        }
    }
    assert_eq!(got, [0, 3, 6, 100, 999]);
    let mut got = Vec::new();
    loop {
        let v = value(&next(&mut live).await);
        got.push(v);
        if v == 999 {
            break;
        }
    }
    assert_eq!(got, [100, 102, 999]);

    // A bad selector fails the subscription at once, naming the parameter.
    assert_refused(
        client.subscribe().matching("{host=~").await,
        "invalid_param",
        "match",
    );
}

async fn the_catalog_lists_names_tag_keys_and_values(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    seed_tagged(&client).await;

    assert_eq!(
        client.tag_keys().await.unwrap(),
        ["canary", "host", "port", "region"]
    );
    assert_eq!(
        client.tag_keys().name("mem").await.unwrap(),
        ["host", "region"]
    );
    assert_eq!(
        client.tag_values("host").await.unwrap(),
        ["db-1", "web-1", "web-2", "web-3"]
    );
    // Values as text: 80 and "80" are one value; a boolean by its JSON text.
    assert_eq!(client.tag_values("port").await.unwrap(), ["80"]);
    assert_eq!(client.tag_values("canary").await.unwrap(), ["true"]);
    assert_eq!(
        client
            .tag_values("host")
            .name("cpu")
            .tag("region", "eu")
            .await
            .unwrap(),
        ["db-1", "web-1", "web-2"]
    );
    assert_eq!(
        client
            .tag_values("host")
            .matching(r#"{region="us"}"#)
            .send()
            .await
            .unwrap(),
        ["web-1", "web-3"]
    );
    assert!(client.tag_values("nothing").await.unwrap().is_empty());

    let names = client.names().await.unwrap();
    let summary: Vec<(&str, u64, Vec<&str>)> = names
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.count,
                n.tags.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("cpu", 6, vec!["canary", "host", "port", "region"]),
            ("mem", 1, vec!["host", "region"]),
        ]
    );
    let narrowed = client.names().tag("host", "db-1").await.unwrap();
    assert_eq!(
        narrowed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["cpu"]
    );
    assert_refused(
        client.tag_keys().matching("{host").await,
        "invalid_param",
        "match",
    );
}
