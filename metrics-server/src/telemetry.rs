//! Logging: tracing to stderr, and also to a file when `--log-file` is set.

use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// Installs the global subscriber. Keep the returned guard alive: dropping it flushes the file.
pub fn init(filter: &str, log_file: Option<&Path>) -> anyhow::Result<Option<WorkerGuard>> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let stderr = fmt::layer().with_writer(std::io::stderr);
    let (file, guard) = match log_file {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path.file_name().context("--log-file must name a file")?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
            let (writer, guard) =
                tracing_appender::non_blocking(tracing_appender::rolling::never(dir, name));
            (
                Some(fmt::layer().with_ansi(false).with_writer(writer).boxed()),
                Some(guard),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .context("a global logger is already installed")?;
    Ok(guard)
}
