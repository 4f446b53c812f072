//! Aggregation through the client (`.step(..).agg(..).by(..).offset(..).fill(..)`): every
//! function per bucket and series against the arithmetic done here on the same points (with
//! gaps, ties, non-numeric values and negative numbers), offsets, `by` on one and two keys,
//! every fill, and the refusals; against the real server on both backends.
//!
//! `cargo test -p metrics-client --test aggregate` (both backends; `sqlite::` or `postgres::`
//! to filter one).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone, Utc};
use metrics_client::{Agg, Client, Error, Fill, Metric, Series, Step, Timestamp};

use crate::common::{on_both_backends, Backend, ServerClient, TestDb, TestServer};

on_both_backends!(
    every_function_per_bucket_and_host_matches_the_arithmetic,
    offsets_shift_the_grid_and_two_keys_split_the_series,
    every_fill_fills_the_empty_buckets_of_the_grid,
    what_cannot_be_answered_is_refused,
);

/// 2016-01-01T00:00:00Z, a whole number of minutes and days since the epoch.
const T0: i64 = 1_451_606_400;

fn at(secs: i64) -> Timestamp {
    Utc.timestamp_opt(secs, 0).unwrap().into()
}

/// One stored point as the test sees it.
#[derive(Debug, Clone)]
struct Point {
    host: &'static str,
    /// `None`: the metric has no `region` key.
    region: Option<&'static str>,
    ts: i64,
    /// `None`: the value is not a number (a string or a boolean).
    number: Option<f64>,
}

/// Ten minutes of latencies from three hosts: web-1 is silent in minute 2 and 7, sends a
/// string in minute 1; web-2 sends booleans now and then; db-1 has no region; every tenth
/// point has a twin at the same instant (a tie that storage order settles); values repeat
/// (ties in percentiles) and go negative.
fn points() -> Vec<Point> {
    let hosts = [("web-1", Some("eu")), ("web-2", Some("eu")), ("db-1", None)];
    let mut points = Vec::new();
    for i in 0..200_i64 {
        let (host, region) = hosts[(i % 3) as usize];
        let ts = T0 + i * 3;
        let minute = (ts - T0) / 60;
        if host == "web-1" && (minute == 2 || minute == 7) {
            continue;
        }
        let number = ((i * 37) % 23) as f64 / 4.0 - 2.0;
        let number = match (host, i % 11) {
            ("web-1", _) if minute == 1 && i % 2 == 0 => None,
            ("web-2", 4) => None,
            _ => Some(number),
        };
        points.push(Point {
            host,
            region,
            ts,
            number,
        });
        if i % 10 == 0 {
            points.push(Point {
                host,
                region,
                ts,
                number: Some(-number.unwrap_or(1.5) + 0.25),
            });
        }
    }
    points
}

async fn seed(client: &Client, points: &[Point]) {
    let batch = points.iter().enumerate().map(|(i, p)| {
        let metric = match p.number {
            Some(n) => Metric::new("latency", n),
            None if i % 2 == 0 => Metric::new("latency", "n/a"),
            None => Metric::new("latency", true),
        };
        let metric = metric.at(at(p.ts)).with("host", p.host);
        match p.region {
            Some(region) => metric.with("region", region),
            None => metric,
        }
    });
    // Another name, which no query below asks for.
    let other = std::iter::once(Metric::new("other", 1000).at(at(T0)).with("host", "web-1"));
    let stored = client.record_batch(batch.chain(other)).await.unwrap();
    assert_eq!(stored, points.len() as u64 + 1);
}

/// The start of the bucket holding `ts` on the grid of `step` shifted by `offset`.
fn bucket(ts: i64, step: i64, offset: i64) -> i64 {
    ts - (ts - offset).rem_euclid(step)
}

/// One function over a bucket's points, in storage order, computed from its definition.
fn compute(agg: Agg, points: &[&Point]) -> Option<f64> {
    let numbers: Vec<f64> = points.iter().filter_map(|p| p.number).collect();
    let n = numbers.len() as f64;
    if agg == Agg::Count {
        return Some(points.len() as f64);
    }
    if numbers.is_empty() {
        return None;
    }
    let mean = numbers.iter().sum::<f64>() / n;
    // First and last by ts, ties by storage order (points are in storage order).
    let by_time = |last: bool| {
        let mut numbered: Vec<(i64, usize, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.number.map(|v| (p.ts, i, v)))
            .collect();
        numbered.sort_by_key(|&(ts, i, _)| (ts, i));
        let pick = if last {
            numbered.last()
        } else {
            numbered.first()
        };
        pick.map(|&(_, _, v)| v)
    };
    Some(match agg {
        Agg::Sum => numbers.iter().sum(),
        Agg::Avg => mean,
        Agg::Min => numbers.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::First => by_time(false)?,
        Agg::Last => by_time(true)?,
        Agg::Stddev => (numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
        Agg::Percentile(p) => {
            let mut sorted = numbers.clone();
            sorted.sort_by(f64::total_cmp);
            let h = (n - 1.0) * p.value() / 100.0;
            let low = h.floor() as usize;
            let high = (low + 1).min(sorted.len() - 1);
            sorted[low] + (h - h.floor()) * (sorted[high] - sorted[low])
        }
        other => panic!("no arithmetic for {other}"),
    })
}

/// The expected series of `points` split by `by` (`"host"`, `"region"`), without fill: tags,
/// bucket starts and each function's column.
type Expected = BTreeMap<BTreeMap<String, String>, (Vec<i64>, BTreeMap<Agg, Vec<Option<f64>>>)>;

fn expected(points: &[Point], by: &[&str], step: i64, offset: i64, aggs: &[Agg]) -> Expected {
    let mut groups: BTreeMap<BTreeMap<String, String>, BTreeMap<i64, Vec<&Point>>> =
        BTreeMap::new();
    for p in points {
        let mut tags = BTreeMap::new();
        for key in by {
            let value = match *key {
                "host" => Some(p.host),
                "region" => p.region,
                other => panic!("no key {other}"),
            };
            if let Some(value) = value {
                tags.insert((*key).to_owned(), value.to_owned());
            }
        }
        groups
            .entry(tags)
            .or_default()
            .entry(bucket(p.ts, step, offset))
            .or_default()
            .push(p);
    }
    groups
        .into_iter()
        .map(|(tags, buckets)| {
            let ts: Vec<i64> = buckets.keys().copied().collect();
            let columns = aggs
                .iter()
                .map(|&agg| (agg, buckets.values().map(|b| compute(agg, b)).collect()))
                .collect();
            (tags, (ts, columns))
        })
        .collect()
}

fn close(got: Option<f64>, want: Option<f64>) -> bool {
    match (got, want) {
        (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// The series of `got` are those of `want` (in any order of their tags: where the series
/// without a key go is the server's to document), each function's column within 1e-9.
fn assert_matches(got: &[Series], want: &Expected, aggs: &[Agg]) {
    let mut got_tags: Vec<_> = got.iter().map(|s| s.tags.clone()).collect();
    got_tags.sort();
    let want_tags: Vec<_> = want.keys().cloned().collect();
    assert_eq!(got_tags, want_tags, "the series");
    for series in got {
        assert_eq!(series.name, "latency");
        let (ts, columns) = &want[&series.tags];
        assert_eq!(&series.ts, ts, "{:?}", series.tags);
        assert_eq!(series.columns.len(), aggs.len(), "one column per function");
        for agg in aggs {
            let got = series.values(*agg).unwrap();
            let want = &columns[agg];
            assert!(
                got.iter().zip(want).all(|(g, w)| close(*g, *w)) && got.len() == want.len(),
                "{agg} of {:?}: got {got:?}, want {want:?}",
                series.tags
            );
        }
    }
}

const EVERY_FUNCTION: [Agg; 12] = [
    Agg::Count,
    Agg::Sum,
    Agg::Avg,
    Agg::Min,
    Agg::Max,
    Agg::First,
    Agg::Last,
    Agg::Stddev,
    Agg::P50,
    Agg::P90,
    Agg::P99,
    Agg::P999,
];

async fn every_function_per_bucket_and_host_matches_the_arithmetic(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    let points = points();
    seed(&client, &points).await;

    let p12_5 = Agg::percentile(12.5).unwrap();
    let mut aggs = EVERY_FUNCTION.to_vec();
    aggs.push(p12_5);
    let per_host = client
        .query()
        .name("latency")
        .step(Step::minutes(1))
        .agg(aggs.clone())
        .by(["host"])
        .await
        .unwrap();
    assert_matches(
        &per_host,
        &expected(&points, &["host"], 60, 0, &aggs),
        &aggs,
    );
    // Non-numeric values are counted by `count` and reported; web-1's gaps are left out.
    for series in &per_host {
        let host = &series.tags["host"];
        let non_numeric = points
            .iter()
            .filter(|p| p.host == host && p.number.is_none())
            .count();
        assert_eq!(series.non_numeric, non_numeric as u64, "{host}");
    }
    let web_1 = per_host.iter().find(|s| s.tags["host"] == "web-1").unwrap();
    assert!(!web_1.ts.contains(&(T0 + 120)) && web_1.ts.contains(&(T0 + 180)));
    assert!(web_1.non_numeric > 0);

    // Without `by`: one series of every host; with start and end, only the buckets between.
    let all = client
        .query()
        .name("latency")
        .start(at(T0 + 60))
        .end(at(T0 + 299))
        .step(Step::seconds(120))
        .agg(EVERY_FUNCTION)
        .await
        .unwrap();
    let inside: Vec<Point> = points
        .iter()
        .filter(|p| (T0 + 60..=T0 + 299).contains(&p.ts))
        .cloned()
        .collect();
    assert_matches(
        &all,
        &expected(&inside, &[], 120, 0, &EVERY_FUNCTION),
        &EVERY_FUNCTION,
    );
    assert_eq!(all[0].ts, [T0, T0 + 120, T0 + 240]);

    // The filters of a raw query apply, before and after `.step()`; no `agg` means avg.
    let db_1 = client
        .query()
        .tag("host", "db-1")
        .step(Step::minutes(5))
        .name("latency")
        .await
        .unwrap();
    let only_db: Vec<Point> = points
        .iter()
        .filter(|p| p.host == "db-1")
        .cloned()
        .collect();
    assert_matches(
        &db_1,
        &expected(&only_db, &[], 300, 0, &[Agg::Avg]),
        &[Agg::Avg],
    );
    assert_eq!(db_1[0].points(Agg::Avg).count(), 2);
}

async fn offsets_shift_the_grid_and_two_keys_split_the_series(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    let points = points();
    seed(&client, &points).await;

    let aggs = [Agg::Count, Agg::Avg, Agg::Max, Agg::P90];
    for offset in [30, -30, 90, -150, 0] {
        let series = client
            .query()
            .name("latency")
            .step(Step::minutes(2))
            .offset(TimeDelta::seconds(offset))
            .agg(aggs)
            .by(["host", "region"])
            .await
            .unwrap();
        let want = expected(&points, &["host", "region"], 120, offset, &aggs);
        assert_matches(&series, &want, &aggs);
        // Buckets start on the shifted grid.
        let starts_on_grid = series
            .iter()
            .flat_map(|s| &s.ts)
            .all(|&ts| (ts - offset).rem_euclid(120) == 0);
        assert!(starts_on_grid, "offset {offset}");
        // db-1 has no region: its series has the host alone.
        let db_1 = series.iter().find(|s| s.tags["host"] == "db-1").unwrap();
        assert_eq!(db_1.tags.len(), 1);
    }
    // Two keys, one of them the region: eu splits into two hosts; db-1 alone without region.
    let by_region = client
        .query()
        .name("latency")
        .step(Step::minutes(10))
        .agg([Agg::Count])
        .by(["region"])
        .await
        .unwrap();
    let mut counts: Vec<(Option<&str>, Option<f64>)> = by_region
        .iter()
        .map(|s| {
            (
                s.tags.get("region").map(String::as_str),
                s.values(Agg::Count).unwrap()[0],
            )
        })
        .collect();
    counts.sort_by_key(|(region, _)| *region);
    let count_of = |region: Option<&str>| points.iter().filter(|p| p.region == region).count();
    assert_eq!(
        counts,
        [
            (None, Some(count_of(None) as f64)),
            (Some("eu"), Some(count_of(Some("eu")) as f64)),
        ]
    );
}

async fn every_fill_fills_the_empty_buckets_of_the_grid(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    let points = points();
    seed(&client, &points).await;
    let web_1: Vec<Point> = points
        .iter()
        .filter(|p| p.host == "web-1")
        .cloned()
        .collect();

    // The grid runs from the bucket of start to that of end, whatever the data: minute -2 to
    // 11; web-1 has points in minutes 0, 1, 3..=6 and 8..=9.
    let grid: Vec<i64> = (-2..=11).map(|m| T0 + 60 * m).collect();
    let aggs = [Agg::Count, Agg::Avg, Agg::Last];
    let expected_all = expected(&web_1, &[], 60, 0, &aggs);
    let want = &expected_all[&BTreeMap::new()];
    let value_at = |agg: Agg, ts: i64| {
        want.0
            .iter()
            .position(|&t| t == ts)
            .and_then(|i| want.1[&agg][i])
    };
    let query = |fill: Fill| {
        client
            .query()
            .name("latency")
            .tag("host", "web-1")
            .start(at(T0 - 120))
            .end(at(T0 + 11 * 60 + 59))
            .step(Step::minutes(1))
            .agg(aggs)
            .fill(fill)
    };

    let none = query(Fill::None).await.unwrap();
    assert_eq!(none[0].ts, want.0, "fill none leaves the empty buckets out");

    for fill in [Fill::Null, Fill::Previous, Fill::Linear, Fill::Value(7.5)] {
        let series = query(fill).await.unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].ts, grid, "{fill:?}");
        for agg in aggs {
            let got = series[0].values(agg).unwrap();
            for (i, &ts) in grid.iter().enumerate() {
                let empty = !want.0.contains(&ts);
                let expected = match (agg, fill) {
                    _ if !empty => value_at(agg, ts),
                    (Agg::Count, _) => Some(0.0),
                    (_, Fill::Null) => None,
                    (_, Fill::Value(v)) => Some(v),
                    (_, Fill::Previous) => grid[..i]
                        .iter()
                        .rev()
                        .find(|t| want.0.contains(t))
                        .and_then(|&t| value_at(agg, t)),
                    (_, Fill::Linear) => {
                        let before = grid[..i].iter().rev().find(|t| want.0.contains(t));
                        let after = grid[i..].iter().find(|t| want.0.contains(t));
                        match (before, after) {
                            (Some(&t0), Some(&t1)) => {
                                let (v0, v1) =
                                    (value_at(agg, t0).unwrap(), value_at(agg, t1).unwrap());
                                Some(v0 + (ts - t0) as f64 / (t1 - t0) as f64 * (v1 - v0))
                            }
                            _ => None,
                        }
                    }
                    other => panic!("no expectation for {other:?}"),
                };
                assert!(
                    close(got[i], expected),
                    "{fill:?} {agg} at minute {}: got {:?}, want {expected:?}",
                    (ts - T0) / 60,
                    got[i]
                );
            }
        }
    }
}

async fn what_cannot_be_answered_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let client = server.client();
    seed(&client, &points()).await;

    // More than 11,000 buckets: the server's 400, naming `step` and a step that fits.
    let result = client
        .query()
        .name("latency")
        .start(at(T0))
        .end(at(T0 + 86_400))
        .step(Step::seconds(1))
        .await;
    match result {
        Err(Error::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!(status.as_u16(), 400, "{code}: {message}");
            assert!(
                message.contains("`step`") && message.contains("11000"),
                "{message}"
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // A tag key the server does not accept in `by`: its 400, naming `by`.
    let result = client.query().step(Step::minutes(1)).by(["value"]).await;
    assert!(
        matches!(&result, Err(Error::Api { message, .. }) if message.contains("`by`")),
        "{result:?}"
    );
    // What cannot be said on the wire never reaches it.
    for query in [
        client
            .query()
            .name("latency")
            .limit(5)
            .step(Step::minutes(1)),
        client.query().step(Step::seconds(0)),
        client.query().step(std::time::Duration::from_millis(500)),
        client
            .query()
            .step(Step::minutes(1))
            .fill(Fill::Value(f64::NAN)),
    ] {
        let result = query.await;
        assert!(matches!(result, Err(Error::InvalidQuery(_))), "{result:?}");
    }
    // An aggregation over nothing is no series, not an error.
    let nothing = client.query().name("absent").step(Step::minutes(1)).await;
    assert!(nothing.unwrap().is_empty());
}
