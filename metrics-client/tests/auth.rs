//! The SDK against a server with auth on: `bearer_token` reaches every route the SDK calls, the
//! WebSocket subscription included, and a missing or wrong token is an `unauthorized` error.
//!
//! `cargo test -p metrics-client --test auth` (both backends).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use metrics_client::{Client, Error, Timestamp};
use metrics_server::{
    auth::Scope,
    store::{self, NewToken, TokenStore},
};

use crate::common::{on_both_backends, Backend, TestDb, TestServer};

on_both_backends!(the_token_reaches_every_route);

fn assert_unauthorized<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::Api { status, code, .. }) => {
            assert_eq!(
                (status.as_u16(), code.as_str()),
                (401, "unauthorized"),
                "{what}"
            )
        }
        other => panic!("{what}: expected a 401, got {other:?}"),
    }
}

async fn the_token_reaches_every_route(backend: Backend) {
    let db = TestDb::new(backend).await;
    let tokens = TokenStore::new(store::connect(&db.url, 1).await.unwrap());
    let (token, _) = tokens
        .create(NewToken {
            name: "sdk".into(),
            scopes: vec![Scope::Read, Scope::Write],
            prefixes: Vec::new(),
        })
        .await
        .unwrap();
    let server = TestServer::start(&db).await;
    let ts: Timestamp = "2016-01-01T00:00:00Z".parse().unwrap();

    let client = Client::builder()
        .bearer_token(token)
        .build(&server.base_url())
        .unwrap();
    client.limits().await.unwrap();
    let mut sub = client.subscribe().name("cpu").await.unwrap();
    client.record("cpu", 1, ts).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a metric within 30 s")
        .expect("open")
        .expect("a metric");
    assert_eq!(live.name, "cpu");
    assert_eq!(client.query().name("cpu").send().await.unwrap().len(), 1);

    for (what, client) in [
        ("no token", Client::new(&server.base_url()).unwrap()),
        (
            "a wrong token",
            Client::builder()
                .bearer_token("mt_wrong")
                .build(&server.base_url())
                .unwrap(),
        ),
    ] {
        assert_unauthorized(what, client.record("cpu", 2, ts).await);
        assert_unauthorized(what, client.query().name("cpu").send().await);
        assert_unauthorized(what, client.limits().await);
        assert_unauthorized(what, client.subscribe().name("cpu").await.map(|_| ()));
    }
    server.stop().await;
}
