//! The writer: the one task that writes to the database.
//!
//! Each turn it takes everything waiting in its channel, applies it in one
//! transaction with one statement per kind of change (group commit), claims due jobs
//! for its free slots in the same transaction, commits, and only then answers callers,
//! aborts canceled calls and starts claimed ones. An acknowledged submit is therefore
//! on disk, and a claimed job is marked running before its call starts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseTransaction;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Batch, Event, Feed};
use super::executor::{self, Completion};
use super::outage::Outage;
use super::scheduler::{self, HELD_RETRY_MS, RUNS_PER_SCHEDULE, SCHEDULES_PER_TURN};
use super::{
    EngineError, Neighbours, Op, QueueChange, QueueChanged, ScheduleChange, ScheduleChanged,
    ScheduleFields, Settings, Submitted, Unset,
};
use crate::http::HttpClient;
use crate::job::limits::{self, Bucket};
use crate::job::schedule::{self, Plan};
use crate::job::{Next, Status};
use crate::metrics::{Metrics, Outcome, Tally};
use crate::now_ms;
use crate::store::write::{self, Claim};
use crate::store::{Store, StoreError, WriteSession, job_events, jobs, queues, schedules};

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
    /// Calls in flight by queue.
    running_by_queue: HashMap<String, usize>,
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
    /// Jobs other processes canceled (their calls may run here); `None` asks for
    /// every running call to be checked.
    neighbour_cancels: Arc<std::sync::Mutex<Option<Vec<String>>>>,
    /// Whether the next turn checks the calls running here for cancels made by
    /// other processes (at each poll, and when announcements may have been missed).
    check_cancels: bool,
    /// How long the event log keeps a change.
    event_retention_ms: i64,
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

/// Which queues a claim might find due jobs in: a queue leaves the set when a
/// claim from it comes back short (or it is at its limit), and is marked again
/// when something could have made work due in it. `all` stands for every queue:
/// after a start, a poll, or another process's announcement.
#[derive(Default)]
struct DueQueues {
    all: bool,
    some: HashSet<String>,
}

impl DueQueues {
    fn everywhere() -> DueQueues {
        DueQueues {
            all: true,
            some: HashSet::new(),
        }
    }

    fn any(&self) -> bool {
        self.all || !self.some.is_empty()
    }

    fn mark(&mut self, queue: &str) {
        if !self.all && !self.some.contains(queue) {
            self.some.insert(queue.to_string());
        }
    }

    fn mark_all(&mut self) {
        self.all = true;
        self.some.clear();
    }

    fn contains(&self, queue: &str) -> bool {
        self.all || self.some.contains(queue)
    }
}

/// A queue a claim may take jobs from, and how many at most.
struct Lane {
    name: String,
    /// Most jobs its limits let this claim take.
    cap: usize,
    /// Whether `cap` comes from the queue's limits rather than the free slots.
    limit_bound: bool,
    /// The rate limiter's bucket and the tokens it holds now, when it has one.
    bucket: Option<(Bucket, f64)>,
    asked: usize,
    got: usize,
}

/// Rounds of a claim: each gives the slots queues left unused to the others.
const CLAIM_ROUNDS: usize = 3;

fn is_limited(queue: &queues::Model) -> bool {
    queue.max_concurrency.is_some() || queue.rate_per_second.is_some()
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
            client,
            ops,
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
        // Calls that ended free their slots whatever happens to the write.
        for c in &fresh {
            if self.running.remove(&c.record.job_id).is_some() {
                self.slot_freed(&c.job.queue);
            }
            let counts = self.tally.queue(&c.job.queue);
            counts.running -= 1;
            counts.duration_seconds += c.record.duration_ms as f64 / 1000.0;
            counts.durations += 1;
            let outcome = match c.next {
                Next::Succeeded => Outcome::Succeeded,
                Next::Failed => Outcome::Failed,
                Next::Retry(_) => Outcome::Retried,
                Next::Canceled => Outcome::Canceled,
                Next::Requeue => Outcome::Interrupted,
            };
            *counts.finished.entry(outcome).or_default() += 1;
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
            "turn"
        );
        for (job, claim) in after.claimed {
            self.start(job, claim);
        }
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

    /// A call of `queue` ended: a queue that was at its limits may go on.
    fn slot_freed(&mut self, queue: &str) {
        let Some(count) = self.running_by_queue.get_mut(queue) else {
            return;
        };
        let was_full = *count >= self.settings.queue_concurrency;
        *count -= 1;
        if *count == 0 {
            self.running_by_queue.remove(queue);
        }
        if was_full || self.queues.get(queue).is_some_and(is_limited) {
            self.due_queues.mark(queue);
        }
    }

    fn free_slots(&self) -> usize {
        if !self.settings.runs_jobs {
            return 0;
        }
        self.settings.concurrency.saturating_sub(self.running.len())
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
        let txn = self.session.begin().await?;
        let answers = self.apply_requests(&txn, now, requests, after).await?;
        self.apply_completions(&txn, completions).await?;
        if maintain {
            let rescued = write::rescue(&txn, now).await?;
            if !rescued.is_empty() {
                tracing::warn!(count = rescued.len(), "rescued jobs whose lease ran out");
                self.due_queues.mark_all();
                self.changes.extend(rescued);
            }
            write::prune_events(&txn, now - self.event_retention_ms, REMOVE_PER_PASS).await?;
            let removed = write::remove_expired(&txn, now, REMOVE_PER_PASS).await?;
            if removed > 0 {
                tracing::debug!(removed, "removed expired jobs");
            }
        }
        if !self.draining {
            self.fire_due(&txn, now).await?;
        }
        let free = self.free_slots();
        if !self.draining && free > 0 && self.due_queues.any() {
            let claimed = self.claim(&txn, now, free).await?;
            after.claimed = self.definitions_of(&txn, claimed).await?;
            for (job, claim) in &after.claimed {
                self.change(job, Status::Running, claim.attempt, now, None, None, None);
            }
        }
        let mut foreign_cancels = Vec::new();
        if std::mem::take(&mut self.check_cancels) && !self.running.is_empty() {
            let ids: Vec<&str> = self.running.keys().map(String::as_str).collect();
            foreign_cancels = write::canceled_among(&txn, &ids).await?;
        }
        after.events = self.log_changes(&txn).await?;
        if !after.events.is_empty() || self.queues_changed {
            // Cancels travel with the word, for the process running their calls.
            write::announce(&txn, &self.instance, &after.cancels).await?;
        }
        after.cancels.extend(foreign_cancels);
        self.session.commit(txn).await?;
        if std::mem::take(&mut self.queues_changed) {
            self.queues_stale = true;
        }
        Ok(answers)
    }

    /// Claims due jobs for `free` slots, shared fairly among the queues that may
    /// have some: a paused queue gets none, a limited queue no more than its limits
    /// allow, and what one queue cannot use goes to the others. Within a queue,
    /// higher priority goes first.
    async fn claim(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        free: usize,
    ) -> Result<Vec<(String, Claim)>, StoreError> {
        if self.queues_stale {
            self.queues = write::all_queues(txn)
                .await?
                .into_iter()
                .map(|q| (q.name.clone(), q))
                .collect();
            self.queues_stale = false;
        }
        let queues = std::mem::take(&mut self.queues);
        let claimed = self.claim_from(txn, now, free, &queues).await;
        self.queues = queues;
        claimed
    }

    async fn claim_from(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        free: usize,
        queues: &BTreeMap<String, queues::Model>,
    ) -> Result<Vec<(String, Claim)>, StoreError> {
        // In name order (the map's), so the rotation below means the same each turn.
        let wanted: Vec<&queues::Model> = queues
            .values()
            .filter(|q| !q.paused && self.due_queues.contains(&q.name))
            .collect();
        let limited: Vec<&str> = wanted
            .iter()
            .filter(|q| is_limited(q))
            .map(|q| q.name.as_str())
            .collect();
        // Read again, and on PostgreSQL held to the commit: another replica's claim
        // from the same limited queue waits, so neither oversteps its limits.
        let locked = write::lock_queues(txn, &limited).await?;
        let capped: Vec<&str> = locked
            .iter()
            .filter(|q| q.max_concurrency.is_some())
            .map(|q| q.name.as_str())
            .collect();
        let running = write::running_by_queue(txn, &capped).await?;

        let mut lanes = Vec::with_capacity(wanted.len());
        // Held by a replica claiming from it right now: look again after its commit.
        let mut skipped = HashSet::new();
        let slots = self.settings.queue_concurrency;
        for queue in wanted {
            // This process's slots for the queue.
            let here = self.running_by_queue.get(&queue.name).copied().unwrap_or(0);
            let own = slots.saturating_sub(here).min(free);
            if !is_limited(queue) {
                lanes.push(Lane {
                    name: queue.name.clone(),
                    cap: own,
                    limit_bound: own < free,
                    bucket: None,
                    asked: 0,
                    got: 0,
                });
                continue;
            }
            let Some(fresh) = locked.iter().find(|q| q.name == queue.name) else {
                skipped.insert(queue.name.clone());
                continue;
            };
            if fresh.paused {
                continue;
            }
            let mut cap = own;
            if let Some(max) = fresh.max_concurrency {
                let open = running.get(&fresh.name).copied().unwrap_or(0);
                cap = cap.min((i64::from(max) - open).max(0) as usize);
            }
            let bucket = fresh.rate_per_second.map(|per_second| {
                let bucket = Bucket {
                    per_second,
                    burst: f64::from(fresh.rate_burst.unwrap_or(1)),
                };
                (bucket, bucket.refill(fresh.tokens, fresh.tokens_at, now))
            });
            if let Some((_, tokens)) = bucket {
                cap = cap.min(tokens.max(0.0).floor() as usize);
            }
            lanes.push(Lane {
                name: fresh.name.clone(),
                cap,
                limit_bound: cap < free,
                bucket,
                asked: 0,
                got: 0,
            });
        }

        let index: HashMap<String, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| (lane.name.clone(), i))
            .collect();
        self.rotation = self.rotation.wrapping_add(1);
        let first = self.rotation % lanes.len().max(1);
        let lease_grace = self.settings.lease_grace.as_millis() as i64;
        let mut claimed = Vec::new();
        let mut left = free;
        // A queue with fewer due jobs than its share leaves its slots to the others
        // in the next round; a few rounds place nearly every slot.
        for _ in 0..CLAIM_ROUNDS {
            let caps: Vec<usize> = lanes
                .iter()
                .map(|l| if l.got < l.asked { 0 } else { l.cap - l.got })
                .collect();
            let shares = limits::share(left, &caps, first);
            let asks: Vec<(&str, usize)> = lanes
                .iter()
                .zip(&shares)
                .filter(|(_, n)| **n > 0)
                .map(|(lane, n)| (lane.name.as_str(), *n))
                .collect();
            if asks.is_empty() {
                break;
            }
            let rows = write::claim(txn, now, lease_grace, &asks).await?;
            for (lane, n) in lanes.iter_mut().zip(&shares) {
                lane.asked += n;
            }
            for (id, queue, claim) in rows {
                if let Some(&i) = index.get(&queue) {
                    lanes[i].got += 1;
                }
                left = left.saturating_sub(1);
                claimed.push((id, claim));
            }
            if left == 0 {
                break;
            }
        }

        let mut buckets = Vec::new();
        let mut still_due = skipped;
        for lane in &lanes {
            // Asked for more than it had: nothing else is due there.
            let drained = lane.got < lane.asked;
            let at_limit = lane.limit_bound && lane.got >= lane.cap;
            if let Some((bucket, tokens)) = lane.bucket {
                let tokens = tokens - lane.got as f64;
                buckets.push((lane.name.clone(), tokens, now));
                if !drained && tokens < 1.0 {
                    // Jobs may be waiting for a token: look again when there is one.
                    let wait = bucket.until_next(tokens).as_millis() as i64;
                    self.due.push(Reverse(now + wait));
                }
            }
            // A queue at its concurrency limit is marked again when a call of it ends.
            if !drained && !at_limit {
                still_due.insert(lane.name.clone());
            }
        }
        write::save_buckets(txn, &buckets).await?;
        if self.due_queues.all {
            self.due_queues = DueQueues {
                all: false,
                some: still_due,
            };
        } else {
            for lane in &lanes {
                if !still_due.contains(&lane.name) {
                    self.due_queues.some.remove(&lane.name);
                }
            }
            // Marked queues that are paused or unknown wait for a resume.
            self.due_queues
                .some
                .retain(|name| queues.get(name).is_some_and(|q| !q.paused));
        }
        Ok(claimed)
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
            schedule_id: job.schedule_id.clone(),
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
                    Some(jobs.iter().filter_map(|(j, _)| j.idempotency_key.clone()))
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
        let queues = self.queues_of_submits(txn, now, requests).await?;
        let mut inserts = Vec::new();
        let mut answers = Vec::with_capacity(requests.len());
        for op in requests {
            let answer = match op {
                Op::Submit { jobs, .. } => {
                    if let Some((job, _)) =
                        jobs.iter().find(|(j, _)| !queues.contains_key(&j.queue))
                    {
                        answers.push(Answer::Refused(EngineError::QueueNotFound(
                            job.queue.clone(),
                        )));
                        continue;
                    }
                    let mut submitted = Vec::with_capacity(jobs.len());
                    for (job, unset) in jobs {
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
                        self.stage(job, *unset, queues.get(&job.queue), now, &mut inserts);
                        submitted.push(Submitted {
                            id: job.id.clone(),
                            status: Status::Queued,
                            existing: false,
                        });
                    }
                    Answer::Submitted(submitted)
                }
                Op::Queue { change, .. } => match self.change_queue(txn, now, change).await? {
                    Ok(changed) => Answer::Queue(changed),
                    Err(refusal) => Answer::Refused(refusal),
                },
                Op::Schedule { change, .. } => {
                    match self.change_schedule(txn, now, change, &mut inserts).await? {
                        Ok(changed) => Answer::Schedule(changed),
                        Err(refusal) => Answer::Refused(refusal),
                    }
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
                        self.due_queues.mark(&job.queue);
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

    /// The queues the submits among `requests` name, by name. Missing ones are
    /// created (with no limits) when the service creates queues on use; otherwise
    /// they stay missing and their submits are refused.
    async fn queues_of_submits(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        requests: &[Op],
    ) -> Result<HashMap<String, queues::Model>, StoreError> {
        let names: Vec<&str> = requests
            .iter()
            .filter_map(|op| match op {
                Op::Submit { jobs, .. } => Some(jobs.iter().map(|(j, _)| j.queue.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        self.queues_for(txn, now, names).await
    }

    /// The queues named, by name: known here, read, or (when the service creates
    /// queues on use) made now. A queue that stays missing is not in the answer.
    async fn queues_for(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        mut names: Vec<&str>,
    ) -> Result<HashMap<String, queues::Model>, StoreError> {
        names.sort_unstable();
        names.dedup();
        let mut found: HashMap<String, queues::Model> = HashMap::with_capacity(names.len());
        names.retain(|name| match self.queues.get(*name) {
            Some(queue) => {
                found.insert(queue.name.clone(), queue.clone());
                false
            }
            None => true,
        });
        if names.is_empty() {
            return Ok(found);
        }
        // Not known here yet: made by another process, or to make now.
        if self.settings.create_queues_on_use {
            write::create_queues_if_missing(txn, &names, now).await?;
            self.queues_changed = true;
        }
        for queue in write::queues_named(txn, &names).await? {
            found.insert(queue.name.clone(), queue);
        }
        Ok(found)
    }

    /// Readies a new job for this turn's insert: its queue's defaults fill what it
    /// left unset, it is marked due (or its time is remembered) and its first
    /// change is logged.
    fn stage(
        &mut self,
        job: &Arc<jobs::Model>,
        unset: Unset,
        queue: Option<&queues::Model>,
        now: i64,
        inserts: &mut Vec<jobs::Model>,
    ) -> Arc<jobs::Model> {
        let job = with_defaults(job, unset, queue);
        if job.run_at <= now {
            self.due_queues.mark(&job.queue);
            self.definitions.keep(&job);
            self.staged.push(job.id.clone());
        } else {
            self.due.push(Reverse(job.run_at));
        }
        self.change(&job, Status::Queued, 0, now, None, None, Some(job.run_at));
        inserts.push(jobs::Model::clone(&job));
        job
    }

    /// Fires the schedules due at `now`: one job per due time (see
    /// [`schedule::plan`] for late ones), committed with the schedule's move to
    /// its next due time.
    async fn fire_due(&mut self, txn: &DatabaseTransaction, now: i64) -> Result<(), StoreError> {
        if std::mem::take(&mut self.schedules_stale) {
            self.next_fire = write::earliest_fire(txn).await?;
        }
        if self.next_fire.is_none_or(|at| at > now) {
            return Ok(());
        }
        let due = write::lock_due_schedules(txn, now, SCHEDULES_PER_TURN).await?;
        // Due times left for the next turn, so one turn never fires without bound.
        let mut owed = due.len() == SCHEDULES_PER_TURN;
        let skipping: Vec<&str> = due
            .iter()
            .filter(|s| s.overlap == scheduler::SKIP)
            .map(|s| s.id.as_str())
            .collect();
        let busy = write::with_unfinished_runs(txn, &skipping).await?;
        let mut runs = Vec::new();
        for s in &due {
            let Some(next) = s.next_fire_at else { continue };
            let plan = match scheduler::timetable(s) {
                Ok(timetable) => schedule::plan(
                    &timetable,
                    next,
                    now,
                    s.catchup_window_ms,
                    RUNS_PER_SCHEDULE,
                ),
                Err(error) => {
                    tracing::error!(schedule = %s.id, %error, "schedule cannot fire; it stops");
                    Plan {
                        fires: Vec::new(),
                        next: None,
                    }
                }
            };
            if plan.fires.first().is_some_and(|first| *first > next) {
                tracing::warn!(
                    schedule = %s.id,
                    from = next,
                    to = plan.fires[0],
                    "due times missed by more than the catch-up window fold into one run"
                );
            }
            owed |= plan.next.is_some_and(|at| at <= now);
            let mut fires = plan.fires;
            let mut skipped = 0;
            if s.overlap == scheduler::SKIP {
                // At most one unfinished run: the latest due time, and only when
                // no earlier run is still queued or running.
                let due_times = fires.len();
                let latest = fires.pop().filter(|_| !busy.contains(&s.id));
                fires = latest.into_iter().collect();
                skipped = due_times - fires.len();
            }
            let last = fires.last().copied();
            write::advance_schedule(txn, &s.id, plan.next, fires.len(), skipped, last).await?;
            for due in fires {
                runs.push(scheduler::run(s, scheduler::job_id(), Some(due), now));
            }
        }
        self.insert_runs(txn, now, runs).await?;
        self.next_fire = if owed {
            Some(now)
        } else {
            match write::earliest_fire(txn).await? {
                // Still due: another replica holds it and is firing it now.
                Some(at) if at <= now => Some(now + HELD_RETRY_MS),
                later => later,
            }
        };
        Ok(())
    }

    /// Stores the jobs of schedule runs, through the same path as submits. A run
    /// whose key is already taken fired before (or a client used the key): it is
    /// not made twice.
    async fn insert_runs(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        runs: Vec<(jobs::Model, Unset)>,
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = runs
            .iter()
            .filter_map(|(job, _)| job.idempotency_key.clone())
            .collect();
        let taken: HashSet<String> = if keys.is_empty() {
            HashSet::new()
        } else {
            write::jobs_by_idempotency_key(txn, &keys)
                .await?
                .into_iter()
                .map(|(key, _, _)| key)
                .collect()
        };
        let names = runs.iter().map(|(job, _)| job.queue.as_str()).collect();
        let queues = self.queues_for(txn, now, names).await?;
        let mut inserts = Vec::with_capacity(runs.len());
        for (job, unset) in runs {
            if let Some(key) = job.idempotency_key.as_ref().filter(|k| taken.contains(*k)) {
                tracing::warn!(%key, "a job with this run's key exists; the run is not made again");
                continue;
            }
            let Some(queue) = queues.get(&job.queue) else {
                tracing::error!(queue = %job.queue, schedule = ?job.schedule_id, "a run's queue does not exist; the run is dropped");
                continue;
            };
            self.tally.queue(&job.queue).submitted += 1;
            self.stage(&Arc::new(job), unset, Some(queue), now, &mut inserts);
        }
        write::insert_jobs(txn, inserts).await
    }

    /// Applies a change to a schedule (a triggered run's job goes into `inserts`);
    /// the refusal when it does not apply.
    async fn change_schedule(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        change: &ScheduleChange,
        inserts: &mut Vec<jobs::Model>,
    ) -> Result<Result<ScheduleChanged, EngineError>, StoreError> {
        let id = match change {
            ScheduleChange::Create(s) | ScheduleChange::Update(s, _) => &s.id,
            ScheduleChange::Pause(id)
            | ScheduleChange::Resume(id)
            | ScheduleChange::Trigger(id)
            | ScheduleChange::Delete(id) => id,
        };
        let stored = match change {
            ScheduleChange::Create(_) => None,
            // Held to the commit: a replica firing it waits, and cannot write back
            // a next due time from before this change.
            _ => match write::lock_schedule(txn, id).await? {
                Some(stored) => Some(stored),
                None => return Ok(Err(EngineError::ScheduleNotFound(id.clone()))),
            },
        };
        let refuse = |s: &schedules::Model, action, expected| {
            Ok(Err(EngineError::ScheduleState {
                id: s.id.clone(),
                state: scheduler::State::of(s).as_str(),
                action,
                expected,
            }))
        };
        let saved = match (change, stored) {
            (ScheduleChange::Create(new), _) => {
                if self
                    .queues_for(txn, now, vec![new.queue.as_str()])
                    .await?
                    .is_empty()
                {
                    return Ok(Err(EngineError::QueueNotFound(new.queue.clone())));
                }
                let mut s = schedules::Model::clone(new);
                s.created_at = now;
                s.updated_at = now;
                s.paused = false;
                s.run_count = 0;
                s.skipped_count = 0;
                s.last_fire_at = None;
                s.next_fire_at = match scheduler::timetable(&s) {
                    Ok(timetable) => scheduler::first_due(&s, &timetable, now),
                    Err(error) => return Ok(Err(invalid_timing(error))),
                };
                if !write::create_schedule(txn, s.clone()).await? {
                    return Ok(Err(EngineError::ScheduleExists(s.id)));
                }
                s
            }
            (ScheduleChange::Update(new, fields), Some(stored)) => {
                if fields.job
                    && self
                        .queues_for(txn, now, vec![new.queue.as_str()])
                        .await?
                        .is_empty()
                {
                    return Ok(Err(EngineError::QueueNotFound(new.queue.clone())));
                }
                let mut s = merged(stored, new, *fields);
                if let (Some(start), Some(end)) = (s.start_at, s.end_at)
                    && end < start
                {
                    return Ok(Err(EngineError::Invalid {
                        field: "schedule.end_time".into(),
                        expected: "must not be before start_time".into(),
                    }));
                }
                let timetable = match scheduler::timetable(&s) {
                    Ok(timetable) => timetable,
                    Err(error) => return Ok(Err(invalid_timing(error))),
                };
                let retimed = fields.timing || fields.time_zone || fields.start || fields.end;
                if retimed && !s.paused {
                    s.next_fire_at = scheduler::first_due(&s, &timetable, now);
                }
                s.updated_at = now;
                write::save_schedule(txn, s).await?
            }
            (ScheduleChange::Pause(_), Some(mut s)) => {
                if scheduler::State::of(&s) != scheduler::State::Active {
                    return refuse(&s, "pause", "active");
                }
                s.paused = true;
                s.next_fire_at = None;
                s.updated_at = now;
                write::save_schedule(txn, s).await?
            }
            (ScheduleChange::Resume(_), Some(mut s)) => {
                if !s.paused {
                    return refuse(&s, "resume", "paused");
                }
                s.paused = false;
                s.next_fire_at = match scheduler::timetable(&s) {
                    Ok(timetable) => scheduler::resumed_due(&s, &timetable, now),
                    Err(error) => return Ok(Err(invalid_timing(error))),
                };
                s.updated_at = now;
                write::save_schedule(txn, s).await?
            }
            (ScheduleChange::Trigger(_), Some(s)) => {
                let (job, unset) = scheduler::run(&s, scheduler::job_id(), None, now);
                let queues = self.queues_for(txn, now, vec![job.queue.as_str()]).await?;
                let Some(queue) = queues.get(&job.queue) else {
                    return Ok(Err(EngineError::QueueNotFound(job.queue.clone())));
                };
                self.tally.queue(&job.queue).submitted += 1;
                let job = self.stage(&Arc::new(job), unset, Some(queue), now, inserts);
                write::advance_schedule(txn, &s.id, s.next_fire_at, 1, 0, None).await?;
                return Ok(Ok(ScheduleChanged::Run(Box::new(jobs::Model::clone(&job)))));
            }
            (ScheduleChange::Delete(_), Some(s)) => {
                write::delete_schedule(txn, &s.id).await?;
                self.schedules_stale = true;
                return Ok(Ok(ScheduleChanged::Deleted));
            }
            (_, None) => return Ok(Err(EngineError::ScheduleNotFound(id.clone()))),
        };
        if let Some(at) = saved.next_fire_at {
            self.next_fire = Some(self.next_fire.map_or(at, |next| next.min(at)));
        }
        Ok(Ok(ScheduleChanged::Schedule(Box::new(saved))))
    }

    /// Applies a change to a queue; the refusal when it does not apply.
    async fn change_queue(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        change: &QueueChange,
    ) -> Result<Result<QueueChanged, EngineError>, StoreError> {
        use sea_orm::EntityTrait;
        self.queues_changed = true;
        let exists = |name: &str| {
            let name = name.to_string();
            async move { queues::Entity::find_by_id(name).one(txn).await }
        };
        Ok(match change {
            QueueChange::Create(queue) => {
                if write::create_queue(txn, queue.clone()).await? {
                    Ok(QueueChanged::Queue(queue.clone()))
                } else {
                    Err(EngineError::QueueExists(queue.name.clone()))
                }
            }
            QueueChange::Update(queue, fields) => {
                match write::update_queue(txn, queue, *fields).await? {
                    Some(stored) => {
                        // Raised limits may let waiting jobs go.
                        self.due_queues.mark(&stored.name);
                        Ok(QueueChanged::Queue(stored))
                    }
                    None => Err(EngineError::QueueNotFound(queue.name.clone())),
                }
            }
            QueueChange::Pause(name) | QueueChange::Resume(name) => {
                let pause = matches!(change, QueueChange::Pause(_));
                match write::set_paused(txn, name, pause, now).await? {
                    Some(stored) => {
                        if !pause {
                            self.due_queues.mark(name);
                        }
                        Ok(QueueChanged::Queue(stored))
                    }
                    None if exists(name).await?.is_none() => {
                        Err(EngineError::QueueNotFound(name.clone()))
                    }
                    None => Err(EngineError::QueueState {
                        name: name.clone(),
                        state: if pause { "paused" } else { "not paused" },
                        action: if pause { "pause" } else { "resume" },
                        expected: if pause { "not paused" } else { "paused" },
                    }),
                }
            }
            QueueChange::Purge(name) => {
                if exists(name).await?.is_none() {
                    return Ok(Err(EngineError::QueueNotFound(name.clone())));
                }
                let canceled = write::purge(txn, name, now).await?;
                for change in &canceled {
                    self.definitions.forget(&change.job_id);
                }
                let count = canceled.len() as u64;
                self.changes.extend(canceled);
                Ok(QueueChanged::Purged(count))
            }
        })
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

    /// Writes attempts' outcomes. They are borrowed: when the transaction fails they
    /// are held and written again, and writing one twice changes nothing (each write
    /// is guarded by the attempt it ends, and an attempt is recorded once).
    async fn apply_completions(
        &mut self,
        txn: &DatabaseTransaction,
        completions: &[Completion],
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
                    self.due_queues.mark(&c.job.queue);
                    continue;
                }
            }
            records.push(c.record.clone());
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

    /// After a group commit the request or a row was at fault for: each request in a
    /// transaction of its own, so one bad op fails alone and the rest still land.
    async fn apply_one_by_one(&mut self, now: i64, requests: Vec<Op>) {
        for op in requests {
            let clock = Instant::now();
            if let Some(refusal) = self.outage.refusing(1, clock) {
                Answer::Refused(EngineError::Unwritten(refusal)).send_to(op);
                continue;
            }
            let mut after = AfterCommit::default();
            let result = tokio::time::timeout(self.turn_budget, async {
                let txn = self.session.begin().await?;
                let mut answers = self
                    .apply_requests(&txn, now, std::slice::from_ref(&op), &mut after)
                    .await?;
                after.events = self.log_changes(&txn).await?;
                if !after.events.is_empty() {
                    write::announce(&txn, &self.instance, &after.cancels).await?;
                }
                self.session.commit(txn).await?;
                Ok::<_, StoreError>(answers.pop())
            })
            .await
            .unwrap_or_else(|_| Err(self.cut_off()));
            match result {
                Ok(answer) => {
                    self.outage.recovered(Instant::now());
                    self.staged.clear();
                    if let Some(answer) = answer {
                        count_submits(&mut self.tally, &op, &answer);
                        answer.send_to(op);
                    }
                }
                Err(error) => {
                    self.rolled_back().await;
                    let refusal = match error.fault() {
                        Some(_) => EngineError::Unwritten(self.outage.failed(&error, 1, clock)),
                        None => EngineError::Store(error),
                    };
                    Answer::Refused(refusal).send_to(op);
                    after = AfterCommit::default();
                }
            }
            self.publish(std::mem::take(&mut after.events));
            self.abort(after.cancels);
        }
    }

    /// Writes outcomes in a transaction of their own, after a group commit the
    /// requests were at fault for. When the database fails they are held; one that
    /// fails alone for a reason of its own is a bug, logged and dropped, so it cannot
    /// hold up the others forever.
    async fn write_outcomes(&mut self, completions: Vec<Completion>) {
        let mut groups = vec![completions];
        while let Some(group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            let clock = Instant::now();
            if self.outage.refusing(0, clock).is_some() {
                groups.push(group);
                self.outage.hold(groups.into_iter().flatten().collect());
                return;
            }
            let mut events = Vec::new();
            let result = tokio::time::timeout(self.turn_budget, async {
                let txn = self.session.begin().await?;
                self.apply_completions(&txn, &group).await?;
                events = self.log_changes(&txn).await?;
                if !events.is_empty() {
                    write::announce(&txn, &self.instance, &[]).await?;
                }
                self.session.commit(txn).await
            })
            .await
            .unwrap_or_else(|_| Err(self.cut_off()));
            match result {
                Ok(()) => {
                    self.outage.recovered(Instant::now());
                    self.publish(events);
                }
                Err(error) => {
                    self.rolled_back().await;
                    if error.fault().is_some() {
                        self.outage.failed(&error, 0, clock);
                        groups.push(group);
                        self.outage.hold(groups.into_iter().flatten().collect());
                        return;
                    }
                    if group.len() == 1 {
                        tracing::error!(%error, job = %group[0].record.job_id, "an attempt's outcome cannot be written; it is dropped");
                        continue;
                    }
                    // Halves, until the one at fault is alone.
                    let mut group = group;
                    let rest = group.split_off(group.len() / 2);
                    groups.push(rest);
                    groups.push(group);
                }
            }
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

impl Op {
    /// Whether the caller stopped waiting for the answer.
    fn abandoned(&self) -> bool {
        match self {
            Op::Submit { reply, .. } => reply.is_closed(),
            Op::Queue { reply, .. } => reply.is_closed(),
            Op::Schedule { reply, .. } => reply.is_closed(),
            Op::Cancel { reply, .. } | Op::Retry { reply, .. } => reply.is_closed(),
            Op::Delete { reply, .. } => reply.is_closed(),
            Op::Complete(_) => false,
        }
    }
}

/// Counts the jobs a committed submit stored (not those its idempotency keys found).
fn count_submits(tally: &mut Tally, op: &Op, answer: &Answer) {
    if let (Op::Submit { jobs, .. }, Answer::Submitted(submitted)) = (op, answer) {
        for ((job, _), s) in jobs.iter().zip(submitted) {
            if !s.existing {
                tally.queue(&job.queue).submitted += 1;
            }
        }
    }
}

/// A submitted job with its queue's defaults in the fields the client left unset.
fn with_defaults(
    job: &Arc<jobs::Model>,
    unset: Unset,
    queue: Option<&queues::Model>,
) -> Arc<jobs::Model> {
    let Some(q) = queue else {
        return job.clone();
    };
    let timeout = q.default_timeout_ms.filter(|_| unset.timeout);
    let attempts = q.default_max_attempts.filter(|_| unset.max_attempts);
    let backoff = q
        .default_backoff_strategy
        .as_ref()
        .filter(|_| unset.backoff);
    let ttl = q.default_ttl_ms.filter(|_| unset.ttl);
    if timeout.is_none() && attempts.is_none() && backoff.is_none() && ttl.is_none() {
        return job.clone();
    }
    let mut job = jobs::Model::clone(job);
    if let Some(ms) = timeout {
        job.timeout_ms = ms;
    }
    if let Some(n) = attempts {
        job.max_attempts = n;
    }
    if let Some(strategy) = backoff {
        job.backoff_strategy = strategy.clone();
        job.backoff_base_ms = q.default_backoff_base_ms.unwrap_or(job.backoff_base_ms);
        job.backoff_max_ms = q.default_backoff_max_ms.unwrap_or(job.backoff_max_ms);
    }
    if let Some(ms) = ttl {
        job.ttl_ms = ms;
    }
    Arc::new(job)
}

/// A stored timing that does not read back; the API checks timings before they are
/// stored, so this is a damaged row or a combination it could not see.
fn invalid_timing(error: String) -> EngineError {
    EngineError::Invalid {
        field: "schedule".into(),
        expected: error,
    }
}

/// `stored` with what `fields` names taken from `new`; its counters and state stay.
fn merged(
    stored: schedules::Model,
    new: &schedules::Model,
    fields: ScheduleFields,
) -> schedules::Model {
    let mut s = stored;
    let n = new.clone();
    if fields.description {
        s.description = n.description;
    }
    if fields.timing {
        s.kind = n.kind;
        s.cron = n.cron;
        s.interval_ms = n.interval_ms;
        s.once_at = n.once_at;
    }
    if fields.time_zone {
        s.time_zone = n.time_zone;
    }
    if fields.start {
        s.start_at = n.start_at;
    }
    if fields.end {
        s.end_at = n.end_at;
    }
    if fields.catchup_window {
        s.catchup_window_ms = n.catchup_window_ms;
    }
    if fields.overlap {
        s.overlap = n.overlap;
    }
    if fields.job {
        s.queue = n.queue;
        s.priority = n.priority;
        s.method = n.method;
        s.url = n.url;
        s.headers = n.headers;
        s.params = n.params;
        s.body_kind = n.body_kind;
        s.body = n.body;
        s.timeout_ms = n.timeout_ms;
        s.max_attempts = n.max_attempts;
        s.backoff_strategy = n.backoff_strategy;
        s.backoff_base_ms = n.backoff_base_ms;
        s.backoff_max_ms = n.backoff_max_ms;
        s.ttl_ms = n.ttl_ms;
        s.tags = n.tags;
        s.inherit = n.inherit;
    }
    s
}

/// The answer to one request op, sent once its transaction committed.
enum Answer {
    Submitted(Vec<Submitted>),
    Queue(QueueChanged),
    Schedule(ScheduleChanged),
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
