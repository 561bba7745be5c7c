//! The command line as a client (`jobqueue job|queue|schedule ...`), run as a
//! process against a real server: its output, its JSON and its exit codes.
//! `tests/cli_terminal.rs` runs it under a real terminal.

mod common;

use std::process::Output;
use std::time::Duration;

use common::keys::{keys_file, new_key};
use common::*;

/// Runs `jobqueue ARGS` against `server`, with `stdin` as its input.
async fn cli(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    cli_env(server, args, stdin, &[]).await
}

async fn cli_env(
    server: &Server,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(args)
        .env("JOBQUEUE_ADDRESS", server.addr.to_string())
        .env_remove("JOBQUEUE_API_KEY")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the CLI starts");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("jobqueue {args:?} finished within a minute"))
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Its exit code, with its output in the message when it is not `code`.
fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", stdout(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_like_curl_runs_and_reads_back_as_text_and_json() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let url = target.url("/hook?echo=1");
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "--url",
            &url,
            "-H",
            "X-Trace: t-1",
            "-d",
            r#"{"order": 7}"#,
            "--tag",
            "cli",
            "--wait",
        ],
        None,
    )
    .await;
    expect_code(&out, 0, "a job that succeeds exits 0");
    let text = stdout(&out);
    let id = text.lines().next().unwrap().trim().to_string();
    assert!(id.starts_with("j_"), "the id comes first: {text}");
    // Not a terminal: one plain line per change, the last one the outcome.
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("succeeded, attempt 1/3 (200)"),
        "{text}"
    );
    let sent = target.received_on("/hook");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].method, "POST",
        "a body makes it a POST, as curl does"
    );
    assert_eq!(sent[0].header("x-trace"), Some("t-1"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&sent[0].body).unwrap(),
        serde_json::json!({"order": 7})
    );

    let out = cli(&server, &["job", "get", &id], None).await;
    expect_code(&out, 0, "job get");
    let text = stdout(&out);
    for line in [
        "status:",
        "succeeded",
        &format!("POST {url}"),
        "attempt:",
        "1 of 3",
        "tags:",
        "cli",
    ] {
        assert!(text.contains(line), "job get shows {line:?}:\n{text}");
    }
    let created = text.lines().find(|l| l.starts_with("created:")).unwrap();
    assert!(
        created.ends_with("(now)") || created.ends_with(" ago)"),
        "a local time and how long ago: {created}"
    );
    assert!(
        text.contains("expires:") && text.contains("(in 6d 23h)"),
        "{text}"
    );
    let out = cli(&server, &["job", "get", &id, "-o", "json"], None).await;
    let job = json_of(&out);
    assert_eq!(job["status"], "JOB_STATUS_SUCCEEDED");
    assert_eq!(job["request"]["json"]["order"].as_f64(), Some(7.0));

    let out = cli(&server, &["job", "result", &id], None).await;
    expect_code(&out, 0, "job result");
    let text = stdout(&out);
    assert!(text.contains("attempt 1") && text.contains("200"), "{text}");
    assert!(
        text.contains("\"order\": 7"),
        "the echoed body, pretty: {text}"
    );
    let out = cli(&server, &["job", "result", &id, "--output", "json"], None).await;
    let result = json_of(&out);
    assert_eq!(result["finalAttempt"]["response"]["statusCode"], 200);
    assert!(
        result["attempts"][0]["duration"]
            .as_str()
            .unwrap()
            .ends_with('s')
    );

    let out = cli(&server, &["job", "list", "--tag", "cli"], None).await;
    expect_code(&out, 0, "job list");
    let text = stdout(&out);
    assert!(text.starts_with("ID"), "a table: {text}");
    assert!(text.contains(&id) && text.contains("succeeded"), "{text}");
    let out = cli(
        &server,
        &["job", "list", "--status", "failed", "-o", "json"],
        None,
    )
    .await;
    assert_eq!(
        json_of(&out)["jobs"],
        serde_json::Value::Null,
        "no failed job"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_how_the_job_ended() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let failing = target.url("/down?status=500");
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "--url",
            &failing,
            "--max-attempts",
            "1",
            "--wait",
        ],
        None,
    )
    .await;
    expect_code(&out, 3, "a failed job exits 3");
    assert!(
        stdout(&out).contains("failed, attempt 1/1 (500)"),
        "{}",
        stdout(&out)
    );

    // Retried: the second attempt succeeds.
    let flaky = target.url("/flaky?fail=1");
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "--url",
            &flaky,
            "--max-attempts",
            "2",
            "--wait",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    expect_code(&out, 0, "a job that succeeds on its retry exits 0");
    let statuses: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses.last().unwrap(),
        "JOB_STATUS_SUCCEEDED",
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&"JOB_STATUS_QUEUED".to_string()),
        "backing off between the attempts: {statuses:?}"
    );

    let later = target.url("/later");
    let out = cli(
        &server,
        &["job", "submit", "--url", &later, "--in", "1h"],
        None,
    )
    .await;
    expect_code(&out, 0, "a submit without --wait exits at once");
    let id = stdout(&out).trim().to_string();
    let out = cli(&server, &["job", "cancel", &id], None).await;
    expect_code(&out, 0, "cancel");
    assert!(stdout(&out).contains("canceled"), "{}", stdout(&out));
    let out = cli(&server, &["job", "watch", &id], None).await;
    expect_code(&out, 4, "watching a canceled job exits 4");
    let out = cli(&server, &["job", "retry", &id, "-o", "json"], None).await;
    expect_code(&out, 0, "retry");
    assert_eq!(json_of(&out)["status"], "JOB_STATUS_QUEUED");
    // Retried, it is due at once and runs.
    let out = cli(&server, &["job", "watch", &id], None).await;
    expect_code(&out, 0, "the retried job succeeds");
    assert_eq!(target.received_on("/later").len(), 1);
    let out = cli(&server, &["job", "delete", &id], None).await;
    expect_code(&out, 0, "delete");
    let out = cli(&server, &["job", "get", &id], None).await;
    expect_code(&out, 1, "a deleted job is not found");
    assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
    let out = cli(&server, &["job", "cancel", &id], None).await;
    expect_code(&out, 1, "nothing to cancel");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_fields_named_and_nothing_stored() {
    let server = Server::start().await;
    // The service refuses: exit 1, every field it named.
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "--url",
            "ftp://example.com/x",
            "--max-attempts",
            "500",
        ],
        None,
    )
    .await;
    expect_code(&out, 1, "a refused submit exits 1");
    let err = stderr(&out);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(err.contains("job.request.url:"), "{err}");
    assert!(err.contains("job.max_attempts:"), "{err}");
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "--url",
            "ftp://example.com/x",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    expect_code(&out, 1, "refused, as JSON");
    let refusal: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(refusal["fieldViolations"][0]["field"], "job.request.url");

    // The command line itself is wrong: exit 2, nothing sent.
    for (args, names) in [
        (
            vec![
                "job",
                "submit",
                "--url",
                "http://127.0.0.1:9/x",
                "-H",
                "no colon",
            ],
            "`Name: value`",
        ),
        (
            vec![
                "job",
                "submit",
                "--url",
                "http://127.0.0.1:9/x",
                "--at",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        (vec!["job", "submit"], "--url"),
        (vec!["job", "list", "--status", "done"], "--status"),
        (
            vec![
                "job",
                "submit",
                "--url",
                "http://127.0.0.1:9/x",
                "--timeout",
                "soon",
            ],
            "--timeout",
        ),
    ] {
        let out = cli(&server, &args, None).await;
        expect_code(&out, 2, &format!("{args:?} is a usage error"));
        assert!(
            stderr(&out).contains(names),
            "{args:?} names {names}: {}",
            stderr(&out)
        );
    }
    // A JSON-lines batch with one bad line: refused whole, before anything is sent.
    let lines = "{\"request\": {\"url\": \"http://127.0.0.1:9/a\"}}\n{\"request\": {\"url\": 5}}\n";
    let out = cli(&server, &["job", "submit", "--jobs", "-"], Some(lines)).await;
    expect_code(&out, 2, "a bad line");
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let out = cli(&server, &["job", "list", "-o", "json"], None).await;
    assert_eq!(
        json_of(&out)["jobs"],
        serde_json::Value::Null,
        "nothing was stored"
    );

    let out = cli_env(
        &server,
        &["job", "list"],
        None,
        &[("JOBQUEUE_ADDRESS", "127.0.0.1:1")],
    )
    .await;
    expect_code(&out, 1, "no service there");
    assert!(
        stderr(&out).contains("cannot reach the service at http://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_from_json_lines_and_a_job_from_yaml() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let lines: String = (0..1200)
        .map(|i| {
            format!(
                "{{\"request\": {{\"url\": \"{}\"}}}}\n",
                target.url(&format!("/many/{i}"))
            )
        })
        .collect();
    let out = cli(
        &server,
        &["job", "submit", "--jobs", "-", "--tag", "batch", "--wait"],
        Some(&lines),
    )
    .await;
    expect_code(&out, 0, "1200 jobs, all succeeded");
    let text = stdout(&out);
    let ids: Vec<&str> = text.lines().filter(|l| l.starts_with("j_")).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1200, "one id per line, each once");
    assert_eq!(target.count(), 1200);
    let out = cli(
        &server,
        &[
            "job",
            "list",
            "--tag",
            "batch",
            "--status",
            "succeeded",
            "-o",
            "json",
        ],
        None,
    )
    .await;
    assert_eq!(json_of(&out)["totalSize"], "1200");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.yaml");
    std::fs::write(
        &file,
        format!(
            "request:\n  method: PUT\n  url: {}\n  json:\n    name: Ada\n    tags: [a, b]\nmaxAttempts: 2\ntimeout: 5s\n",
            target.url("/yaml?echo=1")
        ),
    )
    .unwrap();
    let out = cli(
        &server,
        &[
            "job",
            "submit",
            "-f",
            file.to_str().unwrap(),
            "--queue",
            "default",
            "--wait",
        ],
        None,
    )
    .await;
    expect_code(&out, 0, "a job from YAML");
    let sent = &target.received_on("/yaml")[0];
    assert_eq!(sent.method, "PUT");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({"name": "Ada", "tags": ["a", "b"]})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_schedules_from_the_command_line() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let out = cli(
        &server,
        &["queue", "create", "emails", "--max-concurrency", "2"],
        None,
    )
    .await;
    expect_code(&out, 0, "queue create");
    let out = cli(
        &server,
        &["queue", "update", "emails", "--rate", "5", "--burst", "2"],
        None,
    )
    .await;
    expect_code(&out, 0, "queue update");
    let text = stdout(&out);
    assert!(
        text.contains("max concurrency: 2"),
        "an update keeps what it does not name: {text}"
    );
    assert!(text.contains("5/s, burst 2"), "{text}");
    let out = cli(&server, &["queue", "pause", "emails"], None).await;
    assert!(stdout(&out).contains("paused"), "{}", stdout(&out));
    let url = target.url("/mail");
    cli(
        &server,
        &["job", "submit", "--url", &url, "--queue", "emails"],
        None,
    )
    .await;
    let out = cli(&server, &["queue", "list"], None).await;
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("emails"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("paused"), "{row}");
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("1"),
        "one waiting: {row}"
    );
    let out = cli(&server, &["queue", "get", "emails", "-o", "json"], None).await;
    assert_eq!(json_of(&out)["stats"]["waiting"], "1");
    let out = cli(&server, &["queue", "purge", "emails"], None).await;
    assert!(
        stdout(&out).contains("1 queued jobs canceled"),
        "{}",
        stdout(&out)
    );
    let out = cli(&server, &["queue", "update", "emails"], None).await;
    expect_code(&out, 2, "an update with nothing to change");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.yaml");
    std::fs::write(
        &file,
        format!("description: nightly report\ncron: \"0 3 * * *\"\ntimeZone: Europe/Paris\njob:\n  request:\n    url: {}\n", target.url("/nightly")),
    )
    .unwrap();
    let out = cli(
        &server,
        &[
            "schedule",
            "create",
            "--id",
            "nightly",
            "-f",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    expect_code(&out, 0, "schedule create");
    let text = stdout(&out);
    assert!(
        text.contains("cron 0 3 * * * (Europe/Paris)") && text.contains("next run:"),
        "{text}"
    );
    let out = cli(&server, &["schedule", "trigger", "nightly"], None).await;
    expect_code(&out, 0, "schedule trigger");
    let job = stdout(&out).trim().rsplit(' ').next().unwrap().to_string();
    let out = cli(&server, &["job", "watch", &job], None).await;
    expect_code(&out, 0, "the triggered run succeeds");
    assert_eq!(target.received_on("/nightly").len(), 1);
    let out = cli(
        &server,
        &["schedule", "pause", "nightly", "-o", "json"],
        None,
    )
    .await;
    assert_eq!(json_of(&out)["state"], "SCHEDULE_STATE_PAUSED");
    let out = cli(&server, &["schedule", "list"], None).await;
    assert!(
        stdout(&out).contains("nightly") && stdout(&out).contains("paused"),
        "{}",
        stdout(&out)
    );
    let out = cli(&server, &["schedule", "delete", "nightly"], None).await;
    expect_code(&out, 0, "schedule delete");
    let out = cli(&server, &["schedule", "get", "nightly"], None).await;
    expect_code(&out, 1, "a deleted schedule");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_comes_from_a_flag_or_the_environment() {
    let key = new_key();
    let (_dir, path) = keys_file(&[(&key, "default")]);
    let server = Server::start_with(|c| c.keys_file = Some(path)).await;
    let out = cli(&server, &["queue", "list"], None).await;
    expect_code(&out, 1, "no key");
    assert!(stderr(&out).contains("Unauthenticated"), "{}", stderr(&out));
    let out = cli(&server, &["queue", "list", "--api-key", &key], None).await;
    expect_code(&out, 0, "the key as a flag");
    let out = cli_env(
        &server,
        &["queue", "list"],
        None,
        &[("JOBQUEUE_API_KEY", &key)],
    )
    .await;
    expect_code(&out, 0, "the key from the environment");
    let out = cli(
        &server,
        &["queue", "list", "--api-key", "jq_nope_nope"],
        None,
    )
    .await;
    expect_code(&out, 1, "a wrong key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_goes_on_across_a_restart_of_the_service() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let addr = free_port();
    let mut first = Process::start_at(addr, &db.url, &[]);
    let url = target.url("/after-restart");
    let submit = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(["job", "submit", "--url", &url, "--in", "3s", "-o", "json"])
        .env("JOBQUEUE_ADDRESS", addr.to_string())
        .output()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&submit.stdout).unwrap();
    let id = answer["id"].as_str().unwrap().to_string();
    let watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(["job", "watch", &id, "-o", "json"])
        .env("JOBQUEUE_ADDRESS", addr.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The watch has its snapshot; then the service dies before the job is due.
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = Process::start_at(addr, &db.url, &[]);
    let out = tokio::time::timeout(Duration::from_secs(30), watch.wait_with_output())
        .await
        .expect("the watch ends once the job has")
        .unwrap();
    expect_code(&out, 0, "the watch saw the job succeed");
    let statuses: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "JOB_STATUS_QUEUED",
            "JOB_STATUS_RUNNING",
            "JOB_STATUS_SUCCEEDED"
        ],
        "each change once, none missed across the restart"
    );
    assert_eq!(target.received_on("/after-restart").len(), 1);
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cli_block_submits_watches_and_reads() {
    let target = EchoTarget::start();
    let server = Server::start().await;
    let script = readme::block("four-ways-cli", "sh").replace("127.0.0.1:8080", &target.addr);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_jobqueue"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("PATH", path)
            .env("JOBQUEUE_ADDRESS", server.addr.to_string())
            .output(),
    )
    .await
    .expect("the block finished")
    .unwrap();
    expect_code(&out, 0, "the README's command-line block");
    let text = stdout(&out);
    assert!(text.contains("succeeded, attempt 1/3 (200)"), "{text}");
    assert!(
        text.contains("\"method\": \"POST\""),
        "the body the target sent: {text}"
    );
    let seen = target.wait_for(1).await;
    assert!(
        seen[0].starts_with("POST /hook") && seen[0].ends_with(r#"{"hello":"world"}"#),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_by_tag_prints_each_change_as_it_comes() {
    use tokio::io::AsyncBufReadExt;
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(["job", "watch", "--tag", "live", "-o", "json"])
        .env("JOBQUEUE_ADDRESS", server.addr.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    // Once the stream is open (a job it does not name comes first: no line for it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = target.url("/other");
    cli(&server, &["job", "submit", "--url", &other, "--wait"], None).await;
    let url = target.url("/live");
    let out = cli(
        &server,
        &["job", "submit", "--url", &url, "--tag", "live"],
        None,
    )
    .await;
    let id = stdout(&out).trim().to_string();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("JOB_STATUS_SUCCEEDED") {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a change within 20 s")
            .unwrap()
            .expect("the watch goes on");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["jobId"], id.as_str(), "only the tagged job: {line}");
        statuses.push(event["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        statuses,
        [
            "JOB_STATUS_QUEUED",
            "JOB_STATUS_RUNNING",
            "JOB_STATUS_SUCCEEDED"
        ]
    );
    watch.kill().await.unwrap();

    for args in [vec!["job", "watch"], vec!["job", "watch", &id, "--all"]] {
        let out = cli(&server, &args, None).await;
        expect_code(&out, 2, &format!("{args:?}"));
    }
    server.stop().await;
}
