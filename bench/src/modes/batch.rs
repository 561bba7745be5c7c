//! `--mode batch`: `SubmitJobs` calls of `--batch-size` jobs, a fixed number in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jobqueue::proto;

use super::common::{Ack, Bench, SubmitLog, finish_run, job_spec, join_logs, set_up_run};
use crate::report::{ModeResult, ms};

/// `mode` names the run: its result line, its jobs' tag and its progress lines
/// (`batch`, or `backlog-batch` beside a backlog).
pub(crate) async fn run_batch(
    bench: &Bench,
    mode: &'static str,
    jobs: usize,
    batch_size: usize,
    batch_in_flight: usize,
) -> anyhow::Result<ModeResult> {
    eprintln!(
        "{mode}: submitting {jobs} jobs, {batch_size} per SubmitJobs call, \
         {batch_in_flight} calls in flight"
    );
    let setup = set_up_run(bench, mode, jobs).await?;
    let batches = jobs.div_ceil(batch_size);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..batch_in_flight.min(batches))
        .map(|_| {
            let mut client = bench.client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            let first_number = setup.first_number;
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                loop {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batches {
                        break;
                    }
                    let indexes = batch * batch_size..((batch + 1) * batch_size).min(jobs);
                    let request = proto::SubmitJobsRequest {
                        jobs: indexes
                            .clone()
                            .map(|i| job_spec(&url_prefix, first_number + i, &tag))
                            .collect(),
                    };
                    let sent = Instant::now();
                    match client.submit_jobs(request).await {
                        Ok(response) => {
                            let ack = Instant::now();
                            let answered = response.into_inner().results.len();
                            if answered != indexes.len() {
                                log.failed(&tonic::Status::internal(format!(
                                    "SubmitJobs answered {answered} results for {} jobs",
                                    indexes.len()
                                )));
                            }
                            log.acks.extend(indexes.map(|index| Ack {
                                index,
                                sent,
                                acked: ack,
                            }));
                            log.submit_ms.push(ms(ack - sent));
                        }
                        Err(error) => log.failed(&error),
                    }
                }
                log
            })
        })
        .collect();
    let log = join_logs(workers).await?;
    let submit_phase = started.elapsed();
    finish_run(
        bench,
        setup,
        mode,
        format!("{batch_size}/call, {batch_in_flight} in flight"),
        format!("per call of {batch_size} jobs"),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await
}
