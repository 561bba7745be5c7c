//! A Python client generated from `proto/` at test time drives the real server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_built_from_the_proto_submits_and_reads_jobs_and_schedules() {
    if !tool_available(
        Command::new("python3").args(["-c", "import grpc, grpc_tools"]),
        "Python grpcio and grpcio-tools",
    ) {
        return;
    }
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .args([script, &server.addr.to_string(), &target.url("")])
            .output(),
    )
    .await
    .expect("the client finished")
    .expect("python3 ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("python client: ok"));
    // Three submitted jobs and one schedule run.
    assert_eq!(target.received().len(), 4);
    assert_eq!(target.received_on("/py/nightly").len(), 1);
    for r in target.received() {
        assert_eq!(r.method, "PUT");
    }
    server.stop().await;
}

/// Runs `examples/chain.py` against `server`, with these variables set; its
/// output, or what it wrote when it failed.
async fn run_chain_example(
    server: &Server,
    target: &EchoTarget,
    vars: &[(&str, &str)],
) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chain.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .args([
                script,
                &server.addr.to_string(),
                &format!("http://{}", target.addr),
            ])
            .envs(vars.iter().copied())
            .output(),
    )
    .await
    .expect("the example finished")
    .expect("python3 ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("stdout:\n{stdout}\nstderr:\n{stderr}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_chain_example_runs_as_the_readme_shows() {
    if !tool_available(
        Command::new("python3").args(["-c", "import grpc, grpc_tools"]),
        "Python grpcio and grpcio-tools",
    ) {
        return;
    }
    let target = EchoTarget::start();
    let server = Server::start().await;
    let stdout = run_chain_example(&server, &target, &[])
        .await
        .unwrap_or_else(|e| panic!("the example failed\n{e}"));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme
        .split("<!-- python-chain-output")
        .nth(1)
        .and_then(|after| after.split("```text\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README shows the example's output");
    for line in shown.lines().filter(|l| !l.contains("c_")) {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_chain_example_presents_its_key() {
    if !tool_available(
        Command::new("python3").args(["-c", "import grpc, grpc_tools"]),
        "Python grpcio and grpcio-tools",
    ) {
        return;
    }
    let key = jobqueue::auth::key::generate().1;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    std::fs::write(
        &file,
        serde_json::json!({"keys": [{"key": key, "scopes": ["registry.admin", "submit", "read"]}]})
            .to_string(),
    )
    .unwrap();
    let target = EchoTarget::start();
    let server = Server::start_with(|c| c.keys_file = Some(file)).await;
    let refused = run_chain_example(&server, &target, &[]).await.unwrap_err();
    assert!(refused.contains("API key"), "{refused}");
    let stdout = run_chain_example(&server, &target, &[("JOBQUEUE_KEY", &key)])
        .await
        .unwrap_or_else(|e| panic!("the example failed with its key\n{e}"));
    assert!(
        stdout.contains("succeeded") || stdout.contains("SUCCEEDED"),
        "{stdout}"
    );
    server.stop().await;
}
