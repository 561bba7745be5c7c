//! Namespaces' limits in the writer (`JOBQUEUE_NAMESPACE_LIMITS`): a submit past
//! the jobs a namespace may store is refused, and a claim starts no more of a
//! namespace's calls than its concurrency and rate allow, across every process,
//! on top of each queue's own limits.

use super::claims::Lane;
use super::*;
use crate::job::limits::{self, Bucket};
use crate::namespace;

/// Jobs stored by each namespace that has a limit on them: counted in the
/// transaction when first needed, kept up by this writer's submits, and counted
/// again after each maintenance pass (which sees jobs removed, and other
/// processes' submits).
#[derive(Default)]
pub(super) struct Stored(HashMap<String, u64>);

impl Stored {
    pub(super) fn recount(&mut self) {
        self.0.clear();
    }
}

/// A namespace whose calls a claim holds back, and what it allows this claim.
pub(super) struct Held {
    name: String,
    /// Its rate limiter and the tokens it holds now, when it has a rate.
    bucket: Option<(Bucket, f64)>,
}

impl Writer {
    /// Whether `count()` more jobs fit `namespace`'s limit; takes them when they
    /// do. Without a limit nothing is counted.
    pub(super) async fn admit_jobs(
        &mut self,
        txn: &DatabaseTransaction,
        namespace: &str,
        count: impl FnOnce() -> usize,
    ) -> Result<Result<(), EngineError>, StoreError> {
        let Some(limit) = self
            .settings
            .namespace_limits
            .of(namespace)
            .and_then(|l| l.jobs)
        else {
            return Ok(Ok(()));
        };
        let count = count();
        let stored = match self.stored.0.get(namespace) {
            Some(stored) => *stored,
            None => write::count_jobs(txn, namespace).await?,
        };
        if stored + count as u64 > limit {
            self.stored.0.insert(namespace.to_string(), stored);
            return Ok(Err(EngineError::NamespaceFull {
                namespace: namespace.to_string(),
                limit,
                stored,
            }));
        }
        self.stored
            .0
            .insert(namespace.to_string(), stored + count as u64);
        Ok(Ok(()))
    }

    /// Caps the lanes of namespaces with a concurrency or a rate to what those
    /// allow now, shared among their queues; the namespaces held, for
    /// [`Writer::spend_namespaces`].
    pub(super) async fn cap_namespaces(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        lanes: &mut [Lane],
        first: usize,
    ) -> Result<Vec<Held>, StoreError> {
        let limits = &self.settings.namespace_limits;
        if limits.0.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<(String, f64)> = Vec::new();
        for lane in lanes.iter() {
            let name = namespace::of(&lane.name);
            if let Some(limit) = limits.of(name).filter(|l| l.limits_calls())
                && !names.iter().any(|(n, _)| n == name)
            {
                names.push((name.to_string(), f64::from(limit.burst.unwrap_or(1))));
            }
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<(&str, f64)> = names.iter().map(|(n, f)| (n.as_str(), *f)).collect();
        let locked = write::lock_namespaces(txn, &full, now).await?;
        let capped: Vec<&str> = names
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| limits.of(n).is_some_and(|l| l.concurrency.is_some()))
            .collect();
        let running = write::running_by_namespace(txn, &capped).await?;
        let mut held = Vec::with_capacity(names.len());
        for (name, _) in &names {
            let Some(limit) = limits.of(name) else {
                continue;
            };
            let mine: Vec<usize> = (0..lanes.len())
                .filter(|&i| namespace::of(&lanes[i].name) == *name)
                .collect();
            // Held by a replica claiming for it right now: none this turn.
            let Some((_, tokens, at)) = locked.iter().find(|(n, _, _)| n == name) else {
                for &i in &mine {
                    lanes[i].cap = 0;
                    lanes[i].limit_bound = true;
                }
                continue;
            };
            let mut allowed = usize::MAX;
            if let Some(max) = limit.concurrency {
                let open = running.get(name).copied().unwrap_or(0);
                allowed = allowed.min((i64::from(max) - open).max(0) as usize);
            }
            let bucket = limit.rate.map(|per_second| {
                let bucket = Bucket {
                    per_second,
                    burst: f64::from(limit.burst.unwrap_or(1)),
                };
                (bucket, bucket.refill(*tokens, *at, now))
            });
            if let Some((_, tokens)) = bucket {
                allowed = allowed.min(tokens.max(0.0).floor() as usize);
            }
            let caps: Vec<usize> = mine.iter().map(|&i| lanes[i].cap).collect();
            let shares = limits::share(allowed.min(caps.iter().sum()), &caps, first);
            for (&i, share) in mine.iter().zip(shares) {
                if share < lanes[i].cap {
                    lanes[i].cap = share;
                    lanes[i].limit_bound = true;
                }
            }
            held.push(Held {
                name: name.clone(),
                bucket,
            });
        }
        Ok(held)
    }

    /// Spends the tokens the claim used from the namespaces it held, and wakes
    /// the writer when one runs dry with jobs that may be waiting.
    pub(super) async fn spend_namespaces(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        held: Vec<Held>,
        lanes: &[Lane],
    ) -> Result<(), StoreError> {
        let mut buckets = Vec::new();
        for Held { name, bucket } in held {
            let Some((bucket, tokens)) = bucket else {
                continue;
            };
            let got: usize = lanes
                .iter()
                .filter(|l| namespace::of(&l.name) == name)
                .map(|l| l.got)
                .sum();
            let tokens = tokens - got as f64;
            if tokens < 1.0 {
                let wait = bucket.until_next(tokens).as_millis() as i64;
                self.due.push(Reverse(now + wait));
            }
            buckets.push((name, tokens, now));
        }
        write::save_namespace_buckets(txn, &buckets).await
    }

    /// Whether calls of `queue`'s namespace are held back by its limits: a call
    /// of it ending may let any of its queues go on.
    pub(super) fn namespace_limited(&self, queue: &str) -> bool {
        self.settings
            .namespace_limits
            .of(namespace::of(queue))
            .is_some_and(|l| l.limits_calls())
    }
}
