//! Tokens and scopes: every route × no token / wrong token / wrong scope / right scope, the
//! WebSocket upgrades by header, subprotocol and `access_token`, name prefixes, revocation, the
//! token never in the log and only its hash in the store, the refusal to serve beyond loopback
//! without a token, and the `token` CLI.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use clap::Parser;
use metrics_server::{
    auth::{AuthMode, Scope},
    store::{self, NewToken, TokenStore},
    Config, Server,
};
use reqwest::{header, Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Error as WsError},
};

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(
    every_route_answers_each_credential_as_its_scope_says,
    every_transport_carries_the_token,
    websocket_upgrades_are_checked_before_the_101,
    prefix_confined_tokens_stay_within_their_names,
    revoked_tokens_stop_working_at_once,
    the_store_holds_only_a_hash_and_the_admin_api_shows_the_token_once,
    the_token_is_never_in_the_log,
    the_cli_creates_lists_and_revokes,
    loopback_without_tokens_needs_no_setup,
    beyond_loopback_without_a_token_the_server_refuses_to_start,
);

/// A token that was never issued.
const WRONG: &str = "mt_0000000000000000000000000000000000000000000000000000000000000000";

/// The tokens of one test.
struct Tokens {
    read: String,
    write: String,
    /// read + write: every scope but admin.
    read_write: String,
    delete: String,
    admin: String,
}

async fn token_store(db: &TestDb) -> TokenStore {
    TokenStore::new(store::connect(&db.url, 1).await.expect("database"))
}

async fn create(store: &TokenStore, scopes: &[Scope], prefixes: &[&str]) -> (String, i64) {
    let (token, info) = store
        .create(NewToken {
            name: "test".into(),
            scopes: scopes.to_vec(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        })
        .await
        .expect("create token");
    (token, info.id)
}

/// A server with auth on (`auto`: tokens exist) and one token per scope set.
async fn start_with_tokens(db: &TestDb) -> (TestServer, Tokens, TokenStore) {
    let store = token_store(db).await;
    let tokens = Tokens {
        read: create(&store, &[Scope::Read], &[]).await.0,
        write: create(&store, &[Scope::Write], &[]).await.0,
        read_write: create(&store, &[Scope::Read, Scope::Write], &[]).await.0,
        delete: create(&store, &[Scope::Delete], &[]).await.0,
        admin: create(&store, &[Scope::Admin], &[]).await.0,
    };
    let server = TestServer::start(db).await;
    (server, tokens, store)
}

/// Sends `method path` with an optional bearer token; returns the status, the
/// `WWW-Authenticate` header and the body (JSON when it is JSON).
async fn call(
    server: &TestServer,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = server.http.request(method.clone(), server.url(path));
    if method == Method::POST {
        let body = if path == "/v1/tokens" {
            json!({"scopes": ["read"]})
        } else {
            json!({"name": "cpu.load", "value": 1, "ts": "2016-01-01"})
        };
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, challenge, body)
}

/// Asserts a 401 in the one error shape, with the challenge.
fn assert_unauthorized(
    what: &str,
    (status, challenge, body): &(StatusCode, Option<String>, Value),
) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"metrics\""),
        "{what}"
    );
    assert_eq!(body["code"], "unauthorized", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// Asserts a 403 in the one error shape.
fn assert_forbidden(what: &str, (status, challenge, body): &(StatusCode, Option<String>, Value)) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(*challenge, None, "{what}");
    assert_eq!(body["code"], "forbidden", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Nothing,
    AnyToken,
    Read,
    Write,
    Delete,
    Admin,
}

async fn every_route_answers_each_credential_as_its_scope_says(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, t, _store) = start_with_tokens(&db).await;
    // Every route of the OpenAPI spec but the two WebSockets (see the next tests), plus the
    // routes outside it; the list is checked against the spec below.
    let routes: &[(Method, &str, Needs, StatusCode)] = &[
        (Method::POST, "/v1/metrics", Needs::Write, StatusCode::OK),
        (Method::GET, "/v1/metrics", Needs::Read, StatusCode::OK),
        (Method::GET, "/v1/names", Needs::Read, StatusCode::OK),
        (Method::GET, "/v1/tags", Needs::Read, StatusCode::OK),
        (
            Method::GET,
            "/v1/tags/host/values",
            Needs::Read,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/metrics?name=nothing.here",
            Needs::Delete,
            StatusCode::OK,
        ),
        (Method::GET, "/v1/limits", Needs::AnyToken, StatusCode::OK),
        (
            Method::POST,
            "/v1/tokens",
            Needs::Admin,
            StatusCode::CREATED,
        ),
        (Method::GET, "/v1/tokens", Needs::Admin, StatusCode::OK),
        (
            Method::DELETE,
            "/v1/tokens/999999",
            Needs::Admin,
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/healthz", Needs::Nothing, StatusCode::OK),
        (Method::GET, "/", Needs::Nothing, StatusCode::OK),
        (Method::GET, "/openapi.json", Needs::Nothing, StatusCode::OK),
        (Method::GET, "/docs", Needs::Nothing, StatusCode::OK),
        (
            Method::GET,
            "/assets/dashboard.js",
            Needs::Nothing,
            StatusCode::OK,
        ),
        // An unknown route answers a stranger like the API around it: it does not tell what exists.
        (
            Method::GET,
            "/v1/nothing-here",
            Needs::Read,
            StatusCode::NOT_FOUND,
        ),
    ];

    let (_, _, spec) = call(&server, &Method::GET, "/openapi.json", None).await;
    let mut in_spec: Vec<String> = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            in_spec.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    for op in &in_spec {
        let covered = routes.iter().any(|(m, p, ..)| {
            let p = p.split('?').next().unwrap_or(p);
            let p = if p.starts_with("/v1/tokens/") {
                "/v1/tokens/{id}"
            } else if p.starts_with("/v1/tags/") {
                "/v1/tags/{key}/values"
            } else {
                p
            };
            format!("{m} {p}") == *op
        }) || op == "GET /v1/ws"
            || op == "GET /v1/stream";
        assert!(covered, "{op} is in the spec but not in the auth matrix");
    }

    for (method, path, needs, ok) in routes {
        let what = |who: &str| format!("{method} {path} with {who}");
        let none = call(&server, method, path, None).await;
        let wrong = call(&server, method, path, Some(WRONG)).await;
        let (right, wrong_scope) = match needs {
            Needs::Nothing | Needs::AnyToken => (&t.read, None),
            Needs::Read => (&t.read, Some(&t.write)),
            Needs::Write => (&t.write, Some(&t.read)),
            Needs::Delete => (&t.delete, Some(&t.read_write)),
            Needs::Admin => (&t.admin, Some(&t.read_write)),
        };
        if *needs == Needs::Nothing {
            for (who, answer) in [("no token", &none), ("a wrong token", &wrong)] {
                assert_eq!(answer.0, *ok, "{}: {}", what(who), answer.2);
            }
        } else {
            assert_unauthorized(&what("no token"), &none);
            assert_unauthorized(&what("a wrong token"), &wrong);
        }
        if let Some(wrong_scope) = wrong_scope {
            let answer = call(&server, method, path, Some(wrong_scope)).await;
            assert_forbidden(&what("the wrong scope"), &answer);
        }
        let answer = call(&server, method, path, Some(right)).await;
        assert_eq!(answer.0, *ok, "{}: {}", what("the right scope"), answer.2);
        // admin implies every scope.
        let answer = call(&server, method, path, Some(&t.admin)).await;
        assert_eq!(answer.0, *ok, "{}: {}", what("an admin token"), answer.2);
    }
    // Any valid token reads the limits, whatever its scopes (a write-only agent splits batches).
    let answer = call(&server, &Method::GET, "/v1/limits", Some(&t.write)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    server.stop().await;
}

async fn every_transport_carries_the_token(backend: Backend) {
    use base64::Engine;
    let db = TestDb::new(backend).await;
    let (server, t, _store) = start_with_tokens(&db).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{}", t.read));
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:", t.read));
    for (value, ok) in [
        (format!("Bearer {}", t.read), true),
        (format!("bearer {}", t.read), true),
        (format!("Token {}", t.read), true),
        (format!("Basic {basic}"), true),
        // The token as the user name, with no password, is not accepted.
        (format!("Basic {wrong_basic}"), false),
        (format!("Bearer {WRONG}"), false),
        (t.read.clone(), false),
    ] {
        let response = server
            .http
            .get(server.url("/v1/names"))
            .header(header::AUTHORIZATION, &value)
            .send()
            .await
            .unwrap();
        let expected = if ok { 200 } else { 401 };
        assert_eq!(
            response.status().as_u16(),
            expected,
            "Authorization: {value}"
        );
    }
    // `access_token` is for the WebSocket routes only: elsewhere it is refused (and says so).
    let answer = call(
        &server,
        &Method::GET,
        &format!("/v1/names?access_token={}", t.read),
        None,
    )
    .await;
    assert_unauthorized("access_token on /v1/names", &answer);
    assert!(answer.2["message"].as_str().unwrap().contains("WebSocket"));
    server.stop().await;
}

/// Opens a WebSocket on `path` with the given extra headers; returns the handshake's status,
/// its `Sec-WebSocket-Protocol`, `WWW-Authenticate` and, when refused, the JSON body.
async fn upgrade(
    server: &TestServer,
    path: &str,
    headers: &[(&'static str, String)],
) -> (u16, Option<String>, Option<String>, Value) {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let get = |h: &tokio_tungstenite::tungstenite::http::HeaderMap, name| {
        h.get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    match connect_async(request).await {
        Ok((mut socket, response)) => {
            let protocol = get(response.headers(), "sec-websocket-protocol");
            let _ = socket.close(None).await;
            (response.status().as_u16(), protocol, None, Value::Null)
        }
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap())
                .unwrap_or(Value::Null);
            (
                response.status().as_u16(),
                None,
                get(response.headers(), "www-authenticate"),
                body,
            )
        }
        Err(err) => panic!("{path}: {err}"),
    }
}

async fn websocket_upgrades_are_checked_before_the_101(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, t, _store) = start_with_tokens(&db).await;
    for route in ["/v1/ws", "/v1/stream"] {
        let sep = if route.contains('?') { '&' } else { '?' };
        // Refused before the upgrade, in the one error shape.
        let (status, _, challenge, body) = upgrade(&server, route, &[]).await;
        assert_eq!(status, 401, "{route} without a token: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"metrics\""));
        assert_eq!(body["code"], "unauthorized", "{body}");
        let (status, _, _, body) =
            upgrade(&server, &format!("{route}{sep}access_token={WRONG}"), &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{route} wrong"
        );
        let bearer = |token: &str| vec![("authorization", format!("Bearer {token}"))];
        let (status, _, _, body) = upgrade(&server, route, &bearer(&t.write)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{route} write-only"
        );

        // Accepted by header, by subprotocol (echoing `metrics`, never the token), by query.
        let (status, protocol, ..) = upgrade(&server, route, &bearer(&t.read)).await;
        assert_eq!((status, protocol), (101, None), "{route} by header");
        let offered = vec![(
            "sec-websocket-protocol",
            format!("metrics, bearer.{}", t.read),
        )];
        let (status, protocol, ..) = upgrade(&server, route, &offered).await;
        assert_eq!(status, 101, "{route} by subprotocol");
        assert_eq!(
            protocol.as_deref(),
            Some("metrics"),
            "{route}: echo `metrics`"
        );
        let wrong = vec![("sec-websocket-protocol", format!("metrics, bearer.{WRONG}"))];
        assert_eq!(upgrade(&server, route, &wrong).await.0, 401, "{route}");
        let by_query = format!("{route}{sep}access_token={}", t.read);
        assert_eq!(
            upgrade(&server, &by_query, &[]).await.0,
            101,
            "{route} by query"
        );
    }
    // The query parameter is gone before the handler: the stream still reads its own parameters.
    let path = format!("/v1/stream?name=cpu&access_token={}&since=0", t.read);
    assert_eq!(upgrade(&server, &path, &[]).await.0, 101);
    server.stop().await;
}

async fn prefix_confined_tokens_stay_within_their_names(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, t, store) = start_with_tokens(&db).await;
    let (cpu, _) = create(&store, &[Scope::Read, Scope::Write], &["cpu."]).await;
    let post = |token: String, body: Value| {
        let request = server
            .http
            .post(server.url("/v1/metrics"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let metric = |name: &str| json!({"name": name, "value": 1, "ts": "2016-01-01"});
    assert_eq!(post(cpu.clone(), metric("cpu.load")).await.0, 200);
    assert_eq!(post(t.write.clone(), metric("mem.used")).await.0, 200);
    // A batch with one name outside is refused whole.
    let (status, body) = post(cpu.clone(), json!([metric("cpu.idle"), metric("mem.free")])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("mem.free"),
        "{body}"
    );
    let (_, _, all) = call(&server, &Method::GET, "/v1/metrics", Some(&t.read)).await;
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["cpu.load", "mem.used"],
        "nothing of the refused batch is stored"
    );

    // Reads name their metrics, within the prefixes.
    let (status, _, body) = call(
        &server,
        &Method::GET,
        "/v1/metrics?name=cpu.load",
        Some(&cpu),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body.as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    assert_forbidden(
        "no name",
        &call(&server, &Method::GET, "/v1/metrics", Some(&cpu)).await,
    );
    let outside = call(
        &server,
        &Method::GET,
        "/v1/metrics?name=cpu.load&name=mem.used",
        Some(&cpu),
    )
    .await;
    assert_forbidden("a name outside", &outside);
    // Deletes and the tag catalog name their metrics too, within the prefixes.
    for (method, path) in [
        (Method::DELETE, "/v1/metrics?tag.host=a"),
        (Method::DELETE, "/v1/metrics?name=mem.used"),
        (Method::GET, "/v1/tags"),
        (Method::GET, "/v1/tags/host/values?name=mem.used"),
    ] {
        let (confined_delete, _) = create(&store, &[Scope::Read, Scope::Delete], &["cpu."]).await;
        assert_forbidden(
            &format!("{method} {path}"),
            &call(&server, &method, path, Some(&confined_delete)).await,
        );
    }
    let (confined_delete, _) = create(&store, &[Scope::Delete], &["cpu."]).await;
    let (status, _, body) = call(
        &server,
        &Method::DELETE,
        "/v1/metrics?name=cpu.nothing",
        Some(&confined_delete),
    )
    .await;
    assert_eq!((status.as_u16(), body), (200, json!({"deleted": 0})));
    // The name list is confined, not refused.
    let (status, _, body) = call(&server, &Method::GET, "/v1/names", Some(&cpu)).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = body["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["cpu.load"]);
    // /v1/ws cannot filter: refused; /v1/stream with names inside: accepted.
    let bearer = vec![("authorization", format!("Bearer {cpu}"))];
    assert_eq!(upgrade(&server, "/v1/ws", &bearer).await.0, 403);
    assert_eq!(upgrade(&server, "/v1/stream", &bearer).await.0, 403);
    assert_eq!(
        upgrade(&server, "/v1/stream?name=mem.used", &bearer)
            .await
            .0,
        403
    );
    assert_eq!(
        upgrade(&server, "/v1/stream?name=cpu.load", &bearer)
            .await
            .0,
        101
    );
    server.stop().await;
}

async fn revoked_tokens_stop_working_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, t, store) = start_with_tokens(&db).await;
    let (by_api, api_id) = create(&store, &[Scope::Read], &[]).await;
    let (by_store, store_id) = create(&store, &[Scope::Read], &[]).await;
    for token in [&by_api, &by_store] {
        assert_eq!(
            call(&server, &Method::GET, "/v1/names", Some(token))
                .await
                .0,
            200
        );
    }
    let path = format!("/v1/tokens/{api_id}");
    assert_eq!(
        call(&server, &Method::DELETE, &path, Some(&t.admin))
            .await
            .0,
        204
    );
    assert_unauthorized(
        "revoked by the API",
        &call(&server, &Method::GET, "/v1/names", Some(&by_api)).await,
    );
    // Twice: nothing left to revoke.
    let again = call(&server, &Method::DELETE, &path, Some(&t.admin)).await;
    assert_eq!(
        (again.0.as_u16(), again.2["code"].as_str()),
        (404, Some("not_found"))
    );
    // Revoked in the database by another process (the CLI): no cache keeps it alive.
    assert!(store.revoke(store_id).await.unwrap());
    assert_unauthorized(
        "revoked in the store",
        &call(&server, &Method::GET, "/v1/names", Some(&by_store)).await,
    );
    let bearer = vec![("authorization", format!("Bearer {by_store}"))];
    assert_eq!(upgrade(&server, "/v1/stream", &bearer).await.0, 401);
    server.stop().await;
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn the_store_holds_only_a_hash_and_the_admin_api_shows_the_token_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (server, t, _store) = start_with_tokens(&db).await;
    let response = server
        .http
        .post(server.url("/v1/tokens"))
        .bearer_auth(&t.admin)
        .json(&json!({"name": "grafana", "scopes": ["read"], "prefixes": ["cpu."]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mt_") && token.len() == 67, "{token}");
    assert_eq!(created["info"]["scopes"], json!(["read"]));
    assert_eq!(created["info"]["prefixes"], json!(["cpu."]));
    // It works, within its prefix.
    let path = "/v1/metrics?name=cpu.load";
    assert_eq!(call(&server, &Method::GET, path, Some(&token)).await.0, 200);

    // The list shows it without the secret.
    let (_, _, list) = call(&server, &Method::GET, "/v1/tokens", Some(&t.admin)).await;
    let listed = list.to_string();
    assert!(listed.contains("grafana"), "{listed}");
    for secret in [&token, &t.read, &t.admin] {
        assert!(
            !listed.contains(secret.as_str()),
            "the list holds a token: {listed}"
        );
    }
    // Bad requests are 400s in the one shape.
    for bad in [
        json!({"scopes": []}),
        json!({"scopes": ["admin"], "prefixes": ["cpu."]}),
        json!({"scopes": ["root"]}),
        // Not strings: refused, not stored as the text `false` or `5`.
        json!({"scopes": ["read"], "prefixes": [false]}),
        json!({"scopes": ["read"], "name": 5}),
    ] {
        let response = server
            .http
            .post(server.url("/v1/tokens"))
            .bearer_auth(&t.admin)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["code"].is_string(), "{body}");
    }

    // Every row of the table, every column as text: the hashes, never a token.
    let conn = store::connect(&db.url, 1).await.unwrap();
    let backend_kind = conn.get_database_backend();
    let rows = conn
        .query_all(Statement::from_string(
            backend_kind,
            "SELECT id, name, hash, hint, scopes, prefixes FROM tokens",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "the five of start_with_tokens and grafana");
    let mut dump = String::new();
    let mut hashes = Vec::new();
    for row in &rows {
        let hash: String = row.try_get("", "hash").unwrap();
        for column in ["name", "hint", "scopes", "prefixes"] {
            dump.push_str(&row.try_get::<String>("", column).unwrap());
        }
        dump.push_str(&hash);
        hashes.push(hash);
    }
    for secret in [&token, &t.read, &t.write, &t.read_write, &t.admin] {
        assert!(
            !dump.contains(secret.as_str()),
            "a token is stored in clear"
        );
        assert!(
            hashes.contains(&sha256_hex(secret)),
            "its SHA-256 is stored"
        );
    }
    server.stop().await;
}

/// The binary under test.
fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metrics-server"))
}

async fn the_token_is_never_in_the_log(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = token_store(&db).await;
    let (admin, _) = create(&store, &[Scope::Admin], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let bootstrap = "bootstrap-admin-token-0123456789";
    // The most verbose log there is, and the bootstrap token from the environment.
    let child = binary()
        .args(["--port", "0", "--log", "trace", "--database-url", &db.url])
        .arg("--log-file")
        .arg(&log)
        .env("METRICS_ADMIN_TOKEN", bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let addr = wait_for_address(&log).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"scopes": ["write"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = created["token"].as_str().unwrap().to_owned();
    for (token, path) in [
        (&new, "/v1/names"),
        (&admin, "/v1/names"),
        (&bootstrap.to_owned(), "/v1/tokens"),
        (&WRONG.to_owned(), "/v1/names"),
    ] {
        let status = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 500);
    }
    let status = http
        .post(format!("{base}/v1/metrics"))
        .bearer_auth(&new)
        .json(&json!({"name": "a", "value": 1, "ts": "2016-01-01"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status, 200,
        "the bootstrap and the stored tokens work together"
    );
    let (mut socket, _) = connect_async(format!("ws://{addr}/v1/stream?access_token={admin}"))
        .await
        .unwrap();
    let _ = socket.close(None).await;
    // Ask it to stop (SIGTERM would need a signal crate): the log lines are written as they come.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("auth on"), "the log says auth is on");
    for secret in [&new, &admin, &bootstrap.to_owned()] {
        assert!(!text.contains(secret.as_str()), "a token is in the log");
    }
}

/// Kills the server process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server logs its address to `log`.
async fn wait_for_address(log: &std::path::Path) -> String {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(log) {
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("metrics-server listening"))
            {
                let start = line.find("address=").unwrap() + "address=".len();
                return line[start..].split_whitespace().next().unwrap().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not log its address within 20 s");
}

async fn the_cli_creates_lists_and_revokes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let run = |args: &[&str]| {
        let output = binary()
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "token", "create", "--scope", "write", "--scope", "read", "--prefix", "cpu.", "--name",
        "ci",
    ]);
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_owned();
    assert!(
        token.starts_with("mt_") && !token.contains('\n'),
        "stdout is the token alone: {stdout}"
    );
    assert!(
        stderr.contains("read,write") && stderr.contains("cpu."),
        "{stderr}"
    );
    let (ok, list, stderr) = run(&["token", "list"]);
    assert!(ok, "{stderr}");
    assert!(
        list.contains("ci") && list.contains("read,write") && list.contains(&token[..9]),
        "{list}"
    );
    assert!(!list.contains(&token), "the list shows the token: {list}");

    // The server over that database takes it (auth is on: a token exists).
    let server = TestServer::start(&db).await;
    let path = "/v1/metrics?name=cpu.load";
    assert_eq!(call(&server, &Method::GET, path, Some(&token)).await.0, 200);
    assert_unauthorized("no token", &call(&server, &Method::GET, path, None).await);

    let id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (ok, _, stderr) = run(&["token", "revoke", &id]);
    assert!(ok, "{stderr}");
    assert_unauthorized(
        "revoked by the CLI",
        &call(&server, &Method::GET, path, Some(&token)).await,
    );
    let (ok, _, stderr) = run(&["token", "revoke", &id]);
    assert!(!ok && stderr.contains("no token"), "{stderr}");
    let (_, list, _) = run(&["token", "list"]);
    assert!(
        !list.lines().nth(1).unwrap().trim_end().ends_with('-'),
        "shown revoked: {list}"
    );
    let (ok, _, stderr) = run(&["token", "create", "--scope", "admin", "--prefix", "cpu."]);
    assert!(!ok && stderr.contains("cannot be confined"), "{stderr}");
    server.stop().await;
}

async fn loopback_without_tokens_needs_no_setup(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    assert_eq!(call(&server, &Method::GET, "/v1/names", None).await.0, 200);
    assert_eq!(
        call(&server, &Method::POST, "/v1/metrics", None).await.0,
        200
    );
    server.stop().await;
    // `--auth on` on loopback: tokens needed even with none stored.
    let mut config = db.config();
    config.auth = AuthMode::On;
    let server = TestServer::start_with(config).await;
    assert_unauthorized(
        "auth on",
        &call(&server, &Method::GET, "/v1/names", None).await,
    );
    server.stop().await;
}

async fn beyond_loopback_without_a_token_the_server_refuses_to_start(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.host = "0.0.0.0".into();
    let err = Server::start(&config).await.err().expect("refused");
    assert!(
        err.to_string().contains("refusing to serve on 0.0.0.0"),
        "{err}"
    );
    config.auth = AuthMode::Off;
    Server::start(&config).await.expect("--auth off starts");
    // With a bootstrap token from the configuration it starts, auth on.
    let with_token = Config::try_parse_from([
        "metrics-server",
        "--host",
        "0.0.0.0",
        "--database-url",
        &db.url,
        "--admin-token",
        "bootstrap-admin-token-0123456789",
    ])
    .unwrap();
    Server::start(&with_token)
        .await
        .expect("starts with an admin token");

    // The binary: a non-zero exit with the message, before it listens.
    let output = binary()
        .args([
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--database-url",
            &db.url,
        ])
        .env_remove("METRICS_ADMIN_TOKEN")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0") && stderr.contains("--auth off"),
        "{stderr}"
    );
    // Too short a bootstrap token is refused by name.
    let output = binary()
        .args(["--port", "0", "--database-url", &db.url])
        .env("METRICS_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 20 characters"));
}
