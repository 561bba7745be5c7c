//! Status changes, as watchers see them.
//!
//! The writer appends every change to the event log (`store::log`) in the transaction that
//! makes it, and after the commit hands the same changes, with their cursors, to an
//! in-process broadcast. A watcher subscribes to the broadcast *before* it reads the
//! log, reads the log from its cursor, then follows the broadcast, skipping what it
//! has already seen by cursor: nothing is lost between the two and nothing is sent
//! twice. A watcher that falls behind the broadcast (a slow client) loses nothing
//! either: it reads the missed changes back from the log, so the queue never waits
//! for it and its memory stays bounded. Only a watcher whose cursor the log has
//! already pruned is told to re-read and resubscribe.
//!
//! Several processes on one database: each process's writer feeds only its own
//! changes, so the hub (see `hub`) also reads the log for what others committed, when
//! they announce it (`LISTEN/NOTIFY` on PostgreSQL) or at each poll, and routes
//! everything in cursor order. Cursors grow in commit order: SQLite has one writer at
//! a time, and PostgreSQL replicas append under a transaction-scoped advisory lock.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Subscription};
use crate::job::Status;
use crate::store::{JobFilter, Store, StoreError, jobs};

pub use crate::store::Event;

/// The changes of one commit, in cursor order.
pub type Batch = Arc<[Event]>;

/// Changes waiting for watchers that fall behind, in commits. Past this a watcher
/// reads from the log instead.
pub const FEED_CAPACITY: usize = 1024;

/// Which changes a watcher wants: always of one namespace, whose names (queue,
/// schedule) it holds as stored, as events carry them.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    pub namespace: String,
    /// These jobs only; the other fields narrow further.
    pub ids: Vec<String>,
    /// Jobs carrying every one of these tags.
    pub tags: Vec<String>,
    /// Changes to one of these statuses; empty means any.
    pub statuses: Vec<Status>,
    pub queue: Option<String>,
    /// Jobs the schedule submits.
    pub schedule: Option<String>,
}

impl WatchFilter {
    pub fn matches(&self, e: &Event) -> bool {
        // A job's queue is stored qualified: it says whose the job is.
        crate::namespace::of(&e.queue) == self.namespace
            && (self.ids.is_empty() || self.ids.contains(&e.job_id))
            && self.tags.iter().all(|t| e.tags.contains(t))
            && (self.statuses.is_empty() || self.statuses.contains(&e.status))
            && self.queue.as_ref().is_none_or(|q| *q == e.queue)
            && self
                .schedule
                .as_ref()
                .is_none_or(|s| e.schedule_id.as_ref() == Some(s))
    }

    fn matches_job(&self, job: &jobs::Model) -> bool {
        let status = Status::parse(&job.status);
        self.statuses.is_empty() || status.is_some_and(|s| self.statuses.contains(&s))
    }

    /// The same jobs, as the store's filter (which takes names as their
    /// namespace knows them).
    pub fn as_job_filter(&self) -> JobFilter {
        let local = |name: &String| crate::namespace::local(name).to_string();
        JobFilter {
            namespace: self.namespace.clone(),
            statuses: self.statuses.clone(),
            tags: self.tags.clone(),
            queue: self.queue.as_ref().map(local),
            schedule: self.schedule.as_ref().map(local),
            created_after: None,
            created_before: None,
        }
    }

    /// Every job of the namespace: to read watched ids by.
    fn whose(&self) -> JobFilter {
        JobFilter {
            namespace: self.namespace.clone(),
            ..Default::default()
        }
    }
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum Watched {
    /// A job's state when the watch began; `cursor` is where its changes continue.
    Snapshot {
        job: Box<jobs::Model>,
        cursor: i64,
    },
    Change(Event),
    /// Nothing happened for a while; the stream is alive and at `cursor`.
    Heartbeat {
        cursor: i64,
    },
}

/// Why a watch ended early.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "cursor {cursor} is older than the oldest change kept ({pruned_through} and before are gone); read the jobs again and watch without a cursor"
    )]
    Pruned { cursor: i64, pruned_through: i64 },
    #[error("cursor {cursor} is ahead of this service's newest change ({head})")]
    Ahead { cursor: i64, head: i64 },
    #[error("more than {limit} jobs match; narrow the filter or watch without a snapshot")]
    SnapshotTooLarge { limit: u64 },
    #[error("ids: job {0} not found")]
    NotFound(String),
    #[error("the service is shutting down; resume from cursor {cursor}")]
    Closing { cursor: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The current state of the matching jobs, then every change after it.
    Snapshot,
    /// Every change after this cursor.
    After(i64),
    /// Changes from now on.
    Now,
}

/// Most jobs a snapshot sends when watching by tags, statuses, queue or schedule.
pub const SNAPSHOT_LIMIT: u64 = 10_000;
/// Changes read from the log per query while catching up.
pub(crate) const CATCH_UP_PAGE: u64 = 1000;
/// Items buffered per watcher between its task and its stream.
const WATCHER_BUFFER: usize = 256;

/// Starts a watch. Problems with the request itself (unknown ids, a pruned cursor,
/// a snapshot too large) come back here, before anything is streamed.
pub async fn watch(
    store: Store,
    hub: &Hub,
    stopping: CancellationToken,
    filter: WatchFilter,
    start: Start,
    heartbeat: Duration,
) -> Result<mpsc::Receiver<Result<Watched, WatchError>>, WatchError> {
    // Subscribe before reading anything, so no change falls between the two.
    let live = hub.subscribe(filter.clone());
    // The snapshot, read once; by id it also shows which ids name no job.
    let taken = match start {
        Start::Snapshot => Some(
            store
                .snapshot(&filter.ids, &filter.as_job_filter(), SNAPSHOT_LIMIT)
                .await?,
        ),
        _ if !filter.ids.is_empty() => Some(store.snapshot(&filter.ids, &filter.whose(), 0).await?),
        _ => None,
    };
    // Jobs still to finish when watching by id: the watch ends when none is left.
    let mut waiting: Option<HashSet<String>> = None;
    if let Some((_, jobs)) = &taken
        && !filter.ids.is_empty()
    {
        if let Some(missing) = filter
            .ids
            .iter()
            .find(|id| !jobs.iter().any(|j| &j.id == *id))
        {
            return Err(WatchError::NotFound(missing.clone()));
        }
        waiting = Some(filter.ids.iter().cloned().collect());
    }
    let mut snapshot = Vec::new();
    let cursor = match (start, taken) {
        (Start::Snapshot, Some((head, jobs))) => {
            if filter.ids.is_empty() && jobs.len() as u64 > SNAPSHOT_LIMIT {
                return Err(WatchError::SnapshotTooLarge {
                    limit: SNAPSHOT_LIMIT,
                });
            }
            for job in jobs {
                if filter.matches_job(&job) {
                    snapshot.push(Watched::Snapshot {
                        job: Box::new(job),
                        cursor: head,
                    });
                }
            }
            head
        }
        (Start::After(cursor), _) => {
            let (pruned_through, head) = store.event_bounds().await?;
            if cursor < pruned_through {
                return Err(WatchError::Pruned {
                    cursor,
                    pruned_through,
                });
            }
            if cursor > head {
                return Err(WatchError::Ahead { cursor, head });
            }
            cursor
        }
        (Start::Now, _) => store.event_bounds().await?.1,
        (Start::Snapshot, None) => unreachable!("a snapshot start always reads one"),
    };
    let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
    let watcher = Watcher {
        start,
        store,
        filter,
        cursor,
        waiting,
        tx,
        heartbeat,
        stopping,
    };
    tokio::spawn(watcher.run(snapshot, live));
    Ok(rx)
}

struct Watcher {
    start: Start,
    store: Store,
    filter: WatchFilter,
    /// The newest change this watcher has looked at (sent or filtered out).
    cursor: i64,
    waiting: Option<HashSet<String>>,
    tx: mpsc::Sender<Result<Watched, WatchError>>,
    heartbeat: Duration,
    stopping: CancellationToken,
}

/// Whether the watch goes on.
enum Flow {
    Continue,
    Stop,
}

impl Watcher {
    async fn run(mut self, snapshot: Vec<Watched>, mut live: Subscription) {
        for item in snapshot {
            if !self.send(Ok(item)).await {
                return;
            }
        }
        let caught_up = match (&self.waiting, self.start) {
            (Some(_), _) => self.settle().await,
            // Subscribed before the newest cursor was read: nothing lies between.
            (None, Start::Now) => Ok(()),
            (None, _) => self.catch_up().await,
        };
        if let Err(error) = caught_up {
            self.send(Err(error)).await;
            return;
        }
        if self.done() {
            return;
        }
        loop {
            if live.lagged.swap(false, Ordering::AcqRel) {
                // The hub dropped changes for this watcher: read them from the log.
                // Cleared first, so nothing after the read can be dropped unseen.
                if let Err(error) = self.catch_up().await {
                    self.send(Err(error)).await;
                    return;
                }
                if self.done() {
                    return;
                }
            }
            let flow = tokio::select! {
                change = live.changes.recv() => match change {
                    Some(change) => self.deliver(std::slice::from_ref(&*change)).await,
                    None => {
                        self.send(Err(WatchError::Closing { cursor: self.cursor })).await;
                        Flow::Stop
                    }
                },
                _ = tokio::time::sleep(self.heartbeat) => {
                    match self.send(Ok(Watched::Heartbeat { cursor: self.cursor })).await {
                        true => Flow::Continue,
                        false => Flow::Stop,
                    }
                }
                // The client went away: free everything now, not at the next change.
                _ = self.tx.closed() => Flow::Stop,
                // The service is stopping; the client resumes elsewhere by cursor.
                _ = self.stopping.cancelled() => {
                    self.send(Err(WatchError::Closing { cursor: self.cursor })).await;
                    Flow::Stop
                }
            };
            if matches!(flow, Flow::Stop) || self.done() {
                return;
            }
        }
    }

    /// Hands an item to the stream; false when the client is gone or the service is
    /// stopping (a client that does not read must not hold the shutdown up).
    async fn send(&self, item: Result<Watched, WatchError>) -> bool {
        tokio::select! {
            // First: an item with room to go (such as the closing status) goes.
            biased;
            sent = self.tx.send(item) => sent.is_ok(),
            _ = self.stopping.cancelled() => false,
        }
    }

    fn done(&self) -> bool {
        self.waiting.as_ref().is_some_and(HashSet::is_empty)
    }

    /// Sends the changes after the cursor that match; stops when the client is gone
    /// or every watched job has finished.
    async fn deliver(&mut self, events: &[Event]) -> Flow {
        for event in events {
            if event.seq <= self.cursor {
                continue;
            }
            self.cursor = event.seq;
            if !self.filter.matches(event) {
                continue;
            }
            if event.status.is_terminal()
                && let Some(waiting) = self.waiting.as_mut()
            {
                waiting.remove(&event.job_id);
            }
            if !self.send(Ok(Watched::Change(event.clone()))).await {
                return Flow::Stop;
            }
            if self.done() {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Catches up, then stops waiting for watched jobs that had already finished at
    /// the cursor: their terminal change was sent, or came before the watch began.
    async fn settle(&mut self) -> Result<(), WatchError> {
        loop {
            self.catch_up().await?;
            if self.done() {
                return Ok(());
            }
            let (head, jobs) = self
                .store
                .snapshot(&self.filter.ids, &self.filter.whose(), 0)
                .await?;
            if head > self.cursor {
                // Changes arrived meanwhile; read them first.
                continue;
            }
            if let Some(waiting) = self.waiting.as_mut() {
                for job in jobs {
                    if Status::parse(&job.status).is_some_and(Status::is_terminal) {
                        waiting.remove(&job.id);
                    }
                }
            }
            return Ok(());
        }
    }

    /// Reads the log from the cursor up to its newest change.
    async fn catch_up(&mut self) -> Result<(), WatchError> {
        loop {
            // Read before the page, so every change up to `head` is in the page.
            let (pruned_through, head) = self.store.event_bounds().await?;
            if self.cursor < pruned_through {
                return Err(WatchError::Pruned {
                    cursor: self.cursor,
                    pruned_through,
                });
            }
            let page = self
                .store
                .events_after(self.cursor, |e| self.filter.matches(e), CATCH_UP_PAGE)
                .await?;
            let full = page.len() as u64 == CATCH_UP_PAGE;
            let last = page.last().map(|e| e.seq);
            if let Flow::Stop = self.deliver(&page).await {
                return Ok(());
            }
            // Filtering by id skips other jobs' changes; the cursor still moves past
            // the newest one read.
            if let Some(last) = last {
                self.cursor = self.cursor.max(last);
            }
            if !full {
                // A short page holds every matching change up to `head` at least.
                self.cursor = self.cursor.max(head);
                return Ok(());
            }
        }
    }
}

/// This process's feed of committed changes, and who is watching it.
#[derive(Clone)]
pub struct Feed {
    pub sender: broadcast::Sender<Batch>,
    /// Watchers subscribed in this process; with none, nothing needs feeding.
    pub watchers: Arc<std::sync::atomic::AtomicUsize>,
}

impl Feed {
    pub fn new() -> Feed {
        Feed {
            sender: broadcast::channel(FEED_CAPACITY).0,
            watchers: Arc::default(),
        }
    }

    pub fn is_watched(&self) -> bool {
        // Ordered with the count a watcher raises before it reads its start.
        self.watchers.load(Ordering::SeqCst) > 0
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}
