//! The real clients against the real server, on SQLite and on PostgreSQL, each configured with
//! the lines docs/integrations.md gives (auth on, the token where the client puts it):
//! - the Python OpenTelemetry SDK's OTLP/HTTP exporter (protobuf), by environment variables
//!   only, pointed at `/otlp` and at the server's root; and the SDK's data as OTLP JSON;
//! - the Python `influxdb-client` (line protocol, `POST /api/v2/write`);
//! - Debian's `prometheus`, scraping itself and remote-writing to us;
//! - Debian's `vmagent`, scraping itself and remote-writing to us.
//!
//! Each waits for the metrics to be queryable on our JSON API (polling, with a bound that only
//! stops a run that would never finish), and stops the processes it started.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::common::{
    free_port, query, start_with_auth, wait_for, Backend, TestDb, TestServer, ADMIN,
};

crate::on_both_backends!(
    the_opentelemetry_python_sdk_exports_over_otlp_http,
    the_influxdb_python_client_writes_line_protocol,
    prometheus_remote_writes_to_us,
    vmagent_remote_writes_to_us,
);

/// The pinned versions, the same as in `tests/protocols/ci-setup.sh`.
const VENV: &str = "protocol-clients-otel1.45.2-influx1.50.0";

/// Runs the setup script once per test binary (it is idempotent): the venv and the apt
/// packages. Returns the venv's python.
fn setup() -> PathBuf {
    static SETUP: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut done = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(python) = &*done {
        return python.clone();
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let venv = target.join(VENV);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protocols/ci-setup.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(&venv)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {} ({err})", script.display()));
    assert!(
        status.success(),
        "{} failed: it installs prometheus and victoria-metrics (apt) and the Python clients \
         (PyPI) the protocol tests need",
        script.display()
    );
    let python = venv.join("bin/python");
    *done = Some(python.clone());
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/protocols")
        .join(name)
}

/// Runs a command to its end; panics with its output unless it succeeds. Returns stdout.
async fn run(command: &mut Command) -> String {
    let output = command.kill_on_drop(true).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn one<'a>(metrics: &'a [Value], what: &str) -> &'a Value {
    assert_eq!(metrics.len(), 1, "{what}: {metrics:?}");
    &metrics[0]
}

async fn the_opentelemetry_python_sdk_exports_over_otlp_http(backend: Backend) {
    let python = setup();
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    // docs/integrations.md: the exporter's standard environment, the token as a header.
    for (endpoint, prefix) in [
        (format!("{}/otlp", server.base_url()), "otel"),
        (server.base_url(), "root"),
    ] {
        run(Command::new(&python)
            .arg(script("otel_export.py"))
            .args(["sdk", prefix])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("Authorization=Bearer {ADMIN}"),
            )
            .env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"))
        .await;
        // Stored on return: a 200 means committed.
        let counter = query(&server, &format!("{prefix}.requests")).await;
        let counter = one(&counter, "counter");
        assert_eq!(counter["value"], json!(5));
        assert_eq!(counter["route"], "/a");
        assert_eq!(counter["service.name"], "otel-test");
        assert_eq!(counter["telemetry.sdk.language"], "python");
        assert_eq!(
            one(&query(&server, &format!("{prefix}.queue")).await, "queue")["value"],
            json!(5)
        );
        let temp = query(&server, &format!("{prefix}.temp")).await;
        assert_eq!(one(&temp, "gauge")["value"], json!(21.5));
        assert_eq!(temp[0]["room"], "lab");
        let count = query(&server, &format!("{prefix}.latency_count")).await;
        assert_eq!(one(&count, "count")["value"], json!(3));
        let sum = query(&server, &format!("{prefix}.latency_sum")).await;
        assert_eq!(one(&sum, "sum")["value"].as_f64(), Some(325.0));
        let buckets = query(&server, &format!("{prefix}.latency_bucket")).await;
        let le = |bound: &str| {
            buckets
                .iter()
                .find(|b| b["le"] == bound)
                .unwrap_or_else(|| panic!("no le={bound}: {buckets:?}"))["value"]
                .clone()
        };
        // The SDK's default bounds 0, 5, 10, 25, ... 10000: 5 <= 5, 20 <= 25, 300 <= 500.
        assert_eq!(
            (le("5"), le("25"), le("500"), le("+Inf")),
            (json!(1), json!(2), json!(3), json!(3))
        );
        assert_eq!(le("0"), json!(0));
    }

    // The same SDK data as OTLP JSON.
    let out = run(Command::new(&python).arg(script("otel_export.py")).args([
        "json",
        &server.url("/otlp/v1/metrics"),
        ADMIN,
    ]))
    .await;
    assert_eq!(out.trim(), "200 application/json {}");
    let counter = query(&server, "otljson.requests").await;
    assert_eq!(one(&counter, "json counter")["value"], json!(5));
    assert_eq!(query(&server, "otljson.latency_bucket").await.len(), 16);
}

async fn the_influxdb_python_client_writes_line_protocol(backend: Backend) {
    let python = setup();
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    run(Command::new(&python)
        .arg(script("influx_write.py"))
        .args([&server.base_url(), ADMIN]))
    .await;
    let level = query(&server, "h2o.level").await;
    assert_eq!(
        *one(&level, "level"),
        json!({"name": "h2o.level", "value": 8.5, "ts": "2024-01-02T03:04:05.123456Z",
               "db": "my-bucket", "location": "coyote creek", "sensor id": "a,b=c"})
    );
    assert_eq!(
        one(&query(&server, "h2o.count").await, "count")["value"],
        json!(3)
    );
    assert_eq!(
        one(&query(&server, "h2o.note").await, "note")["value"],
        json!("say \"hi\" \\ bye")
    );
    assert_eq!(
        one(&query(&server, "h2o.ok").await, "ok")["value"],
        json!(true)
    );
    let plain = query(&server, "h2o").await;
    assert_eq!(one(&plain, "value field")["value"], json!(1.25));
    assert_eq!(plain[0]["location"], "santa monica");
    let raw = query(&server, "raw m.f 1").await;
    assert_eq!(
        *one(&raw, "raw line"),
        json!({"name": "raw m.f 1", "value": 1, "ts": "2024-01-02T03:04:05Z", "db": "my-bucket", "t,k": "v=1"})
    );
}

/// A client process and its log, stopped (killed) when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn spawn(command: &mut Command, log: PathBuf) -> Agent {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?} ({err})"));
        Agent { child, log }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Waits for an `up` sample of `job` remote-written by an agent; returns it.
async fn wait_for_up(server: &TestServer, job: &str, agent: &Agent) -> Value {
    let found = wait_for(server, "up", Duration::from_secs(120), |metrics| {
        metrics.iter().any(|m| m["job"] == job)
    })
    .await
    .unwrap_or_else(|metrics| {
        panic!(
            "no `up` of job {job} arrived: {metrics:?}\nagent log:\n{}",
            agent.log()
        )
    });
    found.into_iter().find(|m| m["job"] == job).unwrap()
}

async fn prometheus_remote_writes_to_us(backend: Backend) {
    setup();
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // docs/integrations.md's remote_write block.
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus-self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         \x20 - job_name: metrics-server\n    authorization:\n      credentials: {ADMIN}\n    static_configs:\n      - targets: ['{ours}']\n\
         remote_write:\n  - url: {url}\n    authorization:\n      credentials: {ADMIN}\n    queue_config:\n      batch_send_deadline: 1s\n",
        url = server.url("/api/v1/write"),
        ours = server.addr,
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let agent = Agent::spawn(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        dir.path().join("prometheus.log"),
    );
    let up = wait_for_up(&server, "prometheus-self", &agent).await;
    assert_eq!(up["value"], json!(1.0), "{up}");
    assert_eq!(up["instance"], format!("127.0.0.1:{port}"));
    // A histogram of Prometheus's own arrives in the shape OTLP histograms are stored in.
    let buckets = wait_for(
        &server,
        "prometheus_http_request_duration_seconds_bucket",
        Duration::from_secs(60),
        |m| m.iter().any(|b| b["le"] == "+Inf"),
    )
    .await
    .unwrap_or_else(|m| panic!("no histogram buckets: {m:?}\n{}", agent.log()));
    assert!(buckets.iter().all(|b| b["value"].is_number()));
    // It scrapes our own /metrics (docs/operations.md) too, and sends those back to us.
    let ours = wait_for_up(&server, "metrics-server", &agent).await;
    assert_eq!(ours["value"], json!(1.0), "{ours}");
    let stored = wait_for(
        &server,
        "metrics_rows_stored_total",
        Duration::from_secs(60),
        |m| {
            m.iter()
                .any(|s| s["value"].as_f64().is_some_and(|v| v > 0.0))
        },
    )
    .await
    .unwrap_or_else(|m| panic!("our own metrics did not arrive: {m:?}\n{}", agent.log()));
    assert_eq!(stored[0]["job"], "metrics-server");
    agent.stop().await;
}

async fn vmagent_remote_writes_to_us(backend: Backend) {
    setup();
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let scrape = format!(
        "scrape_configs:\n  - job_name: vmagent-self\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    std::fs::write(dir.path().join("scrape.yml"), scrape).unwrap();
    // docs/integrations.md's vmagent flags.
    let agent = Agent::spawn(
        Command::new("vmagent")
            .arg(format!(
                "-promscrape.config={}",
                dir.path().join("scrape.yml").display()
            ))
            .arg(format!("-remoteWrite.url={}", server.url("/api/v1/write")))
            .arg(format!("-remoteWrite.bearerToken={ADMIN}"))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vmagent-data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}")),
        dir.path().join("vmagent.log"),
    );
    let up = wait_for_up(&server, "vmagent-self", &agent).await;
    assert_eq!(up["value"], json!(1.0), "{up}");
    // vmagent also takes line protocol and forwards it by remote write (`measurement_field`).
    let response = server
        .http
        .post(format!("http://127.0.0.1:{port}/write"))
        .body("via_vmagent,host=h temp=21.5")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let forwarded = wait_for(&server, "via_vmagent_temp", Duration::from_secs(60), |m| {
        !m.is_empty()
    })
    .await
    .unwrap_or_else(|m| panic!("the line did not arrive: {m:?}\n{}", agent.log()));
    assert_eq!(forwarded[0]["value"], json!(21.5));
    assert_eq!(forwarded[0]["host"], "h");
    agent.stop().await;
}
