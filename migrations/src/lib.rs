//! Database schema of the metrics server, as sea-orm-migration migrations.
//!
//! The server runs [`Migrator::up`] at start; the `migrations` binary runs them by hand (`up`,
//! `down`, `status`, ...) against `DATABASE_URL`. Every migration works on PostgreSQL and SQLite.
//!
//! # Example
//!
//! ```no_run
//! use migrations::{Migrator, MigratorTrait};
//!
//! # async fn run(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
//! Migrator::up(db, None).await?;
//! # Ok(())
//! # }
//! ```
//!
//! From a shell: `DATABASE_URL=sqlite://metrics.db cargo run -p migrations -- status`.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_metrics;
mod m20261128_000002_create_idempotency_keys;
mod m20261128_000003_create_tokens;
mod m20261128_000004_series_catalog;

pub use m20261128_000004_series_catalog::{canonical, digest, tags_of};

/// Every migration of the schema, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_metrics::Migration),
            Box::new(m20261128_000002_create_idempotency_keys::Migration),
            Box::new(m20261128_000003_create_tokens::Migration),
            Box::new(m20261128_000004_series_catalog::Migration),
        ]
    }
}
