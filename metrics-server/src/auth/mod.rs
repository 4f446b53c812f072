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
//! `Sec-WebSocket-Protocol` value `bearer.<t>` (what a browser can send on a WebSocket), on
//! InfluxDB 1's `POST /write` its `?p=<t>`, and, on the WebSocket routes only, `?access_token=<t>`. The query parameter is removed from the request
//! before it reaches the handler. Tokens are kept as SHA-256 hashes and looked up by hash.
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | [`Auth`]: the check of every request, and deciding at start whether auth is on |
//! | `scope.rs` | [`Scope`] and [`Grant`]: what a token may do |
//! | `policy.rs` | what each route needs; the checks of a prefix-confined token |
//! | `credentials.rs` | finding the token in a request's headers or query |
//! | `token.rs` | generating and hashing tokens; the bootstrap admin token ([`Secret`]) |
//! | `cli.rs` | the `token` commands: create, list, revoke |

pub(crate) mod cli;
mod credentials;
mod policy;
mod scope;
mod token;

use std::{net::IpAddr, sync::Arc};

use anyhow::Context;
use metrics_types::ErrorCode;
use poem::{http::StatusCode, Request};

pub use self::{
    cli::run as run_token_command,
    scope::{Grant, Scope},
    token::{Secret, TOKEN_PREFIX},
};
use self::{
    credentials::{credential, influx_password, strip_access_token},
    policy::{confine, is_websocket_route},
    token::bootstrap_token,
};
pub(crate) use self::{
    policy::{policy, Need},
    token::{generate_token, hash_token, parse_secret, HINT_CHARS},
};
use crate::{api::ApiError, store::TokenStore, Config};

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

/// Whether `host` (as given to `--host`) is a loopback address only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
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
            match credential(req).or_else(|| influx_password(req)) {
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
}
