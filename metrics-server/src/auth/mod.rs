//! Tokens and scopes: who may call which route.
//!
//! Every request passes `Auth::check` before its handler (the WebSocket upgrades included, so a
//! refused socket never sees a `101`). The route decides what is needed (`policy`): nothing for
//! the page, its assets, `/healthz` and the API docs; any valid token for `/v1/limits`; `read`
//! for other GETs, `write` for POSTs, `delete` for DELETEs and `admin` for `/v1/tokens`. `admin`
//! implies every scope. A missing, unknown or revoked token gets `401` with
//! `WWW-Authenticate: Bearer realm="metrics"`; a valid token without the scope gets `403`.
//!
//! The token is read from, in order: `Authorization: Bearer <t>`, `Authorization: Token <t>`
//! (InfluxDB's agents), `Authorization: Basic` with the token as password (any user name), a
//! `Sec-WebSocket-Protocol` value `bearer.<t>` (what a browser can send on a WebSocket), and, on
//! the WebSocket routes only, `?access_token=<t>`. The query parameter is removed from the request
//! before it reaches the handler. Tokens are kept as SHA-256 hashes and looked up by hash.

pub(crate) mod cli;

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use base64::Engine;
use metrics_types::ErrorCode;
use poem::{
    http::{header, uri::PathAndQuery, Method, StatusCode, Uri},
    Request,
};
use sha2::{Digest, Sha256};

pub use self::cli::run as run_token_command;
use crate::{api::ApiError, store::TokenStore, Config};

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, poem_openapi::Enum,
)]
#[oai(rename_all = "lowercase")]
pub enum Scope {
    /// Query metrics, list names, subscribe to the live streams.
    Read,
    /// Store metrics.
    Write,
    /// Delete metrics (for the delete routes to come).
    Delete,
    /// Manage tokens; implies every other scope.
    Admin,
}

impl Scope {
    /// The scope's name, as written in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }

    /// Scopes as stored: comma-separated.
    pub(crate) fn join(scopes: &[Scope]) -> String {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Scopes as stored, read back (unknown names are skipped).
    pub(crate) fn split(text: &str) -> Vec<Scope> {
        text.split(',')
            .filter_map(|s| match s.trim() {
                "read" => Some(Scope::Read),
                "write" => Some(Scope::Write),
                "delete" => Some(Scope::Delete),
                "admin" => Some(Scope::Admin),
                _ => None,
            })
            .collect()
    }
}

/// What the caller of a request may do: the scopes and name prefixes of its token. Handlers find
/// it in the request's extensions when auth is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    scopes: Vec<Scope>,
    prefixes: Vec<String>,
}

impl Grant {
    /// A grant of these scopes, confined to names starting with one of `prefixes` (none: any).
    pub fn new(scopes: Vec<Scope>, prefixes: Vec<String>) -> Self {
        Grant { scopes, prefixes }
    }

    /// Whether the token has `scope` (or `admin`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token is confined to some name prefixes (an admin token never is).
    pub fn is_confined(&self) -> bool {
        !self.prefixes.is_empty() && !self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token may touch metrics named `name`.
    pub fn allows_name(&self, name: &str) -> bool {
        !self.is_confined() || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The 403 for a metric name outside the token's prefixes.
    pub(crate) fn name_forbidden(&self, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this token is confined to metric names starting with {}; {name:?} is not one",
                self.prefix_list()
            ),
        )
    }

    fn prefix_list(&self) -> String {
        self.prefixes
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// `--auth`: whether requests need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every route but the page, `/healthz` and the API docs needs a token.
    On,
    /// No route needs a token (only behind a proxy that authenticates).
    Off,
    /// On when a token exists (stored, or `METRICS_ADMIN_TOKEN` / `--admin-token-file`) or the
    /// server listens beyond loopback; decided at start.
    Auto,
}

/// A secret from the configuration: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shortest bootstrap token accepted, in characters.
pub(crate) const MIN_SECRET_CHARS: usize = 20;

/// Parses `METRICS_ADMIN_TOKEN`: at least [`MIN_SECRET_CHARS`] characters.
pub(crate) fn parse_secret(s: &str) -> Result<Secret, String> {
    let s = s.trim();
    if s.chars().count() < MIN_SECRET_CHARS {
        return Err(format!(
            "an admin token needs at least {MIN_SECRET_CHARS} characters; generate one with \
             `openssl rand -hex 32` or use `metrics-server token create --scope admin`"
        ));
    }
    Ok(Secret(s.to_owned()))
}

/// The beginning of every generated token, so that secret scanners can spot one.
pub const TOKEN_PREFIX: &str = "mt_";

/// Characters of a token kept as its hint.
pub(crate) const HINT_CHARS: usize = 9;

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hex.
pub(crate) fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator failing is not something to serve through.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// SHA-256 of a token, lowercase hex: what the store keeps and looks up.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `host` (as given to `--host`) is a loopback address only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: anyone may call it.
    Open,
    /// A valid token, whatever its scopes.
    AnyToken,
    /// A token with this scope.
    Scope(Scope),
}

/// What `method path` needs. Unknown routes need a token like the API around them, so that
/// the answer to a stranger does not tell which routes exist.
pub(crate) fn policy(method: &Method, path: &str) -> Need {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if path == "/" || path == "/healthz" || under("/assets") || under("/docs") {
        return Need::Open;
    }
    if path == "/openapi.json" {
        return Need::Open;
    }
    if path == "/v1/limits" {
        return Need::AnyToken;
    }
    if under("/v1/tokens") {
        return Need::Scope(Scope::Admin);
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Need::Scope(Scope::Read),
        Method::DELETE => Need::Scope(Scope::Delete),
        _ => Need::Scope(Scope::Write),
    }
}

/// The routes that upgrade to a WebSocket, where `?access_token=` is accepted.
fn is_websocket_route(path: &str) -> bool {
    path == "/v1/ws" || path == "/v1/stream"
}

/// The server's authentication: off, or on with its token store and bootstrap token.
#[derive(Clone)]
pub struct Auth {
    inner: Option<Arc<Enabled>>,
}

struct Enabled {
    /// The stored tokens; `None` for a server over a store without a database.
    tokens: Option<TokenStore>,
    /// SHA-256 of the bootstrap admin token, if one is configured.
    bootstrap: Option<String>,
}

impl Auth {
    /// No route needs a token.
    pub fn off() -> Self {
        Auth { inner: None }
    }

    /// Whether requests need a token.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Decides from the configuration and the stored tokens, refusing to serve beyond loopback
    /// without any token (unless `--auth off`).
    pub async fn resolve(config: &Config, tokens: Option<TokenStore>) -> anyhow::Result<Auth> {
        let bootstrap = bootstrap_token(config)?;
        if config.auth == AuthMode::Off {
            if bootstrap.is_some() {
                tracing::warn!("--auth off: the configured admin token is not needed and ignored");
            }
            return Ok(Auth::off());
        }
        let stored = match &tokens {
            Some(store) => store
                .active()
                .await
                .context("cannot count the stored tokens")?,
            None => 0,
        };
        let any_token = stored > 0 || bootstrap.is_some();
        let loopback = is_loopback(&config.host);
        if !loopback && !any_token {
            anyhow::bail!(
                "refusing to serve on {host} without authentication: no token is configured. \
                 Create one with `metrics-server token create --scope admin` (same --database-url), \
                 or set METRICS_ADMIN_TOKEN or --admin-token-file, or pass --auth off to serve \
                 without tokens (only behind a proxy that authenticates)",
                host = config.host
            );
        }
        let on = config.auth == AuthMode::On || any_token || !loopback;
        if !on {
            return Ok(Auth::off());
        }
        if !any_token {
            tracing::warn!(
                "auth is on and no token exists: create one with `metrics-server token create`"
            );
        }
        tracing::info!(
            stored_tokens = stored,
            admin_token = bootstrap.is_some(),
            "auth on"
        );
        Ok(Auth {
            inner: Some(Arc::new(Enabled {
                tokens,
                bootstrap: bootstrap.map(|s| hash_token(s.expose())),
            })),
        })
    }

    /// For a server without a token store ([`crate::Server::with_store`]): on unless `--auth
    /// off`, or `auto` on loopback without an admin token; only the admin token is accepted. An
    /// unreadable token file leaves auth on with no token rather than off.
    pub fn without_store(config: &Config) -> Auth {
        let bootstrap = bootstrap_token(config).unwrap_or_else(|err| {
            tracing::error!(error = %err, "admin token unreadable: no token is accepted");
            None
        });
        let on = match config.auth {
            AuthMode::Off => false,
            AuthMode::On => true,
            AuthMode::Auto => bootstrap.is_some() || !is_loopback(&config.host),
        };
        if !on {
            return Auth::off();
        }
        Auth {
            inner: Some(Arc::new(Enabled {
                tokens: None,
                bootstrap: bootstrap.map(|s| hash_token(s.expose())),
            })),
        }
    }

    /// Lets `req` through, or says why not. On success the caller's [`Grant`] is in the
    /// request's extensions and `access_token` is gone from its query.
    pub(crate) async fn check(&self, req: &mut Request) -> Result<(), ApiError> {
        let path = req.uri().path().to_owned();
        let websocket = is_websocket_route(&path);
        let from_query = strip_access_token(req);
        let Some(enabled) = &self.inner else {
            return Ok(());
        };
        let need = policy(req.method(), &path);
        if need == Need::Open {
            return Ok(());
        }
        let token =
            match credential(req) {
                Some(token) => token,
                None if websocket => match from_query {
                    Some(token) => token,
                    None => return Err(unauthorized(MISSING)),
                },
                None if from_query.is_some() => return Err(unauthorized(
                    "`access_token` is accepted on the WebSocket routes only; send the token in \
                     an `Authorization: Bearer <token>` header",
                )),
                None => return Err(unauthorized(MISSING)),
            };
        let hash = hash_token(&token);
        let grant = if enabled.bootstrap.as_deref() == Some(hash.as_str()) {
            Some(Grant::new(vec![Scope::Admin], Vec::new()))
        } else {
            match &enabled.tokens {
                Some(store) => store.grant(&hash).await?,
                None => None,
            }
        };
        let Some(grant) = grant else {
            return Err(unauthorized(
                "the token is not valid: unknown or revoked. Send a token made by `metrics-server \
                 token create` or POST /v1/tokens",
            ));
        };
        if let Need::Scope(scope) = need {
            if !grant.allows(scope) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::Forbidden,
                    format!(
                        "{} {path} needs a token with scope `{}`; this token has {}",
                        req.method(),
                        scope.as_str(),
                        Scope::join(&grant.scopes)
                    ),
                ));
            }
        }
        if grant.is_confined() {
            confine(&grant, req.method(), &path, req.uri())?;
        }
        req.extensions_mut().insert(grant);
        Ok(())
    }
}

const MISSING: &str = "this route needs a token: send `Authorization: Bearer <token>` (or \
                       `Token <token>`, or Basic with the token as password); on a WebSocket, a \
                       `bearer.<token>` subprotocol or `?access_token=<token>`";

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

/// The checks a prefix-confined token needs before the handler: reads must name their metrics.
/// (`POST /v1/metrics` checks each metric's name once the body is parsed; `GET /v1/names` lists
/// only the names within the prefixes.)
fn confine(grant: &Grant, method: &Method, path: &str, uri: &Uri) -> Result<(), ApiError> {
    let reads_by_name = (path == "/v1/metrics" && *method == Method::GET) || path == "/v1/stream";
    if path == "/v1/ws" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "/v1/ws streams every metric and this token is confined to names starting with \
                 {}; subscribe to /v1/stream?name=<name> instead",
                grant.prefix_list()
            ),
        ));
    }
    if !reads_by_name {
        return Ok(());
    }
    let names: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(key, value)| key == "name" && !value.is_empty())
        .map(|(_, value)| value.into_owned())
        .collect();
    if names.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this token is confined to metric names starting with {}: name the metrics \
                 (`?name=...`) to read",
                grant.prefix_list()
            ),
        ));
    }
    match names.iter().find(|name| !grant.allows_name(name)) {
        Some(name) => Err(grant.name_forbidden(name)),
        None => Ok(()),
    }
}

/// The token a request carries in a header, if any.
fn credential(req: &Request) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
            return Some(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (_user, password) = decoded.split_once(':')?;
            return Some(password.to_owned());
        }
        return None;
    }
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer."))
        .map(str::to_owned)
}

/// Takes `access_token` out of the request's query (so that no handler sees it and no log line
/// of a URI can hold it); returns its value.
fn strip_access_token(req: &mut Request) -> Option<String> {
    let query = req.uri().query()?;
    if !query
        .split('&')
        .any(|pair| pair == "access_token" || pair.starts_with("access_token="))
    {
        return None;
    }
    let mut token = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "access_token" {
            token.get_or_insert_with(|| value.into_owned());
        } else {
            kept.append_pair(&key, &value);
        }
    }
    let kept = kept.finish();
    let path_and_query = if kept.is_empty() {
        req.uri().path().to_owned()
    } else {
        format!("{}?{kept}", req.uri().path())
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    token
}

/// The bootstrap admin token: `METRICS_ADMIN_TOKEN`, or the contents of `--admin-token-file`.
fn bootstrap_token(config: &Config) -> anyhow::Result<Option<Secret>> {
    if let Some(secret) = &config.admin_token {
        return Ok(Some(secret.clone()));
    }
    let Some(path) = &config.admin_token_file else {
        return Ok(None);
    };
    read_token_file(path).map(Some)
}

fn read_token_file(path: &PathBuf) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?;
    parse_secret(&text)
        .map_err(|err| anyhow::anyhow!("--admin-token-file {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.9.0.1",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "example.com", "192.168.1.2"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn routes_need_their_scope() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(policy(&get, "/"), Need::Open);
        assert_eq!(policy(&get, "/healthz"), Need::Open);
        assert_eq!(policy(&get, "/assets/dashboard.js"), Need::Open);
        assert_eq!(policy(&get, "/docs/"), Need::Open);
        assert_eq!(policy(&get, "/openapi.json"), Need::Open);
        assert_eq!(policy(&get, "/docsx"), Need::Scope(Scope::Read));
        assert_eq!(policy(&get, "/v1/limits"), Need::AnyToken);
        assert_eq!(policy(&get, "/v1/metrics"), Need::Scope(Scope::Read));
        assert_eq!(policy(&post, "/v1/metrics"), Need::Scope(Scope::Write));
        assert_eq!(
            policy(&Method::DELETE, "/v1/metrics"),
            Need::Scope(Scope::Delete)
        );
        assert_eq!(policy(&get, "/v1/tokens"), Need::Scope(Scope::Admin));
        assert_eq!(
            policy(&Method::DELETE, "/v1/tokens/3"),
            Need::Scope(Scope::Admin)
        );
    }

    #[test]
    fn admin_implies_every_scope_and_no_confinement() {
        let admin = Grant::new(vec![Scope::Admin], vec!["cpu.".into()]);
        assert!(admin.allows(Scope::Write) && admin.allows_name("mem"));
        let writer = Grant::new(vec![Scope::Write], vec!["cpu.".into()]);
        assert!(!writer.allows(Scope::Read));
        assert!(writer.allows_name("cpu.load") && !writer.allows_name("mem"));
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (a, b) = (generate_token(), generate_token());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!format!("{:?}", parse_secret(&a)).contains(&a));
    }

    #[test]
    fn credentials_from_every_transport() {
        let token = "mt_abc";
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("any:{token}"));
        for value in [
            format!("Bearer {token}"),
            format!("Token {token}"),
            format!("Basic {basic}"),
        ] {
            let req = Request::builder()
                .header(header::AUTHORIZATION, value.as_str())
                .finish();
            assert_eq!(credential(&req).as_deref(), Some(token), "{value}");
        }
        let req = Request::builder()
            .header(header::SEC_WEBSOCKET_PROTOCOL, "metrics, bearer.mt_abc")
            .finish();
        assert_eq!(credential(&req).as_deref(), Some(token));
        let mut req = Request::builder()
            .uri(Uri::from_static(
                "/v1/stream?name=a&access_token=mt_abc&since=3",
            ))
            .finish();
        assert_eq!(strip_access_token(&mut req).as_deref(), Some(token));
        assert_eq!(req.uri().to_string(), "/v1/stream?name=a&since=3");
    }
}
