//! This process's metrics, kept by the Prometheus project's own client library and
//! served on `JOBQUEUE_METRICS_ADDR` (see [`serve`]).
//!
//! The writer counts what each committed turn did (jobs accepted, attempts started
//! and finished, how long they took and waited) in a [`Tally`] and adds it here
//! once per turn, so counting costs a few atomic additions per job and one pass
//! per turn. What the database holds (jobs waiting, scheduled and running in each
//! queue, schedules by state) is read when a scraper asks, from one replica's view
//! of the shared database. Counters and histograms are per process: a scraper sums
//! them over the replicas.

mod grpc;
mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use serve::serve;

use crate::store::{Fault, QueueDepth, ScheduleCounts};

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

/// One queue's share of a writer turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueCounts {
    pub submitted: u64,
    pub started: u64,
    pub finished: BTreeMap<Outcome, u64>,
    /// Attempts that will be retried, by why they failed (see [`retry_reason`]).
    pub retries: BTreeMap<&'static str, u64>,
    /// Seconds each finished attempt took.
    pub attempt_seconds: Vec<f64>,
    /// Seconds from due to started, for each attempt started.
    pub wait_seconds: Vec<f64>,
    /// Seconds from due to started, for each schedule run's first attempt.
    pub lateness_seconds: Vec<f64>,
    /// Seconds from submitted to finished, for each job that finished for good.
    pub latency_seconds: Vec<f64>,
    /// Change in the calls in flight in this process.
    pub running: i64,
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

/// The label of a retry: the error class of a call that got no response, or the
/// response's status class.
pub fn retry_reason(error_class: Option<&str>, status: Option<i32>) -> &'static str {
    match (error_class, status) {
        (Some(class), _) => crate::job::ErrorClass::parse(class).map_or("other", |c| c.as_str()),
        (None, Some(429)) => "http_429",
        (None, Some(code)) => match code / 100 {
            2 => "http_2xx",
            3 => "http_3xx",
            4 => "http_4xx",
            5 => "http_5xx",
            _ => "http_other",
        },
        (None, None) => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    queue: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleState {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreReason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    build: &'static str,
    database: String,
    role: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Histogram buckets from 1 ms to about 9 minutes, doubling: attempts, waits and
/// latencies of a job queue span that range.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// From 0.1 ms to about 3 s, doubling: the writer's turns and commits.
fn turn_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The metric families; registered once in [`Metrics::new`].
struct Families {
    submitted: Family<QueueLabel, Counter>,
    started: Family<QueueLabel, Counter>,
    finished: Family<OutcomeLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    attempt_duration: Family<QueueLabel, Histogram, fn() -> Histogram>,
    queue_wait: Family<QueueLabel, Histogram, fn() -> Histogram>,
    job_latency: Family<QueueLabel, Histogram, fn() -> Histogram>,
    lateness: Family<QueueLabel, Histogram, fn() -> Histogram>,
    calls_in_flight: Family<QueueLabel, Gauge>,
    turn_duration: Histogram,
    commit_duration: Histogram,
    jobs: Family<StateLabels, Gauge>,
    oldest_waiting: Family<QueueLabel, FloatGauge>,
    schedules: Family<ScheduleState, Gauge>,
    watchers: Gauge,
    refusing: Family<StoreReason, Gauge>,
    refused_writes: Family<StoreReason, Counter>,
    held_outcomes: Gauge,
    host_held: Family<HeldLabel, Counter>,
    host_circuit_open: Family<HostLabel, Gauge>,
    grpc: grpc::GrpcFamilies,
}

/// The process's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    families: Families,
    /// Open watch streams, as the engine counts them.
    watchers: Arc<AtomicUsize>,
    /// Serialises scrapes: each refreshes the database gauges, then encodes.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(Arc::default(), "unknown", "unknown")
    }
}

impl Metrics {
    /// The registry of every family, with the engine's count of open watches and
    /// what the build info says of this process.
    pub fn new(watchers: Arc<AtomicUsize>, database: &str, role: &str) -> Metrics {
        let families = Families {
            submitted: Family::default(),
            started: Family::default(),
            finished: Family::default(),
            retries: Family::default(),
            attempt_duration: Family::new_with_constructor(seconds_buckets),
            queue_wait: Family::new_with_constructor(seconds_buckets),
            job_latency: Family::new_with_constructor(seconds_buckets),
            lateness: Family::new_with_constructor(seconds_buckets),
            calls_in_flight: Family::default(),
            turn_duration: turn_buckets(),
            commit_duration: turn_buckets(),
            jobs: Family::default(),
            oldest_waiting: Family::default(),
            schedules: Family::default(),
            watchers: Gauge::default(),
            refusing: Family::default(),
            refused_writes: Family::default(),
            held_outcomes: Gauge::default(),
            host_held: Family::default(),
            host_circuit_open: Family::default(),
            grpc: grpc::GrpcFamilies::default(),
        };
        let mut root = Registry::default();
        // gRPC's own names, as dashboards for gRPC servers expect them.
        families
            .grpc
            .register(root.sub_registry_with_prefix("grpc_server"));
        let registry = root.sub_registry_with_prefix("jobqueue");
        let f = &families;
        registry.register(
            "build",
            "This build and how it runs.",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                build: env!("JOBQUEUE_BUILD"),
                database: database.to_string(),
                role: role.to_string(),
            }),
        );
        registry.register(
            "jobs_submitted",
            "Jobs accepted by this process, schedule runs included.",
            f.submitted.clone(),
        );
        registry.register(
            "attempts_started",
            "HTTP calls this process started.",
            f.started.clone(),
        );
        registry.register(
            "attempts_finished",
            "HTTP calls this process finished, by what they meant for their job.",
            f.finished.clone(),
        );
        registry.register(
            "attempt_retries",
            "Attempts that failed and will be retried, by the error class or status class.",
            f.retries.clone(),
        );
        registry.register_with_unit(
            "attempt_duration",
            "How long finished HTTP calls took.",
            Unit::Seconds,
            f.attempt_duration.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "From a job's due time to the start of its attempt.",
            Unit::Seconds,
            f.queue_wait.clone(),
        );
        registry.register_with_unit(
            "job_latency",
            "From a job's submit to its end (succeeded, failed for good or canceled while running).",
            Unit::Seconds,
            f.job_latency.clone(),
        );
        registry.register_with_unit(
            "schedule_lateness",
            "From a schedule run's due time to the start of its first attempt.",
            Unit::Seconds,
            f.lateness.clone(),
        );
        registry.register(
            "calls_in_flight",
            "HTTP calls in flight in this process.",
            f.calls_in_flight.clone(),
        );
        registry.register_with_unit(
            "writer_turn_duration",
            "How long the writer's turns took, from the first statement to the answers sent.",
            Unit::Seconds,
            f.turn_duration.clone(),
        );
        registry.register_with_unit(
            "writer_commit_duration",
            "How long the writer's commits took.",
            Unit::Seconds,
            f.commit_duration.clone(),
        );
        registry.register(
            "queue_jobs",
            "Jobs in the database by queue and state: waiting (due), scheduled (due later), running.",
            f.jobs.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_waiting_age",
            "How long the queue's longest-waiting due job has waited; 0 when none waits.",
            Unit::Seconds,
            f.oldest_waiting.clone(),
        );
        registry.register(
            "schedules",
            "Schedules in the database by state.",
            f.schedules.clone(),
        );
        registry.register(
            "watchers",
            "Open WatchJobs streams in this process.",
            f.watchers.clone(),
        );
        registry.register(
            "store_refusing_writes",
            "1 while the database refuses this process's writes, by why.",
            f.refusing.clone(),
        );
        registry.register(
            "store_refused_writes",
            "Write requests answered with an error because the database took no writes.",
            f.refused_writes.clone(),
        );
        registry.register(
            "store_held_outcomes",
            "Attempt outcomes waiting for the database to take them.",
            f.held_outcomes.clone(),
        );
        registry.register(
            "host_held",
            "Claimed jobs held back for their destination host (host_limited, circuit_open): queued again, no attempt spent.",
            f.host_held.clone(),
        );
        registry.register(
            "host_circuit_open",
            "1 while a destination host's circuit is open (or half open), as this process last saw it change.",
            f.host_circuit_open.clone(),
        );
        for fault in [Fault::DiskFull, Fault::Unavailable] {
            let reason = StoreReason {
                reason: fault.label(),
            };
            f.refusing.get_or_create(&reason).set(0);
            f.refused_writes.get_or_create(&reason).inc_by(0);
        }
        Metrics {
            inner: Arc::new(Inner {
                registry: root,
                families,
                watchers,
                scrape: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn families(&self) -> &Families {
        &self.inner.families
    }

    /// Whether the database refuses writes now, and why.
    pub fn store_refusing(&self, fault: Option<Fault>) {
        for each in [Fault::DiskFull, Fault::Unavailable] {
            let reason = StoreReason {
                reason: each.label(),
            };
            let on = i64::from(fault == Some(each));
            self.families().refusing.get_or_create(&reason).set(on);
        }
    }

    /// Write requests answered with an error because of `fault`.
    pub fn refused_writes(&self, fault: Fault, n: u64) {
        let reason = StoreReason {
            reason: fault.label(),
        };
        self.families()
            .refused_writes
            .get_or_create(&reason)
            .inc_by(n);
    }

    /// A claimed job held back for its host, and why.
    pub fn host_held(&self, reason: &str) {
        self.families()
            .host_held
            .get_or_create(&HeldLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A host's circuit opened (or closed).
    pub fn host_circuit(&self, host: &str, open: bool) {
        self.families()
            .host_circuit_open
            .get_or_create(&HostLabel {
                host: host.to_string(),
            })
            .set(i64::from(open));
    }

    pub fn held_outcomes(&self, n: usize) {
        self.families().held_outcomes.set(n as i64);
    }

    /// One writer turn: how long it took, and its commit when it made one.
    pub fn turn(&self, took: Duration, commit: Option<Duration>) {
        self.families().turn_duration.observe(took.as_secs_f64());
        if let Some(commit) = commit {
            self.families()
                .commit_duration
                .observe(commit.as_secs_f64());
        }
    }

    /// Adds what a committed turn counted.
    pub fn add(&self, tally: Tally) {
        let f = self.families();
        for (queue, counts) in tally.0 {
            let label = QueueLabel { queue };
            if counts.submitted > 0 {
                f.submitted.get_or_create(&label).inc_by(counts.submitted);
            }
            if counts.started > 0 {
                f.started.get_or_create(&label).inc_by(counts.started);
            }
            for (outcome, n) in counts.finished {
                let labels = OutcomeLabels {
                    queue: label.queue.clone(),
                    outcome: outcome.label(),
                };
                f.finished.get_or_create(&labels).inc_by(n);
            }
            for (reason, n) in counts.retries {
                let labels = ReasonLabels {
                    queue: label.queue.clone(),
                    reason,
                };
                f.retries.get_or_create(&labels).inc_by(n);
            }
            for (family, samples) in [
                (&f.attempt_duration, &counts.attempt_seconds),
                (&f.queue_wait, &counts.wait_seconds),
                (&f.lateness, &counts.lateness_seconds),
                (&f.job_latency, &counts.latency_seconds),
            ] {
                if samples.is_empty() {
                    continue;
                }
                let histogram = family.get_or_create(&label);
                for seconds in samples {
                    histogram.observe(*seconds);
                }
            }
            if counts.running != 0 {
                f.calls_in_flight
                    .get_or_create(&label)
                    .inc_by(counts.running);
            }
        }
    }

    /// Sets the gauges of what the database holds: every queue's series, at 0 when
    /// it holds nothing; a queue deleted since the last scrape loses its series.
    pub fn database_gauges(&self, depths: &[QueueDepth], schedules: &ScheduleCounts, now: i64) {
        let f = self.families();
        f.jobs.clear();
        f.oldest_waiting.clear();
        for depth in depths {
            for (state, n) in [
                ("waiting", depth.waiting),
                ("scheduled", depth.scheduled),
                ("running", depth.running),
            ] {
                let labels = StateLabels {
                    queue: depth.queue.clone(),
                    state,
                };
                f.jobs.get_or_create(&labels).set(n);
            }
            // Its counters from the start too, so a rate over them is 0, not absent.
            let label = QueueLabel {
                queue: depth.queue.clone(),
            };
            f.submitted.get_or_create(&label).inc_by(0);
            f.started.get_or_create(&label).inc_by(0);
            for outcome in [Outcome::Succeeded, Outcome::Retried, Outcome::Failed] {
                let labels = OutcomeLabels {
                    queue: depth.queue.clone(),
                    outcome: outcome.label(),
                };
                f.finished.get_or_create(&labels).inc_by(0);
            }
            let age = depth
                .oldest_waiting_since
                .map_or(0.0, |since| (now - since).max(0) as f64 / 1000.0);
            f.oldest_waiting.get_or_create(&label).set(age);
        }
        for (state, n) in [
            ("active", schedules.active),
            ("paused", schedules.paused),
            ("completed", schedules.completed),
        ] {
            f.schedules.get_or_create(&ScheduleState { state }).set(n);
        }
    }

    /// The exposition: OpenMetrics when `openmetrics`, else Prometheus' text format
    /// 0.0.4.
    pub fn render(&self, openmetrics: bool) -> String {
        let f = self.families();
        f.watchers
            .set(self.inner.watchers.load(Ordering::Relaxed) as i64);
        let mut out = String::new();
        let encoded = match openmetrics {
            true => prometheus_client::encoding::text::encode(&mut out, &self.inner.registry),
            false => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
            }
        };
        // Writing to a String cannot fail.
        encoded.expect("encoding into a String");
        out
    }

    pub(crate) fn grpc(&self) -> &grpc::GrpcFamilies {
        &self.families().grpc
    }
}
