//! The names of the tables and columns the store reads and writes (the migrations create them;
//! see `migrations/src/m20261128_000004_series_catalog.rs` for the series catalog), for the
//! sea-query builders, and which backend a connection talks to.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DeriveIden};

use super::{Backend, StoreError};

/// The `metrics` table: one row per stored metric.
#[derive(DeriveIden, Clone, Copy)]
pub(super) enum Metrics {
    Table,
    Id,
    Name,
    Ts,
    Doc,
    SeriesId,
}

/// The `series` table: one row per distinct (name, tag set), kept at ingest.
#[derive(DeriveIden, Clone, Copy)]
pub(super) enum Series {
    Table,
    Id,
    Name,
}

/// The `series_tags` table: the tags of each series, one row per key with a non-empty text.
#[derive(DeriveIden, Clone, Copy)]
pub(super) enum SeriesTags {
    Table,
    SeriesId,
    Key,
    Value,
    ValueSha,
}

/// `text` as a JSON string: how `series_tags` keeps keys and values, since a JSON text may
/// contain `\u0000`, which a PostgreSQL `text` cannot (as the migration that made the table).
pub(super) fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The backend behind `db`, matched explicitly: a backend the store was not written for is an
/// error, never treated as one it was.
pub(super) fn backend_of(db: &DatabaseConnection) -> Result<Backend, StoreError> {
    match db.get_database_backend() {
        DbBackend::Postgres => Ok(Backend::Postgres),
        DbBackend::Sqlite => Ok(Backend::Sqlite),
        DbBackend::MySql => Err(StoreError::Database(std::sync::Arc::new(
            std::io::Error::other("MySQL is not a backend of this store"),
        ))),
    }
}
