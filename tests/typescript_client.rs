//! The TypeScript client package (`clients/typescript`), built from `proto/` with
//! npm, drives a real server: its example, its errors, and a watch that outlives a
//! server restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use jobqueue::proto::JobStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/typescript");

/// The package, installed and built once for every test here: `npm ci` (when
/// `node_modules` is older than the lock file) and `npm run build`, which
/// generates the code from the proto and compiles it to `dist/`. `None` when node
/// or npm is missing (a failure with `CI=true`).
fn built_package() -> Option<&'static Path> {
    if !tool_available(Command::new("node").arg("--version"), "node")
        || !tool_available(Command::new("npm").arg("--version"), "npm")
    {
        return None;
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let package = Path::new(PACKAGE);
        let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let installed = modified(package.join("node_modules/.package-lock.json"));
        if installed.is_none() || installed < modified(package.join("package-lock.json")) {
            npm(&["ci", "--no-audit", "--no-fund"])?;
        }
        npm(&["run", "build"])
    });
    if let Err(e) = built {
        panic!("the TypeScript package did not build\n{e}");
    }
    Some(Path::new(PACKAGE))
}

fn npm(args: &[&str]) -> Result<(), String> {
    let out = Command::new("npm")
        .args(args)
        .current_dir(PACKAGE)
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "npm {}: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Runs a compiled script of the package to its end; its stdout, or what it wrote
/// when it failed.
async fn run(package: &Path, script: &str, args: &[&str]) -> String {
    run_with(package, script, args, &[])
        .await
        .unwrap_or_else(|e| panic!("{script} failed\n{e}"))
}

/// [`run`] with these environment variables set.
async fn run_with(
    package: &Path,
    script: &str,
    args: &[&str],
    vars: &[(&str, &str)],
) -> Result<String, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(package.join("dist").join(script))
            .args(args)
            .envs(vars.iter().copied())
            .output(),
    )
    .await
    .expect("the script finished")
    .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("stdout:\n{stdout}\nstderr:\n{stderr}"))
    }
}

/// What follows `prefix` on each line that starts with it.
fn after<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_posts_json_watches_the_job_and_reads_the_body_as_an_object() {
    let Some(package) = built_package() else {
        return;
    };
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let stdout = run(
        package,
        "examples/submit-watch-result.js",
        &[&server.addr.to_string(), &target.url("/orders?echo=1")],
    )
    .await;
    let sent = json!({
        "order": 1042, "customer": "Ada", "items": [{"sku": "A-1", "qty": 2}],
        "gift": true, "note": null,
    });

    // Each status once, in the order of a job's life, to SUCCEEDED.
    let statuses = after(&stdout, "status ");
    let life = [
        "JOB_STATUS_QUEUED",
        "JOB_STATUS_RUNNING",
        "JOB_STATUS_SUCCEEDED",
    ];
    let positions: Vec<_> = statuses
        .iter()
        .map(|s| life.iter().position(|l| l == s))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]) && positions.iter().all(Option::is_some),
        "{stdout}"
    );
    assert_eq!(statuses.last(), Some(&"JOB_STATUS_SUCCEEDED"), "{stdout}");
    assert_eq!(
        after(&stdout, "result "),
        ["JOB_STATUS_SUCCEEDED after 1 attempt(s), HTTP 200"],
        "{stdout}"
    );

    // The target got the JSON body as sent, and echoed it: the script printed that
    // echo as a plain object.
    let received = target.received_on("/orders");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    let got: Value = serde_json::from_slice(&received[0].body).expect("a JSON body");
    assert_eq!(got, sent);
    let [body] = after(&stdout, "body ")[..] else {
        panic!("one body line in:\n{stdout}");
    };
    let printed: Value = serde_json::from_str(body).expect("the body printed as JSON");
    assert_eq!(printed, sent, "{stdout}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_rejects_with_its_bad_fields_readable() {
    let Some(package) = built_package() else {
        return;
    };
    let server = Server::start().await;
    let stdout = run(package, "test/bad-request.js", &[&server.addr.to_string()]).await;
    assert_eq!(after(&stdout, "code "), ["INVALID_ARGUMENT"], "{stdout}");
    let fields: Vec<_> = after(&stdout, "violation ")
        .iter()
        .map(|v| v.split(": ").next().unwrap())
        .collect();
    assert_eq!(fields, ["job.request.url", "job.ttl"], "{stdout}");
    let [message] = after(&stdout, "message ")[..] else {
        panic!("one message line in:\n{stdout}");
    };
    assert!(
        message.contains("job.request.url") && message.contains("job.ttl"),
        "{stdout}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_presents_its_api_key() {
    let Some(package) = built_package() else {
        return;
    };
    let key = jobqueue::auth::key::generate().1;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let keys = json!({"keys": [{"key": key, "scopes": ["submit", "read"]}]});
    std::fs::write(&file, keys.to_string()).unwrap();
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.keys_file = Some(file)).await;
    let script = "examples/submit-watch-result.js";
    let (addr, url) = (server.addr.to_string(), target.url("/keyed"));
    let args = [addr.as_str(), url.as_str()];
    let refused = run_with(package, script, &args, &[]).await.unwrap_err();
    assert!(refused.contains("UNAUTHENTICATED"), "{refused}");
    let stdout = run_with(package, script, &args, &[("JOBQUEUE_KEY", &key)])
        .await
        .unwrap_or_else(|e| panic!("the example failed with its key\n{e}"));
    assert!(stdout.contains("result JOB_STATUS_SUCCEEDED"), "{stdout}");
    assert_eq!(target.received_on("/keyed").len(), 1);
    server.stop().await;
}

type ScriptOutput = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The script's next line, also kept in `seen`; `None` at its end.
async fn next_line(lines: &mut ScriptOutput, seen: &mut Vec<String>) -> Option<String> {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the script went quiet; it printed:\n{seen:#?}"))
        .expect("stdout readable");
    seen.extend(line.clone());
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_a_server_restart_seeing_each_change_once() {
    let Some(package) = built_package() else {
        return;
    };
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let addr = free_port();
    let mut first = Process::start_at(addr, &db.url, &[]);

    // The script submits a job due in 5s, watches it with a snapshot, and says
    // `watching` once the snapshot is in.
    let mut script = tokio::process::Command::new("node")
        .arg(package.join("dist/test/watch-resume.js"))
        .args([&addr.to_string(), &target.url("/resumed")])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node ran");
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while next_line(&mut lines, &mut seen).await.as_deref() != Some("watching") {}
    let id = seen[0]
        .strip_prefix("submitted ")
        .expect("the job id")
        .to_string();

    // The server dies mid-watch; while it is away another process on the same
    // database runs the job to its end, so the changes happen where the watch
    // cannot see them. Then the server comes back where it was.
    first.kill9();
    assert_eq!(target.count(), 0, "the job ran before the server died");
    let elsewhere = Process::start(&db, &[]);
    let mut client = connect(elsewhere.addr).await;
    wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(30),
    )
    .await;
    elsewhere.stop();
    let _back = Process::start_at(addr, &db.url, &[]);

    while next_line(&mut lines, &mut seen).await.is_some() {}
    let status = script.wait().await.expect("the script exited");
    assert!(status.success(), "{status}; it printed:\n{seen:#?}");
    let events: Vec<_> = seen.iter().filter(|l| l.starts_with("event ")).collect();
    assert_eq!(
        events,
        [
            "event JOB_EVENT_KIND_SNAPSHOT JOB_STATUS_QUEUED",
            "event JOB_EVENT_KIND_CHANGE JOB_STATUS_RUNNING",
            "event JOB_EVENT_KIND_CHANGE JOB_STATUS_SUCCEEDED",
        ],
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("reconnect 1 after UNAVAILABLE")),
        "{seen:#?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("ended"));
    assert_eq!(target.received_on("/resumed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_typescript_block_submits_watches_and_reads_the_json_body() {
    let Some(package) = built_package() else {
        return;
    };
    let target = EchoTarget::start();
    let server = Server::start().await;
    // The block as a module of its own, importing the package by its name.
    let dir = tempfile::tempdir().unwrap();
    let scope = dir.path().join("node_modules/@jobqueue");
    std::fs::create_dir_all(&scope).unwrap();
    std::os::unix::fs::symlink(package, scope.join("client")).unwrap();
    let script = dir.path().join("readme.mjs");
    let block = readme::block("four-ways-typescript", "ts")
        .replace("localhost:50051", &server.addr.to_string())
        .replace("127.0.0.1:8080", &target.addr);
    std::fs::write(&script, block).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node").arg(&script).output(),
    )
    .await
    .expect("the block finished within a minute")
    .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("JOB_STATUS_SUCCEEDED"), "{stdout}");
    assert!(
        stdout.contains("method: 'POST'"),
        "the echo, as an object: {stdout}"
    );
    let seen = target.wait_for(1).await;
    assert!(
        seen[0].starts_with("POST /hook") && seen[0].ends_with(r#"{"hello":"world"}"#),
        "{seen:?}"
    );
    server.stop().await;
}
