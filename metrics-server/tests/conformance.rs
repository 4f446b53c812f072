//! The server answers as its OpenAPI spec says, checked by an external client: the pinned
//! Schemathesis (`st run`, every check it has but `object_level_authorization`) against the real
//! server, with auth on so that `ignored_auth` runs, on SQLite and on PostgreSQL.
//!
//! ```text
//! cargo test -p metrics-server --test conformance
//! ```
//!
//! Schemathesis lives in a venv under the target directory, installed by
//! `tests/conformance/ci-setup.sh` (which `scripts/test` runs) or by this test when it is missing;
//! `METRICS_TEST_SCHEMATHESIS` may point at another `st`. The test fails, never skips, when it
//! cannot run. Its settings and every narrowly excluded false positive are in
//! `tests/conformance/schemathesis.toml` and `conformance_hooks.py`. The generation is seeded
//! (`METRICS_TEST_CONFORMANCE_SEED`, default 1) so a run is reproducible; the report it prints on
//! failure says how to replay each case.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use metrics_server::{auth::AuthMode, Config};
use metrics_test_support::{on_both_backends, Backend, TestDb, TestServer};

/// The pinned version, the same as in `tests/conformance/ci-setup.sh`.
const SCHEMATHESIS: &str = "4.32.5";

on_both_backends!(answers_as_the_spec_says);

async fn answers_as_the_spec_says(backend: Backend) {
    let st = schemathesis();
    let db = TestDb::new(backend).await;
    // The admin token of `--admin-token`, not a stored one: the run revokes stored tokens
    // (`DELETE /v1/tokens/{id}`), its own would be among them.
    let admin = "conformance-admin-token-0123456789abcdef";
    let mut config = db.config();
    config.auth = AuthMode::On;
    config.admin_token = Config::parse_from(["metrics-server", "--admin-token", admin]).admin_token;
    let server = TestServer::start_with(config).await;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let reports = tempfile::tempdir().unwrap();
    let base = server.base_url();
    let seed = std::env::var("METRICS_TEST_CONFORMANCE_SEED").unwrap_or_else(|_| "1".into());
    let mut command = Command::new(&st);
    command
        .current_dir(reports.path())
        .env("PYTHONPATH", &dir)
        .env("SCHEMATHESIS_HOOKS", "conformance_hooks")
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .args(["--no-color", "run", &format!("{base}/openapi.json")])
        .args(["--url", &base, "--workers", "1", "--max-examples", "25"])
        .args(["--seed", &seed, "--generation-database", "none"])
        .args(["--request-timeout", "10", "--report-dir"])
        .arg(reports.path())
        .args(["-H", &format!("Authorization: Bearer {admin}")]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("cannot run {} ({err})", st.display()));
    server.stop().await;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures on {backend:?} (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It did test every operation of the spec, each phase included.
    assert!(report.contains("Tested: 14"), "{report}");
    assert!(report.contains("Stateful"), "{report}");
}

/// The `st` to run: `METRICS_TEST_SCHEMATHESIS`, or the pinned one in the target directory's
/// venv, installed first when missing.
fn schemathesis() -> PathBuf {
    if let Some(st) = std::env::var_os("METRICS_TEST_SCHEMATHESIS") {
        return st.into();
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let venv = target.join(format!("schemathesis-{SCHEMATHESIS}"));
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/ci-setup.sh");
    // The setup is idempotent, and both backends' tests may ask at once: one at a time.
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let status = Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {} ({err})", setup.display()));
    assert!(
        status.success(),
        "installing schemathesis {SCHEMATHESIS} with {} failed; it needs python3 with venv \
         and pip, and PyPI",
        setup.display()
    );
    venv.join("bin/st")
}
