//! The store against real databases, each test on SQLite and PostgreSQL: every tag operator
//! judged against [`Selection::matches`] (the rule the live stream applies), paging under
//! concurrent writes, delete and retention, the catalog, and the backfill of the migration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use futures::TryStreamExt;
use metrics_test_support::{on_both_backends, Backend, TestDb};
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use super::{connect, MetricStore, NewMetric, RetentionRule, SqlStore};
use crate::selection::{
    tags_of, AnchoredRegex, Cursor, MatchOp, Order, Page, Selection, TagMatcher,
};

fn metric(doc: &str) -> NewMetric {
    let value: Value = serde_json::from_str(doc).unwrap();
    NewMetric {
        name: value["name"].as_str().unwrap().to_owned(),
        ts_micros: value["ts"].as_i64().unwrap(),
        value: value["value"].as_f64(),
        doc: doc.to_owned(),
        tags: tags_of(doc).unwrap(),
    }
}

async fn store(db: &TestDb) -> SqlStore {
    SqlStore::new(connect(&db.url, 4).await.unwrap())
}

async fn insert(store: &SqlStore, docs: &[String]) -> Vec<i64> {
    let metrics: Vec<NewMetric> = docs.iter().map(|d| metric(d)).collect();
    let refs: Vec<&NewMetric> = metrics.iter().collect();
    store.insert(&refs).await.unwrap()
}

/// Every document a query answers, in order, and its chunks' last cursors.
async fn query_docs(
    store: &SqlStore,
    selection: Selection,
    page: Page,
) -> (Vec<Value>, Vec<Cursor>) {
    let chunks: Vec<_> = store
        .query(selection, page, ',')
        .try_collect()
        .await
        .unwrap();
    let mut docs = Vec::new();
    for chunk in &chunks {
        let array: Vec<Value> = serde_json::from_str(&format!("[{}]", chunk.text)).unwrap();
        assert_eq!(array.len() as u64, chunk.rows);
        docs.extend(array);
    }
    (docs, chunks.iter().map(|c| c.last).collect())
}

fn seqs(docs: &[Value]) -> Vec<i64> {
    docs.iter().map(|d| d["value"].as_i64().unwrap()).collect()
}

fn tag(key: &str, op: MatchOp) -> TagMatcher {
    TagMatcher {
        key: key.to_owned(),
        op,
    }
}

fn re(source: &str) -> AnchoredRegex {
    AnchoredRegex::new(source).unwrap()
}

fn eq(values: &[&str]) -> MatchOp {
    MatchOp::Equal(values.iter().map(|v| (*v).to_owned()).collect())
}

fn by_tags(tags: Vec<TagMatcher>) -> Selection {
    Selection {
        tags,
        ..Selection::default()
    }
}

/// Documents whose tags differ in type only (`80` and `"80"`, `true` and `"true"`), null and
/// absent tags, and two names; `value` numbers them.
fn tagged_docs() -> Vec<String> {
    [
        r#""host":"web-1","port":80,"up":true"#,
        r#""host":"web-2","port":"80","up":"true""#,
        r#""host":"db-1","port":8080,"up":false"#,
        r#""host":null,"port":80.0"#,
        r#""region":"eu""#,
        r#""host":"web-10","region":"us","o":{"a":[1,2]}"#,
    ]
    .iter()
    .enumerate()
    .flat_map(|(i, tags)| {
        ["cpu", "mem"]
            .into_iter()
            .enumerate()
            .map(move |(j, name)| {
                let seq = i * 2 + j;
                format!(
                    r#"{{"name":"{name}","value":{seq},"ts":{},{tags}}}"#,
                    1000 + seq
                )
            })
    })
    .collect()
}

fn matcher_cases() -> Vec<Vec<TagMatcher>> {
    vec![
        vec![tag("port", eq(&["80"]))],
        vec![tag("up", eq(&["true"]))],
        vec![tag("up", eq(&["1"]))],
        vec![tag("host", eq(&["web-1", "db-1"]))],
        vec![tag("host", eq(&[""]))],
        vec![tag("host", eq(&["", "web-2"]))],
        vec![tag("host", MatchOp::NotEqual(String::new()))],
        vec![tag("host", MatchOp::NotEqual("web-1".into()))],
        vec![tag("host", MatchOp::Regex(re("web-.*")))],
        vec![tag("host", MatchOp::Regex(re("web-\\d")))],
        vec![tag("host", MatchOp::Regex(re(".*")))],
        vec![tag("host", MatchOp::Regex(re("web-1|")))],
        vec![tag("host", MatchOp::NotRegex(re("web-.*")))],
        vec![tag("host", MatchOp::NotRegex(re(".+")))],
        vec![tag("port", MatchOp::Regex(re("8.*")))],
        vec![tag("o", eq(&[r#"{"a":[1,2]}"#]))],
        vec![tag("nope", eq(&[""]))],
        vec![tag("nope", eq(&["x"]))],
        vec![
            tag("host", MatchOp::Regex(re("web-.*"))),
            tag("region", MatchOp::NotEqual("us".into())),
        ],
        vec![
            tag("region", eq(&[""])),
            tag("port", MatchOp::NotRegex(re("80"))),
        ],
    ]
}

async fn every_operator_matches_as_the_live_rule(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let docs = tagged_docs();
    let ids = insert(&store, &docs).await;
    for tags in matcher_cases() {
        for names in [vec![], vec!["cpu".to_owned()]] {
            let selection = Selection {
                names: names.clone(),
                tags: tags.clone(),
                ..Selection::default()
            };
            let expected: Vec<i64> = docs
                .iter()
                .map(|d| metric(d))
                .filter(|m| selection.matches(&m.name, m.ts_micros, &m.tags))
                .map(|m| m.value.unwrap() as i64)
                .collect();
            let (found, _) = query_docs(&store, selection.clone(), Page::default()).await;
            assert_eq!(seqs(&found), expected, "query {selection:?}");
            let replayed: Vec<i64> = store
                .replay(&selection, 0, 100)
                .await
                .unwrap()
                .iter()
                .map(|m| ids.iter().position(|id| *id == m.id).unwrap() as i64)
                .collect();
            assert_eq!(replayed, expected, "replay {selection:?}");
        }
    }
    // The reference is not trivially empty: `80`, `"80"` match port=80, `80.0` does not.
    let (found, _) = query_docs(
        &store,
        by_tags(vec![tag("port", eq(&["80"]))]),
        Page::default(),
    )
    .await;
    assert_eq!(seqs(&found), vec![0, 1, 2, 3]);
    let (found, _) = query_docs(
        &store,
        by_tags(vec![tag("up", eq(&["true"]))]),
        Page::default(),
    )
    .await;
    assert_eq!(seqs(&found), vec![0, 1, 2, 3]);
}

async fn pages_never_skip_nor_repeat_under_writes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    // Many rows share a ts, so ties are broken by id.
    let docs: Vec<String> = (0..300)
        .map(|i| {
            format!(
                r#"{{"name":"p","value":{i},"ts":{},"host":"h{}"}}"#,
                i / 7,
                i % 3
            )
        })
        .collect();
    insert(&store, &docs).await;
    let selection = Selection {
        names: vec!["p".into()],
        tags: vec![tag("host", MatchOp::NotEqual("h2".into()))],
        ..Selection::default()
    };
    let before: BTreeSet<i64> = (0..300).filter(|i| i % 3 != 2).collect();
    for (n, order) in [Order::Asc, Order::Desc].into_iter().enumerate() {
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..40 {
                    // Rows that sort before, among and after the pages read so far.
                    let docs: Vec<String> = (0..3)
                        .map(|k| {
                            let seq = 10_000 * (n + 1) + round * 3 + k;
                            format!(
                                r#"{{"name":"p","value":{seq},"ts":{},"host":"h0"}}"#,
                                (k * 20 + round) % 45
                            )
                        })
                        .collect();
                    insert(&store, &docs).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = Page {
                order,
                limit: Some(7),
                after,
            };
            let (docs, lasts) = query_docs(&store, selection.clone(), page).await;
            assert!(docs.len() <= 7);
            keys.extend(docs.iter().map(|d| d["ts"].as_i64().unwrap()));
            seen.extend(seqs(&docs));
            if docs.len() < 7 {
                break;
            }
            after = lasts.last().copied();
        }
        writer.await.unwrap();
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{order:?}: a row came twice");
        assert!(before.is_subset(&unique), "{order:?}: a row was skipped");
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        if order == Order::Desc {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "{order:?}: out of order");
    }
}

async fn large_answers_come_in_bounded_chunks(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let docs: Vec<String> = (0..9000)
        .map(|i| format!(r#"{{"name":"big","value":{i},"ts":{}}}"#, 9000 - i))
        .collect();
    let ids = insert(&store, &docs).await;
    let chunks: Vec<_> = store
        .query(Selection::default(), Page::default(), '\n')
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.rows).collect::<Vec<_>>(),
        vec![4096, 4096, 808]
    );
    let lines: Vec<Value> = chunks
        .iter()
        .flat_map(|c| c.text.split('\n').map(|l| serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(seqs(&lines), (0..9000).rev().collect::<Vec<_>>());
    assert_eq!(
        chunks.last().unwrap().last,
        Cursor {
            ts_micros: 9000,
            id: ids[0]
        }
    );
    let page = Page {
        order: Order::Desc,
        limit: Some(5000),
        after: Some(Cursor {
            ts_micros: 8000,
            id: ids[1000],
        }),
    };
    let (docs, _) = query_docs(&store, Selection::default(), page).await;
    assert_eq!(seqs(&docs), (1001..6001).collect::<Vec<_>>());
}

async fn deleted_metrics_never_come_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    insert(&store, &tagged_docs()).await;
    let web = by_tags(vec![tag("host", MatchOp::Regex(re("web-.*")))]);
    let selection = Selection {
        names: vec!["cpu".into()],
        end_micros: Some(1004),
        ..web.clone()
    };
    assert_eq!(store.delete(&selection).await.unwrap(), 2);
    assert_eq!(store.delete(&selection).await.unwrap(), 0);
    let (docs, _) = query_docs(&store, web.clone(), Page::default()).await;
    assert_eq!(seqs(&docs), vec![1, 3, 10, 11]);
    let replayed: Vec<String> = store
        .replay(&Selection::default(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.doc)
        .collect();
    assert_eq!(replayed.len(), 10);
    assert!(replayed
        .iter()
        .all(|d| !d.contains(r#""value":0,"#) && !d.contains(r#""value":2,"#)));
    // The catalog forgets a value once its last metric is gone; a new one brings it back.
    let cpu = Selection {
        names: vec!["cpu".into()],
        ..Selection::default()
    };
    assert_eq!(
        store.tag_values("host", &cpu).await.unwrap(),
        vec!["db-1", "web-10"]
    );
    insert(
        &store,
        &[r#"{"name":"cpu","value":99,"ts":5,"host":"web-1"}"#.to_owned()],
    )
    .await;
    assert_eq!(
        store.tag_values("host", &cpu).await.unwrap(),
        vec!["db-1", "web-1", "web-10"]
    );
    let everything = Selection::default();
    assert_eq!(store.delete(&everything).await.unwrap(), 11);
    assert!(store.tag_keys(&everything).await.unwrap().is_empty());
    assert!(store.names(&everything).await.unwrap().is_empty());
}

async fn retention_deletes_by_prefix_in_batches(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let docs: Vec<String> = ["debug.a", "debug.keep.b", "app", "debugger"]
        .iter()
        .flat_map(|name| {
            (0..5).map(move |i| format!(r#"{{"name":"{name}","value":{i},"ts":{}}}"#, i * 10))
        })
        .collect();
    insert(&store, &docs).await;
    let rule = RetentionRule {
        prefix: "debug.".into(),
        except: vec!["debug.keep.".into()],
        before_micros: 30,
    };
    // debug.a at ts 0, 10, 20 expire: two batches of two, then nothing.
    assert_eq!(store.delete_expired(&rule, 2).await.unwrap(), 2);
    assert_eq!(store.delete_expired(&rule, 2).await.unwrap(), 1);
    assert_eq!(store.delete_expired(&rule, 2).await.unwrap(), 0);
    let counts: Vec<(String, u64)> = store
        .names(&Selection::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.count))
        .collect();
    let expected = [
        ("app", 5),
        ("debug.a", 2),
        ("debug.keep.b", 5),
        ("debugger", 5),
    ];
    assert_eq!(counts, expected.map(|(n, c)| (n.to_owned(), c)).to_vec());
    // Case matters: `DEBUG.` is not `debug.` (SQLite's LIKE would say it is).
    let shouting = RetentionRule {
        prefix: "DEBUG.".into(),
        except: vec![],
        before_micros: i64::MAX,
    };
    assert_eq!(store.delete_expired(&shouting, 100).await.unwrap(), 0);
    let all = RetentionRule {
        before_micros: 20,
        ..RetentionRule::default()
    };
    // Before ts 20: app, debug.keep.b and debugger at 0 and 10.
    assert_eq!(store.delete_expired(&all, 100).await.unwrap(), 6);
}

async fn the_catalog_lists_names_keys_and_values(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    insert(&store, &tagged_docs()).await;
    insert(
        &store,
        &[r#"{"name":"disk","value":1,"ts":1,"dev":"sda"}"#.to_owned()],
    )
    .await;
    let names = store.names(&Selection::default()).await.unwrap();
    let summary: Vec<(&str, u64, i64, i64, Vec<&str>)> = names
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.count,
                n.first_micros,
                n.last_micros,
                n.tag_keys.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "cpu",
                6,
                1000,
                1010,
                vec!["host", "o", "port", "region", "up"]
            ),
            ("disk", 1, 1, 1, vec!["dev"]),
            (
                "mem",
                6,
                1001,
                1011,
                vec!["host", "o", "port", "region", "up"]
            ),
        ]
    );
    let eu = by_tags(vec![tag("region", eq(&["eu"]))]);
    let names = store.names(&eu).await.unwrap();
    assert_eq!(
        names
            .iter()
            .map(|n| (n.name.as_str(), n.count))
            .collect::<Vec<_>>(),
        vec![("cpu", 1), ("mem", 1)]
    );
    assert_eq!(names[0].tag_keys, vec!["region"]);
    let disk = Selection {
        names: vec!["disk".into()],
        ..Selection::default()
    };
    assert_eq!(store.tag_keys(&disk).await.unwrap(), vec!["dev"]);
    assert_eq!(
        store.tag_keys(&Selection::default()).await.unwrap(),
        vec!["dev", "host", "o", "port", "region", "up"]
    );
    assert_eq!(
        store
            .tag_values("port", &Selection::default())
            .await
            .unwrap(),
        vec!["80", "80.0", "8080"]
    );
    assert_eq!(
        store.tag_values("up", &Selection::default()).await.unwrap(),
        vec!["false", "true"]
    );
    let web = by_tags(vec![tag("host", MatchOp::Regex(re("web-.*")))]);
    assert_eq!(
        store.tag_values("host", &web).await.unwrap(),
        vec!["web-1", "web-10", "web-2"]
    );
    assert!(store.tag_values("dev", &web).await.unwrap().is_empty());
}

async fn the_migration_gives_existing_rows_their_series(backend: Backend) {
    let db = TestDb::new(backend).await;
    // The schema as it was before the catalog, with rows written then.
    let url = match backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    let conn = sea_orm::Database::connect(url).await.unwrap();
    Migrator::up(&conn, Some(3)).await.unwrap();
    let docs = tagged_docs();
    for doc in &docs {
        let m = metric(doc);
        conn.execute(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "INSERT INTO metrics (name, ts, value, doc) VALUES ($1, $2, $3, $4)",
            [
                m.name.into(),
                m.ts_micros.into(),
                m.value.into(),
                m.doc.into(),
            ],
        ))
        .await
        .unwrap();
    }
    drop(conn);
    let store = store(&db).await;
    let web = by_tags(vec![tag("host", MatchOp::Regex(re("web-.*")))]);
    let (found, _) = query_docs(&store, web, Page::default()).await;
    assert_eq!(seqs(&found), vec![0, 1, 2, 3, 10, 11]);
    // New writes of the same series join the backfilled ones.
    insert(
        &store,
        &[r#"{"name":"cpu","value":12,"ts":2000,"host":"web-1","port":80,"up":true}"#.to_owned()],
    )
    .await;
    let same = by_tags(vec![tag("host", eq(&["web-1"]))]);
    let (found, _) = query_docs(&store, same, Page::default()).await;
    assert_eq!(seqs(&found), vec![0, 1, 12]);
    assert_eq!(
        store.tag_values("up", &Selection::default()).await.unwrap(),
        vec!["false", "true"]
    );
}

async fn any_text_is_a_tag(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let long = "x".repeat(10_000);
    let docs = [
        r#"{"name":"t","value":0,"ts":1,"k\u0000":"nul \u0000 bell \u0007"}"#.to_owned(),
        format!(r#"{{"name":"t","value":1,"ts":2,"k\u0000":"{long}","\ud83d\ude00":"\u00e9"}}"#),
    ];
    insert(&store, &docs).await;
    let nul = by_tags(vec![tag("k\0", eq(&["nul \0 bell \u{7}"]))]);
    assert_eq!(
        seqs(&query_docs(&store, nul, Page::default()).await.0),
        vec![0]
    );
    let long_one = by_tags(vec![tag("k\0", eq(&[long.as_str()]))]);
    assert_eq!(
        seqs(&query_docs(&store, long_one, Page::default()).await.0),
        vec![1]
    );
    assert_eq!(
        store.tag_keys(&Selection::default()).await.unwrap(),
        vec!["k\0", "\u{1F600}"]
    );
    assert_eq!(
        store
            .tag_values("k\0", &Selection::default())
            .await
            .unwrap(),
        vec!["nul \0 bell \u{7}".to_owned(), long]
    );
}

on_both_backends!(
    any_text_is_a_tag,
    every_operator_matches_as_the_live_rule,
    pages_never_skip_nor_repeat_under_writes,
    large_answers_come_in_bounded_chunks,
    deleted_metrics_never_come_back,
    retention_deletes_by_prefix_in_batches,
    the_catalog_lists_names_keys_and_values,
    the_migration_gives_existing_rows_their_series,
);

#[test]
fn the_migration_reads_tags_as_the_server_does() {
    let docs = [
        r#"{"name":"cpu","value":1,"ts":"2016-01-01","port":80,"host":"web-1","up":true,"n":null,"o":{"a":[1,2]},"f":80.0,"e":"a\u00e9"}"#,
        r#"{"name":"x","value":1,"ts":1,"k":"a","k":"b","s":" spaced ","q":"\"q\"","arr":[1, 2],"neg":-1e3}"#,
        r#"{"name":"x","value":null,"ts":1}"#,
        "[1]",
        "not json",
    ];
    for doc in docs {
        assert_eq!(migrations::tags_of(doc), tags_of(doc), "{doc}");
    }
}
