//! The migrations CLI: `up`, `down`, `status`, `fresh`, ... against `DATABASE_URL` (or `-u URL`).
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1/metrics cargo run -p migrations -- status`

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migrations::Migrator).await;
}
