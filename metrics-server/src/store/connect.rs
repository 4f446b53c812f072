//! Opening the database: PostgreSQL or SQLite from a URL, with migrations applied.

use std::{str::FromStr, time::Duration};

use migrations::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions,
};

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`: the production store.
    Postgres,
    /// `sqlite://path` or `sqlite:path`: the embedded default, a file created when missing.
    Sqlite,
}

impl Backend {
    /// The backend of a database URL, if it is one we serve.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }
}

/// Connects to `url`, creating a missing SQLite file, and brings the schema up to date.
///
/// SQLite runs in WAL mode with `synchronous = FULL`: every commit is on disk before it is
/// acknowledged, so an acknowledged write survives a crash of the server or the machine.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let db = match Backend::of_url(url) {
        Some(Backend::Postgres) => {
            let options = PgConnectOptions::from_str(url)?
                .log_statements(tracing::log::LevelFilter::Trace)
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out by default: one more round trip per
                // query and per commit (seen as `PgConnection::ping` in the range-query profile).
                // A connection that died is reported by the statement itself instead.
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        }
        Some(Backend::Sqlite) => {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                // Durability is untouched by these; they keep a large group commit in memory.
                // The profile of 10,000-row commits showed a third of the writer's time copying
                // pages to the statement journal file (`subjournalPageIfRequired`) and spilling
                // dirty pages to the WAL mid-transaction (`pagerStress`). A larger page cache
                // also removed the spills, but every pooled connection keeps its own: the
                // 1,000,000-row query then grew the server by 176 MiB per run.
                .pragma("temp_store", "memory")
                .pragma("cache_spill", "off")
                .busy_timeout(Duration::from_secs(10))
                .log_statements(tracing::log::LevelFilter::Trace)
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection it hands out by default: one more round trip per
                // query and per commit (seen as `PgConnection::ping` in the range-query profile).
                // A connection that died is reported by the statement itself instead.
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        }
        None => anyhow::bail!(
            "unsupported database URL {url:?}: expected postgres://... or sqlite://path"
        ),
    };
    Migrator::up(&db, None).await?;
    Ok(db)
}
