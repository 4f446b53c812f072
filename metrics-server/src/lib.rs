//! The metrics reference server: ingest metrics over HTTP, answer time-range queries, and push
//! every new metric live over WebSockets.
//!
//! It serves the original `v1` API (`POST /v1/metrics`, `GET /v1/metrics?name=&sts=&ets=`,
//! `GET /v1/ws`, a live page at `/`) over PostgreSQL or an embedded SQLite file, with its OpenAPI
//! spec at `/openapi.json` and Swagger UI at `/docs`.
//!
//! # Layout
//!
//! | module | job |
//! | --- | --- |
//! | [`auth`] | tokens and scopes: the check every request passes, the `token` commands |
//! | [`config`] | the clap [`Config`]: flags, environment variables, defaults |
//! | `api` | the HTTP routes (poem-openapi), reading requests off the wire, the one JSON error |
//! | [`ingest`] | the write path: parsing posted metrics (`ingest::parse`), group commit, hand-off to the hub |
//! | [`retention`] | `--retention`: removing expired metrics in the background |
//! | [`selection`] | which metrics a read means: names, range, tag matchers; paging cursors |
//! | [`monitor`] | self-monitoring: the server's own metrics for `GET /metrics` |
//! | [`hub`] | fan-out of committed metrics to live subscribers, and its lag policy |
//! | [`store`] | the [`store::MetricStore`] trait and its SQL implementation |
//! | [`telemetry`] | logging to stderr and a file |
//! | `transport` | accepting and serving connections: timeouts, the connection cap, header size |
//!
//! # Example
//!
//! Run the server in-process on a SQLite file, on a free port, until ctrl-c:
//!
//! ```no_run
//! use metrics_server::{Config, Server};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let server = Server::start(&Config::with_database("sqlite://metrics.db")).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on http://{}", listener.local_addr()?);
//! server.serve(listener, async { tokio::signal::ctrl_c().await.unwrap() }).await?;
//! # Ok(())
//! # }
//! ```

pub mod aggregation;
pub mod auth;
pub mod config;
pub mod hub;
pub mod ingest;
pub mod monitor;
pub mod retention;
pub mod selection;
pub mod store;
pub mod telemetry;

mod api;
mod transport;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use poem::Endpoint;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::{api::ApiError, config::Config, transport::raise_fd_limit};
use crate::{
    hub::Hub,
    ingest::Ingest,
    store::{MetricStore, SqlStore},
};

/// What every request handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Reads (queries, health) go straight to the store.
    store: Arc<dyn MetricStore>,
    /// Writes go through the group-commit writer.
    ingest: Ingest,
    /// Live subscribers read from here.
    hub: Hub,
    /// Cancelled when the server shuts down, so long-lived sockets close.
    shutdown: CancellationToken,
    /// The largest request body accepted.
    body_limit: usize,
    /// How long an `Idempotency-Key` is remembered.
    idempotency_window: Duration,
    /// Who may call which route.
    auth: auth::Auth,
    /// The stored tokens, for the admin API (`None` over a store without a database).
    tokens: Option<store::TokenStore>,
    /// The live sockets' cap, Origin check and write timeout.
    live: api::LiveSockets,
    /// The server's own metrics (`GET /metrics`).
    monitor: Arc<monitor::Monitor>,
}

/// A running server's parts: the shared state and the writer task behind it.
pub struct Server {
    state: AppState,
    /// Ends once every handle to the writer is dropped and its queue drained.
    writer: JoinHandle<()>,
    /// The retention task (`--retention`); ends when the server shuts down.
    retention: JoinHandle<()>,
    /// How long shutdown waits for requests in flight.
    shutdown_timeout: Duration,
    /// The transport's deadlines and limits.
    limits: transport::Limits,
}

impl Server {
    /// Connects to the configured database, applies migrations and starts the writer.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        retention::plan(&config.retention).map_err(anyhow::Error::msg)?;
        let db = store::connect(&config.database_url, config.db_connections)
            .await
            .with_context(|| {
                format!("cannot open the database {}", redact(&config.database_url))
            })?;
        let tokens = store::TokenStore::new(db.clone());
        let auth = auth::Auth::resolve(config, Some(tokens.clone())).await?;
        let store = SqlStore::new(db).with_min_free_disk(config.min_free_disk);
        let mut server = Server::with_store(Arc::new(store), config);
        server.state.auth = auth;
        server.state.tokens = Some(tokens);
        Ok(server)
    }

    /// A server over any [`MetricStore`], configured by `config` (its database URL is unused).
    /// It has no token store: with `--auth on` only the configured admin token is accepted.
    /// Its retention task starts at once (see [`retention`]); conflicting `--retention` rules,
    /// which [`Server::start`] refuses, are logged and then none is applied.
    pub fn with_store(store: Arc<dyn MetricStore>, config: &Config) -> Server {
        let hub = Hub::new(config.subscriber_buffer);
        let monitor = Arc::new(monitor::Monitor::new());
        let (ingest, writer) = Ingest::start(
            store.clone(),
            hub.clone(),
            config.max_commit,
            monitor.clone(),
        );
        let shutdown = CancellationToken::new();
        let policies = retention::plan(&config.retention).unwrap_or_else(|err| {
            tracing::error!(error = %err, "retention is off");
            Vec::new()
        });
        let retention = retention::spawn(
            store.clone(),
            policies,
            retention::Schedule {
                interval: config.retention_interval,
                batch: config.retention_batch,
            },
            shutdown.clone(),
        );
        Server {
            state: AppState {
                store,
                ingest,
                hub,
                shutdown,
                body_limit: config.body_limit,
                idempotency_window: config.idempotency_window,
                auth: auth::Auth::without_store(config),
                tokens: None,
                live: api::LiveSockets::new(config),
                monitor,
            },
            writer,
            retention,
            shutdown_timeout: config.shutdown_timeout,
            limits: transport::Limits::from_config(config),
        }
    }

    /// The whole HTTP service, for driving it without a socket.
    pub fn app(&self) -> impl Endpoint {
        api::routes(self.state.clone())
    }

    /// The OpenAPI spec, as pretty JSON.
    pub fn openapi_json(&self) -> String {
        api::spec_json(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then shuts down gracefully: stops
    /// accepting, finishes the requests in flight (every acknowledged write is committed),
    /// closes the live sockets with 1001, and waits for the writer to drain.
    ///
    /// Connections are served under the configured deadlines and limits (`--header-timeout`,
    /// `--body-timeout`, `--idle-timeout`, `--write-timeout`, `--max-connections`,
    /// `--max-header-size`); see the `transport` module.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Server {
            state,
            writer,
            retention,
            shutdown_timeout,
            limits,
        } = self;
        let token = state.shutdown.clone();
        let stop_retention = state.shutdown.clone();
        let app = api::routes(state);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            token.cancel();
        };
        let served = transport::serve(listener, app, limits, signal, shutdown_timeout).await;
        // Normally cancelled by the signal already; also when the transport failed.
        stop_retention.cancel();
        served?;
        // The service (and with it every handle to the writer) is gone: the writer drains its
        // queue and stops.
        match tokio::time::timeout(shutdown_timeout, writer).await {
            Ok(joined) => joined.context("the ingest writer panicked")?,
            Err(_) => tracing::warn!("the ingest writer did not drain in time"),
        }
        match tokio::time::timeout(shutdown_timeout, retention).await {
            Ok(joined) => joined.context("the retention task panicked")?,
            Err(_) => tracing::warn!("the retention task did not stop in time"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// A database URL fit for the log: without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://metrics.db"), "sqlite://metrics.db");
    }
}
