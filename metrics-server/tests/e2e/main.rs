//! End-to-end tests of metrics-server over a real socket, each on SQLite and on PostgreSQL.
//!
//! One binary, one module per feature. Run them all (both backends):
//!
//! ```text
//! cargo test -p metrics-server --test e2e
//! ```
//!
//! PostgreSQL tests create their own database through `METRICS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); run one backend with a filter, e.g.
//! `cargo test -p metrics-server --test e2e sqlite::`.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod common;

/// `crate::on_both_backends!(...)` in every module: one test per backend.
use metrics_test_support::on_both_backends;

mod aggregate;
mod bulk;
mod catalog;
mod delete;

mod errors;
mod filtered_live;
mod idempotency;
mod live;
mod names;
mod numeric_ts;
mod openapi;
mod original;
mod query;
mod retention;
mod round_trip;
mod shutdown;
mod stream;
