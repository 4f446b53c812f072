//! [`StoreError`]: what a database failure means for the client, told apart once, here.
//!
//! A failure is transient ([`StoreError::Unavailable`]: retry later), a full disk
//! ([`StoreError::DiskFull`], [`StoreError::LowDiskSpace`]: retry once space is freed), or
//! anything else ([`StoreError::Database`]: a bug or a broken schema). The API turns them into
//! 503 with `Retry-After`, 507 and 500.

use std::sync::Arc;

use sea_orm::{DbErr, RuntimeErr};

/// A failure of the database. The message is for the log, never for a client. Cheap to clone,
/// so that one failed group commit can answer every request in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A transient failure: the database is unreachable or restarting, a connection was lost or
    /// terminated, the pool is exhausted, the database is busy or locked, or a transaction lost a
    /// conflict. Retrying later may succeed. A write that failed so may or may not be committed.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `53100 disk_full`): the
    /// write was rolled back, nothing of it is stored.
    #[error("database disk full: {0}")]
    DiskFull(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The SQLite file's filesystem has less free space than `--min-free-disk`: the write was
    /// refused before it began.
    #[error("{free} bytes free on the database's filesystem, below the minimum of {min}")]
    LowDiskSpace {
        /// Bytes available, as last measured.
        free: u64,
        /// The configured minimum.
        min: u64,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

/// What a database error means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Retry later: 503.
    Transient,
    /// The disk is full: 507.
    DiskFull,
    /// Neither: 500.
    Other,
}

impl StoreError {
    fn of(class: Class, err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        let err = Arc::new(err);
        match class {
            Class::Transient => StoreError::Unavailable(err),
            Class::DiskFull => StoreError::DiskFull(err),
            Class::Other => StoreError::Database(err),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::of(classify(&err), err)
    }
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        let class = match &err {
            DbErr::ConnectionAcquire(_) => Class::Transient,
            DbErr::Conn(RuntimeErr::SqlxError(sqlx))
            | DbErr::Exec(RuntimeErr::SqlxError(sqlx))
            | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => classify(sqlx),
            DbErr::Conn(_) => Class::Transient,
            _ => Class::Other,
        };
        StoreError::of(class, err)
    }
}

/// Sorts a sqlx error: a lost or refused connection, a closed or exhausted pool, or a transient
/// code from the database is [`Class::Transient`]; a full disk is [`Class::DiskFull`].
fn classify(err: &sqlx::Error) -> Class {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Class::Transient,
        sqlx::Error::Database(db) => {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|code| code.parse().ok())
                    .map_or(Class::Other, sqlite_class)
            } else if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                sqlstate_class(pg.code())
            } else {
                Class::Other
            }
        }
        _ => Class::Other,
    }
}

/// PostgreSQL's SQLSTATE: class 08 (connection exception), 57P01-57P03 (the backend was
/// terminated, the server is shutting down or starting), 40001 and 40P01 (serialization failure,
/// deadlock: the transaction was rolled back) and class 53 (insufficient resources) are
/// transient, except 53100, a full disk.
fn sqlstate_class(code: &str) -> Class {
    match code {
        "53100" => Class::DiskFull,
        "57P01" | "57P02" | "57P03" | "40001" | "40P01" => Class::Transient,
        _ if code.starts_with("08") || code.starts_with("53") => Class::Transient,
        _ => Class::Other,
    }
}

/// SQLite's extended result code: its low byte is the primary code. `SQLITE_FULL` (13) is a full
/// disk; `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6), another connection holding the lock past the
/// busy timeout, are transient.
fn sqlite_class(extended: i32) -> Class {
    match extended & 0xff {
        13 => Class::DiskFull,
        5 | 6 => Class::Transient,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::{sqlite_class, sqlstate_class, Class, StoreError};

    #[test]
    fn postgres_codes() {
        assert_eq!(sqlstate_class("53100"), Class::DiskFull);
        for transient in [
            "08000", "08003", "08006", "57P01", "57P02", "57P03", "40001", "40P01", "53200",
            "53300",
        ] {
            assert_eq!(sqlstate_class(transient), Class::Transient, "{transient}");
        }
        for other in ["23505", "42P01", "22P02", "57014", "XX000"] {
            assert_eq!(sqlstate_class(other), Class::Other, "{other}");
        }
    }

    #[test]
    fn sqlite_codes() {
        assert_eq!(sqlite_class(13), Class::DiskFull);
        assert_eq!(sqlite_class(5), Class::Transient);
        // SQLITE_BUSY_SNAPSHOT and SQLITE_LOCKED_SHAREDCACHE: extended codes of the same kind.
        assert_eq!(sqlite_class(5 | (2 << 8)), Class::Transient);
        assert_eq!(sqlite_class(6 | (1 << 8)), Class::Transient);
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CORRUPT, SQLITE_ERROR.
        for other in [2067, 11, 1] {
            assert_eq!(sqlite_class(other), Class::Other, "{other}");
        }
    }

    #[test]
    fn lost_connections_and_exhausted_pools_are_unavailable() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        for err in [
            sqlx::Error::Io(io()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            let shown = err.to_string();
            assert!(
                matches!(StoreError::from(err), StoreError::Unavailable(_)),
                "{shown}"
            );
        }
        // The same errors as sea-orm reports them, from a query or from the pool.
        for err in [
            DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Io(io()))),
            DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::PoolClosed)),
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        ] {
            let shown = err.to_string();
            assert!(
                matches!(StoreError::from(err), StoreError::Unavailable(_)),
                "{shown}"
            );
        }
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
        assert!(matches!(
            StoreError::from(DbErr::Custom("bug".into())),
            StoreError::Database(_)
        ));
    }
}
