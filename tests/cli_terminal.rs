//! The command line's live view under a real terminal (tmux): one job's line
//! redrawn in place through its retry's countdown, a progress bar across many.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use testkit::Target;

/// A detached tmux session of its own (its own server socket), killed on drop.
struct Terminal {
    socket: String,
    session: String,
}

impl Terminal {
    /// Runs `command` in a new 120x30 terminal.
    fn run(name: &str, command: &str) -> Terminal {
        let socket = format!("jobqueue-test-{}-{name}", std::process::id());
        let term = Terminal {
            socket,
            session: name.to_string(),
        };
        let started = Command::new("tmux")
            .args([
                "-L",
                &term.socket,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
            ])
            .args(["-s", &term.session, command])
            .env("TERM", "xterm-256color")
            .status()
            .unwrap();
        assert!(started.success(), "tmux started");
        term
    }

    /// What the terminal shows now.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "capture-pane",
                "-p",
                "-t",
                &self.session,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every distinct screen until one shows `end` (or the time is up).
    fn screens_until(&self, end: &str, within: Duration) -> Vec<String> {
        let started = Instant::now();
        let mut screens: Vec<String> = Vec::new();
        while started.elapsed() < within {
            let screen = self.screen();
            if screens.last() != Some(&screen) {
                screens.push(screen.clone());
            }
            if screen.contains(end) {
                return screens;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no screen showed {end:?} within {within:?}; the last:\n{}",
            screens.last().unwrap()
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Every screen `terminal` shows until its command has exited.
async fn screens_to_the_end(terminal: Terminal) -> Vec<String> {
    tokio::task::spawn_blocking(move || terminal.screens_until("EXIT=", Duration::from_secs(30)))
        .await
        .unwrap()
}

fn shell_command(server: &Server, args: &str) -> String {
    format!(
        "JOBQUEUE_ADDRESS={} {} {args}; echo EXIT=$?; sleep 60",
        server.addr,
        env!("CARGO_BIN_EXE_jobqueue")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jobs_line_is_redrawn_through_its_retry_until_it_succeeds() {
    if !tool_available(Command::new("tmux").arg("-V"), "tmux") {
        return;
    }
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    // The first attempt fails; the retry waits 2 s.
    let url = target.url("/flaky?fail=1&delay_ms=300");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("job.json");
    let backoff = r#"{"backoff": {"strategy": "BACKOFF_STRATEGY_FIXED", "baseDelay": "2s"}}"#;
    std::fs::write(&spec, backoff).unwrap();
    let terminal = Terminal::run(
        "one",
        &shell_command(
            &server,
            &format!(
                "job submit -f {} --url '{url}' --max-attempts 3 --wait",
                spec.display()
            ),
        ),
    );
    let screens = screens_to_the_end(terminal).await;
    let last = screens.last().unwrap();
    assert!(last.contains("EXIT=0"), "it exits 0:\n{last}");
    assert!(last.contains("succeeded, attempt 2/3 (200)"), "{last}");
    assert!(
        screens.iter().any(|s| s.contains("running, attempt 1/3")),
        "the first attempt was shown running"
    );
    let countdown: Vec<&String> = screens
        .iter()
        .filter(|s| s.contains("queued, attempt 1/3, next in"))
        .collect();
    assert!(
        countdown.iter().any(|s| s.contains("next in 2s"))
            && countdown.iter().any(|s| s.contains("next in 1s")),
        "the countdown to the retry moved: {countdown:#?}"
    );
    // Redrawn in place: every screen has the job's state on one line only.
    let id = last.lines().next().unwrap().trim().to_string();
    assert!(id.starts_with("j_"), "{last}");
    for screen in &screens {
        let lines = screen
            .lines()
            .filter(|l| l.contains(&id) && l.contains("attempt"))
            .count();
        assert!(lines <= 1, "one line for the job, redrawn:\n{screen}");
    }
    assert_eq!(target.received_on("/flaky").len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_bar_counts_many_jobs_by_status() {
    if !tool_available(Command::new("tmux").arg("-V"), "tmux") {
        return;
    }
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            let url = if i % 10 == 0 {
                target.url(&format!("/bar/{i}?status=500&delay_ms=1500"))
            } else {
                target.url(&format!("/bar/{i}?delay_ms=1500"))
            };
            format!("{{\"request\": {{\"url\": \"{url}\"}}, \"maxAttempts\": 1}}\n")
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let terminal = Terminal::run(
        "many",
        &shell_command(
            &server,
            &format!("job submit --jobs {} --wait", file.display()),
        ),
    );
    let screens = screens_to_the_end(terminal).await;
    let last = screens.last().unwrap();
    assert!(last.contains("40 jobs submitted"), "{last}");
    assert!(last.contains("40/40 finished"), "{last}");
    assert!(
        last.contains("succeeded 36") && last.contains("failed 4"),
        "{last}"
    );
    assert!(
        last.contains("EXIT=3"),
        "a failed job makes it exit 3:\n{last}"
    );
    assert!(
        screens
            .iter()
            .any(|s| s.contains("running ") && s.contains("/40 finished")),
        "the bar was drawn while the calls ran: {screens:#?}"
    );
    server.stop().await;
}
