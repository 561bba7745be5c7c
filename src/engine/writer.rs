//! The writer: the one task that writes to the database.
//!
//! Each turn it takes everything waiting in its channel, applies it in one
//! transaction with one statement per kind of change (group commit), claims due jobs
//! for its free slots in the same transaction, commits, and only then answers callers,
//! aborts canceled calls and starts claimed ones. An acknowledged submit is therefore
//! on disk, and a claimed job is marked running before its call starts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Batch, Event, Feed};
use super::executor::{self, Completion};
use super::{EngineError, Neighbours, Op, Settings, Submitted};
use crate::http::HttpClient;
use crate::job::{Next, Status};
use crate::now_ms;
use crate::store::write::{self, Claim};
use crate::store::{Store, StoreError, job_events, jobs};

/// Most ops applied in one transaction; more wait for the next turn.
const MAX_OPS_PER_TURN: usize = 4096;
/// Most expired jobs removed per maintenance pass, so one pass never stalls submits.
const REMOVE_PER_PASS: usize = 5000;

pub(crate) struct Writer {
    store: Store,
    settings: Settings,
    client: Arc<HttpClient>,
    ops: mpsc::Receiver<Op>,
    /// Lent to executors so they can report; weak so the channel closes once every
    /// engine handle and executor is gone.
    outcomes: mpsc::WeakSender<Op>,
    /// The runtime executors run on (the writer has its own).
    executors: tokio::runtime::Handle,
    /// Cancel tokens of the calls in flight, by job id.
    running: HashMap<String, CancellationToken>,
    /// Fires when the shutdown grace runs out: in-flight calls stop and are requeued.
    interrupt: CancellationToken,
    /// What due jobs ask for, kept from their submit for their claim.
    definitions: Definitions,
    /// Where committed changes go to watchers in this process.
    feed: Feed,
    /// Changes made in the open transaction, logged with it.
    changes: Vec<job_events::Model>,
    /// This process's name in announcements to other processes.
    instance: String,
    /// Fires when another process announces a commit.
    announced: Arc<tokio::sync::Notify>,
    /// How long the event log keeps a change.
    event_retention_ms: i64,
    /// Times at which queued jobs this writer knows of become due.
    due: BinaryHeap<Reverse<i64>>,
    /// Whether a claim might find something; false after a claim found less than it
    /// could take and nothing has changed since.
    maybe_due: bool,
    draining: bool,
    next_poll: Instant,
    next_maintenance: Instant,
}

/// What a committed turn leaves to do.
#[derive(Default)]
struct AfterCommit {
    cancels: Vec<String>,
    claimed: Vec<(Arc<jobs::Model>, Claim)>,
    /// Changes logged, with their cursors, to feed once committed.
    events: Vec<job_events::Model>,
}

/// Most bytes of job definitions kept in memory for the hand-off from submit to claim.
const DEFINITIONS_MAX_BYTES: usize = 64 << 20;

/// The in-memory hand-off: what each due job asks for (method, URL, headers, body,
/// retry policy), kept from its submit so its claim need not read it back. None of it
/// changes after submit, so an entry is never stale; a job not here (scheduled for
/// later, submitted before a restart, or over the memory cap) is read from the store.
#[derive(Default)]
struct Definitions {
    jobs: HashMap<String, Arc<jobs::Model>>,
    bytes: usize,
}

impl Definitions {
    fn footprint(job: &jobs::Model) -> usize {
        // The variable parts, plus a rough allowance for the fixed ones.
        job.url.len()
            + job.headers.len()
            + job.params.len()
            + job.body.as_ref().map_or(0, Vec::len)
            + 256
    }

    fn keep(&mut self, job: &Arc<jobs::Model>) {
        let size = Self::footprint(job);
        if self.bytes + size > DEFINITIONS_MAX_BYTES {
            return;
        }
        if self.jobs.insert(job.id.clone(), job.clone()).is_none() {
            self.bytes += size;
        }
    }

    fn get(&self, id: &str) -> Option<Arc<jobs::Model>> {
        self.jobs.get(id).cloned()
    }

    /// The job will not be claimed again (or not soon): free its entry.
    fn forget(&mut self, id: &str) {
        if let Some(job) = self.jobs.remove(id) {
            self.bytes -= Self::footprint(&job);
        }
    }
}

impl Writer {
    // Each argument is a separate handle the writer owns; a struct to carry them
    // across this one call would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        store: Store,
        settings: Settings,
        client: Arc<HttpClient>,
        ops: mpsc::Receiver<Op>,
        outcomes: mpsc::WeakSender<Op>,
        executors: tokio::runtime::Handle,
        feed: Feed,
        neighbours: Neighbours,
    ) -> Result<Writer, EngineError> {
        let Neighbours {
            instance,
            announced,
        } = neighbours;
        let mut due = BinaryHeap::new();
        if let Some(at) = store.earliest_due().await? {
            due.push(Reverse(at));
        }
        let now = Instant::now();
        Ok(Writer {
            store,
            client,
            ops,
            outcomes,
            executors,
            running: HashMap::new(),
            interrupt: CancellationToken::new(),
            definitions: Definitions::default(),
            feed,
            instance,
            announced,
            changes: Vec::new(),
            event_retention_ms: settings.event_retention.as_millis() as i64,
            due,
            maybe_due: true,
            draining: false,
            next_poll: now + settings.poll_interval,
            next_maintenance: now,
            settings,
        })
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut grace_ends: Option<Instant> = None;
        let mut batch = Vec::with_capacity(256);
        loop {
            let wake = self.next_wake();
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => batch.push(op),
                    // Every handle and executor is gone: nothing can arrive any more.
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {}
                // Another process committed changes: there may be work for us.
                _ = self.announced.notified() => self.maybe_due = true,
                _ = shutdown.cancelled(), if !self.draining => {
                    tracing::info!(in_flight = self.running.len(), "shutting down: no new claims");
                    self.draining = true;
                    grace_ends = Some(Instant::now() + self.settings.shutdown_grace);
                }
                _ = tokio::time::sleep_until(grace_ends.unwrap_or_else(Instant::now)),
                    if grace_ends.is_some() && !self.interrupt.is_cancelled() => {
                    tracing::warn!(in_flight = self.running.len(), "shutdown grace over: aborting calls, requeueing");
                    self.interrupt.cancel();
                }
            }
            while batch.len() < MAX_OPS_PER_TURN {
                match self.ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.turn(std::mem::take(&mut batch)).await;
        }
        tracing::info!("writer stopped");
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_poll.min(self.next_maintenance);
        if let Some(Reverse(at)) = self.due.peek() {
            let in_ms = (*at - now_ms()).max(0) as u64;
            wake = wake.min(Instant::now() + Duration::from_millis(in_ms));
        }
        wake
    }

    /// One transaction: apply `ops`, maintain, claim; then act on what committed.
    async fn turn(&mut self, ops: Vec<Op>) {
        let now = now_ms();
        let clock = Instant::now();
        if clock >= self.next_poll {
            // Someone else (another process) may have made work due.
            self.maybe_due = true;
            self.next_poll = clock + self.settings.poll_interval;
        }
        while let Some(Reverse(at)) = self.due.peek() {
            if *at > now {
                break;
            }
            self.due.pop();
            self.maybe_due = true;
        }
        let maintain = clock >= self.next_maintenance;
        if maintain {
            self.next_maintenance = clock + self.settings.maintenance_interval;
        }

        let mut completions = Vec::new();
        let mut requests = Vec::new();
        for op in ops {
            match op {
                Op::Complete(c) => completions.push(c),
                other => requests.push(other),
            }
        }
        // Calls that ended free their slots whatever happens to the write.
        for c in &completions {
            self.running.remove(&c.record.job_id);
        }
        let lost_outcomes = completions.len();
        let submits: usize = requests
            .iter()
            .map(|op| match op {
                Op::Submit { jobs, .. } => jobs.len(),
                _ => 0,
            })
            .sum();
        let requests_len = requests.len();

        let outcome = self.apply(now, &requests, completions, maintain).await;
        let after = match outcome {
            Ok((answers, mut after)) => {
                self.publish(std::mem::take(&mut after.events));
                for (op, answer) in requests.into_iter().zip(answers) {
                    answer.send_to(op);
                }
                after
            }
            Err(error) => {
                tracing::error!(%error, ops = requests.len(), "group commit failed; applying ops one by one");
                // Its claim was rolled back with it: look again next turn.
                self.maybe_due = true;
                self.changes.clear();
                self.apply_one_by_one(now, requests).await;
                if lost_outcomes > 0 {
                    // Their jobs stay running until their leases run out and are rescued.
                    tracing::error!(
                        count = lost_outcomes,
                        "attempt outcomes lost to the failed commit"
                    );
                }
                AfterCommit::default()
            }
        };
        for id in after.cancels {
            if let Some(token) = self.running.get(&id) {
                token.cancel();
            }
        }
        tracing::debug!(
            requests = requests_len,
            submits,
            completions = lost_outcomes,
            claimed = after.claimed.len(),
            in_flight = self.running.len(),
            took_us = clock.elapsed().as_micros() as u64,
            "turn"
        );
        for (job, claim) in after.claimed {
            self.start(job, claim);
        }
    }

    fn free_slots(&self) -> usize {
        self.settings.concurrency.saturating_sub(self.running.len())
    }

    async fn apply(
        &mut self,
        now: i64,
        requests: &[Op],
        completions: Vec<Completion>,
        maintain: bool,
    ) -> Result<(Vec<Answer>, AfterCommit), StoreError> {
        let txn = self.store.writer.begin().await?;
        let mut after = AfterCommit::default();
        let answers = self.apply_requests(&txn, now, requests, &mut after).await?;
        self.apply_completions(&txn, completions).await?;
        if maintain {
            let rescued = write::rescue(&txn, now).await?;
            if !rescued.is_empty() {
                tracing::warn!(count = rescued.len(), "rescued jobs whose lease ran out");
                self.maybe_due = true;
                self.changes.extend(rescued);
            }
            write::prune_events(&txn, now - self.event_retention_ms, REMOVE_PER_PASS).await?;
            let removed = write::remove_expired(&txn, now, REMOVE_PER_PASS).await?;
            if removed > 0 {
                tracing::debug!(removed, "removed expired jobs");
            }
        }
        let free = self.free_slots();
        if !self.draining && free > 0 && self.maybe_due {
            let lease_grace = self.settings.lease_grace.as_millis() as i64;
            let claimed = write::claim(&txn, now, lease_grace, free).await?;
            // A full claim means there may be more; a short one means nothing is due.
            self.maybe_due = claimed.len() == free;
            after.claimed = self.definitions_of(&txn, claimed).await?;
            for (job, claim) in &after.claimed {
                self.change(job, Status::Running, claim.attempt, now, None, None, None);
            }
        }
        after.events = self.log_changes(&txn).await?;
        if !after.events.is_empty() {
            write::announce(&txn, &self.instance).await?;
        }
        txn.commit().await?;
        Ok((answers, after))
    }

    /// Notes a change of `job` for the event log of the open transaction.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        job: &jobs::Model,
        status: Status,
        attempt: i32,
        at: i64,
        status_code: Option<i32>,
        error_class: Option<String>,
        next_attempt_at: Option<i64>,
    ) {
        self.changes.push(job_events::Model {
            seq: 0,
            job_id: job.id.clone(),
            status: status.as_str().to_string(),
            attempt,
            at,
            queue: job.queue.clone(),
            tags: job.tags.clone(),
            status_code,
            error_class,
            next_attempt_at,
        });
    }

    /// Appends the open transaction's changes to the event log; they go to watchers
    /// once it commits.
    async fn log_changes(
        &mut self,
        txn: &DatabaseTransaction,
    ) -> Result<Vec<job_events::Model>, StoreError> {
        let mut rows = std::mem::take(&mut self.changes);
        if rows.is_empty() {
            return Ok(rows);
        }
        let seqs = write::insert_events(txn, &rows).await?;
        for (row, seq) in rows.iter_mut().zip(seqs) {
            row.seq = seq;
        }
        Ok(rows)
    }

    /// Hands committed changes to this process's watchers. Whether anyone watches is
    /// asked only now, after the commit: a watcher that subscribed before it gets
    /// these changes here, one that subscribes after it finds them in the log.
    fn publish(&mut self, changes: Vec<job_events::Model>) {
        if !changes.is_empty() && self.feed.is_watched() {
            match changes
                .into_iter()
                .map(Event::from_row)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(events) => drop(self.feed.sender.send(Batch::from(events))),
                Err(error) => tracing::error!(%error, "a logged change does not read back"),
            }
        }
    }

    /// Pairs claimed jobs with what they ask for: from memory when kept since their
    /// submit, from the store otherwise.
    async fn definitions_of(
        &mut self,
        txn: &DatabaseTransaction,
        claimed: Vec<(String, Claim)>,
    ) -> Result<Vec<(Arc<jobs::Model>, Claim)>, StoreError> {
        let missing: Vec<&str> = claimed
            .iter()
            .filter(|(id, _)| self.definitions.get(id).is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        let mut read: HashMap<String, Arc<jobs::Model>> = HashMap::new();
        if !missing.is_empty() {
            for job in write::jobs_by_id(txn, &missing).await? {
                read.insert(job.id.clone(), Arc::new(job));
            }
        }
        let mut ready = Vec::with_capacity(claimed.len());
        for (id, claim) in claimed {
            let job = match read.remove(&id) {
                Some(job) => {
                    // Kept from now on: a retry will claim it again.
                    self.definitions.keep(&job);
                    job
                }
                None => self.definitions.get(&id).ok_or_else(|| {
                    StoreError::Corrupt(format!("claimed job {id} cannot be read"))
                })?,
            };
            ready.push((job, claim));
        }
        Ok(ready)
    }

    async fn apply_requests(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        requests: &[Op],
        after: &mut AfterCommit,
    ) -> Result<Vec<Answer>, StoreError> {
        // Submits first, all in one insert. Idempotency keys resolve against the
        // database and against earlier jobs in this same turn.
        let keys: Vec<String> = requests
            .iter()
            .filter_map(|op| match op {
                Op::Submit { jobs, .. } => {
                    Some(jobs.iter().filter_map(|j| j.idempotency_key.clone()))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let mut by_key: HashMap<String, (String, Status)> = HashMap::new();
        if !keys.is_empty() {
            for (key, id, status) in write::jobs_by_idempotency_key(txn, &keys).await? {
                let status = Status::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
                by_key.insert(key, (id, status));
            }
        }
        let mut inserts = Vec::new();
        let mut answers = Vec::with_capacity(requests.len());
        for op in requests {
            let answer = match op {
                Op::Submit { jobs, .. } => {
                    let mut submitted = Vec::with_capacity(jobs.len());
                    for job in jobs {
                        if let Some(key) = &job.idempotency_key {
                            if let Some((id, status)) = by_key.get(key) {
                                submitted.push(Submitted {
                                    id: id.clone(),
                                    status: *status,
                                    existing: true,
                                });
                                continue;
                            }
                            by_key.insert(key.clone(), (job.id.clone(), Status::Queued));
                        }
                        if job.run_at <= now {
                            self.maybe_due = true;
                            self.definitions.keep(job);
                        } else {
                            self.due.push(Reverse(job.run_at));
                        }
                        submitted.push(Submitted {
                            id: job.id.clone(),
                            status: Status::Queued,
                            existing: false,
                        });
                        self.change(job, Status::Queued, 0, now, None, None, Some(job.run_at));
                        inserts.push(jobs::Model::clone(job));
                    }
                    Answer::Submitted(submitted)
                }
                Op::Cancel { id, .. } => match write::cancel(txn, id, now).await? {
                    Some(job) => {
                        self.definitions.forget(&job.id);
                        let (code, class) = (job.last_status_code, job.last_error_class.clone());
                        self.change(&job, Status::Canceled, job.attempt, now, code, class, None);
                        after.cancels.push(job.id.clone());
                        Answer::Job(Box::new(job))
                    }
                    None => {
                        Answer::Refused(self.refusal(txn, id, "cancel", "queued or running").await?)
                    }
                },
                Op::Retry { id, .. } => match write::retry(txn, id, now).await? {
                    Some(job) => {
                        self.maybe_due = true;
                        let (code, class) = (job.last_status_code, job.last_error_class.clone());
                        let next = Some(job.run_at);
                        self.change(&job, Status::Queued, job.attempt, now, code, class, next);
                        Answer::Job(Box::new(job))
                    }
                    None => {
                        Answer::Refused(self.refusal(txn, id, "retry", "failed or canceled").await?)
                    }
                },
                Op::Delete { id, .. } => {
                    if write::delete(txn, id).await? {
                        self.definitions.forget(id);
                        Answer::Done
                    } else {
                        Answer::Refused(
                            self.refusal(txn, id, "delete", "succeeded, failed or canceled")
                                .await?,
                        )
                    }
                }
                Op::Complete(_) => unreachable!("completions are split off before"),
            };
            answers.push(answer);
        }
        if !inserts.is_empty() {
            write::insert_jobs(txn, inserts).await?;
        }
        Ok(answers)
    }

    /// Why an op on job `id` did not apply: it does not exist, or it is in another state.
    async fn refusal(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
        action: &'static str,
        expected: &'static str,
    ) -> Result<EngineError, StoreError> {
        use sea_orm::EntityTrait;
        Ok(
            match jobs::Entity::find_by_id(id.to_string()).one(txn).await? {
                None => EngineError::NotFound(id.to_string()),
                Some(job) => EngineError::WrongState {
                    id: id.to_string(),
                    status: Status::parse(&job.status)
                        .map(Status::as_str)
                        .unwrap_or("unknown"),
                    action,
                    expected,
                },
            },
        )
    }

    async fn apply_completions(
        &mut self,
        txn: &DatabaseTransaction,
        completions: Vec<Completion>,
    ) -> Result<(), StoreError> {
        if completions.is_empty() {
            return Ok(());
        }
        let mut finishes = Vec::with_capacity(completions.len());
        let mut requeues = Vec::new();
        let mut records = Vec::with_capacity(completions.len());
        // The jobs, to log the changes that land.
        let mut jobs: HashMap<String, Arc<jobs::Model>> = HashMap::with_capacity(completions.len());
        for c in completions {
            jobs.insert(c.record.job_id.clone(), c.job.clone());
            let r = &c.record;
            let ended = |status: Status| write::Finish {
                id: r.job_id.clone(),
                attempt: r.number,
                status,
                run_at: r.finished_at,
                finished_at: Some(r.finished_at),
                expires_at: Some(r.finished_at + c.job.ttl_ms),
                last_status_code: r.status_code,
                last_error_class: r.error_class.clone(),
            };
            if !matches!(c.next, Next::Retry(_) | Next::Requeue) {
                self.definitions.forget(&r.job_id);
            }
            match c.next {
                Next::Succeeded => finishes.push(ended(Status::Succeeded)),
                Next::Failed => finishes.push(ended(Status::Failed)),
                Next::Retry(delay) => {
                    let run_at = r.finished_at + delay.as_millis() as i64;
                    self.due.push(Reverse(run_at));
                    finishes.push(write::Finish {
                        status: Status::Queued,
                        run_at,
                        finished_at: None,
                        expires_at: None,
                        ..ended(Status::Queued)
                    });
                }
                // The cancel wrote the job's status; only the attempt is recorded.
                Next::Canceled => {}
                Next::Requeue => {
                    requeues.push((r.job_id.clone(), r.number));
                    self.maybe_due = true;
                    continue;
                }
            }
            records.push(c.record);
        }
        let finished = write::finish(txn, &finishes).await?;
        write::insert_attempts(txn, records).await?;
        let now = now_ms();
        let requeued = write::requeue(txn, &requeues, now).await?;
        // Only what landed is a change: a finish guarded out by a cancel is not.
        for f in finishes.iter().filter(|f| finished.contains(&f.id)) {
            if let Some(job) = jobs.get(&f.id) {
                let at = f.finished_at.unwrap_or(now);
                let next = (f.status == Status::Queued).then_some(f.run_at);
                let class = f.last_error_class.clone();
                self.change(
                    job,
                    f.status,
                    f.attempt,
                    at,
                    f.last_status_code,
                    class,
                    next,
                );
            }
        }
        for (id, attempt) in requeues.iter().filter(|(id, _)| requeued.contains(id)) {
            if let Some(job) = jobs.get(id) {
                self.change(job, Status::Queued, attempt - 1, now, None, None, Some(now));
            }
        }
        Ok(())
    }

    /// After a failed group commit: each request in a transaction of its own, so one
    /// bad op fails alone and the rest still land.
    async fn apply_one_by_one(&mut self, now: i64, requests: Vec<Op>) {
        for op in requests {
            let mut after = AfterCommit::default();
            let result = async {
                let txn = self.store.writer.begin().await?;
                let mut answers = self
                    .apply_requests(&txn, now, std::slice::from_ref(&op), &mut after)
                    .await?;
                after.events = self.log_changes(&txn).await?;
                txn.commit().await?;
                Ok::<_, StoreError>(answers.pop())
            }
            .await;
            match result {
                Ok(Some(answer)) => answer.send_to(op),
                Ok(None) => {}
                Err(error) => {
                    self.changes.clear();
                    Answer::Refused(EngineError::Store(error)).send_to(op)
                }
            }
            self.publish(std::mem::take(&mut after.events));
            for id in after.cancels {
                if let Some(token) = self.running.get(&id) {
                    token.cancel();
                }
            }
        }
    }

    fn start(&mut self, job: Arc<jobs::Model>, claim: Claim) {
        let Some(outcomes) = self.outcomes.upgrade() else {
            return;
        };
        let cancel = CancellationToken::new();
        self.running.insert(job.id.clone(), cancel.clone());
        self.executors.spawn(executor::run(
            job,
            claim,
            self.client.clone(),
            cancel,
            self.interrupt.clone(),
            outcomes,
        ));
    }
}

/// The answer to one request op, sent once its transaction committed.
enum Answer {
    Submitted(Vec<Submitted>),
    Job(Box<jobs::Model>),
    Done,
    Refused(EngineError),
}

impl Answer {
    fn send_to(self, op: Op) {
        // A caller that went away no longer wants its answer; that is fine.
        match (op, self) {
            (Op::Submit { reply, .. }, Answer::Submitted(s)) => drop(reply.send(Ok(s))),
            (Op::Cancel { reply, .. } | Op::Retry { reply, .. }, Answer::Job(job)) => {
                drop(reply.send(Ok(*job)))
            }
            (Op::Delete { reply, .. }, Answer::Done) => drop(reply.send(Ok(()))),
            (Op::Submit { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Cancel { reply, .. } | Op::Retry { reply, .. }, Answer::Refused(e)) => {
                drop(reply.send(Err(e)))
            }
            (Op::Delete { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (op, _) => {
                debug_assert!(false, "answer does not fit its op");
                drop(op);
            }
        }
    }
}
