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

/// The lines of the text block after the `grpcurl-expected` marker in README.md.
fn readme_expected() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("<!-- grpcurl-expected")
        .nth(1)
        .expect("README shows the session's output");
    let block = after
        .split("```text\n")
        .nth(1)
        .expect("a text block follows the marker");
    block
        .split("```")
        .next()
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The target the README names, on a port of its own; each request it prints.
struct EchoTarget {
    child: std::process::Child,
    addr: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl EchoTarget {
    fn start() -> EchoTarget {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/echo_target.py"
            ))
            .arg("0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the echo target");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = out.next().expect("a first line").expect("readable");
        let addr = first
            .strip_prefix("echo target on ")
            .expect("it says where it listens")
            .to_string();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        EchoTarget { child, addr, lines }
    }

    /// Waits until it has printed `n` requests.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if lines.len() >= n || std::time::Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EchoTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_session_works_against_the_target_it_names() {
    if !tool_available(Command::new("grpcurl").arg("-version"), "grpcurl") {
        return;
    }
    let target = EchoTarget::start();
    let server = Server::start().await;
    let script = readme_session()
        .replace("localhost:50051", &server.addr.to_string())
        .replace("127.0.0.1:8080", &target.addr);
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

    // What the README shows, it prints.
    for line in readme_expected() {
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
