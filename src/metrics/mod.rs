//! This process's counters, labelled by queue, served in the Prometheus text format
//! on `JOBQUEUE_METRICS_ADDR` (`GET /metrics`).
//!
//! The writer counts what each committed turn did (jobs accepted, attempts
//! started, attempts finished by outcome, and their durations) and adds it here
//! once per turn, so counting costs one lock per turn, not one per job. Counters
//! are per process: a scraper sums them over the replicas.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::Fault;

/// How an attempt ended, as its label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Succeeded,
    /// Failed, with attempts left: queued again after its backoff.
    Retried,
    Failed,
    Canceled,
    /// Stopped by a shutdown: queued again, not counted as an attempt.
    Interrupted,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Canceled => "canceled",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One queue's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueCounts {
    pub submitted: u64,
    pub started: u64,
    pub finished: BTreeMap<Outcome, u64>,
    /// Seconds spent in finished attempts, and how many there were.
    pub duration_seconds: f64,
    pub durations: u64,
    /// Calls in flight in this process now.
    pub running: i64,
}

impl QueueCounts {
    fn add(&mut self, other: &QueueCounts) {
        self.submitted += other.submitted;
        self.started += other.started;
        for (outcome, n) in &other.finished {
            *self.finished.entry(*outcome).or_default() += n;
        }
        self.duration_seconds += other.duration_seconds;
        self.durations += other.durations;
        self.running += other.running;
    }
}

/// What one writer turn did, by queue; added to [`Metrics`] after its commit.
#[derive(Debug, Default)]
pub struct Tally(BTreeMap<String, QueueCounts>);

impl Tally {
    pub fn queue(&mut self, queue: &str) -> &mut QueueCounts {
        if !self.0.contains_key(queue) {
            self.0.insert(queue.to_string(), QueueCounts::default());
        }
        self.0.get_mut(queue).expect("inserted above")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The process's counters; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    by_queue: Arc<Mutex<BTreeMap<String, QueueCounts>>>,
    /// Open watch streams, as the engine counts them.
    watchers: Arc<AtomicUsize>,
    store: Arc<StoreCounts>,
}

/// How the database is taking this process's writes.
#[derive(Default)]
struct StoreCounts {
    /// Refusing them now, for a full disk (1) or being unavailable (2); 0 when not.
    refusing: AtomicUsize,
    refused_disk_full: AtomicU64,
    refused_unavailable: AtomicU64,
    /// Attempt outcomes waiting for the database to take them.
    held_outcomes: AtomicUsize,
}

impl Metrics {
    /// Counters that also report the engine's count of open watches.
    pub fn with_watchers(watchers: Arc<AtomicUsize>) -> Metrics {
        Metrics {
            by_queue: Arc::default(),
            watchers,
            store: Arc::default(),
        }
    }

    /// Whether the database refuses writes now, and why.
    pub fn store_refusing(&self, fault: Option<Fault>) {
        let code = match fault {
            None => 0,
            Some(Fault::DiskFull) => 1,
            Some(Fault::Unavailable) => 2,
        };
        self.store.refusing.store(code, Ordering::Relaxed);
    }

    /// Write requests answered with an error because of `fault`.
    pub fn refused_writes(&self, fault: Fault, n: u64) {
        let counter = match fault {
            Fault::DiskFull => &self.store.refused_disk_full,
            Fault::Unavailable => &self.store.refused_unavailable,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn held_outcomes(&self, n: usize) {
        self.store.held_outcomes.store(n, Ordering::Relaxed);
    }

    pub fn add(&self, tally: Tally) {
        let mut all = self.by_queue.lock().unwrap_or_else(|p| p.into_inner());
        for (queue, counts) in tally.0 {
            all.entry(queue).or_default().add(&counts);
        }
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let all = self
            .by_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        fn family(
            out: &mut String,
            name: &str,
            kind: &str,
            help: &str,
            rows: Vec<(String, String)>,
        ) {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        let queue = |q: &str| format!("queue=\"{q}\"");
        family(
            &mut out,
            "jobqueue_jobs_submitted_total",
            "counter",
            "Jobs accepted by this process.",
            all.iter()
                .map(|(q, c)| (queue(q), c.submitted.to_string()))
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_attempts_started_total",
            "counter",
            "HTTP calls this process started.",
            all.iter()
                .map(|(q, c)| (queue(q), c.started.to_string()))
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_attempts_finished_total",
            "counter",
            "HTTP calls this process finished, by what they meant for their job.",
            all.iter()
                .flat_map(|(q, c)| {
                    c.finished.iter().map(move |(outcome, n)| {
                        (
                            format!("{},outcome=\"{}\"", queue(q), outcome.label()),
                            n.to_string(),
                        )
                    })
                })
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_attempt_duration_seconds_sum",
            "counter",
            "Seconds spent in finished HTTP calls.",
            all.iter()
                .map(|(q, c)| (queue(q), format!("{:.6}", c.duration_seconds)))
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_attempt_duration_seconds_count",
            "counter",
            "Finished HTTP calls timed.",
            all.iter()
                .map(|(q, c)| (queue(q), c.durations.to_string()))
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_jobs_running",
            "gauge",
            "HTTP calls in flight in this process.",
            all.iter()
                .map(|(q, c)| (queue(q), c.running.to_string()))
                .collect(),
        );
        let watchers = self.watchers.load(Ordering::SeqCst);
        let _ = writeln!(
            out,
            "# HELP jobqueue_watchers Open WatchJobs streams in this process.\n\
             # TYPE jobqueue_watchers gauge\njobqueue_watchers {watchers}"
        );
        let store = &self.store;
        let refusing = store.refusing.load(Ordering::Relaxed);
        family(
            &mut out,
            "jobqueue_store_refusing_writes",
            "gauge",
            "1 while the database refuses this process's writes, by why.",
            [(1, Fault::DiskFull), (2, Fault::Unavailable)]
                .into_iter()
                .map(|(code, fault)| {
                    let value = if refusing == code { "1" } else { "0" };
                    (format!("reason=\"{}\"", fault.label()), value.to_string())
                })
                .collect(),
        );
        family(
            &mut out,
            "jobqueue_store_refused_writes_total",
            "counter",
            "Write requests answered with an error because the database took no writes.",
            [
                (Fault::DiskFull, &store.refused_disk_full),
                (Fault::Unavailable, &store.refused_unavailable),
            ]
            .into_iter()
            .map(|(fault, n)| {
                let n = n.load(Ordering::Relaxed);
                (format!("reason=\"{}\"", fault.label()), n.to_string())
            })
            .collect(),
        );
        let held = store.held_outcomes.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP jobqueue_store_held_outcomes Attempt outcomes waiting for the database to take them.\n\
             # TYPE jobqueue_store_held_outcomes gauge\njobqueue_store_held_outcomes {held}"
        );
        out
    }
}

/// Answers `GET /metrics` on `listener` until `stop`; anything else is a 404.
/// HTTP/1.1 with one request per connection, which is all a scraper needs.
pub async fn serve(listener: TcpListener, metrics: Metrics, stop: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // The request head only; a scrape has no body.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    stream.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let (status, body) = if line.starts_with(b"GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_string(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_add_up_per_queue_and_render_with_labels() {
        let metrics = Metrics::default();
        let mut turn = Tally::default();
        turn.queue("mail").submitted += 2;
        turn.queue("mail").started += 1;
        turn.queue("mail").running += 1;
        metrics.add(turn);
        let mut turn = Tally::default();
        let mail = turn.queue("mail");
        *mail.finished.entry(Outcome::Succeeded).or_default() += 1;
        mail.running -= 1;
        mail.duration_seconds += 0.25;
        mail.durations += 1;
        turn.queue("hooks").submitted += 5;
        metrics.add(turn);
        let text = metrics.render();
        for line in [
            "jobqueue_jobs_submitted_total{queue=\"mail\"} 2",
            "jobqueue_jobs_submitted_total{queue=\"hooks\"} 5",
            "jobqueue_attempts_finished_total{queue=\"mail\",outcome=\"succeeded\"} 1",
            "jobqueue_jobs_running{queue=\"mail\"} 0",
            "jobqueue_attempt_duration_seconds_sum{queue=\"mail\"} 0.250000",
            "# TYPE jobqueue_jobs_running gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
