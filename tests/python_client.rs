//! The Python client package in `clients/python`, installed as pip installs it, against
//! a real server and a real HTTP target: its example, its errors, a watch that resumes
//! across a server restart, and the example type-checked against the generated stubs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use tokio::io::AsyncBufReadExt;

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python");
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

/// The package built and installed from `clients/python` into a folder of its own, once
/// per run (tests share it; building it twice at once would share its build folder).
/// `None` when Python's gRPC packages are missing (the test is then skipped).
fn installed() -> Option<&'static Path> {
    static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let needed = "import grpc, grpc_tools, grpc_status, google.rpc.status_pb2";
            if !tool_available(
                Command::new("python3").args(["-c", needed]),
                "one of the Python packages grpcio, grpcio-tools, grpcio-status, googleapis-common-protos",
            ) {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-client");
            let _ = std::fs::remove_dir_all(&dir);
            // No build isolation: the build uses the grpcio-tools installed here, offline.
            let out = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--no-build-isolation"])
                .args(["--no-deps", "--target"])
                .arg(&dir)
                .arg(PACKAGE)
                .output()
                .expect("python3 runs pip");
            assert!(
                out.status.success(),
                "pip install clients/python failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(dir)
        })
        .as_deref()
}

/// A Python command that imports the package from where pip installed it, never
/// from the repository's sources.
fn python(installed: &Path, script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(script)
        .env("PYTHONPATH", installed)
        .kill_on_drop(true);
    command
}

/// Runs `script` with `args` to its end; its stdout, or a panic with all it said.
async fn run(installed: &Path, script: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        python(installed, script).args(args).output(),
    )
    .await
    .expect("the script finished within a minute")
    .expect("python3 ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_submits_a_json_post_watches_it_and_reads_its_json_result() {
    let Some(installed) = installed() else { return };
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    // The target echoes the body back, after a pause that lets the watch see a change.
    let url = target.url("/py/example?echo=1&delay_ms=500");
    let example = format!("{PACKAGE}/examples/submit_watch_result.py");
    let stdout = run(installed, &example, &[&server.addr.to_string(), &url]).await;

    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("submitted j_"), "{stdout}");
    let statuses: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("status "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    // A snapshot first (queued or running), then each change once, in order.
    let order = ["QUEUED", "RUNNING", "SUCCEEDED"];
    let at: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("a known status"))
        .collect();
    assert!(
        at.len() >= 2 && at.windows(2).all(|w| w[0] < w[1]),
        "{stdout}"
    );
    assert_eq!(statuses.last(), Some(&"SUCCEEDED"), "{stdout}");
    assert!(stdout.contains("\nresponse 200\n"), "{stdout}");
    // The response's JSON body, printed as a plain dict (JSON numbers are floats).
    let body = lines
        .iter()
        .find_map(|l| l.strip_prefix("body {"))
        .expect("a body line");
    for part in [
        "'greeting': 'hello'",
        "'items': [1.0, 2.0]",
        "'nested': {'ok': True}",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    let received = target.received_on("/py/example");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"greeting": "hello", "items": [1, 2], "nested": {"ok": true}})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_is_a_jobqueue_error_naming_each_bad_field() {
    let Some(installed) = installed() else { return };
    let server = Server::start().await;
    let script = format!("{SCRIPTS}/client_errors.py");
    let stdout = run(installed, &script, &[&server.addr.to_string()]).await;

    assert!(stdout.contains("code INVALID_ARGUMENT\n"), "{stdout}");
    let mut fields: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("field "))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["job.max_attempts", "job.request.url", "job.ttl"],
        "{stdout}"
    );
    let said = stdout.lines().find_map(|l| l.strip_prefix("str ")).unwrap();
    for field in fields {
        assert!(said.contains(field), "str() names {field}: {said}");
    }
    server.stop().await;
}

/// How the test takes the server down under a watch, and when.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL while the job waits to be due: the connection drops without a word, and
    /// the job runs once the server is back.
    Kill,
    /// SIGTERM while the job's call is in flight: open watches end at once with
    /// UNAVAILABLE, and the call succeeds during the drain, with no watcher connected,
    /// so only a resume from the cursor sees that change.
    Term,
}

/// Takes `server` down as `how` says, and waits for it to be gone.
fn stop(mut server: Process, how: Stop) {
    match how {
        Stop::Kill => server.kill9(),
        Stop::Term => {
            server.sigterm();
            let status = server.wait_exit(Duration::from_secs(30));
            assert!(status.success(), "a drained server exits 0: {status}");
        }
    }
}

/// The next line a script prints; `None` once it closed its stdout.
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the script says something within 30 s")
        .expect("its stdout is readable")
}

/// The `(kind, status)` of each `event` line of the resume script, with its cursor.
fn events<'a>(said: &'a [String], id: &str) -> Vec<(&'a str, &'a str, i64)> {
    said.iter()
        .filter_map(|l| l.strip_prefix("event "))
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            assert_eq!(words[2], id, "{l}");
            (words[0], words[1], words[4].parse().unwrap())
        })
        .collect()
}

/// A script watches a job; the server is stopped under it (see [`Stop`]) and started
/// again on the same address and database. The watch reconnects by itself and sees the
/// job through to SUCCEEDED, each change exactly once.
async fn a_watch_resumes_across_a_restart(how: Stop) {
    let Some(installed) = installed() else { return };
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let addr = free_port();
    let server = Process::start_at(addr, &db.url, &[]);

    let (path, due_in, stop_at, before_stop) = match how {
        Stop::Kill => ("/py/resume", "4", "watching", &[("SNAPSHOT", "QUEUED")][..]),
        Stop::Term => (
            "/py/resume?delay_ms=2000",
            "3",
            "event CHANGE RUNNING",
            &[("SNAPSHOT", "QUEUED"), ("CHANGE", "RUNNING")][..],
        ),
    };
    let script = format!("{SCRIPTS}/client_resume.py");
    let mut child = python(installed, &script)
        .args([&addr.to_string(), &target.url(path), due_in])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    while let Some(line) = next_line(&mut stdout).await {
        let stop_now = line.starts_with(stop_at);
        said.push(line);
        if stop_now {
            break;
        }
    }
    let id = said[0]
        .strip_prefix("submitted ")
        .expect("the job's id")
        .to_string();
    let seen: Vec<_> = events(&said, &id).iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(seen, before_stop, "{said:#?}");
    stop(server, how);
    let _restarted = Process::start_at(addr, &db.url, &[]);

    while let Some(line) = next_line(&mut stdout).await {
        said.push(line);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the script ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said:#?}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("watch broken"),
        "the client said it reconnected:\n{stderr}"
    );
    let events = events(&said, &id);
    let seen: Vec<_> = events.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        seen,
        [
            ("SNAPSHOT", "QUEUED"),
            ("CHANGE", "RUNNING"),
            ("CHANGE", "SUCCEEDED")
        ],
        "every change once, none lost: {said:#?}\nstderr:\n{stderr}"
    );
    assert!(
        events.windows(2).all(|w| w[0].2 < w[1].2),
        "cursors grow: {events:?}"
    );
    assert_eq!(said.last().map(String::as_str), Some("ended"));
    assert_eq!(target.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_the_server_drains_and_restarts() {
    a_watch_resumes_across_a_restart(Stop::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_the_server_is_killed_and_restarted() {
    a_watch_resumes_across_a_restart(Stop::Kill).await;
}

#[test]
fn the_example_type_checks_against_the_generated_stubs() {
    let Some(installed) = installed() else { return };
    // Without protobuf's stubs the messages' base class is Any, and any field passes.
    if !tool_available(
        Command::new("python3").args([
            "-c",
            "import mypy, importlib.metadata as m; m.version('types-protobuf')",
        ]),
        "one of the Python packages mypy, types-protobuf",
    ) {
        return;
    }
    // Run from the package, so that its pyproject.toml's mypy settings apply (strict).
    let out = Command::new("python3")
        .args(["-m", "mypy", "--cache-dir", "/dev/null"])
        .arg("examples/submit_watch_result.py")
        .current_dir(PACKAGE)
        .env("PYTHONPATH", installed)
        .output()
        .expect("python3 runs mypy");
    assert!(
        out.status.success(),
        "mypy:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_python_block_submits_watches_and_reads_the_json_body() {
    let Some(installed) = installed() else { return };
    let target = EchoTarget::start();
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("readme.py");
    let block = readme::block("four-ways-python", "python")
        .replace("localhost:50051", &server.addr.to_string())
        .replace("127.0.0.1:8080", &target.addr);
    std::fs::write(&script, block).unwrap();
    let stdout = run(installed, script.to_str().unwrap(), &[]).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.iter().rev().nth(1),
        Some(&"JOB_STATUS_SUCCEEDED"),
        "{stdout}"
    );
    assert!(
        lines.last().unwrap().contains("'method': 'POST'"),
        "the echo, as a dict: {stdout}"
    );
    let seen = target.wait_for(1).await;
    assert!(
        seen[0].starts_with("POST /hook") && seen[0].ends_with(r#"{"hello":"world"}"#),
        "{seen:?}"
    );
    server.stop().await;
}
