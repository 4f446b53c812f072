//! `metrics-server`: parse the configuration, set up logging, serve until ctrl-c or SIGTERM;
//! or, with `token create|list|revoke`, manage the API tokens and exit.

use anyhow::Context;
use clap::Parser;
use metrics_server::{auth, config::Command, telemetry, Config, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(Command::Token(command)) = &config.command {
        // A shell command: the migrations' progress lines are noise unless asked for.
        let filter = if config.log == "info" {
            "warn"
        } else {
            &config.log
        };
        let _log_guard = telemetry::init(filter, config.log_file.as_deref())?;
        return auth::run_token_command(&config, command).await;
    }
    let _log_guard = telemetry::init(&config.log, config.log_file.as_deref())?;

    metrics_server::raise_fd_limit(config.max_connections);
    let server = Server::start(&config).await?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    tracing::info!(
        address = %listener.local_addr()?,
        database = %config.database_url.split('@').next_back().unwrap_or_default(),
        "metrics-server listening"
    );
    server.serve(listener, shutdown_signal()).await
}

/// Resolves on ctrl-c or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
