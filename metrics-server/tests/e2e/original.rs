//! The original service's README examples and its own test scenario, unchanged.

use serde_json::{json, Value};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(readme_examples_answer_as_described, sample_scenario_counts);

/// The README's insert example, then each of its query examples.
async fn readme_examples_answer_as_described(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;

    // curl -H "Content-Type: application/json" -X POST -d '{"name":"asdf", "ts": "2016-01-01", "value": "qwerty"}'
    let (status, answer) = server
        .post(r#"{"name":"asdf", "ts": "2016-01-01", "value": "qwerty"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["resp"], "success");
    assert_eq!(answer["stored"], 1);

    for (name, day) in [
        ("foo", "2016-01-01"),
        ("foo", "2016-01-02"),
        ("foo", "2016-01-03"),
        ("bar", "2016-01-02"),
    ] {
        server
            .post_ok(&json!({"name": name, "ts": day, "value": 1}))
            .await;
    }
    let names = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r["name"].as_str().unwrap(),
                    r["ts"].as_str().unwrap()
                )
            })
            .collect()
    };

    // Omitting all parameters returns everything, as posted.
    let all = server.query("").await;
    assert_eq!(all.len(), 5);
    assert_eq!(
        all[0],
        json!({"name": "asdf", "ts": "2016-01-01", "value": "qwerty"})
    );

    assert_eq!(
        names(&server.query("?name=foo").await),
        ["foo@2016-01-01", "foo@2016-01-02", "foo@2016-01-03"]
    );
    assert_eq!(
        names(&server.query("?name=foo&sts=2016-01-01").await),
        ["foo@2016-01-01", "foo@2016-01-02", "foo@2016-01-03"]
    );
    assert_eq!(
        names(&server.query("?ets=2016-01-02").await),
        [
            "asdf@2016-01-01",
            "foo@2016-01-01",
            "foo@2016-01-02",
            "bar@2016-01-02"
        ]
    );
    assert_eq!(
        names(
            &server
                .query("?name=foo&sts=2016-01-01&ets=2016-01-02")
                .await
        ),
        ["foo@2016-01-01", "foo@2016-01-02"]
    );
    // The README's "exactly" example: sts equal to ets.
    assert_eq!(
        names(
            &server
                .query("?name=foo&sts=2016-01-02&ets=2016-01-02")
                .await
        ),
        ["foo@2016-01-02"]
    );
    assert_eq!(
        names(&server.query("?sts=2016-01-02").await),
        ["foo@2016-01-02", "bar@2016-01-02", "foo@2016-01-03"]
    );
}

/// The original tests.py: 100 sample metrics cycling names foo/bar/baz, values 1 to 4 and days
/// 2016-01-01 to 2016-01-04, then counts for combinations of name, sts and ets.
async fn sample_scenario_counts(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let names = ["foo", "bar", "baz"];
    for i in 0..100 {
        server
            .post_ok(&json!({
                "name": names[i % 3],
                "value": i % 4 + 1,
                "ts": format!("2016-01-0{}", i % 4 + 1),
                "i": i,
            }))
            .await;
    }

    // Worked out by hand: metric i has name i%3 and day i%4, so a name and a day meet every 12
    // metrics; foo (i%3 = 0) falls on day 1, 2, 3, 4 for 9, 8, 8 and 9 of i < 100.
    let cases = [
        ("", 100),
        ("?name=foo", 34),
        ("?name=bar", 33),
        ("?name=baz", 33),
        ("?name=foo&name=bar", 67),
        ("?sts=2016-01-01", 100),
        ("?sts=2016-01-02", 75),
        ("?ets=2016-01-02", 50),
        ("?sts=2016-01-02&ets=2016-01-03", 50),
        ("?sts=2016-01-02&ets=2016-01-02", 25),
        ("?sts=2016-01-05", 0),
        ("?name=foo&sts=2016-01-01&ets=2016-01-01", 9),
        ("?name=foo&sts=2016-01-02", 25),
        ("?name=foo&ets=2016-01-02", 17),
        ("?name=foo&sts=2016-01-01&ets=2016-01-02", 17),
        ("?name=foo&sts=2016-01-02&ets=2016-01-02", 8),
        ("?name=bar&sts=2016-01-02&ets=2016-01-02", 9),
        ("?name=baz&sts=2016-01-04", 8),
        ("?name=nope", 0),
    ];
    for (query, expected) in cases {
        let rows = server.query(query).await;
        assert_eq!(rows.len(), expected, "{query}");
    }

    // Ordered by ts, ties in the order they were stored.
    let rows = server.query("?name=foo").await;
    let keys: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["ts"].as_str().unwrap().to_owned(),
                r["i"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0], ("2016-01-01".to_owned(), 0));
    assert_eq!(keys[1], ("2016-01-01".to_owned(), 12));
}
