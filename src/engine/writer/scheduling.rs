//! Schedules in the writer: due schedules fired (a run's job commits with its
//! schedule's move to the next due time), and changes to schedules.

use super::*;

impl Writer {
    /// Fires the schedules due at `now`: one job per due time (see
    /// [`schedule::plan`] for late ones), committed with the schedule's move to
    /// its next due time.
    pub(super) async fn fire_due(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
    ) -> Result<(), StoreError> {
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
        let mut chain_runs = Vec::new();
        let mut advances = Vec::with_capacity(due.len());
        for s in &due {
            if runs.len() + chain_runs.len() >= RUNS_PER_TURN {
                owed = true;
                break;
            }
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
                if skipped > 0 {
                    self.skipped_runs.push((s.id.clone(), skipped));
                }
            }
            advances.push(write::Advance {
                id: s.id.clone(),
                next: plan.next,
                runs: fires.len(),
                skipped,
                last_fire: fires.last().copied(),
            });
            for due in fires {
                if s.chain.is_none() {
                    runs.push(scheduler::sealed_run(
                        s,
                        scheduler::job_id(),
                        Some(due),
                        now,
                        self.settings.call_limits.keyring.as_ref(),
                    ));
                    continue;
                }
                match scheduler::chain_run(s, scheduler::chain_id(), Some(due), now) {
                    Ok(run) => chain_runs.push(run),
                    Err(error) => {
                        tracing::error!(schedule = %s.id, %error, "a run's chain cannot start; the run is dropped");
                    }
                }
            }
        }
        write::advance_schedules(txn, &advances).await?;
        self.insert_runs(txn, now, runs).await?;
        self.start_chain_runs(txn, chain_runs).await?;
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
    pub(super) async fn insert_runs(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        runs: Vec<(jobs::Model, Unset)>,
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let keys: Vec<(&str, &str)> = runs
            .iter()
            .filter_map(|(job, _)| Some((job.namespace.as_str(), job.idempotency_key.as_deref()?)))
            .collect();
        let taken: HashSet<(String, String)> = if keys.is_empty() {
            HashSet::new()
        } else {
            write::jobs_by_idempotency_key(txn, &keys)
                .await?
                .into_iter()
                .map(|(namespace, key, _, _)| (namespace, key))
                .collect()
        };
        let names = runs.iter().map(|(job, _)| job.queue.as_str()).collect();
        let queues = self.queues_for(txn, now, names).await?;
        let mut inserts = Vec::with_capacity(runs.len());
        for (job, unset) in runs {
            if let Some(key) = job
                .idempotency_key
                .as_ref()
                .filter(|k| taken.contains(&(job.namespace.clone(), k.to_string())))
            {
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

    /// Starts the chains of schedule runs, as submitted chains start. A run whose
    /// key is already taken fired before: it is not made twice.
    async fn start_chain_runs(
        &mut self,
        txn: &DatabaseTransaction,
        runs: Vec<NewChain>,
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let keys: Vec<(&str, &str)> = runs
            .iter()
            .filter_map(|run| {
                Some((
                    run.chain.namespace.as_str(),
                    run.chain.idempotency_key.as_deref()?,
                ))
            })
            .collect();
        let taken = write::chain_keys_taken(txn, &keys).await?;
        let runs = runs
            .into_iter()
            .filter(|run| match &run.chain.idempotency_key {
                Some(key) if taken.contains(&(run.chain.namespace.clone(), key.clone())) => {
                    tracing::warn!(%key, "a chain with this run's key exists; the run is not made again");
                    false
                }
                _ => true,
            })
            .collect();
        self.start_chains_now(txn, runs).await
    }

    /// Applies a change to a schedule (a triggered run's job goes into `inserts`);
    /// the refusal when it does not apply.
    pub(super) async fn change_schedule(
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
            (ScheduleChange::Trigger(_), Some(s)) if s.chain.is_some() => {
                let run = match scheduler::chain_run(&s, scheduler::chain_id(), None, now) {
                    Ok(run) => run,
                    Err(error) => return Ok(Err(invalid_timing(error))),
                };
                let chain = run.chain.clone();
                self.start_chains_now(txn, vec![run]).await?;
                write::advance_schedules(txn, &[triggered(&s)]).await?;
                return Ok(Ok(ScheduleChanged::Run(Box::new(ScheduleRun::Chain(
                    Box::new(chain),
                )))));
            }
            (ScheduleChange::Trigger(_), Some(s)) => {
                let (job, unset) = scheduler::sealed_run(
                    &s,
                    scheduler::job_id(),
                    None,
                    now,
                    self.settings.call_limits.keyring.as_ref(),
                );
                let queues = self.queues_for(txn, now, vec![job.queue.as_str()]).await?;
                let Some(queue) = queues.get(&job.queue) else {
                    return Ok(Err(EngineError::QueueNotFound(job.queue.clone())));
                };
                self.tally.queue(&job.queue).submitted += 1;
                let job = self.stage(&Arc::new(job), unset, Some(queue), now, inserts);
                write::advance_schedules(txn, &[triggered(&s)]).await?;
                let job = jobs::Model::clone(&job);
                return Ok(Ok(ScheduleChanged::Run(Box::new(ScheduleRun::Job(
                    Box::new(job),
                )))));
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
}

/// A triggered run counted, the timetable left as it is.
fn triggered(s: &schedules::Model) -> write::Advance {
    write::Advance {
        id: s.id.clone(),
        next: s.next_fire_at,
        runs: 1,
        skipped: 0,
        last_fire: None,
    }
}

/// A stored timing that does not read back; the API checks timings before they are
/// stored, so this is a damaged row or a combination it could not see.
pub(super) fn invalid_timing(error: String) -> EngineError {
    EngineError::Invalid {
        field: "schedule".into(),
        expected: error,
    }
}

/// `stored` with what `fields` names taken from `new`; its counters and state stay.
pub(super) fn merged(
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
        s.chain_spec = n.chain_spec;
        s.chain = n.chain;
        s.contract = n.contract;
    }
    s
}
