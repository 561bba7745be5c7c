//! Following jobs: a live view on a terminal (one job's status, attempt and
//! next-attempt countdown; a progress bar with counts by status across many),
//! plain lines otherwise, JSON lines with `--output json`. A broken stream is
//! opened again from its last cursor, so no change is missed or shown twice.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use super::args::Output;
use super::connect::Clients;
use super::fail::{CANCELED_JOB, FAILED_JOB, Failure};
use super::{json, render};
use crate::proto::{self, JobEventKind, JobStatus};

/// Ids per WatchJobs stream (the service's limit).
const IDS_PER_STREAM: usize = 1000;
/// How long a stream may stay broken before the command gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How often the live view redraws (the countdown moves).
const REDRAW: Duration = Duration::from_millis(200);

/// A job's state as its latest event has it.
#[derive(Clone)]
struct Seen {
    status: JobStatus,
    attempt: i32,
    status_code: i32,
    error_class: i32,
    next_attempt: Option<prost_types::Timestamp>,
}

impl Seen {
    fn of(event: &proto::JobEvent) -> Seen {
        Seen {
            status: event.status(),
            attempt: event.attempt,
            status_code: event.status_code,
            error_class: event.error_class,
            next_attempt: event.next_attempt_time,
        }
    }

    fn finished(&self) -> bool {
        matches!(
            self.status,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// `running, attempt 2/5`, `queued, attempt 1/3, next in 4s`, `succeeded (200)`.
    fn line(&self, max_attempts: Option<i32>) -> String {
        let mut line = render::status(self.status as i32);
        if self.attempt > 0 {
            match max_attempts {
                Some(max) => line += &format!(", attempt {}/{max}", self.attempt),
                None => line += &format!(", attempt {}", self.attempt),
            }
        }
        if self.status == JobStatus::Queued
            && let Some(next) = &self.next_attempt
        {
            let ms = next.seconds * 1000 + i64::from(next.nanos / 1_000_000) - crate::now_ms();
            line += &format!(
                ", next in {}",
                render::short_span((ms.max(0) as u64).div_ceil(1000))
            );
        }
        if self.status_code != 0 {
            line += &format!(" ({})", self.status_code);
        } else if !render::error_class(self.error_class).is_empty() {
            line += &format!(" ({})", render::error_class(self.error_class));
        }
        line
    }
}

/// Follows `ids` until every one has finished; the exit code says how they
/// ended. A single job's attempt is shown out of its `max_attempts`.
pub async fn until_finished(
    clients: &Clients,
    ids: Vec<String>,
    output: Output,
) -> Result<u8, Failure> {
    let max_attempts = match ids.as_slice() {
        [id] => {
            let mut jobs = clients.jobs.clone();
            let job = jobs
                .get_job(proto::GetJobRequest { id: id.clone() })
                .await?;
            Some(job.into_inner().max_attempts)
        }
        _ => None,
    };
    let total = ids.len();
    let mut events = open(clients, ids.clone());
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let live = output == Output::Human && std::io::stdout().is_terminal();
    let bar = live.then(|| view(total));
    let mut redraw = tokio::time::interval(REDRAW);
    let mut finished = 0;
    while finished < total {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    return Err(Failure::unreachable("the watch stream ended before the jobs finished"));
                };
                let event = event?;
                if event.kind() == JobEventKind::Heartbeat {
                    continue;
                }
                let now = Seen::of(&event);
                let was_finished = seen.get(&event.job_id).is_some_and(Seen::finished);
                match (now.finished(), was_finished) {
                    (true, false) => finished += 1,
                    (false, true) => finished -= 1,
                    _ => {}
                }
                match (&bar, output) {
                    (_, Output::Json) => json::print("jobqueue.v1.JobEvent", &event),
                    (Some(bar), _) => bar.set_position(finished as u64),
                    (None, _) => println!(
                        "{}  {}  {}",
                        render::when(event.event_time.as_ref()),
                        event.job_id,
                        now.line(max_attempts)
                    ),
                }
                seen.insert(event.job_id.clone(), now);
            }
            _ = redraw.tick() => {}
        }
        if let Some(bar) = &bar {
            bar.set_message(summary(&ids, &seen, max_attempts));
        }
    }
    if let Some(bar) = bar {
        bar.finish_with_message(summary(&ids, &seen, max_attempts));
    }
    let failed = seen.values().any(|s| s.status == JobStatus::Failed);
    let canceled = seen.values().any(|s| s.status == JobStatus::Canceled);
    Ok(if failed {
        FAILED_JOB
    } else if canceled {
        CANCELED_JOB
    } else {
        0
    })
}

/// A spinner for one job, a bar for many.
fn view(total: usize) -> ProgressBar {
    if total == 1 {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        return bar;
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} finished  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// One job: its id and state; many: counts by status.
fn summary(ids: &[String], seen: &HashMap<String, Seen>, max_attempts: Option<i32>) -> String {
    if let [id] = ids {
        return match seen.get(id) {
            Some(s) => format!("{id} {}", s.line(max_attempts)),
            None => format!("{id} ..."),
        };
    }
    let mut counts: Vec<(JobStatus, usize)> = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ]
    .into_iter()
    .map(|status| (status, seen.values().filter(|s| s.status == status).count()))
    .collect();
    counts.retain(|(_, n)| *n > 0);
    counts
        .iter()
        .map(|(status, n)| format!("{} {n}", render::status(*status as i32)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Every event of the jobs `ids`, a snapshot first, over as many streams as
/// the ids need.
fn open(clients: &Clients, ids: Vec<String>) -> mpsc::Receiver<Result<proto::JobEvent, Failure>> {
    let (tx, rx) = mpsc::channel(1024);
    for chunk in ids.chunks(IDS_PER_STREAM) {
        let request = proto::WatchJobsRequest {
            ids: chunk.to_vec(),
            snapshot: true,
            ..Default::default()
        };
        tokio::spawn(stream(clients.jobs.clone(), request, tx.clone()));
    }
    rx
}

/// Every change `request` names, printed as it comes, until interrupted.
pub async fn changes(
    clients: &Clients,
    request: proto::WatchJobsRequest,
    output: Output,
) -> Result<u8, Failure> {
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(stream(clients.jobs.clone(), request, tx));
    while let Some(event) = rx.recv().await {
        let event = event?;
        if event.kind() == JobEventKind::Heartbeat {
            continue;
        }
        match output {
            Output::Json => json::print("jobqueue.v1.JobEvent", &event),
            Output::Human => println!(
                "{}  {}  {}  {}",
                render::when(event.event_time.as_ref()),
                event.job_id,
                event.queue,
                Seen::of(&event).line(None)
            ),
        }
    }
    Ok(0)
}

/// Sends the events of one WatchJobs stream to `tx`; when the stream breaks,
/// opens it again from the last cursor (the snapshot is not asked for twice).
async fn stream(
    mut jobs: proto::job_service_client::JobServiceClient<super::connect::Conn>,
    mut request: proto::WatchJobsRequest,
    tx: mpsc::Sender<Result<proto::JobEvent, Failure>>,
) {
    let mut broken_since: Option<tokio::time::Instant> = None;
    loop {
        let failure = match jobs.watch_jobs(request.clone()).await {
            Ok(response) => {
                let mut events = response.into_inner();
                loop {
                    match events.message().await {
                        Ok(Some(event)) => {
                            broken_since = None;
                            if !event.cursor.is_empty() {
                                request.cursor = event.cursor.clone();
                                request.snapshot = false;
                            }
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        // The service ended it: every job watched has finished.
                        Ok(None) => return,
                        Err(status) => break status,
                    }
                }
            }
            Err(status) => status,
        };
        let retryable = matches!(
            failure.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
        );
        let since = *broken_since.get_or_insert_with(tokio::time::Instant::now);
        if !retryable || since.elapsed() > GIVE_UP_AFTER {
            let _ = tx.send(Err(failure.into())).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
