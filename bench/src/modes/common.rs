//! What the throughput modes share: the bench's environment, the jobs they submit,
//! the log of what was accepted, waiting until every job is SUCCEEDED and working out
//! the dispatch latencies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use jobqueue::proto::{self, JobSpec, JobStatus};
use testkit::Target;
use tonic::transport::Endpoint;

use crate::Args;
use crate::proc_stats::clock_ticks_per_sec;
use crate::proc_stats::{CpuSnapshot, cpu_snapshot, measure_cpu, measure_peak_rss, reset_peak_rss};
use crate::report::{ModeResult, signed_ms};
use crate::server::{Client, Server, ServerProc, connect};

/// How often completion is polled once the target has seen every job.
pub(crate) const COMPLETION_POLL: Duration = Duration::from_millis(10);

/// Everything a run needs to know about its environment.
pub(crate) struct Bench {
    pub(crate) client: Client,
    /// Where the server listens, for connections of their own (watchers).
    pub(crate) addr: SocketAddr,
    pub(crate) server_proc: ServerProc,
    /// The unit of /proc CPU times.
    pub(crate) clock_ticks_per_sec: u64,
    pub(crate) timeout: Duration,
    /// Distinguishes this invocation's tags from earlier runs on the same server.
    pub(crate) run_id: String,
}

impl Bench {
    /// Connects to `server`, for the modes to run against.
    pub(crate) async fn new(args: &Args, server: &Server) -> anyhow::Result<Bench> {
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        Ok(Bench {
            client: connect(server.addr).await?,
            addr: server.addr,
            server_proc: server.server_proc(),
            clock_ticks_per_sec: clock_ticks_per_sec(),
            timeout: Duration::from_secs(args.timeout_secs),
            run_id,
        })
    }
}

/// The first job number of the next run: numbers stay unique across modes.
static NEXT_JOB_NUMBER: AtomicUsize = AtomicUsize::new(0);

fn reserve_job_numbers(count: usize) -> usize {
    NEXT_JOB_NUMBER.fetch_add(count, Ordering::Relaxed)
}

/// How many queues jobs are spread over (`--queues`), set once at start.
pub(crate) static QUEUES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The queue of job `n`: empty (`default`) with one queue.
fn queue_of(n: usize) -> String {
    match QUEUES.get().copied().unwrap_or(1) {
        0 | 1 => String::new(),
        queues => format!("bench-{:02}", n % queues),
    }
}

/// Bytes of each job's JSON body (`--post-bytes`); 0: jobs are GETs.
pub(crate) static POST_BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// A GET of the target's `/b/{n}` (a POST of a JSON body with `--post-bytes`),
/// tagged with the run's tag.
pub(crate) fn job_spec(url_prefix: &str, n: usize, tag: &str) -> JobSpec {
    let bytes = POST_BYTES.get().copied().unwrap_or(0);
    let (method, body) = match bytes {
        0 => ("GET", None),
        _ => (
            "POST",
            Some(proto::http_request::Body::Json(json_body(n, bytes))),
        ),
    };
    JobSpec {
        queue: queue_of(n),
        request: Some(proto::HttpRequest {
            method: method.into(),
            url: format!("{url_prefix}{n}"),
            body,
            ..Default::default()
        }),
        tags: vec![tag.to_string()],
        ..Default::default()
    }
}

/// `{"n":N,"pad":"xxx…"}`, padded to `bytes` bytes as sent (or just over, when
/// `bytes` is smaller than the document without padding).
fn json_body(n: usize, bytes: usize) -> prost_types::Value {
    let bare = format!(r#"{{"n":{n},"pad":""}}"#).len();
    let pad = "x".repeat(bytes.saturating_sub(bare));
    let json = serde_json::json!({"n": n, "pad": pad});
    jobqueue::api::convert::value_from_json(json)
}

/// One accepted job: its index within the run, when the call carrying it was sent and
/// when that call's acknowledgment arrived.
#[derive(Clone, Copy)]
pub(crate) struct Ack {
    pub(crate) index: usize,
    pub(crate) sent: Instant,
    pub(crate) acked: Instant,
}

/// What one submitting task saw.
#[derive(Default)]
pub(crate) struct SubmitLog {
    pub(crate) acks: Vec<Ack>,
    pub(crate) submit_ms: Vec<f64>,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
}

impl SubmitLog {
    pub(crate) fn failed(&mut self, error: &tonic::Status) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    pub(crate) fn merge(&mut self, other: SubmitLog) {
        self.acks.extend(other.acks);
        self.submit_ms.extend(other.submit_ms);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One run's fixed facts: its target, tag and job numbers.
pub(crate) struct RunSetup {
    pub(crate) target: Target,
    pub(crate) url_prefix: String,
    pub(crate) tag: String,
    pub(crate) first_number: usize,
    pub(crate) rss_was_reset: bool,
    pub(crate) cpu_at_start: CpuSnapshot,
}

/// The tag every job of one mode's run carries, to count them by.
pub(crate) fn run_tag(bench: &Bench, mode: &str) -> String {
    format!("bench-{mode}-{}", bench.run_id)
}

pub(crate) async fn set_up_run(bench: &Bench, mode: &str, jobs: usize) -> anyhow::Result<RunSetup> {
    // A fresh target per run: its count starts at zero and its record of requests is
    // freed with it.
    let target = Target::start().await.context("starting the HTTP target")?;
    let url_prefix = target.url("/b/");
    let rss_was_reset = reset_peak_rss(bench.server_proc);
    Ok(RunSetup {
        target,
        url_prefix,
        tag: run_tag(bench, mode),
        first_number: reserve_job_numbers(jobs),
        rss_was_reset,
        // Last, so setting up the target is not counted.
        cpu_at_start: cpu_snapshot(bench.server_proc),
    })
}

/// A connection of its own to the server, for the services other than jobs.
pub(crate) async fn channel(bench: &Bench) -> anyhow::Result<crate::server::Keyed> {
    let channel = Endpoint::from_shared(format!("http://{}", bench.addr))
        .context("the server's address as a URI")?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connecting to the server")?;
    Ok(crate::server::keyed(channel))
}

pub(crate) async fn join_logs(
    workers: Vec<tokio::task::JoinHandle<SubmitLog>>,
) -> anyhow::Result<SubmitLog> {
    let mut merged = SubmitLog::default();
    for log in futures::future::join_all(workers).await {
        merged.merge(log.context("a submitting task panicked")?);
    }
    Ok(merged)
}

/// Waits until every accepted job has succeeded, then works out the latencies.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_run(
    bench: &Bench,
    setup: RunSetup,
    mode: &'static str,
    shape: String,
    submit_unit: String,
    jobs: usize,
    log: SubmitLog,
    started: Instant,
    submit_phase: Duration,
) -> anyhow::Result<ModeResult> {
    let submitted = log.acks.len();
    if let Some(error) = &log.first_error {
        eprintln!(
            "{mode}: {} submit call(s) failed; first: {error}",
            log.errors
        );
    }
    ensure!(submitted > 0, "{mode}: the server accepted no jobs");
    eprintln!(
        "{mode}: {submitted} accepted in {:.2}s; waiting for them to finish",
        submit_phase.as_secs_f64()
    );
    let finished = wait_until_succeeded(bench, &setup, mode, submitted, started).await?;
    // Before working out latencies, which is the bench's own bookkeeping, not load.
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);

    let dispatch = dispatch_latencies(&setup, jobs, &log.acks);
    Ok(ModeResult {
        mode,
        shape,
        submitted,
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit,
        submit_ms: log.submit_ms,
        dispatch_ms: dispatch.from_ack_ms,
        send_to_target_ms: dispatch.from_send_ms,
        repeats: dispatch.repeats,
        submit_phase,
        end_to_end: Some(finished - started),
        peak_rss,
        cpu,
        extra_json: Vec::new(),
    })
}

/// The moment every one of `submitted` jobs is SUCCEEDED: first the target must have
/// seen them all, then `ListJobs` must count them all (completions are written after
/// the call returns).
pub(crate) async fn wait_until_succeeded(
    bench: &Bench,
    setup: &RunSetup,
    mode: &str,
    submitted: usize,
    started: Instant,
) -> anyhow::Result<Instant> {
    let deadline = started + bench.timeout;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if !setup.target.wait_for(submitted, remaining).await {
        bail!(
            "{mode}: stalled: after {}s the target has seen {} of {submitted} requests; {}",
            bench.timeout.as_secs(),
            setup.target.count(),
            status_counts(bench, &setup.tag).await
        );
    }
    let mut client = bench.client.clone();
    loop {
        let succeeded = count_jobs(&mut client, &setup.tag, JobStatus::Succeeded).await?;
        let now = Instant::now();
        if succeeded >= submitted {
            return Ok(now);
        }
        if now > deadline {
            bail!(
                "{mode}: stalled: the target saw every request, but after {}s only \
                 {succeeded} of {submitted} jobs are SUCCEEDED; {}",
                bench.timeout.as_secs(),
                status_counts(bench, &setup.tag).await
            );
        }
        tokio::time::sleep(COMPLETION_POLL).await;
    }
}

/// How many of the run's jobs are in `status`, read from `ListJobs`' `total_size`.
async fn count_jobs(client: &mut Client, tag: &str, status: JobStatus) -> anyhow::Result<usize> {
    let page = client
        .list_jobs(proto::ListJobsRequest {
            page_size: 1,
            statuses: vec![status as i32],
            tags: vec![tag.to_string()],
            ..Default::default()
        })
        .await
        .context("ListJobs")?
        .into_inner();
    Ok(usize::try_from(page.total_size).unwrap_or(0))
}

/// The run's jobs per status, in words, for a stall report.
async fn status_counts(bench: &Bench, tag: &str) -> String {
    let mut client = bench.client.clone();
    let mut words = Vec::new();
    for status in [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ] {
        let count = match count_jobs(&mut client, tag, status).await {
            Ok(n) => n.to_string(),
            Err(error) => format!("? ({error:#})"),
        };
        words.push(format!("{} {count}", status.as_str_name()));
    }
    format!("jobs by status: {}", words.join(", "))
}

pub(crate) struct Dispatch {
    /// Per job: its request's first arrival at the target minus its acknowledgment.
    pub(crate) from_ack_ms: Vec<f64>,
    /// Per job: the same arrival minus the moment its submit call was sent.
    pub(crate) from_send_ms: Vec<f64>,
    /// Requests that arrived more than once (a job run again).
    pub(crate) repeats: usize,
}

pub(crate) fn dispatch_latencies(setup: &RunSetup, jobs: usize, acks: &[Ack]) -> Dispatch {
    let mut first_arrival: Vec<Option<Instant>> = vec![None; jobs];
    let mut repeats = 0;
    for request in setup.target.received() {
        let Some(index) = request
            .path()
            .strip_prefix("/b/")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(setup.first_number))
            .filter(|index| *index < jobs)
        else {
            continue;
        };
        match &mut first_arrival[index] {
            Some(at) => {
                repeats += 1;
                *at = (*at).min(request.at);
            }
            slot @ None => *slot = Some(request.at),
        }
    }
    let mut dispatch = Dispatch {
        from_ack_ms: Vec::with_capacity(acks.len()),
        from_send_ms: Vec::with_capacity(acks.len()),
        repeats,
    };
    for ack in acks {
        if let Some(arrival) = first_arrival[ack.index] {
            dispatch.from_ack_ms.push(signed_ms(&ack.acked, &arrival));
            dispatch.from_send_ms.push(signed_ms(&ack.sent, &arrival));
        }
    }
    dispatch
}
