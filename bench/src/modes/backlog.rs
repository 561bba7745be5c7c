//! `--mode backlog`: fresh work beside a large backlog. The paused queue
//! `bench-backlog` is filled with `--backlog` jobs; the batch and unary throughput
//! runs then go on in the default queue beside it, as `backlog-batch` and
//! `backlog-unary`; last the queue is resumed and its drain measured as
//! `backlog-drain`; after it the server idles, keeping what the drain left, and
//! its share of a core is measured.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use jobqueue::proto::{self, JobSpec, queue_service_client::QueueServiceClient};
use tonic::Code;

use super::batch::run_batch;
use super::common::{
    Bench, RunSetup, SubmitLog, channel, dispatch_latencies, job_spec, set_up_run,
    wait_until_succeeded,
};
use super::unary::run_unary;
use crate::Args;
use crate::proc_stats::{cpu_snapshot, measure_cpu, measure_peak_rss, reset_peak_rss};
use crate::report::{ModeResult, json_string, ms};

/// The queue the backlog waits in.
const BACKLOG_QUEUE: &str = "bench-backlog";

type Queues = QueueServiceClient<crate::server::Keyed>;

/// What filling the backlog came to.
struct Fill {
    log: SubmitLog,
    accepted: usize,
    took: Duration,
}

/// `--mode backlog`: the backlog, the two runs beside it, then its drain.
pub(crate) async fn run_backlog(
    bench: &Bench,
    args: &Args,
) -> anyhow::Result<(Vec<ModeResult>, String)> {
    let backlog = args.backlog;
    let mut queues = QueueServiceClient::new(channel(bench).await?);
    pause_queue(&mut queues).await?;

    // Its own target and tag; the runs beside it get theirs, so nothing mixes.
    let mut setup = set_up_run(bench, "backlog", backlog).await?;
    eprintln!(
        "backlog: submitting {backlog} jobs into the paused queue {BACKLOG_QUEUE}, {} per \
         SubmitJobs call, {} calls in flight",
        args.batch_size, args.batch_in_flight
    );
    let fill = fill_backlog(
        bench,
        &setup,
        backlog,
        args.batch_size,
        args.batch_in_flight,
    )
    .await?;
    eprintln!(
        "backlog: {} accepted in {:.2}s ({:.0} jobs/s)",
        fill.accepted,
        fill.took.as_secs_f64(),
        fill.accepted as f64 / fill.took.as_secs_f64()
    );

    let beside = |result: &mut ModeResult| {
        result.extra_json.extend([
            ("backlog", fill.accepted.to_string()),
            ("backlog_queue", json_string(BACKLOG_QUEUE)),
        ]);
    };
    let mut batch = run_batch(
        bench,
        "backlog-batch",
        args.jobs,
        args.batch_size,
        args.batch_in_flight,
    )
    .await?;
    beside(&mut batch);
    let mut unary = run_unary(bench, "backlog-unary", args.jobs, args.in_flight).await?;
    beside(&mut unary);

    // The queue was paused throughout: none of its jobs may have reached the target.
    let ran_while_paused = setup.target.count();
    if ran_while_paused > 0 {
        eprintln!(
            "backlog: warning: {ran_while_paused} backlog request(s) reached the target \
             while the queue was paused"
        );
    }

    eprintln!("backlog-drain: resuming {BACKLOG_QUEUE}; waiting for its jobs to finish");
    // The drain's own figures: the peak and CPU time from the resume on.
    setup.rss_was_reset = reset_peak_rss(bench.server_proc);
    setup.cpu_at_start = cpu_snapshot(bench.server_proc);
    let started = Instant::now();
    queues
        .resume_queue(proto::ResumeQueueRequest {
            name: BACKLOG_QUEUE.into(),
        })
        .await
        .context("ResumeQueue")?;
    let finished =
        wait_until_succeeded(bench, &setup, "backlog-drain", fill.accepted, started).await?;
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);
    // Only the repeats: the backlog's acknowledgments came long before the resume.
    let repeats = dispatch_latencies(&setup, backlog, &[]).repeats;
    let drain = finished - started;
    eprintln!(
        "backlog-drain: {} jobs SUCCEEDED {:.2}s after the resume",
        fill.accepted,
        drain.as_secs_f64()
    );

    let idle = measure_idle(bench, Duration::from_secs(args.idle_after_drain)).await;

    let mut out = String::new();
    if let Some(percent) = idle {
        let _ = writeln!(
            out,
            "backlog-idle: after the drain, the server used {percent:.2}% of a core over \
             {} s idle, keeping the {} drained jobs and their events.",
            args.idle_after_drain, fill.accepted
        );
    }
    let _ = writeln!(
        out,
        "backlog: {} jobs submitted into the paused queue {BACKLOG_QUEUE} in {:.2}s \
         ({:.0} jobs/s accepted); {ran_while_paused} of them reached the target while it \
         was paused.",
        fill.accepted,
        fill.took.as_secs_f64(),
        fill.accepted as f64 / fill.took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "backlog-batch and backlog-unary: as --mode batch and --mode unary, beside the \
         paused backlog."
    );
    let _ = writeln!(
        out,
        "backlog-drain: jobs/s and end to end run from ResumeQueue sent until every \
         backlog job is SUCCEEDED ({:.2}s, {:.0} jobs/s); its submit latency and \
         accepted/s are those of filling the backlog; no dispatch latency (the jobs \
         waited on purpose).",
        drain.as_secs_f64(),
        fill.accepted as f64 / drain.as_secs_f64()
    );

    let drained = ModeResult {
        mode: "backlog-drain",
        shape: "paused, then resumed".into(),
        submitted: fill.accepted,
        submit_errors: fill.log.errors,
        first_error: fill.log.first_error,
        submit_unit: format!("per call of {} jobs into the paused queue", args.batch_size),
        submit_ms: fill.log.submit_ms,
        dispatch_ms: Vec::new(),
        send_to_target_ms: Vec::new(),
        repeats,
        submit_phase: fill.took,
        end_to_end: Some(drain),
        peak_rss,
        cpu,
        extra_json: vec![
            ("backlog", fill.accepted.to_string()),
            ("backlog_queue", json_string(BACKLOG_QUEUE)),
            (
                "backlog_submit_s",
                format!("{:.3}", fill.took.as_secs_f64()),
            ),
            ("ran_while_paused", ran_while_paused.to_string()),
            ("idle_after_drain_s", args.idle_after_drain.to_string()),
            (
                "idle_cpu_percent",
                idle.map_or("null".into(), |p| format!("{p:.3}")),
            ),
        ],
    };
    Ok((vec![batch, unary, drained], out))
}

/// The server's CPU time over `idle` with nothing submitted, as a percentage of
/// one core; None when skipped or the server's CPU time cannot be read.
async fn measure_idle(bench: &Bench, idle: Duration) -> Option<f64> {
    if idle.is_zero() {
        return None;
    }
    eprintln!(
        "backlog-idle: leaving the server idle for {} s",
        idle.as_secs()
    );
    let start = cpu_snapshot(bench.server_proc);
    tokio::time::sleep(idle).await;
    let used = measure_cpu(bench.server_proc, bench.clock_ticks_per_sec, start).server_s?;
    Some(used * 100.0 / idle.as_secs_f64())
}

/// Creates `bench-backlog` paused, or pauses it when it already exists (a server
/// given with `--server` that ran this mode before).
async fn pause_queue(queues: &mut Queues) -> anyhow::Result<()> {
    let created = queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: BACKLOG_QUEUE.into(),
                paused: true,
                ..Default::default()
            }),
        })
        .await;
    match created {
        Ok(_) => return Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => return Err(status).context("CreateQueue"),
    }
    match queues
        .pause_queue(proto::PauseQueueRequest {
            name: BACKLOG_QUEUE.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        // Already paused.
        Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
        Err(status) => Err(status).context("PauseQueue"),
    }
}

/// Submits the backlog, `batch_size` jobs per `SubmitJobs` call and `in_flight`
/// calls at once; no call starts after `--timeout-secs`.
async fn fill_backlog(
    bench: &Bench,
    setup: &RunSetup,
    backlog: usize,
    batch_size: usize,
    in_flight: usize,
) -> anyhow::Result<Fill> {
    let batches = backlog.div_ceil(batch_size);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + bench.timeout;
    let workers: Vec<_> = (0..in_flight.min(batches))
        .map(|_| {
            let mut client = bench.client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            let first_number = setup.first_number;
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                let mut accepted = 0;
                while Instant::now() < deadline {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batches {
                        break;
                    }
                    let indexes = batch * batch_size..((batch + 1) * batch_size).min(backlog);
                    let size = indexes.len();
                    let request = proto::SubmitJobsRequest {
                        jobs: indexes
                            .map(|i| JobSpec {
                                queue: BACKLOG_QUEUE.into(),
                                ..job_spec(&url_prefix, first_number + i, &tag)
                            })
                            .collect(),
                    };
                    let sent = Instant::now();
                    match client.submit_jobs(request).await {
                        Ok(response) => {
                            log.submit_ms.push(ms(sent.elapsed()));
                            let answered = response.into_inner().results.len();
                            if answered != size {
                                log.failed(&tonic::Status::internal(format!(
                                    "SubmitJobs answered {answered} results for {size} jobs"
                                )));
                            }
                            accepted += answered.min(size);
                        }
                        Err(error) => log.failed(&error),
                    }
                }
                (log, accepted)
            })
        })
        .collect();
    let mut fill = Fill {
        log: SubmitLog::default(),
        accepted: 0,
        took: Duration::ZERO,
    };
    for joined in futures::future::join_all(workers).await {
        let (log, accepted) = joined.context("a submitting task panicked")?;
        fill.accepted += accepted;
        fill.log.merge(log);
    }
    fill.took = started.elapsed();
    if let Some(error) = &fill.log.first_error {
        eprintln!(
            "backlog: {} submit call(s) failed; first: {error}",
            fill.log.errors
        );
    }
    ensure!(fill.accepted > 0, "backlog: the server accepted no jobs");
    if next.load(Ordering::Relaxed) < batches {
        bail!(
            "backlog: only {} of {backlog} jobs were accepted within {}s",
            fill.accepted,
            bench.timeout.as_secs()
        );
    }
    Ok(fill)
}
