//! Runs the grpcurl session from README.md, word for word, against a real server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs the README's session after `marker` against `server`, with the echo
/// target in place of the one the README names; its stdout and stderr.
async fn run_session(marker: &str, server: &Server, target: &EchoTarget) -> (String, String) {
    run_session_with(marker, server, target, &[]).await
}

/// [`run_session`], with these variables set for the script.
async fn run_session_with(
    marker: &str,
    server: &Server,
    target: &EchoTarget,
    vars: &[(&str, &str)],
) -> (String, String) {
    let script = readme::block(marker, "sh")
        .replace("localhost:50051", &server.addr.to_string())
        .replace("127.0.0.1:8080", &target.addr);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .envs(vars.iter().copied())
            .output(),
    )
    .await
    .expect("the session finished")
    .expect("bash ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "session failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_works_against_the_target_it_names() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let target = EchoTarget::start();
    let server = Server::start().await;
    let (stdout, stderr) = run_session("grpcurl-session", &server, &target).await;

    // What the README shows, it prints.
    for line in readme::expected("grpcurl-expected") {
        assert!(stdout.contains(line.trim()), "{line:?} in:\n{stdout}");
    }
    for service in [
        "jobqueue.v1.QueueService",
        "jobqueue.v1.ScheduleService",
        "grpc.health.v1.Health",
    ] {
        assert!(stdout.contains(service), "list shows {service}:\n{stdout}");
    }
    // 09:00 in Paris is 08:00 UTC in winter, 07:00 in summer.
    assert!(
        stdout.contains("T08:00:00Z") || stdout.contains("T07:00:00Z"),
        "{stdout}"
    );
    // The refusal names the field, with google.rpc.BadRequest details grpcurl can read.
    assert!(
        stderr.contains("job.request.url: scheme must be http or https, not ftp"),
        "{stderr}"
    );
    assert!(stderr.contains(r#""field":"job.request.url""#), "{stderr}");

    // The target saw the three calls: the POST with its body, the queued mail once
    // its queue resumed, the schedule's run with its key.
    let mut seen = target.wait_for(3).await;
    seen.sort();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "GET /mail key=- ");
    assert!(
        seen[1].starts_with("GET /report key=daily-report/manual/j_"),
        "{seen:?}"
    );
    assert_eq!(
        seen[2],
        r#"POST /hook?source=readme key=- {"hello":"world"}"#
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_chain_session_checks_runs_and_watches_a_chain() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let target = EchoTarget::start();
    let server = Server::start().await;
    let (stdout, _) = run_session("grpcurl-chain-session", &server, &target).await;
    for line in readme::expected("grpcurl-chain-expected") {
        let line = line.replace("127.0.0.1:8080", &target.addr);
        assert!(stdout.contains(line.trim()), "{line:?} in:\n{stdout}");
    }
    let mut seen = target.wait_for(2).await;
    seen.sort();
    assert_eq!(
        seen,
        vec![
            r#"POST /customers key=- {"name":"Ada"}"#.to_string(),
            r#"POST /welcome%2Fcustomers key=- {"method":"POST","status":200}"#.to_string(),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_keys_session_makes_uses_and_revokes_a_key() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let admin = jobqueue::auth::key::generate().1;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let scopes: Vec<&str> = jobqueue::auth::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    std::fs::write(
        &file,
        serde_json::json!({"keys": [{"key": admin, "scopes": scopes}]}).to_string(),
    )
    .unwrap();
    let target = EchoTarget::start();
    let server = Server::start_with(|c| c.keys_file = Some(file)).await;
    let (stdout, stderr) = run_session_with(
        "grpcurl-keys-session",
        &server,
        &target,
        &[("ADMIN_KEY", &admin)],
    )
    .await;
    // Refused without a key, refused the scope it lacks, refused once revoked.
    let refusals: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Code: "))
        .collect();
    assert_eq!(
        refusals,
        ["Unauthenticated", "PermissionDenied", "Unauthenticated"],
        "{stderr}"
    );
    assert!(stderr.contains("queues.admin"), "{stderr}");
    // The list shows the worker's key and the admin's, never a secret.
    assert!(stdout.contains("billing worker"), "{stdout}");
    assert!(stdout.contains("revokeTime"), "{stdout}");
    let secret = jobqueue::auth::key::parse(&admin)
        .unwrap()
        .secret
        .to_string();
    assert!(!stdout.contains(&secret), "{stdout}");
    // The audit log names the revocation, by the admin's key, with its outcome.
    let admin_id = jobqueue::auth::key::parse(&admin).unwrap().id.to_string();
    assert!(
        stdout.contains("\"action\": \"key.revoke\"")
            && stdout.contains(&format!("\"keyId\": \"{admin_id}\""))
            && stdout.contains("\"outcome\": \"OK\""),
        "{stdout}"
    );
    let seen = target.wait_for(1).await;
    assert_eq!(seen, vec!["POST /invoice key=- ".to_string()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_four_ways_grpcurl_block_submits_watches_and_reads() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let target = EchoTarget::start();
    let server = Server::start().await;
    let (stdout, _) = run_session("four-ways-grpcurl", &server, &target).await;
    assert!(
        stdout.contains("\"status\": \"JOB_STATUS_SUCCEEDED\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"statusCode\": 200"), "{stdout}");
    let seen = target.wait_for(1).await;
    assert!(
        seen[0].starts_with("POST /hook") && seen[0].ends_with(r#"{"hello":"world"}"#),
        "{seen:?}"
    );
    server.stop().await;
}
