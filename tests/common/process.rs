//! The service as a child process, for tests that kill it or read its log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestDb;

pub struct Process {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    /// Every line the process wrote to stderr (its log), as it arrives.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `jobqueue serve` on port 0 over `db`, and reads the address it prints.
    pub fn start(db: &TestDb, extra: &[&str]) -> Process {
        Self::start_on(&db.url, extra)
    }

    /// Starts `jobqueue serve` on port 0 over the database at `url`.
    pub fn start_on(url: &str, extra: &[&str]) -> Process {
        Self::start_with_env(url, extra, &[])
    }

    /// [`Process::start_on`] with these environment variables set.
    pub fn start_with_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Process {
        Self::spawn("127.0.0.1:0", url, extra, env)
    }

    /// Starts `jobqueue serve` on `addr` (from [`super::free_port`]), so that
    /// clients find it again when it is started anew there.
    pub fn start_at(addr: std::net::SocketAddr, url: &str, extra: &[&str]) -> Process {
        Self::spawn(&addr.to_string(), url, extra, &[])
    }

    fn spawn(listen: &str, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
            .args(["serve", "--listen-addr", listen])
            .args(["--db-url", url])
            .args([
                "--poll-interval",
                "200ms",
                "--maintenance-interval",
                "100ms",
            ])
            .args(extra)
            .env("JOBQUEUE_LOG", "warn,jobqueue=info")
            .env("JOBQUEUE_OUTBOUND_ALLOW", super::LOOPBACK_TARGETS)
            // The caller's settings win over the defaults above.
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jobqueue");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("jobqueue listening on ") {
                    let _ = tx.send(addr.parse::<std::net::SocketAddr>().expect("address"));
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        Process { child, addr, log }
    }

    /// Log lines that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Stops it as an orchestrator would, and waits for it to exit.
    pub fn stop(mut self) {
        self.sigterm();
        self.wait_exit(Duration::from_secs(30));
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
