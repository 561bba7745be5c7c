//! The hub routes committed changes to the watchers that want them.
//!
//! Waking every watcher for every commit does not scale: with a thousand watchers,
//! each on its own tag, nearly all of that work finds nothing. The hub indexes
//! watchers by job id, by schedule, by one of their tags, or by queue (the rest — `all` and
//! status-only watchers — are checked for every change), and puts a change only in
//! the queues of the watchers it matches. A watcher's queue is bounded: when it is
//! full, the hub marks the watcher lagged and sends it nothing more until the watcher
//! has read what it missed back from the log, so a stuck client costs the hub one
//! check per change and never blocks it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::events::{Batch, CATCH_UP_PAGE, Event, WatchFilter};
use crate::store::{Store, StoreError};

/// Changes queued per watcher before it counts as lagging.
pub const WATCHER_QUEUE: usize = 1024;

/// One watcher's end of the hub.
pub struct Subscription {
    pub changes: mpsc::Receiver<Arc<Event>>,
    /// Set by the hub when it dropped a change for this watcher.
    pub lagged: Arc<AtomicBool>,
    hub: Hub,
    key: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.key);
    }
}

struct Watcher {
    filter: WatchFilter,
    queue: mpsc::Sender<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

/// Where a watcher is found: the narrowest index its filter allows.
#[derive(Clone)]
enum Slot {
    Ids(Vec<String>),
    Schedule(String),
    Tag(String),
    Queue(String),
    Rest,
}

#[derive(Default)]
struct State {
    next_key: u64,
    watchers: HashMap<u64, (Watcher, Slot)>,
    by_id: HashMap<String, Vec<u64>>,
    by_schedule: HashMap<String, Vec<u64>>,
    by_tag: HashMap<String, Vec<u64>>,
    by_queue: HashMap<String, Vec<u64>>,
    rest: Vec<u64>,
}

#[derive(Clone, Default)]
pub struct Hub {
    state: Arc<Mutex<State>>,
    /// How many watchers are subscribed, for the writer to skip feeding nobody.
    count: Arc<AtomicUsize>,
}

impl Hub {
    /// A hub that keeps `count` equal to its number of watchers.
    pub fn counting(count: Arc<AtomicUsize>) -> Hub {
        Hub {
            state: Arc::default(),
            count,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while routing leaves the maps consistent enough to go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a watcher; from now on every matching change reaches its queue
    /// (or marks it lagged).
    pub fn subscribe(&self, filter: WatchFilter) -> Subscription {
        let (queue, changes) = mpsc::channel(WATCHER_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let slot = if !filter.ids.is_empty() {
            Slot::Ids(filter.ids.clone())
        } else if let Some(schedule) = &filter.schedule {
            Slot::Schedule(schedule.clone())
        } else if let Some(tag) = filter.tags.first() {
            Slot::Tag(tag.clone())
        } else if let Some(queue) = &filter.queue {
            Slot::Queue(queue.clone())
        } else {
            Slot::Rest
        };
        let mut state = self.lock();
        let key = state.next_key;
        state.next_key += 1;
        match &slot {
            Slot::Ids(ids) => {
                for id in ids {
                    state.by_id.entry(id.clone()).or_default().push(key);
                }
            }
            Slot::Schedule(id) => state.by_schedule.entry(id.clone()).or_default().push(key),
            Slot::Tag(tag) => state.by_tag.entry(tag.clone()).or_default().push(key),
            Slot::Queue(queue) => state.by_queue.entry(queue.clone()).or_default().push(key),
            Slot::Rest => state.rest.push(key),
        }
        let watcher = Watcher {
            filter,
            queue,
            lagged: lagged.clone(),
        };
        state.watchers.insert(key, (watcher, slot));
        self.count.fetch_add(1, Ordering::SeqCst);
        Subscription {
            changes,
            lagged,
            hub: self.clone(),
            key,
        }
    }

    fn remove(&self, key: u64) {
        let mut state = self.lock();
        let Some((_, slot)) = state.watchers.remove(&key) else {
            return;
        };
        fn unlist(index: &mut HashMap<String, Vec<u64>>, name: &str, key: u64) {
            if let Some(keys) = index.get_mut(name) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    index.remove(name);
                }
            }
        }
        match slot {
            Slot::Ids(ids) => {
                for id in ids {
                    unlist(&mut state.by_id, &id, key);
                }
            }
            Slot::Schedule(id) => unlist(&mut state.by_schedule, &id, key),
            Slot::Tag(tag) => unlist(&mut state.by_tag, &tag, key),
            Slot::Queue(queue) => unlist(&mut state.by_queue, &queue, key),
            Slot::Rest => state.rest.retain(|k| *k != key),
        }
        self.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// Routes one commit's changes.
    pub fn route(&self, batch: &Batch) {
        let state = self.lock();
        if state.watchers.is_empty() {
            return;
        }
        let mut candidates = Vec::new();
        for event in batch.iter() {
            candidates.clear();
            if let Some(keys) = state.by_id.get(&event.job_id) {
                candidates.extend_from_slice(keys);
            }
            if let Some(keys) = event
                .schedule_id
                .as_ref()
                .and_then(|id| state.by_schedule.get(id))
            {
                candidates.extend_from_slice(keys);
            }
            for tag in &event.tags {
                if let Some(keys) = state.by_tag.get(tag) {
                    candidates.extend_from_slice(keys);
                }
            }
            if let Some(keys) = state.by_queue.get(&event.queue) {
                candidates.extend_from_slice(keys);
            }
            candidates.extend_from_slice(&state.rest);
            if candidates.is_empty() {
                continue;
            }
            let event = Arc::new(event.clone());
            for key in &candidates {
                let Some((watcher, _)) = state.watchers.get(key) else {
                    continue;
                };
                if watcher.lagged.load(Ordering::Acquire) || !watcher.filter.matches(&event) {
                    continue;
                }
                if watcher.queue.try_send(event.clone()).is_err() {
                    // Full (or closing): it reads the rest from the log.
                    watcher.lagged.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Every watcher missed something (the hub itself fell behind the feed).
    fn lag_all(&self) {
        for (watcher, _) in self.lock().watchers.values() {
            watcher.lagged.store(true, Ordering::Release);
        }
    }

    fn is_idle(&self) -> bool {
        self.count.load(Ordering::SeqCst) == 0
    }

    /// Routes changes in cursor order, with no gap, until the service stops.
    ///
    /// This process's writer hands over its commits at once (`feed`). Changes other
    /// processes commit to the same database reach the log only, so before routing a
    /// commit whose first cursor is past the next one expected, the hub reads the
    /// missing changes from the log and routes them first; and when another process
    /// announces a commit (`news`), or every `every`, it reads the log onwards. A
    /// watcher therefore never receives a change before an earlier one, which its
    /// skip-by-cursor rule would otherwise turn into a loss. (This needs cursors that
    /// grow in commit order: SQLite has one writer at a time, and on PostgreSQL
    /// replicas take turns appending under an advisory lock held to their commit.)
    ///
    /// `next` is the first cursor to route: read before any watcher can subscribe,
    /// so that it is never past a watcher's starting cursor.
    pub async fn run(
        self,
        mut next: i64,
        store: Store,
        mut feed: broadcast::Receiver<Batch>,
        news: Arc<tokio::sync::Notify>,
        every: std::time::Duration,
        stopping: CancellationToken,
    ) {
        loop {
            let batch = tokio::select! {
                batch = feed.recv() => match batch {
                    Ok(batch) => Some(batch),
                    // Commits went by unrouted: everyone reads them from the log.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.lag_all();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(every) => None,
                _ = news.notified() => None,
                _ = stopping.cancelled() => return,
            };
            if let Err(error) = self.advance(&store, &mut next, batch).await {
                tracing::warn!(%error, "reading the event log for watchers failed; they catch up");
                self.lag_all();
            }
        }
    }

    /// Routes what the log holds from `next` up to `batch` (or to its end), then
    /// `batch`.
    async fn advance(
        &self,
        store: &Store,
        next: &mut i64,
        batch: Option<Batch>,
    ) -> Result<(), StoreError> {
        let until = batch
            .as_ref()
            .and_then(|b| b.first())
            .map_or(i64::MAX, |e| e.seq);
        if self.is_idle() {
            // Nobody to route to: keep up without reading the changes. The head is
            // read *before* looking again whether anyone watches: a watcher that
            // subscribes after that look reads its own starting cursor later still,
            // so it starts at or past the head read here and misses nothing.
            let head = match &batch {
                // Everything up to this commit's last change is committed already.
                Some(b) => b.last().map_or(0, |e| e.seq),
                None => store.event_bounds().await?.1,
            };
            if self.is_idle() {
                *next = (*next).max(head + 1);
                return Ok(());
            }
        }
        while *next < until {
            let page = store
                .events_after(*next - 1, |_| true, CATCH_UP_PAGE)
                .await?;
            let full = page.len() as u64 == CATCH_UP_PAGE;
            let missing: Vec<Event> = page.into_iter().filter(|e| e.seq < until).collect();
            let Some(last) = missing.last().map(|e| e.seq) else {
                break;
            };
            self.route(&Batch::from(missing));
            *next = last + 1;
            if !full {
                break;
            }
        }
        if let Some(batch) = batch {
            let fresh: Vec<Event> = batch.iter().filter(|e| e.seq >= *next).cloned().collect();
            if let Some(last) = fresh.last().map(|e| e.seq) {
                self.route(&Batch::from(fresh));
                *next = last + 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Status;

    fn event(seq: i64, job: &str, tags: &[&str]) -> Event {
        Event {
            seq,
            job_id: job.into(),
            status: Status::Queued,
            attempt: 0,
            at: 0,
            queue: "default".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            status_code: None,
            error_class: None,
            next_attempt_at: None,
            schedule_id: None,
        }
    }

    /// Every job of the default namespace.
    fn every() -> WatchFilter {
        WatchFilter {
            namespace: "default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn changes_reach_only_the_watchers_they_match() {
        let hub = Hub::default();
        let tag = |t: &str| WatchFilter {
            tags: vec![t.into()],
            ..every()
        };
        let mut red = hub.subscribe(tag("red"));
        let mut blue = hub.subscribe(tag("blue"));
        let mut both = hub.subscribe(WatchFilter {
            tags: vec!["red".into(), "blue".into()],
            ..every()
        });
        let mut job = hub.subscribe(WatchFilter {
            ids: vec!["j2".into()],
            ..every()
        });
        let mut nightly = hub.subscribe(WatchFilter {
            schedule: Some("nightly".into()),
            ..every()
        });
        let mut all = hub.subscribe(every());
        // Another namespace's watchers, by the same tag and of everything.
        let mut billing = hub.subscribe(WatchFilter {
            namespace: "billing".into(),
            ..Default::default()
        });
        let mut billing_red = hub.subscribe(WatchFilter {
            namespace: "billing".into(),
            tags: vec!["red".into()],
            ..Default::default()
        });
        let run = Event {
            schedule_id: Some("nightly".into()),
            ..event(3, "j3", &[])
        };
        let theirs = Event {
            queue: "billing/default".into(),
            ..event(4, "j4", &["red"])
        };
        let batch: Batch = vec![
            event(1, "j1", &["red"]),
            event(2, "j2", &["red", "blue"]),
            run,
            theirs,
        ]
        .into();
        hub.route(&batch);
        let seqs = |s: &mut Subscription| {
            let mut got = Vec::new();
            while let Ok(e) = s.changes.try_recv() {
                got.push(e.seq);
            }
            got
        };
        assert_eq!(seqs(&mut red), [1, 2]);
        assert_eq!(seqs(&mut blue), [2]);
        assert_eq!(seqs(&mut both), [2]);
        assert_eq!(seqs(&mut job), [2]);
        assert_eq!(seqs(&mut nightly), [3]);
        assert_eq!(seqs(&mut all), [1, 2, 3]);
        assert_eq!(seqs(&mut billing), [4]);
        assert_eq!(seqs(&mut billing_red), [4]);
        drop(red);
        assert!(
            hub.lock()
                .by_tag
                .get("red")
                .is_some_and(|keys| keys.len() == 2),
            "a dropped watcher leaves the index (both and billing's stay)"
        );
    }

    #[test]
    fn a_full_queue_marks_the_watcher_lagged_instead_of_blocking() {
        let hub = Hub::default();
        let stuck = hub.subscribe(every());
        let batch: Batch = (0..WATCHER_QUEUE as i64 + 10)
            .map(|n| event(n, "j", &[]))
            .collect::<Vec<_>>()
            .into();
        hub.route(&batch);
        assert!(stuck.lagged.load(Ordering::Acquire));
        assert_eq!(stuck.changes.len(), WATCHER_QUEUE);
    }
}
