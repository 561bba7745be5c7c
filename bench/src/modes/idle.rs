//! `--mode idle`: dispatch latency when the queue has nothing else to do.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobqueue::proto::{self, JobStatus};

use super::common::{Ack, Bench, SubmitLog, dispatch_latencies, job_spec, set_up_run};
use crate::proc_stats::{measure_cpu, measure_peak_rss};
use crate::report::{ModeResult, ms};
use crate::server::Client;

/// The idle-queue figure: one job at a time, each submitted only once the previous
/// one has reached the target and been recorded as SUCCEEDED, so every submit meets
/// a queue with nothing else to do.
pub(crate) async fn run_idle(bench: &Bench, jobs: usize) -> anyhow::Result<ModeResult> {
    eprintln!("idle: submitting {jobs} jobs one at a time");
    let setup = set_up_run(bench, "idle", jobs).await?;
    let mut client = bench.client.clone();
    let mut log = SubmitLog::default();
    let started = Instant::now();
    for index in 0..jobs {
        let job = job_spec(&setup.url_prefix, setup.first_number + index, &setup.tag);
        let sent = Instant::now();
        let id = match client
            .submit_job(proto::SubmitJobRequest { job: Some(job) })
            .await
        {
            Ok(response) => {
                let ack = Instant::now();
                log.acks.push(Ack {
                    index,
                    sent,
                    acked: ack,
                });
                log.submit_ms.push(ms(ack - sent));
                response.into_inner().id
            }
            Err(error) => {
                log.failed(&error);
                continue;
            }
        };
        if !setup.target.wait_for(log.acks.len(), bench.timeout).await {
            bail!(
                "idle: stalled: job {id} did not reach the target within {}s",
                bench.timeout.as_secs()
            );
        }
        wait_job_succeeded(&mut client, &id, bench.timeout).await?;
    }
    let submit_phase = started.elapsed();
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    if let Some(error) = &log.first_error {
        eprintln!("idle: {} submit call(s) failed; first: {error}", log.errors);
    }
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);
    let dispatch = dispatch_latencies(&setup, jobs, &log.acks);
    Ok(ModeResult {
        mode: "idle",
        shape: "1 at a time".into(),
        submitted: log.acks.len(),
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit: "per job".into(),
        submit_ms: log.submit_ms,
        dispatch_ms: dispatch.from_ack_ms,
        send_to_target_ms: dispatch.from_send_ms,
        repeats: dispatch.repeats,
        submit_phase,
        end_to_end: None,
        peak_rss,
        cpu,
        extra_json: Vec::new(),
    })
}

async fn wait_job_succeeded(client: &mut Client, id: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let job = client
            .get_job(proto::GetJobRequest { id: id.into() })
            .await
            .with_context(|| format!("GetJob {id}"))?
            .into_inner();
        match JobStatus::try_from(job.status) {
            Ok(JobStatus::Succeeded) => return Ok(()),
            Ok(JobStatus::Failed | JobStatus::Canceled) => bail!(
                "job {id} ended {} (last status code {})",
                job.status().as_str_name(),
                job.last_status_code
            ),
            _ if Instant::now() > deadline => {
                bail!("job {id} was not SUCCEEDED within {}s", within.as_secs())
            }
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}
