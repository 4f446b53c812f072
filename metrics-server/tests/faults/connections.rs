//! Connections beyond what the server can hold (issue 8, defects 3 and 4): connections over
//! `--max-connections` are answered 503 and closed while the others are served, and at the
//! file-descriptor limit the accept loop backs off and logs instead of spinning a core, then
//! serves again once descriptors are free.
//!
//! The fd-limit test runs the real binary under `prlimit --nofile=64:64` (util-linux) and reads
//! its CPU time from `/proc/<pid>/stat`; it is Linux-only. These are transport tests: they never
//! touch what the database stores, so they run on SQLite only.
//!
//! ```text
//! cargo test -p metrics-server --test faults connections
//! ```

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{
    common::{Backend, TestDb, TestServer},
    raw::{closed_within, connect, exchange, read_response, HEALTHZ},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_while_the_others_are_served() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.max_connections = 4;
    let server = TestServer::start_with(config).await;

    // Four connections take the four places (each proves it is being served)...
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(server.addr).await;
        stream.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(response.status, 200);
        held.push(stream);
    }

    // ...so a fifth is turned away, in the one JSON error shape, and closed.
    let mut extra = connect(server.addr).await;
    extra.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let response = read_response(&mut extra, Duration::from_secs(5))
        .await
        .expect("a 503 answer");
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["code"], "unavailable");
    assert!(response.header("retry-after").is_some(), "{response:?}");
    assert!(closed_within(&mut extra, Duration::from_secs(5)).await);

    // The connections inside the cap are still served.
    for stream in &mut held {
        stream.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let response = read_response(stream, Duration::from_secs(5))
            .await
            .expect("an answer on a held connection");
        assert_eq!(response.status, 200);
    }

    // A place freed is a place taken: once one closes, a new connection is served.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = exchange(server.addr, HEALTHZ).await.expect("an answer");
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503);
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Waits for a line of the log file that contains `needle`; returns it.
async fn wait_for_log(log: &Path, needle: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .find(|line| line.contains(needle))
        {
            return Some(line.to_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_fd_limit_accept_backs_off_logs_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let db = TestDb::new(Backend::Sqlite).await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let child = Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_metrics-server"))
        .args(["--port", "0", "--log", "info", "--database-url", &db.url])
        .arg("--log-file")
        .arg(&log)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start metrics-server under prlimit");
    // prlimit execs the server: the pid is the server's.
    let server = Killed(child);
    let pid = server.0.id();

    let line = wait_for_log(&log, "metrics-server listening", Duration::from_secs(30))
        .await
        .expect("the server logs its address");
    let start = line.find("127.0.0.1:").expect("an address in the line");
    let addr: SocketAddr = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect::<String>()
        .parse()
        .unwrap();

    // Idle connections until the server runs out of descriptors (the kernel still completes
    // the handshakes: the connections wait in the listen queue).
    let mut idle: Vec<TcpStream> = Vec::new();
    let logged = loop {
        for _ in 0..8 {
            idle.push(connect(addr).await);
        }
        if let Some(line) = wait_for_log(
            &log,
            "cannot accept connections",
            Duration::from_millis(200),
        )
        .await
        {
            break line;
        }
        assert!(
            idle.len() < 400,
            "{} connections and no accept error logged",
            idle.len()
        );
    };
    assert!(
        logged.contains("Too many open files") || logged.contains("os error 24"),
        "{logged}"
    );

    // Saturated: the server waits between attempts instead of spinning.
    let ticks = clock_ticks_per_second();
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid) - before;
    eprintln!(
        "at the fd limit with {} connections open: {used} ticks of CPU in {window:?} ({ticks}/s)",
        idle.len()
    );
    assert!(
        used * 2 < ticks * window.as_secs(),
        "the server used {used} ticks ({ticks}/s) in {window:?} at the fd limit: it spins"
    );

    // Free the descriptors: the server serves again.
    drop(idle);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = http
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(&response, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving again after the connections closed: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        wait_for_log(&log, "accepting connections again", Duration::from_secs(5))
            .await
            .is_some(),
        "the recovery is logged"
    );
}
