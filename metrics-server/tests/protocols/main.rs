//! The other protocols' write routes over a real socket, on SQLite and on PostgreSQL: InfluxDB
//! line protocol, Prometheus remote write 1.0 and OTLP/HTTP metrics.
//!
//! ```text
//! cargo test -p metrics-server --test protocols
//! ```
//!
//! `wire` sends each protocol's bytes built here (golden answers, errors, auth, limits, the live
//! fan-out); `clients` runs the real clients: the Python OpenTelemetry SDK's OTLP/HTTP exporter,
//! the Python `influxdb-client`, Debian's `prometheus` and `vmagent` (package
//! `victoria-metrics`), all installed by `tests/protocols/ci-setup.sh` (which `scripts/test`
//! runs, and these tests run when something is missing). The tests fail, never skip, when a
//! client cannot run.

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod clients;
mod common;
mod wire;

use metrics_test_support::on_both_backends;
