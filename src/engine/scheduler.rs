//! Schedules in the writer's terms: a stored schedule's timetable, its next due
//! time, and the job one run submits. The writer fires due schedules in its own
//! transaction, so a run's job and the schedule's move to its next due time commit
//! together (see `store::write::lock_due_schedules` for why each fires once).

use super::{NewChain, Unset};
use crate::chain::definition::Scheduled;
use crate::job::Status;
use crate::job::schedule::{self, Timetable, Timing};
use crate::namespace::local;
use crate::store::{chains, jobs, schedules};

/// Schedules read per writer turn, runs made per turn and runs per schedule: what
/// is owed beyond them (many schedules due at once, or one catching up) goes on in
/// the next turn, so firing never stalls submits. A turn's runs are one insert.
pub const SCHEDULES_PER_TURN: usize = 250;
pub const RUNS_PER_TURN: usize = 250;
pub const RUNS_PER_SCHEDULE: usize = 100;
/// How soon to look again at a due schedule another replica holds.
pub const HELD_RETRY_MS: i64 = 100;

/// A schedule's overlap policy, as stored: runs may overlap, or a due time is
/// skipped while an earlier run is unfinished.
pub const ALLOW: &str = "allow";
pub const SKIP: &str = "skip";

/// How a stored schedule's timing is spelled in its `kind` column.
pub const CRON: &str = "cron";
pub const INTERVAL: &str = "interval";
pub const ONCE: &str = "once";

const INHERIT_TIMEOUT: i32 = 1;
const INHERIT_MAX_ATTEMPTS: i32 = 2;
const INHERIT_BACKOFF: i32 = 4;
const INHERIT_TTL: i32 = 8;

impl Unset {
    /// As stored in a schedule's `inherit` column.
    pub fn bits(self) -> i32 {
        let Unset {
            timeout,
            max_attempts,
            backoff,
            ttl,
        } = self;
        [
            (timeout, INHERIT_TIMEOUT),
            (max_attempts, INHERIT_MAX_ATTEMPTS),
            (backoff, INHERIT_BACKOFF),
            (ttl, INHERIT_TTL),
        ]
        .into_iter()
        .filter(|(unset, _)| *unset)
        .map(|(_, bit)| bit)
        .sum()
    }

    pub fn from_bits(bits: i32) -> Unset {
        Unset {
            timeout: bits & INHERIT_TIMEOUT != 0,
            max_attempts: bits & INHERIT_MAX_ATTEMPTS != 0,
            backoff: bits & INHERIT_BACKOFF != 0,
            ttl: bits & INHERIT_TTL != 0,
        }
    }
}

/// Where a schedule is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Paused,
    /// No due time is left.
    Completed,
}

impl State {
    pub fn of(s: &schedules::Model) -> State {
        if s.paused {
            State::Paused
        } else if s.next_fire_at.is_none() {
            State::Completed
        } else {
            State::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Paused => "paused",
            State::Completed => "completed",
        }
    }
}

/// The stored schedule's timetable; an error names what no longer reads (the API
/// checks all of it before storing, so this means a damaged row).
pub fn timetable(s: &schedules::Model) -> Result<Timetable, String> {
    let timing = match (s.kind.as_str(), &s.cron, s.interval_ms, s.once_at) {
        (CRON, Some(expression), _, _) => Timing::Cron {
            cron: Box::new(schedule::parse_cron(expression)?),
            zone: schedule::parse_zone(&s.time_zone)?,
        },
        (INTERVAL, _, Some(every_ms), _) if every_ms > 0 => Timing::Interval {
            every_ms,
            anchor: s.start_at.unwrap_or(s.created_at),
        },
        (ONCE, _, _, Some(at)) => Timing::Once { at },
        (kind, ..) => return Err(format!("schedule {} has no valid {kind} timing", s.id)),
    };
    Ok(Timetable {
        timing,
        start: s.start_at,
        end: s.end_at,
    })
}

/// The next due time after its timetable was set or changed at `now`. A one-shot
/// is due at its date even when that has passed, unless it fired for that date
/// (the catch-up rules decide how a late one runs); others continue from now,
/// never repeating the due time that fired last.
pub fn first_due(s: &schedules::Model, timetable: &Timetable, now: i64) -> Option<i64> {
    match timetable.timing {
        Timing::Once { at } if s.last_fire_at == Some(at) => None,
        Timing::Once { at } => timetable.at_or_before(at).filter(|due| *due == at),
        _ => resumed_due(s, timetable, now),
    }
}

/// The next due time when a paused schedule resumes at `now`: due times passed
/// while it was paused are not made up.
pub fn resumed_due(s: &schedules::Model, timetable: &Timetable, now: i64) -> Option<i64> {
    let from = s.last_fire_at.map_or(now, |last| now.max(last + 1));
    timetable.at_or_after(from)
}

/// The job one run submits: the schedule's template, due at `due` (when the
/// timetable made it due) or now (when triggered by hand).
pub fn run(s: &schedules::Model, id: String, due: Option<i64>, now: i64) -> (jobs::Model, Unset) {
    let run_at = due.unwrap_or(now);
    let job = jobs::Model {
        id: id.clone(),
        namespace: s.namespace.clone(),
        queue: s.queue.clone(),
        status: Status::Queued.as_str().into(),
        priority: s.priority,
        attempt: 0,
        max_attempts: s.max_attempts,
        retry_base: 0,
        method: s.method.clone(),
        url: s.url.clone(),
        headers: s.headers.clone(),
        params: s.params.clone(),
        body_kind: s.body_kind.clone(),
        body: s.body.clone(),
        timeout_ms: s.timeout_ms,
        backoff_strategy: s.backoff_strategy.clone(),
        backoff_base_ms: s.backoff_base_ms,
        backoff_max_ms: s.backoff_max_ms,
        ttl_ms: s.ttl_ms,
        tags: s.tags.clone(),
        idempotency_key: Some(match due {
            // Keys are per namespace: a run's names its schedule as its
            // namespace knows it.
            Some(due) => schedule::run_key(local(&s.id), due),
            None => schedule::manual_run_key(local(&s.id), &id),
        }),
        created_at: now,
        scheduled_at: run_at,
        run_at,
        started_at: None,
        finished_at: None,
        lease_expires_at: None,
        expires_at: None,
        last_status_code: None,
        last_error_class: None,
        schedule_id: Some(s.id.clone()),
        fire_at: due,
        // A run's trace is its own, linked to the schedule's creation.
        trace_context: s.trace_context.clone(),
        chain_id: None,
        step_id: None,
        contract: s.contract.clone(),
        // A run is signed by its queue, and follows its redirects.
        signing: None,
        follow_redirects: None,
    };
    (job, Unset::from_bits(s.inherit))
}

/// The job a run submits, its secret headers sealed again for it (they are kept
/// sealed for the schedule); [`run`] copies them as the schedule keeps them.
pub fn sealed_run(
    s: &schedules::Model,
    id: String,
    due: Option<i64>,
    now: i64,
    keyring: Option<&crate::secret::Keyring>,
) -> (jobs::Model, Unset) {
    let (mut job, unset) = run(s, id, due, now);
    use crate::secret::{Row, headers};
    match headers::resealed(&s.headers, keyring, Row::schedule(&s.id), Row::job(&job.id)) {
        Ok(sealed) => job.headers = sealed,
        // Kept as the schedule holds them: the run's attempt fails naming the
        // header, where its owner sees it.
        Err(error) => {
            tracing::error!(schedule = %s.id, %error, "a run's secret headers cannot be sealed for it")
        }
    }
    (job, unset)
}

/// The chain one run of a schedule that fires chains starts, with the id `id`;
/// `due` as in [`run`]. `Err` says why a damaged row cannot start one.
pub fn chain_run(
    s: &schedules::Model,
    id: String,
    due: Option<i64>,
    now: i64,
) -> Result<NewChain, String> {
    let stored = s.chain.as_deref().ok_or("the schedule fires no chain")?;
    let Scheduled { input, definition } =
        serde_json::from_str(stored).map_err(|e| format!("its chain does not read back: {e}"))?;
    let chain = chains::Model {
        idempotency_key: Some(match due {
            Some(due) => schedule::run_key(local(&s.id), due),
            None => schedule::manual_run_key(local(&s.id), &id),
        }),
        id,
        namespace: s.namespace.clone(),
        status: "running".into(),
        input: input.to_string(),
        definition: serde_json::to_string(&definition).map_err(|e| e.to_string())?,
        tags: s.tags.clone(),
        ttl_ms: s.ttl_ms,
        created_at: now,
        updated_at: now,
        finished_at: None,
        expires_at: None,
        schedule_id: Some(s.id.clone()),
        // A run's trace is its own, linked to the schedule's creation.
        trace_context: s.trace_context.clone(),
        fire_at: due,
    };
    Ok(NewChain { chain, definition })
}

/// A new job id, as clients' jobs get.
pub fn job_id() -> String {
    format!("j_{}", ulid::Ulid::new())
}

/// A new chain id, as submitted chains get.
pub fn chain_id() -> String {
    format!("c_{}", ulid::Ulid::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_settings_survive_the_round_trip_through_their_column() {
        for bits in 0..16 {
            assert_eq!(Unset::from_bits(bits).bits(), bits);
        }
        let some = Unset {
            timeout: true,
            ttl: true,
            ..Unset::default()
        };
        assert_eq!(Unset::from_bits(some.bits()), some);
    }
}
