//! Destination hosts in the writer (see `crate::job::hosts`): claimed jobs whose
//! host does not take them now are held (queued again without an attempt spent,
//! due when the host may take them, saying why), each ended call counts against
//! its host and its circuit, and maintenance counts calls in flight again from
//! the jobs themselves, so a process that died mid-call leaves nothing behind.

use super::*;
use crate::job::ErrorClass;
use crate::job::hosts::{self, Held, HostState, host_of};

/// How long a host with nothing to remember is kept after its last change.
const HOST_KEPT_MS: i64 = 3_600_000;

/// An ended call, to count against its host.
#[derive(Debug)]
pub(super) struct EndedCall {
    host: String,
    id: String,
    /// Whether the host failed it; `None` when it says nothing of the host.
    failed: Option<bool>,
    /// Until when the host asked for no calls.
    slowed: Option<i64>,
}

impl Writer {
    fn hosts_tracked(&self) -> bool {
        !self.settings.host_limits.is_empty() || self.settings.host_breaker.is_some()
    }

    /// The host of a job's call, when the service keeps its state.
    fn tracked_host(&self, url: &str) -> Option<String> {
        host_of(url).filter(|host| {
            self.settings.host_breaker.is_some() || self.settings.host_limits.of(host).is_some()
        })
    }

    /// The claimed jobs their hosts take now; the others are held.
    pub(super) async fn gate_hosts(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        claimed: Vec<(Arc<jobs::Model>, Claim)>,
    ) -> Result<Vec<(Arc<jobs::Model>, Claim)>, StoreError> {
        if claimed.is_empty() {
            return Ok(claimed);
        }
        if !self.hosts_tracked() {
            return self.gate_slowed(txn, now, claimed).await;
        }
        let of: Vec<Option<String>> = claimed
            .iter()
            .map(|(job, _)| self.tracked_host(&job.url))
            .collect();
        let mut names: Vec<&str> = of.iter().flatten().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return Ok(claimed);
        }
        let mut states: HashMap<String, HostState> = write::lock_hosts(txn, &names, now, true)
            .await?
            .into_iter()
            .map(|s| (s.host.clone(), s))
            .collect();
        let mut go = Vec::with_capacity(claimed.len());
        let mut held = Vec::new();
        for ((job, claim), host) in claimed.into_iter().zip(of) {
            let Some(host) = host else {
                go.push((job, claim));
                continue;
            };
            let verdict = match states.get_mut(&host) {
                // Another process holds the host's row: it is claiming for it now.
                None => Err((Held::Limited, now + hosts::FULL_RECHECK_MS)),
                Some(state) => state.admit(
                    &job.id,
                    self.settings.host_limits.of(&host),
                    self.settings.host_breaker.as_ref(),
                    now,
                ),
            };
            match verdict {
                Ok(()) => go.push((job, claim)),
                Err((why, until)) => held.push((job, claim, why, until)),
            }
        }
        let states: Vec<HostState> = states.into_values().collect();
        write::save_hosts(txn, &states, now).await?;
        self.hold(txn, now, held).await?;
        Ok(go)
    }

    /// Claimed jobs put back, queued, each due when its host may take it.
    async fn hold(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        held: Vec<(Arc<jobs::Model>, Claim, Held, i64)>,
    ) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i32, i64, &str)> = held
            .iter()
            .map(|(job, claim, why, until)| {
                (
                    job.id.clone(),
                    claim.attempt,
                    *until,
                    why.error_class().as_str(),
                )
            })
            .collect();
        let done: HashSet<String> = write::hold_for_hosts(txn, &rows)
            .await?
            .into_iter()
            .collect();
        for (job, claim, why, until) in &held {
            if !done.contains(&job.id) {
                continue;
            }
            self.due.push(Reverse(*until));
            self.metrics.host_held(why.error_class().as_str());
            self.change(
                job,
                Status::Queued,
                claim.attempt - 1,
                now,
                None,
                Some(why.error_class().as_str().into()),
                Some(*until),
            );
        }
        Ok(())
    }

    /// Without hosts' state in the store: claimed jobs whose host asked this
    /// process for time are held until then.
    async fn gate_slowed(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        claimed: Vec<(Arc<jobs::Model>, Claim)>,
    ) -> Result<Vec<(Arc<jobs::Model>, Claim)>, StoreError> {
        self.slowed_hosts.retain(|_, until| *until > now);
        if self.slowed_hosts.is_empty() {
            return Ok(claimed);
        }
        let mut go = Vec::with_capacity(claimed.len());
        let mut held = Vec::new();
        for (job, claim) in claimed {
            match host_of(&job.url).and_then(|host| self.slowed_hosts.get(&host).copied()) {
                Some(until) => held.push((job, claim, Held::Limited, until)),
                None => go.push((job, claim)),
            }
        }
        self.hold(txn, now, held).await?;
        Ok(go)
    }

    /// Hosts that asked for time, noted in this process.
    fn note_slowed(&mut self, completions: &[Completion]) {
        for c in completions {
            if let Some(until) = slowed_until(c)
                && let Some(host) = host_of(&c.job.url)
            {
                let at = self.slowed_hosts.entry(host).or_default();
                *at = (*at).max(until);
            }
        }
    }

    /// Notes ended calls for their hosts, to count in the transaction once
    /// ([`Writer::account_ended_calls`]); without hosts' state in the store, only
    /// the time a host asked for, in this process.
    pub(super) fn note_ended_calls(&mut self, completions: &[Completion]) {
        if !self.hosts_tracked() {
            self.note_slowed(completions);
            return;
        }
        for c in completions {
            let Some(host) = self.tracked_host(&c.job.url) else {
                continue;
            };
            let class = c.record.error_class.as_deref().and_then(ErrorClass::parse);
            let failed = match (c.record.status_code, class) {
                (Some(code), _) => Some(code >= 500),
                (None, Some(ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Network)) => {
                    Some(true)
                }
                // Canceled, interrupted, refused before sending: nothing of the host.
                _ => None,
            };
            self.ended_calls.push(EndedCall {
                host,
                id: c.record.job_id.clone(),
                failed,
                slowed: slowed_until(c),
            });
        }
    }

    /// Ended calls counted against their hosts: a slot freed, a run of failures
    /// that opens the circuit (or a probe that closes it), and the time a host
    /// asked for with `Retry-After` (a 429 or 503), which holds everyone's calls
    /// to it. Once per transaction, every host's row locked in one statement in
    /// host order (and the claim's gate skips rows others hold), so two processes
    /// never wait on each other in a cycle.
    pub(super) async fn account_ended_calls(
        &mut self,
        txn: &DatabaseTransaction,
    ) -> Result<(), StoreError> {
        let ended = std::mem::take(&mut self.ended_calls);
        if ended.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = ended.iter().map(|e| e.host.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let now = now_ms();
        let mut states: HashMap<String, HostState> = write::lock_hosts(txn, &names, now, false)
            .await?
            .into_iter()
            .map(|s| (s.host.clone(), s))
            .collect();
        let breaker = self.settings.host_breaker;
        for call in &ended {
            let Some(state) = states.get_mut(&call.host) else {
                continue;
            };
            let was_open = state.is_open();
            state.ended(&call.id, call.failed, call.slowed, breaker.as_ref(), now);
            if state.is_open() != was_open {
                tracing::warn!(host = %call.host, open = state.is_open(), failures = state.failures, "a host's circuit changed");
                self.metrics.host_circuit(&call.host, state.is_open());
            }
        }
        let states: Vec<HostState> = states.into_values().collect();
        write::save_hosts(txn, &states, now).await
    }

    /// Calls in flight counted again by host from the running jobs of every
    /// process, and a probe whose job is no longer running let go.
    pub(super) async fn recount_hosts(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
    ) -> Result<(), StoreError> {
        if !self.hosts_tracked() {
            return Ok(());
        }
        write::prune_hosts(txn, now, now - HOST_KEPT_MS).await?;
        let known = write::all_hosts(txn).await?;
        if known.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = known.iter().map(|s| s.host.as_str()).collect();
        let mut states = write::lock_hosts(txn, &names, now, true).await?;
        let mut running: HashMap<String, i64> = HashMap::new();
        let mut probes = HashSet::new();
        for (id, url) in write::running_calls(txn).await? {
            if let Some(host) = host_of(&url) {
                *running.entry(host).or_default() += 1;
            }
            probes.insert(id);
        }
        for state in &mut states {
            state.running = running.get(&state.host).copied().unwrap_or(0);
            if state.probe.as_ref().is_some_and(|id| !probes.contains(id)) {
                state.probe = None;
            }
        }
        write::save_hosts(txn, &states, now).await
    }
}

/// Until when a call's target asked for no more calls: a 429 or 503 with
/// `Retry-After`.
fn slowed_until(c: &Completion) -> Option<i64> {
    matches!(c.record.status_code, Some(429 | 503))
        .then_some(c.retry_after)
        .flatten()
        .map(|wait| c.record.finished_at + wait.as_millis() as i64)
}
