//! The fault suite: what the server promises when something goes wrong or a client is hostile.
//! A full disk, database connections killed under load, slow and stalled clients, the
//! file-descriptor limit, tokens and scopes, malformed input, the page's headers. Every test
//! that touches a database runs on SQLite and on PostgreSQL.
//!
//! ```text
//! cargo test -p metrics-server --test faults
//! ```
//!
//! Tests that need root (mounting a small tmpfs) say so and skip when it is not allowed.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod auth;
mod bad_input;
mod common;
mod connections;
mod http_errors;
mod page;
mod raw;
mod slow_clients;
mod websocket;

/// `crate::on_both_backends!(...)` in every module: one test per backend.
#[allow(unused_imports)]
use metrics_test_support::on_both_backends;

mod database;
mod disk;
