//! Runnable examples of `metrics-client`: each file beside this one opens with what it shows and
//! how to run it. Build them all with `cargo build -p examples --examples`; those that need no
//! running server are `in_process`, `query_engine`, `aggregate` and `facade` (`cargo run -p examples
//! --example in_process`).
//!
//! This library holds the one thing several examples share: a server of their own.

use metrics_server::{Config, Server};

/// The metrics server running in-process on a temporary SQLite file and a free port of
/// 127.0.0.1, for examples that need no server of yours; stops when [`stop`](Self::stop)ped.
pub struct LocalServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Holds the database file's directory.
    _dir: tempfile::TempDir,
}

impl LocalServer {
    /// Starts the server.
    pub async fn start() -> anyhow::Result<LocalServer> {
        let dir = tempfile::tempdir()?;
        let config = Config::with_database(format!(
            "sqlite://{}",
            dir.path().join("metrics.db").display()
        ));
        let server = Server::start(&config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(LocalServer {
            url,
            stop,
            serving,
            _dir: dir,
        })
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.serving.await?
    }
}
