//! Aggregation against real databases, each test on SQLite and PostgreSQL: every function
//! checked against values computed here, independently, from the metrics as inserted (on data
//! with gaps, ties, non-numeric values and instants before the epoch), the grid with and
//! without offsets, every fill, `by` on one and two keys, the bucket cap, and the same answer
//! from both backends on the same data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use futures::TryStreamExt;
use metrics_test_support::{on_both_backends, Backend, TestDb};
use serde_json::{json, Value};

use super::{connect, Aggregated, MetricStore, NewMetric, SqlStore};
use crate::{
    aggregation::{AggSeries, Aggregation, Fill, Function},
    selection::{tags_of, MatchOp, Selection, TagMatcher},
};

const SEC: i64 = 1_000_000;

fn every_function() -> Vec<Function> {
    [
        "count", "sum", "avg", "min", "max", "first", "last", "stddev", "p0", "p50", "p90", "p99",
        "p99.9", "p100",
    ]
    .iter()
    .map(|f| Function::parse(f).unwrap())
    .collect()
}

/// The test data: two names, hosts a–c, a `dc` on some; values with ties, strings and
/// booleans; instants from before the epoch, with a gap of empty buckets.
fn data() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..600_i64 {
        let r = next();
        // Instants from -300 s to +900 s, with nothing in [200 s, 500 s).
        let mut ts = -300 * SEC + (r % 1_200_000) as i64 * 1000;
        if (200 * SEC..500 * SEC).contains(&ts) {
            ts -= 300 * SEC;
        }
        // Every seventh shares its instant with the one before: ties in ts.
        if i % 7 == 0 && i > 0 {
            ts = docs
                .last()
                .map(|d: &Value| d["ts"].as_i64().unwrap())
                .unwrap();
        }
        let value = match r % 13 {
            0 => json!("down"),
            1 => json!(true),
            // Few distinct values: ties in value.
            2..=6 => json!((r >> 8) % 5),
            _ => json!(((r >> 8) % 10_000) as f64 / 100.0 - 20.0),
        };
        let name = if r % 5 == 0 { "mem" } else { "cpu" };
        let host = ["a", "b", "c"][((r >> 20) % 3) as usize];
        let mut doc = json!({ "name": name, "value": value, "ts": ts, "host": host });
        match (r >> 24) % 3 {
            0 => doc["dc"] = json!("eu"),
            1 => doc["dc"] = json!(1),
            _ => {}
        }
        docs.push(doc);
    }
    docs
}

fn metric(doc: &Value) -> NewMetric {
    let text = doc.to_string();
    NewMetric {
        name: doc["name"].as_str().unwrap().to_owned(),
        ts_micros: doc["ts"].as_i64().unwrap(),
        value: doc["value"].as_f64(),
        tags: tags_of(&text).unwrap(),
        doc: text,
    }
}

async fn store_with(db: &TestDb, docs: &[Value]) -> SqlStore {
    let store = SqlStore::new(connect(&db.url, 4).await.unwrap());
    let metrics: Vec<NewMetric> = docs.iter().map(metric).collect();
    for chunk in metrics.chunks(100) {
        let refs: Vec<&NewMetric> = chunk.iter().collect();
        store.insert(&refs).await.unwrap();
    }
    store
}

fn aggregation(step: i64, offset: i64, by: &[&str], fill: Fill) -> Aggregation {
    Aggregation {
        step_micros: step,
        offset_micros: offset,
        functions: every_function(),
        by: by.iter().map(|k| (*k).to_owned()).collect(),
        fill,
    }
}

async fn run(store: &SqlStore, selection: &Selection, aggregation: &Aggregation) -> Vec<AggSeries> {
    match store.aggregate(selection, aggregation).await.unwrap() {
        Aggregated::Series(series) => series.try_collect().await.unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The text a `by` key takes in a document, as tags compare (absent, or `null`: none).
fn tag_text(doc: &Value, key: &str) -> Option<String> {
    match doc.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The functions computed here from the documents of one bucket, in insertion order.
fn expected_bucket(docs: &[&Value], functions: &[Function]) -> Vec<Option<f64>> {
    let numbers: Vec<f64> = docs.iter().filter_map(|d| d["value"].as_f64()).collect();
    // Insertion order is storage order: ties in ts keep it (a stable sort).
    let mut by_time: Vec<(i64, f64)> = docs
        .iter()
        .filter_map(|d| Some((d["ts"].as_i64().unwrap(), d["value"].as_f64()?)))
        .collect();
    by_time.sort_by_key(|(ts, _)| *ts);
    let mut sorted = numbers.clone();
    sorted.sort_by(f64::total_cmp);
    let n = numbers.len() as f64;
    let mean = numbers.iter().sum::<f64>() / n;
    functions
        .iter()
        .map(|f| match f {
            Function::Count => Some(docs.len() as f64),
            _ if numbers.is_empty() => None,
            Function::Sum => Some(numbers.iter().sum()),
            Function::Avg => Some(mean),
            Function::Min => sorted.first().copied(),
            Function::Max => sorted.last().copied(),
            Function::First => by_time.first().map(|(_, v)| *v),
            Function::Last => by_time.last().map(|(_, v)| *v),
            Function::Stddev => {
                Some((numbers.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt())
            }
            Function::Percentile(p) => {
                let h = (n - 1.0) * p.numerator as f64 / p.denominator as f64;
                let low = h.floor() as usize;
                let high = (low + 1).min(sorted.len() - 1);
                Some(sorted[low] + (h - low as f64) * (sorted[high] - sorted[low]))
            }
        })
        .collect()
}

type Key = (String, BTreeMap<String, String>);

/// The whole expected answer without fill: per series, per bucket start, the functions.
fn expected(
    docs: &[Value],
    selection: &Selection,
    aggregation: &Aggregation,
) -> BTreeMap<Key, BTreeMap<i64, Vec<Option<f64>>>> {
    let mut groups: BTreeMap<Key, BTreeMap<i64, Vec<&Value>>> = BTreeMap::new();
    for doc in docs {
        let text = doc.to_string();
        let ts = doc["ts"].as_i64().unwrap();
        if !selection.matches(doc["name"].as_str().unwrap(), ts, &tags_of(&text).unwrap()) {
            continue;
        }
        let tags = aggregation
            .by
            .iter()
            .filter_map(|k| tag_text(doc, k).map(|v| (k.clone(), v)))
            .collect();
        let step = aggregation.step_micros;
        let offset = aggregation.offset_micros;
        let start = offset + (ts - offset).div_euclid(step) * step;
        groups
            .entry((doc["name"].as_str().unwrap().to_owned(), tags))
            .or_default()
            .entry(start)
            .or_default()
            .push(doc);
    }
    groups
        .into_iter()
        .map(|(key, buckets)| {
            let buckets = buckets
                .into_iter()
                .map(|(start, docs)| (start, expected_bucket(&docs, &aggregation.functions)))
                .collect();
            (key, buckets)
        })
        .collect()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        _ => false,
    }
}

fn assert_matches(
    got: &[AggSeries],
    order: &[String],
    want: &BTreeMap<Key, BTreeMap<i64, Vec<Option<f64>>>>,
    what: &str,
) {
    let keys: Vec<Key> = got
        .iter()
        .map(|s| (s.name.clone(), s.tags.clone()))
        .collect();
    // By name, then by the values of the `by` keys in their order, absent last.
    let mut want_keys: Vec<Key> = want.keys().cloned().collect();
    want_keys.sort_by_key(|(name, tags)| {
        (
            name.clone(),
            order
                .iter()
                .map(|k| (tags.get(k).is_none(), tags.get(k).cloned()))
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(keys, want_keys, "{what}: the series");
    for series in got {
        let buckets = &want[&(series.name.clone(), series.tags.clone())];
        assert_eq!(
            series.starts_micros,
            buckets.keys().copied().collect::<Vec<_>>(),
            "{what}: buckets of {} {:?}",
            series.name,
            series.tags
        );
        for (i, (start, values)) in buckets.iter().enumerate() {
            for (c, value) in values.iter().enumerate() {
                assert!(
                    close(series.columns[c][i], *value),
                    "{what}: {} {:?} bucket {start} column {c}: got {:?}, want {value:?}",
                    series.name,
                    series.tags,
                    series.columns[c][i]
                );
            }
        }
    }
}

on_both_backends!(
    every_function_on_every_grid,
    filters_narrow_what_is_aggregated,
    every_fill_over_the_range,
    the_bucket_cap_names_a_step,
);

async fn every_function_on_every_grid(backend: Backend) {
    let db = TestDb::new(backend).await;
    let docs = data();
    let store = store_with(&db, &docs).await;
    let everything = Selection::default();
    let mut non_numeric_seen = false;
    for (step, offset) in [
        (60 * SEC, 0),
        (60 * SEC, 15 * SEC),
        (60 * SEC, -7 * SEC),
        (10 * SEC, 3 * SEC),
        (3600 * SEC, 0),
    ] {
        for by in [&[][..], &["host"][..], &["host", "dc"][..], &["dc"][..]] {
            let a = aggregation(step, offset, by, Fill::None);
            let got = run(&store, &everything, &a).await;
            assert_matches(
                &got,
                &a.by,
                &expected(&docs, &everything, &a),
                &format!("step {step} offset {offset} by {by:?}"),
            );
            // Every bucket's start is on the grid, and ends before the next.
            for series in &got {
                for start in &series.starts_micros {
                    assert_eq!((start - offset).rem_euclid(step), 0);
                }
                let skipped: u64 = series.bucket_non_numeric.iter().sum();
                assert_eq!(skipped, series.non_numeric);
                non_numeric_seen |= series.non_numeric > 0;
            }
        }
    }
    assert!(non_numeric_seen, "the data has non-numeric values");
}

async fn filters_narrow_what_is_aggregated(backend: Backend) {
    let db = TestDb::new(backend).await;
    let docs = data();
    let store = store_with(&db, &docs).await;
    let selection = Selection {
        names: vec!["cpu".into()],
        start_micros: Some(-100 * SEC),
        end_micros: Some(700 * SEC),
        tags: vec![TagMatcher {
            key: "host".into(),
            op: MatchOp::Equal(vec!["a".into(), "c".into()]),
        }],
    };
    let a = aggregation(30 * SEC, 0, &["host"], Fill::None);
    let got = run(&store, &selection, &a).await;
    assert_eq!(got.len(), 2);
    assert_matches(&got, &a.by, &expected(&docs, &selection, &a), "filtered");
    // A selection nothing matches: no series.
    let none = Selection {
        names: vec!["nothing".into()],
        ..Selection::default()
    };
    assert!(run(&store, &none, &a).await.is_empty());
}

async fn every_fill_over_the_range(backend: Backend) {
    let db = TestDb::new(backend).await;
    let docs = vec![
        json!({ "name": "cpu", "value": 1, "ts": 10 * SEC }),
        json!({ "name": "cpu", "value": 3, "ts": 15 * SEC }),
        json!({ "name": "cpu", "value": "up", "ts": 30 * SEC }),
        json!({ "name": "cpu", "value": 10, "ts": 50 * SEC }),
    ];
    let store = store_with(&db, &docs).await;
    let selection = Selection {
        start_micros: Some(-5 * SEC),
        end_micros: Some(75 * SEC),
        ..Selection::default()
    };
    let answer = |fill| {
        let a = Aggregation {
            step_micros: 10 * SEC,
            offset_micros: 0,
            functions: vec![Function::Count, Function::Avg],
            by: Vec::new(),
            fill,
        };
        let store = store.clone();
        let selection = selection.clone();
        async move {
            let got = run(&store, &selection, &a).await;
            assert_eq!(got.len(), 1);
            got.into_iter().next().unwrap()
        }
    };
    let none = answer(Fill::None).await;
    assert_eq!(none.starts_micros, [10 * SEC, 30 * SEC, 50 * SEC]);
    assert_eq!(none.columns[1], [Some(2.0), None, Some(10.0)]);
    assert_eq!(none.non_numeric, 1);
    assert_eq!(none.bucket_non_numeric, [0, 1, 0]);
    // The grid from the bucket of sts (-10 s) to that of ets (70 s).
    let grid: Vec<i64> = (-1..=7).map(|k| k * 10 * SEC).collect();
    let counts = [0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0].map(Some);
    let null = answer(Fill::Null).await;
    assert_eq!(null.starts_micros, grid);
    assert_eq!(null.columns[0], counts);
    assert_eq!(
        null.columns[1],
        [
            None,
            None,
            Some(2.0),
            None,
            None,
            None,
            Some(10.0),
            None,
            None
        ]
    );
    let prev = answer(Fill::Prev).await;
    assert_eq!(prev.columns[0], counts);
    // The bucket at 30 s has a metric (a string): it is not filled, and its avg is null.
    assert_eq!(
        prev.columns[1],
        [
            None,
            None,
            Some(2.0),
            Some(2.0),
            None,
            None,
            Some(10.0),
            Some(10.0),
            Some(10.0)
        ]
    );
    let linear = answer(Fill::Linear).await;
    assert_eq!(
        linear.columns[1],
        [
            None,
            None,
            Some(2.0),
            None,
            None,
            None,
            Some(10.0),
            None,
            None
        ]
    );
    let number = answer(Fill::Value(0.5)).await;
    assert_eq!(
        number.columns[1],
        [
            Some(0.5),
            Some(0.5),
            Some(2.0),
            Some(0.5),
            None,
            Some(0.5),
            Some(10.0),
            Some(0.5),
            Some(0.5)
        ]
    );
    // Linear between two numeric buckets.
    let store = store_with(&db, &[json!({ "name": "cpu", "value": 4, "ts": 45 * SEC })]).await;
    let a = Aggregation {
        step_micros: 10 * SEC,
        offset_micros: 0,
        functions: vec![Function::Max],
        by: Vec::new(),
        fill: Fill::Linear,
    };
    let selection = Selection {
        start_micros: Some(0),
        end_micros: Some(59 * SEC),
        tags: Vec::new(),
        names: vec!["cpu".into()],
    };
    let got = run(&store, &selection, &a).await;
    // max: 10 s → 3, 20 s empty, 30 s string only (null), 40 s → 4, 50 s → 10.
    assert_eq!(
        got[0].columns[0],
        [None, Some(3.0), None, None, Some(4.0), Some(10.0)]
    );
    let store2 = store_with(&db, &[json!({ "name": "cpu", "value": 2, "ts": 31 * SEC })]).await;
    let got = run(&store2, &selection, &a).await;
    // 30 s now has a number (2): 20 s is interpolated between 3 (10 s) and 2 (30 s).
    assert_eq!(
        got[0].columns[0],
        [None, Some(3.0), Some(2.5), Some(2.0), Some(4.0), Some(10.0)]
    );
}

async fn the_bucket_cap_names_a_step(backend: Backend) {
    let db = TestDb::new(backend).await;
    let docs = vec![
        json!({ "name": "cpu", "value": 1, "ts": 0 }),
        json!({ "name": "cpu", "value": 2, "ts": 86_400 * SEC }),
    ];
    let store = store_with(&db, &docs).await;
    let a = |step| aggregation(step, 0, &[], Fill::None);
    // Without sts/ets the metrics' span counts: a day in seconds is 86401 buckets.
    match store
        .aggregate(&Selection::default(), &a(SEC))
        .await
        .unwrap()
    {
        Aggregated::TooManyBuckets {
            buckets,
            span_micros,
        } => assert_eq!((buckets, span_micros), (86_401, 86_400 * SEC)),
        other => panic!("{other:?}"),
    }
    // 11000 buckets exactly are allowed: 10999 steps of 8 s... plus the partial edges.
    let fits = Selection {
        start_micros: Some(0),
        end_micros: Some(10_999 * 8 * SEC),
        ..Selection::default()
    };
    assert!(matches!(
        store.aggregate(&fits, &a(8 * SEC)).await.unwrap(),
        Aggregated::Series(_)
    ));
    let over = Selection {
        end_micros: Some(11_000 * 8 * SEC),
        ..fits
    };
    assert!(matches!(
        store.aggregate(&over, &a(8 * SEC)).await.unwrap(),
        Aggregated::TooManyBuckets {
            buckets: 11_001,
            ..
        }
    ));
    // With sts and ets the range counts, even with fewer metrics in it.
    let day = Selection {
        start_micros: Some(0),
        end_micros: Some(86_400 * SEC),
        names: vec!["nothing".into()],
        ..Selection::default()
    };
    assert!(matches!(
        store.aggregate(&day, &a(SEC)).await.unwrap(),
        Aggregated::TooManyBuckets { .. }
    ));
    assert!(matches!(
        store.aggregate(&day, &a(10 * SEC)).await.unwrap(),
        Aggregated::Series(_)
    ));
}

/// The same data on both backends gives the same answer: bit for bit but for sums (which may
/// differ in the last places: each database adds in its own order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_agree() {
    let docs = data();
    let sqlite_db = TestDb::new(Backend::Sqlite).await;
    let postgres_db = TestDb::new(Backend::Postgres).await;
    let sqlite = store_with(&sqlite_db, &docs).await;
    let postgres = store_with(&postgres_db, &docs).await;
    for by in [&[][..], &["host", "dc"][..]] {
        for fill in [Fill::None, Fill::Linear] {
            let a = aggregation(45 * SEC, -20 * SEC, by, fill);
            let s = run(&sqlite, &Selection::default(), &a).await;
            let p = run(&postgres, &Selection::default(), &a).await;
            assert_eq!(s.len(), p.len());
            for (s, p) in s.iter().zip(&p) {
                assert_eq!(
                    (&s.name, &s.tags, &s.starts_micros, s.non_numeric),
                    (&p.name, &p.tags, &p.starts_micros, p.non_numeric)
                );
                for ((function, s), p) in a.functions.iter().zip(&s.columns).zip(&p.columns) {
                    let summed =
                        matches!(function, Function::Sum | Function::Avg | Function::Stddev)
                            || fill == Fill::Linear;
                    if summed {
                        for (x, y) in s.iter().zip(p) {
                            assert!(
                                match (x, y) {
                                    (Some(x), Some(y)) =>
                                        (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
                                    _ => x == y,
                                },
                                "{function:?}: {x:?} vs {y:?}"
                            );
                        }
                    } else {
                        assert_eq!(s, p, "{function:?} differs between the backends");
                    }
                }
            }
        }
    }
}
