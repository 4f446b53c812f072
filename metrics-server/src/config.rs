//! The server's configuration: one clap struct, every option with an environment fallback.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::auth::{AuthMode, Scope, Secret};

/// Configuration of `metrics-server`. Every option can also come from the environment variable
/// named in `--help`; the command line wins.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "metrics-server",
    version,
    about = "Ingest metrics over HTTP, query them by time range, and push them live over WebSockets.",
    long_about = None
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 5000)]
    pub port: u16,

    /// Database URL: `sqlite://PATH` (the file is created when missing) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://metrics.db",
        global = true
    )]
    pub database_url: String,

    /// Largest request body accepted, in bytes or with a unit (`512KiB`, `16MiB`); a larger
    /// body gets 413.
    #[arg(long, env = "METRICS_BODY_LIMIT", default_value = "16MiB", value_parser = parse_size)]
    pub body_limit: usize,

    /// Log filter, in tracing's EnvFilter syntax: `info`, `debug`, `metrics_server=debug,sqlx=warn`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Also append the log to this file.
    #[arg(long, env = "METRICS_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Connections in the database pool.
    #[arg(long, env = "METRICS_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,

    /// Most metrics the writer stores in one transaction when it groups concurrent writes.
    #[arg(long, env = "METRICS_MAX_COMMIT", default_value_t = 10_000)]
    pub max_commit: usize,

    /// How many metrics a live subscriber may fall behind before the server closes its socket
    /// (code 1013). Bounds the memory the live stream can hold.
    #[arg(long, env = "METRICS_SUBSCRIBER_BUFFER", default_value_t = 4096)]
    pub subscriber_buffer: usize,

    /// How long the server remembers an `Idempotency-Key` of `POST /v1/metrics`: a retry with the
    /// same key within this window stores nothing and gets the original answer.
    #[arg(long, env = "METRICS_IDEMPOTENCY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_window: Duration,

    /// Most live WebSockets (`/v1/ws` and `/v1/stream` together) open at once; one more upgrade
    /// gets 503 with `Retry-After` before the handshake (Grafana Live's `max_connections`).
    #[arg(long, env = "METRICS_MAX_WS_CONNECTIONS", default_value_t = 100)]
    pub max_ws_connections: usize,

    /// How long a live WebSocket may stay unwritable (its reader stopped reading) before the
    /// server drops it, e.g. `10s` or `500ms` (NATS' `write_deadline`).
    #[arg(long, env = "METRICS_WS_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_write_timeout: Duration,

    /// Origins, besides the server's own, whose pages may open a WebSocket: comma-separated
    /// `scheme://host[:port]`, or `*` for any. A browser upgrade from any other `Origin` gets 403;
    /// clients that send no `Origin` (SDKs, curl) are not affected.
    #[arg(long, env = "METRICS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Free space the SQLite database's filesystem must keep: below it, writes are refused with
    /// 507 `insufficient_storage` (reads go on) until space returns. In bytes or with a unit
    /// (`100MiB`, `1GiB`); `0` turns the check off. Ignored for PostgreSQL, whose disk the
    /// server cannot see (a full PostgreSQL disk also answers 507).
    #[arg(long, env = "METRICS_MIN_FREE_DISK", default_value = "100MiB", value_parser = parse_disk_size)]
    pub min_free_disk: u64,

    /// On shutdown, the longest wait for requests in flight, e.g. `10s` or `500ms`.
    #[arg(long, env = "METRICS_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest time a client may take to send a request's line and headers, from the connection's
    /// start or its first byte after an idle spell; the connection is then closed.
    #[arg(long, env = "METRICS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Longest time a client may take to send a whole request body, from the end of its
    /// headers; a body still incomplete then gets 408 `request_timeout`.
    #[arg(long, env = "METRICS_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long a keep-alive connection may sit idle, with no request in flight, before the
    /// server closes it.
    #[arg(long, env = "METRICS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Longest time a write to a client may make no progress (the client reads nothing); the
    /// connection, WebSockets included, is then dropped.
    #[arg(long, env = "METRICS_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Most client connections open at once, WebSockets included; a connection over the cap
    /// gets 503 `unavailable` with `Retry-After` and is closed.
    #[arg(long, env = "METRICS_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Largest request line plus headers, in bytes or with a unit; larger gets 431
    /// `headers_too_large`.
    #[arg(long, env = "METRICS_MAX_HEADER_SIZE", default_value = "32KiB", value_parser = parse_size)]
    pub max_header_size: usize,

    /// Whether requests need a token: `on`, `off`, or `auto` (on when a token exists or the
    /// server listens beyond loopback; decided at start). Beyond loopback with no token the
    /// server refuses to start unless `off`. See docs/security.md.
    #[arg(long, env = "METRICS_AUTH", value_enum, default_value = "auto")]
    pub auth: AuthMode,

    /// An admin token accepted besides the stored ones (hashed in memory at start, never
    /// stored): at least 20 characters. Prefer `--admin-token-file` or the environment variable;
    /// a command line is visible to every user of the machine.
    #[arg(long, env = "METRICS_ADMIN_TOKEN", hide_env_values = true, value_parser = crate::auth::parse_secret)]
    pub admin_token: Option<Secret>,

    /// A file holding the admin token (as `--admin-token`; surrounding whitespace is ignored).
    #[arg(long, env = "METRICS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Remove metrics older than this (by their `ts`), e.g. `30d`; or, as `PREFIX=AGE`, those
    /// whose name starts with `PREFIX` (`debug.=1d`). Repeat for several rules; the longest
    /// matching prefix wins, and `PREFIX=forever` exempts a prefix. Ages take `s`, `m`, `h`, `d`
    /// or `w`. Without a rule, metrics are kept forever. In the environment, separate rules
    /// with commas.
    #[arg(long = "retention", env = "METRICS_RETENTION", value_delimiter = ',')]
    pub retention: Vec<crate::retention::RetentionSpec>,

    /// How often the retention task looks for expired metrics (the first pass runs at start).
    #[arg(long, env = "METRICS_RETENTION_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// Most expired metrics the retention task deletes in one transaction; it yields to other
    /// work between two, so writes never wait behind a long delete.
    #[arg(long, env = "METRICS_RETENTION_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_batch: u64,

    /// Without a command, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `metrics-server` does instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage API tokens in the database given by `--database-url`, then exit.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `metrics-server token ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once, on stdout).
    Create {
        /// What it may do; repeat for several: read, write, delete, admin (implies the rest).
        #[arg(long = "scope", value_enum, required = true)]
        scopes: Vec<Scope>,
        /// Confine it to metric names starting with this prefix; repeat for several.
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        /// A label for people, shown by `token list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List every token (never the tokens themselves: their ids, scopes and first characters).
    List,
    /// Revoke a token by its id: it stops working at once.
    Revoke {
        /// The token's id, from `token list`.
        id: i64,
    },
}

impl Config {
    /// The defaults, pointed at `database_url`: what tests and embedders start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["metrics-server"]);
        config.database_url = database_url.into();
        config
    }
}

/// `1048576`, `512KiB`, `16MiB`, `1GiB` (also `KB`/`MB`/`GB`, read as powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 16MiB"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size as [`parse_size`] reads it, for disk space.
fn parse_disk_size(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

/// `10s`, `500ms`, `2m`, `24h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10s"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!(
            "unknown duration unit {other:?}; use ms, s, m or h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let c = Config::parse_from(["metrics-server"]);
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 5000));
        assert_eq!(c.database_url, "sqlite://metrics.db");
        assert_eq!(c.body_limit, 16 << 20);
        assert_eq!(
            (
                c.header_timeout,
                c.body_timeout,
                c.idle_timeout,
                c.write_timeout
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(60),
                Duration::from_secs(30)
            )
        );
        assert_eq!((c.max_connections, c.max_header_size), (512, 32 << 10));
        assert_eq!(c.max_ws_connections, 100);
        assert_eq!(c.ws_write_timeout, Duration::from_secs(10));
        assert!(c.allowed_origins.is_empty());
        assert_eq!(c.min_free_disk, 100 << 20);
        assert!(c.retention.is_empty());
        assert_eq!(
            (c.retention_interval, c.retention_batch),
            (Duration::from_secs(60), 1000)
        );
    }

    #[test]
    fn retention_rules_repeat_and_bad_ones_are_named() {
        let c = Config::parse_from([
            "metrics-server",
            "--retention",
            "30d",
            "--retention",
            "debug.=1d",
        ]);
        let rules: Vec<String> = c.retention.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["30d", "debug.=1d"]);
        let err = Config::try_parse_from(["metrics-server", "--retention", "30 days"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--retention") && err.contains("unknown unit"),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn command_line_overrides() {
        let c = Config::parse_from(["metrics-server", "--port", "0", "--body-limit", "1MiB"]);
        assert_eq!((c.port, c.body_limit), (0, 1 << 20));
        let c = Config::parse_from(["metrics-server", "--min-free-disk", "0"]);
        assert_eq!(c.min_free_disk, 0);
    }
}
