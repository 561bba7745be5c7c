//! The writer: the one task that writes to the database.
//!
//! Each turn it takes everything waiting in its channel, applies it in one
//! transaction with one statement per kind of change (group commit), claims due jobs
//! for its free slots in the same transaction, commits, and only then answers callers,
//! aborts canceled calls and starts claimed ones. An acknowledged submit is therefore
//! on disk, and a claimed job is marked running before its call starts.
//!
//! This file holds the turn loop and what a failed turn does; one file per concern
//! holds the rest: [`requests`] (submits, cancels, retries, deletes, queue changes),
//! [`outcomes`] (attempts' results, and the one-by-one fallback), [`scheduling`] (due
//! schedules and schedule changes) and [`claims`] (what to claim, from which queue).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseTransaction;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Batch, Feed};
use super::executor::{self, Completion};
use super::outage::Outage;
use super::scheduler::{self, HELD_RETRY_MS, RUNS_PER_SCHEDULE, RUNS_PER_TURN, SCHEDULES_PER_TURN};
use super::{
    ChainChange, ChainChanged, EngineError, KeyChange, Neighbours, NewChain, Op, QueueChange,
    QueueChanged, ScheduleChange, ScheduleChanged, ScheduleFields, Settings, Submitted, Unset,
};
use crate::contract::library::Library;
use crate::http::HttpClient;
use crate::job::limits::{self, Bucket};
use crate::job::schedule::{self, Plan};
use crate::job::{Next, Status};
use crate::metrics::{Metrics, Outcome, Tally, retry_reason};
use crate::now_ms;
use crate::store::write::tags_of;
use crate::store::write::{self, Claim};
use crate::store::{
    Event, ScheduleRun, Store, StoreError, WriteSession, contracts, jobs, log, queues, schedules,
};
use crate::telemetry::TraceContext;

mod audit;
mod chain_moves;
mod chains;
mod claims;
mod host_limits;
mod namespace_limits;
mod outcomes;
mod registry;
mod requests;
mod scheduling;

use claims::{Definitions, DueQueues};
use requests::count_submits;

/// Logs the committed changes an operator wants to see (nothing per successful job):
/// a job that failed for good (with its trace, from `traces`, when it has one), and
/// a job whose lease ran out (its process died) and that goes round again.
fn log_notable(changes: &[Event], traces: &mut HashMap<String, String>) {
    for c in changes {
        let rescued = c.error_class.as_deref() == Some("interrupted");
        match c.status {
            Status::Failed => match traces
                .remove(&c.job_id)
                .as_deref()
                .and_then(TraceContext::ids)
            {
                Some((trace_id, span_id)) => tracing::info!(
                    job = %c.job_id, queue = %c.queue, attempts = c.attempt,
                    status_code = ?c.status_code, error_class = ?c.error_class,
                    trace_id, span_id,
                    "job failed for good"
                ),
                None => tracing::info!(
                    job = %c.job_id, queue = %c.queue, attempts = c.attempt,
                    status_code = ?c.status_code, error_class = ?c.error_class,
                    "job failed for good"
                ),
            },
            Status::Queued if rescued => tracing::info!(
                job = %c.job_id, queue = %c.queue, attempt = c.attempt,
                "lease ran out: the job is queued again"
            ),
            _ => {}
        }
    }
}

/// Most traces of failed jobs kept for their log line; past it they are dropped
/// (a failure whose write never lands would otherwise keep its entry).
const FAILED_TRACES_KEPT: usize = 10_000;

/// Most ops applied in one transaction; more wait for the next turn.
const MAX_OPS_PER_TURN: usize = 4096;
/// Most expired jobs removed per maintenance pass, so one pass never stalls submits.
const REMOVE_PER_PASS: usize = 5000;

pub(crate) struct Writer {
    /// The connection the writer's transactions run on.
    session: WriteSession,
    /// Longest one turn's work with the database may take; see
    /// [`Settings::db_timeout`].
    turn_budget: Duration,
    /// Whether the database is refusing writes, and the outcomes it has not taken.
    outage: Outage,
    /// Ids of the jobs the open transaction stores and keeps in `definitions`.
    staged: Vec<String>,
    /// Schedules whose due times the open transaction skips, and how many: logged
    /// once it commits.
    skipped_runs: Vec<(String, usize)>,
    /// The stored trace contexts of jobs whose last attempt failed, by job id, for
    /// the log line once their failure commits.
    failed_traces: HashMap<String, String>,
    /// Hosts that asked for time (`Retry-After` on a 429 or 503), and until when,
    /// while no host limits or breaker keep hosts' state in the store.
    slowed_hosts: HashMap<String, i64>,
    /// Calls ended in the open transaction, to count against their hosts.
    ended_calls: Vec<host_limits::EndedCall>,
    settings: Settings,
    client: Arc<HttpClient>,
    ops: mpsc::Receiver<Op>,
    /// Requests that came while a turn ran and were read with its late completions:
    /// the next turn's, ahead of what the channel holds.
    carried: Vec<Op>,
    /// Lent to executors so they can report; weak so the channel closes once every
    /// engine handle and executor is gone.
    outcomes: mpsc::WeakSender<Op>,
    /// The runtime executors run on (the writer has its own).
    executors: tokio::runtime::Handle,
    /// Cancel tokens of the calls in flight, by job id.
    running: HashMap<String, CancellationToken>,
    /// Calls in flight by queue.
    running_by_queue: HashMap<String, usize>,
    /// Fires when the shutdown grace runs out: in-flight calls stop and are requeued.
    interrupt: CancellationToken,
    /// What due jobs ask for, kept from their submit for their claim.
    definitions: Definitions,
    /// Where committed changes go to watchers in this process.
    feed: Feed,
    /// Changes made in the open transaction, logged with it.
    changes: Vec<Event>,
    /// This process's name in announcements to other processes.
    instance: String,
    /// Fires when another process announces a commit.
    announced: Arc<tokio::sync::Notify>,
    /// Jobs other processes canceled (their calls may run here); `None` asks for
    /// every running call to be checked.
    neighbour_cancels: Arc<std::sync::Mutex<Option<Vec<String>>>>,
    /// Whether the next turn checks the calls running here for cancels made by
    /// other processes (at each poll, and when announcements may have been missed).
    check_cancels: bool,
    /// How long the event log keeps a change.
    event_retention_ms: i64,
    audit_retention_ms: i64,
    /// Times at which queued jobs this writer knows of become due.
    due: BinaryHeap<Reverse<i64>>,
    /// Which queues a claim might find due jobs in.
    due_queues: DueQueues,
    /// Turns the order in which queues get slots that do not divide evenly.
    rotation: usize,
    /// Every queue's settings as last read: a claim plans with them, a submit takes
    /// its defaults from them. Read again after this process changes a queue, and
    /// at each poll or announcement, for changes made by other processes; the claim
    /// itself checks the pause switch and re-reads limited queues, so those two are
    /// never stale.
    queues: BTreeMap<String, queues::Model>,
    queues_stale: bool,
    /// A queue changed in the open transaction: other processes should hear of it.
    queues_changed: bool,
    /// When the earliest schedule is due, as last read. Read again after firing, at
    /// each poll (for schedules other processes made), and after a failed commit.
    next_fire: Option<i64>,
    schedules_stale: bool,
    /// This process's counters, and what the current turn adds to them.
    metrics: Metrics,
    tally: Tally,
    draining: bool,
    /// The contracts chain steps keep, compiled.
    library: Arc<Library>,
    /// What attempts are held to (a step's response, how a retry is spread),
    /// lent to their executors.
    attempt_rules: Arc<executor::AttemptRules>,
    /// Chains the open transaction moves: steps that ended, chains to start.
    chain_moves: chain_moves::Moves,
    /// Running chains' steps as parsed, so a move does not parse them again.
    chains_kept: chain_moves::Kept,
    /// Jobs stored by namespaces with a limit on them.
    stored: namespace_limits::Stored,
    next_poll: Instant,
    next_maintenance: Instant,
}

/// Where one turn's time went, phase by phase, for the debug log.
struct Laps {
    since: std::time::Instant,
    spent: Vec<(&'static str, u64)>,
}

impl Laps {
    fn start() -> Laps {
        Laps {
            since: std::time::Instant::now(),
            spent: Vec::with_capacity(12),
        }
    }

    /// Ends the phase called `name`: the time since the previous mark is its.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        let us = now.duration_since(self.since).as_micros() as u64;
        if us > 0 {
            self.spent.push((name, us));
        }
        self.since = now;
    }
}

impl std::fmt::Display for Laps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (name, us)) in self.spent.iter().enumerate() {
            write!(f, "{}{name}={us}", if n > 0 { " " } else { "" })?;
        }
        Ok(())
    }
}

/// Milliseconds as the seconds metrics count in; never negative.
fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

/// What a committed turn leaves to do.
#[derive(Default)]
struct AfterCommit {
    /// Outcomes of calls that ended while the turn ran, written before its claim.
    late: Vec<Completion>,
    cancels: Vec<String>,
    claimed: Vec<(Arc<jobs::Model>, Claim)>,
    /// Changes logged, with their cursors, to feed once committed.
    events: Vec<Event>,
    /// Microseconds spent in each phase of the transaction.
    laps: Option<Laps>,
    /// How long the commit took.
    commit: Option<Duration>,
}

impl Writer {
    // Each argument is a separate handle the writer owns; a struct to carry them
    // across this one call would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        store: Store,
        library: Arc<Library>,
        settings: Settings,
        client: Arc<HttpClient>,
        ops: mpsc::Receiver<Op>,
        outcomes: mpsc::WeakSender<Op>,
        executors: tokio::runtime::Handle,
        feed: Feed,
        neighbours: Neighbours,
        metrics: Metrics,
    ) -> Result<Writer, EngineError> {
        let Neighbours {
            instance,
            announced,
            canceled,
        } = neighbours;
        let mut due = BinaryHeap::new();
        if let Some(at) = store.earliest_due().await? {
            due.push(Reverse(at));
        }
        let now = Instant::now();
        Ok(Writer {
            session: WriteSession::new(store.clone()),
            // A request waits for the turn under way and then its own.
            turn_budget: settings.db_timeout / 2,
            outage: Outage::new(store.name(), metrics.clone()),
            staged: Vec::new(),
            skipped_runs: Vec::new(),
            failed_traces: HashMap::new(),
            slowed_hosts: HashMap::new(),
            ended_calls: Vec::new(),
            client,
            ops,
            carried: Vec::new(),
            outcomes,
            executors,
            running: HashMap::new(),
            running_by_queue: HashMap::new(),
            interrupt: CancellationToken::new(),
            definitions: Definitions::default(),
            feed,
            instance,
            announced,
            neighbour_cancels: canceled,
            check_cancels: false,
            changes: Vec::new(),
            event_retention_ms: settings.event_retention.as_millis() as i64,
            audit_retention_ms: settings.audit_retention.as_millis() as i64,
            due,
            due_queues: DueQueues::everywhere(),
            rotation: 0,
            queues: BTreeMap::new(),
            queues_stale: true,
            queues_changed: false,
            next_fire: None,
            schedules_stale: true,
            metrics,
            tally: Tally::default(),
            draining: false,
            attempt_rules: Arc::new(executor::AttemptRules {
                library: library.clone(),
                output_max_bytes: settings.step_output_max_bytes,
                jitter: settings.backoff_jitter,
                keyring: settings.call_limits.keyring.clone(),
            }),
            library,
            chain_moves: chain_moves::Moves::default(),
            chains_kept: chain_moves::Kept::default(),
            next_poll: now + settings.poll_interval,
            stored: Default::default(),
            next_maintenance: now,
            settings,
        })
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut grace_ends: Option<Instant> = None;
        let mut batch = Vec::with_capacity(256);
        loop {
            batch.append(&mut self.carried);
            // Requests carried over from the last turn are due now.
            let wake = if batch.is_empty() {
                self.next_wake()
            } else {
                Instant::now()
            };
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => batch.push(op),
                    // Every handle and executor is gone: nothing can arrive any more.
                    None => {
                        self.write_held_before_exit().await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(wake) => {}
                // Another process committed changes: there may be work for us.
                _ = self.announced.notified() => {
                    self.due_queues.mark_all();
                    self.queues_stale = true;
                    self.abort_neighbour_cancels();
                }
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

    /// Outcomes the database has not taken yet get until the shutdown grace runs
    /// out; those still held then are run again by the lease rescue.
    async fn write_held_before_exit(&mut self) {
        let until = Instant::now() + self.settings.shutdown_grace;
        while self.outage.holding() > 0 {
            if Instant::now() >= until {
                tracing::error!(
                    count = self.outage.holding(),
                    "stopping with attempt outcomes the database never took; their jobs run again once their leases run out"
                );
                return;
            }
            if let Some(at) = self.outage.retry_at() {
                tokio::time::sleep_until(at.min(until)).await;
            }
            self.turn(Vec::new()).await;
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_poll.min(self.next_maintenance);
        if let Some(at) = self.outage.retry_at() {
            wake = wake.min(at);
        }
        let earliest = match (self.due.peek(), self.next_fire) {
            (Some(Reverse(at)), Some(fire)) => Some((*at).min(fire)),
            (Some(Reverse(at)), None) => Some(*at),
            (None, fire) => fire,
        };
        if let Some(at) = earliest {
            let in_ms = (at - now_ms()).max(0) as u64;
            wake = wake.min(Instant::now() + Duration::from_millis(in_ms));
        }
        wake
    }

    /// One transaction: apply `ops`, maintain, claim; then act on what committed.
    async fn turn(&mut self, ops: Vec<Op>) {
        let now = now_ms();
        let clock = Instant::now();
        if clock >= self.next_poll {
            // Someone else (another process) may have made work due, or changed a
            // queue.
            self.due_queues.mark_all();
            self.queues_stale = true;
            self.schedules_stale = true;
            // Another process may have canceled a call running here (on SQLite
            // nothing announces it).
            self.check_cancels |= !self.running.is_empty();
            self.next_poll = clock + self.settings.poll_interval;
        }
        while let Some(Reverse(at)) = self.due.peek() {
            if *at > now {
                break;
            }
            self.due.pop();
            self.due_queues.mark_all();
        }
        let maintain = clock >= self.next_maintenance;
        if maintain {
            self.next_maintenance = clock + self.settings.maintenance_interval;
        }

        let mut fresh = Vec::new();
        let mut requests = Vec::new();
        for op in ops {
            match op {
                Op::Complete(c) => fresh.push(c),
                // Its caller stopped waiting and was told the change may not be
                // stored; it is not made behind its back.
                op if op.abandoned() => {}
                other => requests.push(other),
            }
        }
        for c in &fresh {
            self.call_ended(c);
        }
        // Outcomes the database did not take before go first, in the same turn as
        // anything that could run their jobs again.
        let mut completions = self.outage.take_held();
        completions.extend(fresh);
        let outcomes = completions.len();
        let submits: usize = requests
            .iter()
            .map(|op| match op {
                Op::Submit { jobs, .. } => jobs.len(),
                _ => 0,
            })
            .sum();
        let requests_len = requests.len();

        if let Some(refusal) = self.outage.refusing(requests.len(), clock) {
            for op in requests {
                Answer::Refused(EngineError::Unwritten(refusal.clone())).send_to(op);
            }
            self.outage.hold(completions);
            self.count_turn();
            return;
        }

        let mut after = AfterCommit::default();
        let applied = tokio::time::timeout(
            self.turn_budget,
            self.apply(now, &requests, &completions, maintain, &mut after),
        )
        .await
        .unwrap_or_else(|_| Err(self.cut_off()));
        match applied {
            Ok(answers) => {
                self.outage.recovered(Instant::now());
                self.staged.clear();
                self.publish(std::mem::take(&mut after.events));
                for (op, answer) in requests.into_iter().zip(answers) {
                    count_submits(&mut self.tally, &op, &answer);
                    answer.send_to(op);
                }
            }
            Err(error) => {
                completions.append(&mut after.late);
                self.rolled_back().await;
                if error.fault().is_none() {
                    // The request or a stored row is at fault, not the database: each
                    // request alone, so a bad one fails alone and the rest still land.
                    tracing::error!(%error, ops = requests.len(), "group commit failed; applying ops one by one");
                    self.apply_one_by_one(now, requests).await;
                    self.write_outcomes(completions).await;
                } else {
                    let unwritten = self.outage.failed(&error, requests.len(), clock);
                    for op in requests {
                        Answer::Refused(EngineError::Unwritten(unwritten.clone())).send_to(op);
                    }
                    if error.outcome_unknown() {
                        // Claimed by a commit that may have landed; their calls never
                        // started. Put back (if they were claimed) once the database
                        // answers, rather than left for the lease rescue.
                        completions.extend(
                            after
                                .claimed
                                .drain(..)
                                .map(|(job, claim)| Completion::unclaimed(job, &claim)),
                        );
                    }
                    self.outage.hold(completions);
                }
                after = AfterCommit::default();
            }
        }
        self.abort(after.cancels);
        tracing::debug!(
            requests = requests_len,
            submits,
            completions = outcomes,
            claimed = after.claimed.len(),
            in_flight = self.running.len(),
            took_us = clock.elapsed().as_micros() as u64,
            phases = %after.laps.as_ref().map(ToString::to_string).unwrap_or_default(),
            "turn"
        );
        for (job, claim) in after.claimed {
            self.start(job, claim);
        }
        self.metrics.turn(clock.elapsed(), after.commit);
        self.count_turn();
    }

    /// Adds what the turn counted to the process's metrics.
    fn count_turn(&mut self) {
        if !self.tally.is_empty() {
            self.metrics.add(std::mem::take(&mut self.tally));
        }
    }

    /// After a turn that did not commit: the connection goes (see
    /// [`crate::store::session`]), and what the turn assumed is looked at again.
    async fn rolled_back(&mut self) {
        self.session.discard().await;
        // Its claim and its runs were rolled back with it: look again next turn.
        self.due_queues.mark_all();
        self.schedules_stale = true;
        self.queues_stale = true;
        self.queues_changed = false;
        self.check_cancels |= !self.running.is_empty();
        self.changes.clear();
        self.skipped_runs.clear();
        self.chain_moves.clear();
        // Jobs it would have stored are not to be claimed from memory.
        for id in std::mem::take(&mut self.staged) {
            self.definitions.forget(&id);
        }
    }

    /// Aborts the calls running here of jobs other processes announced canceled.
    fn abort_neighbour_cancels(&mut self) {
        let pending = {
            let mut pending = self
                .neighbour_cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pending.replace(Vec::new())
        };
        match pending {
            Some(ids) => self.abort(ids),
            None => self.check_cancels = true,
        }
    }

    /// Aborts the calls running here of these jobs (canceled).
    fn abort(&self, ids: Vec<String>) {
        for id in ids {
            if let Some(token) = self.running.get(&id) {
                token.cancel();
            }
        }
    }

    /// One transaction: the requests, the outcomes, maintenance, due schedules and
    /// claims. What it leaves to do once committed goes in `after`, which the caller
    /// keeps even when it fails.
    async fn apply(
        &mut self,
        now: i64,
        requests: &[Op],
        completions: &[Completion],
        maintain: bool,
        after: &mut AfterCommit,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut laps = Laps::start();
        // What a transaction that did not commit noted is noted again.
        self.ended_calls.clear();
        let txn = self.session.begin().await?;
        laps.mark("begin");
        let answers = self.apply_requests(&txn, now, requests, after).await?;
        laps.mark("requests");
        self.apply_completions(&txn, completions).await?;
        laps.mark("outcomes");
        if maintain {
            let rescued = write::rescue(&txn, now).await?;
            if !rescued.is_empty() {
                tracing::warn!(count = rescued.len(), "rescued jobs whose lease ran out");
                self.due_queues.mark_all();
                self.note_ended_in_bulk(&rescued);
                self.changes.extend(rescued);
            }
            log::prune(&txn, now - self.event_retention_ms, REMOVE_PER_PASS).await?;
            write::prune_audit(&txn, now - self.audit_retention_ms, REMOVE_PER_PASS as u64).await?;
            write::prune_dispatches(&txn, now).await?;
            let removed = write::remove_expired(&txn, now, REMOVE_PER_PASS).await?;
            if removed > 0 {
                tracing::debug!(removed, "removed expired jobs");
            }
            let removed = write::remove_expired_chains(&txn, now, REMOVE_PER_PASS as u64).await?;
            if removed > 0 {
                tracing::debug!(removed, "removed expired chains");
            }
            self.stored.recount();
            self.recount_hosts(&txn, now).await?;
            laps.mark("maintain");
        }
        if !self.draining {
            self.fire_due(&txn, now).await?;
            laps.mark("schedules");
        }
        after.late = self.late_completions();
        self.apply_completions(&txn, &after.late).await?;
        laps.mark("late");
        // Steps unblocked by what ended above start as jobs this turn can claim.
        self.move_chains(&txn, now).await?;
        laps.mark("chains");
        self.account_ended_calls(&txn).await?;
        let free = self.free_slots();
        if !self.draining && free > 0 && self.due_queues.any() {
            let claimed = self.claim(&txn, now, free).await?;
            laps.mark("claim");
            let ready = self.definitions_of(&txn, claimed).await?;
            laps.mark("definitions");
            after.claimed = self.gate_hosts(&txn, now, ready).await?;
            let mut started: BTreeMap<&str, i64> = BTreeMap::new();
            for (job, _) in &after.claimed {
                *started.entry(job.queue.as_str()).or_default() += 1;
            }
            let started: Vec<(&str, i64)> = started.into_iter().collect();
            write::record_dispatches(&txn, now, &started).await?;
            for (job, claim) in &after.claimed {
                self.change(job, Status::Running, claim.attempt, now, None, None, None);
            }
        }
        let mut foreign_cancels = Vec::new();
        if std::mem::take(&mut self.check_cancels) && !self.running.is_empty() {
            let ids: Vec<&str> = self.running.keys().map(String::as_str).collect();
            foreign_cancels = write::canceled_among(&txn, &ids).await?;
        }
        laps.mark("dispatches");
        after.events = self.log_changes(&txn).await?;
        laps.mark("log");
        if !after.events.is_empty() || self.queues_changed {
            // Cancels travel with the word, for the process running their calls.
            write::announce(&txn, &self.instance, &after.cancels).await?;
        }
        after.cancels.extend(foreign_cancels);
        let committing = Instant::now();
        self.session.commit(txn).await?;
        after.commit = Some(committing.elapsed());
        laps.mark("commit");
        after.laps = Some(laps);
        if std::mem::take(&mut self.queues_changed) {
            self.queues_stale = true;
        }
        Ok(answers)
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
        if status.is_terminal() {
            self.note_step_end(job);
        }
        self.changes.push(Event {
            seq: 0,
            job_id: job.id.clone(),
            status,
            attempt,
            at,
            queue: job.queue.clone(),
            tags: tags_of(&job.tags),
            status_code,
            error_class,
            next_attempt_at,
            schedule_id: job.schedule_id.clone(),
        });
    }

    /// Appends the open transaction's changes to the event log; they go to watchers
    /// once it commits.
    async fn log_changes(&mut self, txn: &DatabaseTransaction) -> Result<Vec<Event>, StoreError> {
        let mut changes = std::mem::take(&mut self.changes);
        log::append(txn, &mut changes).await?;
        Ok(changes)
    }

    /// Hands committed changes to this process's watchers. Whether anyone watches is
    /// asked only now, after the commit: a watcher that subscribed before it gets
    /// these changes here, one that subscribes after it finds them in the log.
    fn publish(&mut self, changes: Vec<Event>) {
        log_notable(&changes, &mut self.failed_traces);
        for (schedule, skipped) in std::mem::take(&mut self.skipped_runs) {
            tracing::info!(%schedule, skipped, "due times skipped: a run is unfinished and the overlap policy is skip");
        }
        if !changes.is_empty() && self.feed.is_watched() {
            drop(self.feed.sender.send(Batch::from(changes)));
        }
    }

    /// The error of work cut off by the turn's time budget: a commit on its way may
    /// have landed.
    fn cut_off(&self) -> StoreError {
        let waited = StoreError::TimedOut(self.turn_budget);
        match self.session.was_committing() {
            true => StoreError::CommitUnknown(Box::new(waited)),
            false => waited,
        }
    }

    fn start(&mut self, job: Arc<jobs::Model>, claim: Claim) {
        let Some(outcomes) = self.outcomes.upgrade() else {
            return;
        };
        let cancel = CancellationToken::new();
        self.running.insert(job.id.clone(), cancel.clone());
        *self.running_by_queue.entry(job.queue.clone()).or_default() += 1;
        let counts = self.tally.queue(&job.queue);
        counts.started += 1;
        counts.running += 1;
        counts
            .wait_seconds
            .push(seconds(claim.started_at - job.run_at));
        if let Some(due) = job.fire_at.filter(|_| claim.attempt == 1) {
            counts
                .lateness_seconds
                .push(seconds(claim.started_at - due));
        }
        let queue = self.queues.get(&job.queue);
        let follow_redirects = job
            .follow_redirects
            .or(queue.map(|q| q.follow_redirects))
            .unwrap_or(0)
            .max(0) as u32;
        // Only for a job that does not sign with its own.
        let destinations = self.settings.queue_destinations.of(&job.queue);
        let queue_signing = queue
            .filter(|_| job.signing.is_none())
            .and_then(|q| q.signing.clone());
        self.executors.spawn(executor::run(
            executor::Dispatch {
                job,
                claim,
                follow_redirects,
                queue_signing,
                destinations,
            },
            self.client.clone(),
            self.attempt_rules.clone(),
            cancel,
            self.interrupt.clone(),
            outcomes,
        ));
    }
}

impl Op {
    /// Whether the caller stopped waiting for the answer.
    fn abandoned(&self) -> bool {
        match self {
            Op::Submit { reply, .. } => reply.is_closed(),
            Op::Queue { reply, .. } => reply.is_closed(),
            Op::Schedule { reply, .. } => reply.is_closed(),
            Op::Contract { reply, .. } => reply.is_closed(),
            Op::Chain { reply, .. } => reply.is_closed(),
            Op::Template { reply, .. } => reply.is_closed(),
            Op::Key { reply, .. } => reply.is_closed(),
            Op::Cancel { reply, .. } | Op::Retry { reply, .. } => reply.is_closed(),
            Op::Delete { reply, .. } => reply.is_closed(),
            Op::Complete(_) => false,
        }
    }
}

/// The answer to one request op, sent once its transaction committed.
enum Answer {
    Submitted(Vec<Submitted>),
    Queue(QueueChanged),
    Schedule(ScheduleChanged),
    Contract(Box<contracts::Model>),
    Chain(Box<ChainChanged>),
    Template(Box<crate::store::templates::Model>),
    Keys(Vec<crate::store::api_keys::Model>),
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
            (Op::Queue { reply, .. }, Answer::Queue(changed)) => drop(reply.send(Ok(changed))),
            (Op::Queue { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Schedule { reply, .. }, Answer::Schedule(changed)) => {
                drop(reply.send(Ok(changed)))
            }
            (Op::Schedule { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Contract { reply, .. }, Answer::Contract(c)) => drop(reply.send(Ok(*c))),
            (Op::Contract { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Chain { reply, .. }, Answer::Chain(c)) => drop(reply.send(Ok(*c))),
            (Op::Chain { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Template { reply, .. }, Answer::Template(t)) => drop(reply.send(Ok(*t))),
            (Op::Template { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
            (Op::Key { reply, .. }, Answer::Keys(keys)) => drop(reply.send(Ok(keys))),
            (Op::Key { reply, .. }, Answer::Refused(e)) => drop(reply.send(Err(e))),
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
