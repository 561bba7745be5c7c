//! Runs the grpcurl session from README.md, word for word, against a real server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The shell block after the `grpcurl-session` marker in README.md.
fn readme_session() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("<!-- grpcurl-session")
        .nth(1)
        .expect("README has a grpcurl session");
    let block = after
        .split("```sh\n")
        .nth(1)
        .expect("a sh block follows the marker");
    block.split("```").next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_works() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let script = readme_session()
        .replace("localhost:50051", &server.addr.to_string())
        .replace("http://127.0.0.1:8080", &target.url(""));
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .output(),
    )
    .await
    .expect("the session finished")
    .expect("bash ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "session failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // list and describe work through reflection alone.
    for service in [
        "jobqueue.v1.JobService",
        "jobqueue.v1.QueueService",
        "jobqueue.v1.ScheduleService",
        "grpc.health.v1.Health",
    ] {
        assert!(stdout.contains(service), "list shows {service}:\n{stdout}");
    }
    assert!(
        stdout.contains("rpc SubmitJob ( .jobqueue.v1.SubmitJobRequest )"),
        "describe:\n{stdout}"
    );
    // The job ran against the target and reads back.
    let seen = target.received_on("/hook");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/hook?source=readme");
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        r#"{"hello":"world"}"#
    );
    assert!(
        stdout.contains(r#""status": "JOB_STATUS_SUCCEEDED""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""statusCode": 200"#), "{stdout}");
    assert!(stdout.contains(r#""totalSize": "1""#), "{stdout}");
    assert!(stdout.contains(r#""status": "SERVING""#), "{stdout}");
    // The queue was made, paused (its job waited), and resumed (its job ran).
    assert!(stdout.contains(r#""maxConcurrency": 3"#), "{stdout}");
    assert!(stdout.contains(r#""paused": true"#), "{stdout}");
    assert!(stdout.contains(r#""waiting": "1""#), "{stdout}");
    assert!(target.wait_for(3, Duration::from_secs(10)).await);
    assert_eq!(target.received_on("/mail").len(), 1);
    // The schedule was made with its next 09:00 in Paris, triggered once, and paused.
    assert!(stdout.contains(r#""timeZone": "Europe/Paris""#), "{stdout}");
    // 09:00 in Paris is 08:00 UTC in winter, 07:00 in summer.
    assert!(
        stdout.contains("T08:00:00Z") || stdout.contains("T07:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""trigger": "RUN_TRIGGER_MANUAL""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""state": "SCHEDULE_STATE_PAUSED""#),
        "{stdout}"
    );
    let report = target.received_on("/report");
    assert_eq!(report.len(), 1);
    assert!(
        report[0]
            .header("idempotency-key")
            .is_some_and(|key| key.starts_with("daily-report/manual/j_")),
        "{:?}",
        report[0].header("idempotency-key")
    );
    // The refusal names the field, with google.rpc.BadRequest details grpcurl can read.
    assert!(
        stderr.contains("job.request.url: scheme must be http or https"),
        "{stderr}"
    );
    assert!(stderr.contains(r#""field":"job.request.url""#), "{stderr}");
    server.stop().await;
}
