//! `--mode unary`: one `SubmitJob` call per job, a fixed number in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use jobqueue::proto;

use super::common::{Ack, Bench, SubmitLog, finish_run, job_spec, join_logs, set_up_run};
use crate::report::{ModeResult, ms};

/// `mode` names the run: its result line, its jobs' tag and its progress lines
/// (`unary`, or `backlog-unary` beside a backlog).
pub(crate) async fn run_unary(
    bench: &Bench,
    mode: &'static str,
    jobs: usize,
    in_flight: usize,
) -> anyhow::Result<ModeResult> {
    eprintln!("{mode}: submitting {jobs} jobs, {in_flight} SubmitJob calls in flight");
    let setup = set_up_run(bench, mode, jobs).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.min(jobs))
        .map(|_| {
            let mut client = bench.client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            let first_number = setup.first_number;
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= jobs {
                        break;
                    }
                    let job = job_spec(&url_prefix, first_number + index, &tag);
                    let sent = Instant::now();
                    match client
                        .submit_job(proto::SubmitJobRequest { job: Some(job) })
                        .await
                    {
                        Ok(_) => {
                            let ack = Instant::now();
                            log.acks.push(Ack {
                                index,
                                sent,
                                acked: ack,
                            });
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
        format!("{in_flight} in flight"),
        "per job".into(),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await
}
