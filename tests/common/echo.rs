//! The example target from `examples/echo_target.py`, as a process on a port of
//! its own: the target README.md's examples name.

use std::time::Duration;

/// The target the README names, on a port of its own; each request it prints.
pub struct EchoTarget {
    child: std::process::Child,
    pub addr: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl EchoTarget {
    pub fn start() -> EchoTarget {
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
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
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
