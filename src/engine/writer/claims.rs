//! Claims: which due jobs this process takes for its free slots, shared fairly among
//! queues within their limits, and what each claimed job asks for (the in-memory
//! hand-off from submit to claim).

use super::*;

/// Which queues a claim might find due jobs in: a queue leaves the set when a
/// claim from it comes back short (or it is at its limit), and is marked again
/// when something could have made work due in it. `all` stands for every queue:
/// after a start, a poll, or another process's announcement.
#[derive(Default)]
pub(super) struct DueQueues {
    pub(super) all: bool,
    pub(super) some: HashSet<String>,
}

impl DueQueues {
    pub(super) fn everywhere() -> DueQueues {
        DueQueues {
            all: true,
            some: HashSet::new(),
        }
    }

    pub(super) fn any(&self) -> bool {
        self.all || !self.some.is_empty()
    }

    pub(super) fn mark(&mut self, queue: &str) {
        if !self.all && !self.some.contains(queue) {
            self.some.insert(queue.to_string());
        }
    }

    pub(super) fn mark_all(&mut self) {
        self.all = true;
        self.some.clear();
    }

    pub(super) fn contains(&self, queue: &str) -> bool {
        self.all || self.some.contains(queue)
    }
}

/// A queue a claim may take jobs from, and how many at most.
pub(super) struct Lane {
    pub(super) name: String,
    /// Most jobs its limits let this claim take.
    pub(super) cap: usize,
    /// Whether `cap` comes from the queue's limits rather than the free slots.
    pub(super) limit_bound: bool,
    /// The rate limiter's bucket and the tokens it holds now, when it has one.
    pub(super) bucket: Option<(Bucket, f64)>,
    pub(super) asked: usize,
    pub(super) got: usize,
}

/// Rounds of a claim: each gives the slots queues left unused to the others.
pub(super) const CLAIM_ROUNDS: usize = 3;

pub(super) fn is_limited(queue: &queues::Model) -> bool {
    queue.max_concurrency.is_some() || queue.rate_per_second.is_some()
}

/// Most bytes of job definitions kept in memory for the hand-off from submit to claim.
pub(super) const DEFINITIONS_MAX_BYTES: usize = 64 << 20;

/// The in-memory hand-off: what each due job asks for (method, URL, headers, body,
/// retry policy), kept from its submit so its claim need not read it back. None of it
/// changes after submit, so an entry is never stale; a job not here (scheduled for
/// later, submitted before a restart, or over the memory cap) is read from the store.
#[derive(Default)]
pub(super) struct Definitions {
    pub(super) jobs: HashMap<String, Arc<jobs::Model>>,
    pub(super) bytes: usize,
}

impl Definitions {
    pub(super) fn footprint(job: &jobs::Model) -> usize {
        // The variable parts, plus what the row's other fields, their allocations and
        // the map's entry take (measured: about 1 KiB a job in RSS for a small GET).
        job.url.len()
            + job.headers.len()
            + job.params.len()
            + job.tags.len()
            + job.body.as_ref().map_or(0, Vec::len)
            + 1024
    }

    pub(super) fn keep(&mut self, job: &Arc<jobs::Model>) {
        let size = Self::footprint(job);
        if self.bytes + size > DEFINITIONS_MAX_BYTES {
            return;
        }
        if self.jobs.insert(job.id.clone(), job.clone()).is_none() {
            self.bytes += size;
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<jobs::Model>> {
        self.jobs.get(id).cloned()
    }

    /// The job will not be claimed again (or not soon): free its entry.
    pub(super) fn forget(&mut self, id: &str) {
        if let Some(job) = self.jobs.remove(id) {
            self.bytes -= Self::footprint(&job);
        }
    }
}

impl Writer {
    /// Claims due jobs for `free` slots, shared fairly among the queues that may
    /// have some: a paused queue gets none, a limited queue no more than its limits
    /// allow, and what one queue cannot use goes to the others. Within a queue,
    /// higher priority goes first.
    pub(super) async fn claim(
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
            self.settings.queue_destinations.load(
                self.queues
                    .values()
                    .map(|q| (q.name.as_str(), q.destinations.as_deref())),
            );
        }
        let queues = std::mem::take(&mut self.queues);
        let claimed = self.claim_from(txn, now, free, &queues).await;
        self.queues = queues;
        claimed
    }

    pub(super) async fn claim_from(
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

        self.rotation = self.rotation.wrapping_add(1);
        let first = self.rotation % lanes.len().max(1);
        let held = self.cap_namespaces(txn, now, &mut lanes, first).await?;
        let index: HashMap<String, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| (lane.name.clone(), i))
            .collect();
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
        self.spend_namespaces(txn, now, held, &lanes).await?;
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

    /// Pairs claimed jobs with what they ask for: from memory when kept since their
    /// submit, from the store otherwise.
    pub(super) async fn definitions_of(
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

    /// A call of `queue` ended: a queue that was at its limits may go on.
    pub(super) fn slot_freed(&mut self, queue: &str) {
        let Some(count) = self.running_by_queue.get_mut(queue) else {
            return;
        };
        let was_full = *count >= self.settings.queue_concurrency;
        *count -= 1;
        if *count == 0 {
            self.running_by_queue.remove(queue);
        }
        if self.namespace_limited(queue) {
            // Any queue of its namespace may have been held back.
            self.due_queues.mark_all();
        } else if was_full || self.queues.get(queue).is_some_and(is_limited) {
            self.due_queues.mark(queue);
        }
    }

    pub(super) fn free_slots(&self) -> usize {
        if !self.settings.runs_jobs {
            return 0;
        }
        self.settings.concurrency.saturating_sub(self.running.len())
    }
}
