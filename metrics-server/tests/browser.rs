//! The live page at `/` and Swagger UI's "Try it out" at `/docs` in a real headless Chromium:
//! runs the node tests in `tests/browser/` against the server binary cargo just built, on SQLite
//! and on PostgreSQL.
//!
//! ```text
//! cargo test -p metrics-server --test browser
//! ```
//!
//! Needs node (18 or later) and npm, Debian's `chromium` at `/usr/bin/chromium` (or
//! `METRICS_TEST_CHROMIUM`), and PostgreSQL at `METRICS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). The test fails, never skips, when one is
//! missing: a dashboard nobody tested in a browser is not a tested dashboard. It runs `npm ci`
//! when `tests/browser/node_modules` is missing.

use std::{path::Path, process::Command};

#[test]
fn dashboard_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|err| panic!("cannot run npm ({err}); install node and npm"));
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let status = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&dir)
        .env("METRICS_SERVER_BIN", env!("CARGO_BIN_EXE_metrics-server"))
        .status()
        .unwrap_or_else(|err| panic!("cannot run node ({err}); install node 18 or later"));
    assert!(
        status.success(),
        "the browser tests failed; their report is above"
    );
}
