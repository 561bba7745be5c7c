//! The paced load of `--mode watch`: jobs offered at a fixed rate, each carrying one
//! of the per-watcher tags.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobqueue::proto;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use crate::MAX_BATCH;
use crate::modes::common::{Ack, Bench, SubmitLog, finish_run, job_spec, join_logs, set_up_run};
use crate::proc_stats::CpuSnapshot;
use crate::report::{ModeResult, ms};

/// `--mode watch` submits once per tick, as many jobs as the offered rate has made due.
const PACE_TICK: Duration = Duration::from_millis(10);
/// Paced `SubmitJobs` calls in flight at most. The pacer waits for a free slot beyond
/// this (and says how often it did): the achieved rate then falls below the offered one.
const PACED_CALLS_IN_FLIGHT: usize = 64;

/// The per-watcher tags of a paced run: job `i` carries `{prefix}{i % count}`, none
/// when `count` is 0.
pub(super) struct Tagging {
    pub(super) prefix: String,
    pub(super) count: usize,
}

impl Tagging {
    fn tag_of(&self, index: usize) -> Option<String> {
        (self.count > 0).then(|| format!("{}{}", self.prefix, index % self.count))
    }

    /// How many of `jobs` jobs carry tag number `tag`.
    pub(super) fn planned(&self, jobs: usize, tag: usize) -> usize {
        jobs / self.count + usize::from(tag < jobs % self.count)
    }
}

/// A paced run as it went, beside its `ModeResult`.
pub(super) struct Paced {
    /// The first submit sent.
    pub(super) started: Instant,
    /// Accepted jobs per per-watcher tag (empty without tags).
    pub(super) accepted_per_tag: Vec<usize>,
    /// The snapshots the run's CPU time is counted from.
    pub(super) cpu_at_start: CpuSnapshot,
    pub(super) rss_was_reset: bool,
}

/// Offers `jobs` jobs at `rate` per second: every `PACE_TICK` one `SubmitJobs` call
/// (several when catching up) of the jobs the rate has made due since the first one,
/// each call on a task of its own so a slow answer never holds the pace up. Then
/// waits until every job is SUCCEEDED, as the other modes do.
pub(super) async fn run_paced(
    bench: &Bench,
    mode: &'static str,
    jobs: usize,
    rate: u64,
    tagging: &Tagging,
) -> anyhow::Result<(ModeResult, Paced)> {
    let per_tick = ((rate as f64 * PACE_TICK.as_secs_f64()).ceil() as usize).clamp(1, MAX_BATCH);
    eprintln!(
        "{mode}: offering {jobs} jobs at {rate}/s, {per_tick} per SubmitJobs call every {}ms",
        PACE_TICK.as_millis()
    );
    let setup = set_up_run(bench, mode, jobs).await?;
    let cpu_at_start = setup.cpu_at_start;
    let rss_was_reset = setup.rss_was_reset;
    let slots = Arc::new(Semaphore::new(PACED_CALLS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(PACE_TICK);
    // The jobs due are worked out from the time elapsed, so a late tick only makes
    // the next call larger: the offered rate stays what was asked.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut calls = Vec::new();
    let mut slot_waits = 0usize;
    let mut next = 0usize;
    let mut origin: Option<Instant> = None;
    while next < jobs {
        ticker.tick().await;
        let now = Instant::now();
        let origin = *origin.get_or_insert(now);
        let elapsed = now.duration_since(origin).as_secs_f64();
        let due = ((elapsed * rate as f64) as usize)
            .saturating_add(per_tick)
            .min(jobs);
        while next < due {
            let indexes = next..due.min(next + MAX_BATCH);
            next = indexes.end;
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    slot_waits += 1;
                    slots
                        .clone()
                        .acquire_owned()
                        .await
                        .context("the pacer's semaphore closed")?
                }
            };
            let request = proto::SubmitJobsRequest {
                jobs: indexes
                    .clone()
                    .map(|i| {
                        let mut job =
                            job_spec(&setup.url_prefix, setup.first_number + i, &setup.tag);
                        job.tags.extend(tagging.tag_of(i));
                        job
                    })
                    .collect(),
            };
            let mut client = bench.client.clone();
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                let answer = client.submit_jobs(request).await;
                let acked = Instant::now();
                drop(permit);
                let mut log = SubmitLog::default();
                match answer {
                    Ok(response) => {
                        let answered = response.into_inner().results.len();
                        if answered != indexes.len() {
                            log.failed(&tonic::Status::internal(format!(
                                "SubmitJobs answered {answered} results for {} jobs",
                                indexes.len()
                            )));
                        }
                        log.acks
                            .extend(indexes.map(|index| Ack { index, sent, acked }));
                        log.submit_ms.push(ms(acked - sent));
                    }
                    Err(error) => log.failed(&error),
                }
                log
            }));
        }
    }
    let started = origin.context("no job was offered")?;
    let send_phase = started.elapsed();
    let call_count = calls.len();
    let log = join_logs(calls).await?;
    let submit_phase = started.elapsed();
    let mut accepted_per_tag = vec![0usize; tagging.count];
    if tagging.count > 0 {
        for ack in &log.acks {
            accepted_per_tag[ack.index % tagging.count] += 1;
        }
    }
    // The pace the bench managed: the last call went out one tick's worth of jobs
    // ahead of the schedule.
    let sent_per_sec = jobs as f64 / (send_phase + PACE_TICK).as_secs_f64();
    let mut result = finish_run(
        bench,
        setup,
        mode,
        format!("{rate}/s, {per_tick}/call/{}ms", PACE_TICK.as_millis()),
        format!("per call of {per_tick} jobs (more when catching up)"),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await?;
    result.extra_json = vec![
        ("offered_per_sec", rate.to_string()),
        ("sent_per_sec", format!("{sent_per_sec:.0}")),
        ("submit_calls", call_count.to_string()),
        ("submit_calls_waited_for_slot", slot_waits.to_string()),
    ];
    if slot_waits > 0 {
        eprintln!(
            "{mode}: {slot_waits} of {call_count} calls waited for one of the \
             {PACED_CALLS_IN_FLIGHT} slots: the server could not keep up with the offered rate"
        );
    }
    Ok((
        result,
        Paced {
            started,
            accepted_per_tag,
            cpu_at_start,
            rss_was_reset,
        },
    ))
}
