//! Requests: submits, cancels, retries, deletes and queue changes, applied in the
//! writer's transaction; each answered only once it commits.

use super::*;

impl Writer {
    pub(super) async fn apply_requests(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        requests: &[Op],
        after: &mut AfterCommit,
    ) -> Result<Vec<Answer>, StoreError> {
        // Submits first, all in one insert. Idempotency keys resolve against the
        // database and against earlier jobs in this same turn.
        let keys: Vec<(&str, &str)> = requests
            .iter()
            .filter_map(|op| match op {
                Op::Submit { jobs, .. } => Some(jobs.iter().filter_map(|(j, _)| {
                    Some((j.namespace.as_str(), j.idempotency_key.as_deref()?))
                })),
                _ => None,
            })
            .flatten()
            .collect();
        // By namespace and key: keys are unique per namespace.
        let mut by_key: HashMap<(String, String), (String, Status)> = HashMap::new();
        if !keys.is_empty() {
            for (namespace, key, id, status) in write::jobs_by_idempotency_key(txn, &keys).await? {
                let status = Status::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
                by_key.insert((namespace, key), (id, status));
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
                    // Jobs of one caller: one namespace. Those its idempotency keys
                    // name already take no room.
                    // Counted only for a namespace with a limit on its jobs.
                    if let Some((first, _)) = jobs.first() {
                        let new = || {
                            jobs.iter()
                                .filter(|(j, _)| {
                                    j.idempotency_key.as_ref().is_none_or(|k| {
                                        !by_key.contains_key(&(j.namespace.clone(), k.clone()))
                                    })
                                })
                                .count()
                        };
                        if let Err(full) = self.admit_jobs(txn, &first.namespace, new).await? {
                            answers.push(Answer::Refused(full));
                            continue;
                        }
                    }
                    let mut submitted = Vec::with_capacity(jobs.len());
                    for (job, unset) in jobs {
                        if let Some(key) = &job.idempotency_key {
                            let key = (job.namespace.clone(), key.clone());
                            if let Some((id, status)) = by_key.get(&key) {
                                submitted.push(Submitted {
                                    id: id.clone(),
                                    status: *status,
                                    existing: true,
                                });
                                continue;
                            }
                            by_key.insert(key, (job.id.clone(), Status::Queued));
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
                Op::Chain { change, .. } => {
                    match self.change_chain(txn, now, change, after).await? {
                        Ok(changed) => Answer::Chain(Box::new(changed)),
                        Err(refusal) => Answer::Refused(refusal),
                    }
                }
                Op::Key { change, .. } => match change {
                    KeyChange::Save(rows) => {
                        write::save_keys(txn, rows.clone()).await?;
                        Answer::Keys(rows.clone())
                    }
                    KeyChange::Revoke { namespace, id } => {
                        match write::revoke_key(txn, namespace, id, now).await? {
                            Some(key) => Answer::Keys(vec![key]),
                            None => Answer::Refused(EngineError::KeyNotFound(id.clone())),
                        }
                    }
                },
                Op::Template { change, .. } => {
                    match self.change_template(txn, now, change).await? {
                        Ok(template) => Answer::Template(Box::new(template)),
                        Err(refusal) => Answer::Refused(refusal),
                    }
                }
                Op::Contract { change, .. } => {
                    match self.change_contract(txn, now, change).await? {
                        Ok(contract) => Answer::Contract(Box::new(contract)),
                        Err(refusal) => Answer::Refused(refusal),
                    }
                }
                Op::Cancel { namespace, id, .. } => match write::cancel(txn, namespace, id, now)
                    .await?
                {
                    Some(job) => {
                        self.definitions.forget(&job.id);
                        let (code, class) = (job.last_status_code, job.last_error_class.clone());
                        self.change(&job, Status::Canceled, job.attempt, now, code, class, None);
                        after.cancels.push(job.id.clone());
                        Answer::Job(Box::new(job))
                    }
                    None => {
                        let expected = "queued or running";
                        Answer::Refused(self.refusal(txn, namespace, id, "cancel", expected).await?)
                    }
                },
                Op::Retry { namespace, id, .. } => match write::retry(txn, namespace, id, now)
                    .await?
                {
                    Some(job) => {
                        self.due_queues.mark(&job.queue);
                        let (code, class) = (job.last_status_code, job.last_error_class.clone());
                        let next = Some(job.run_at);
                        self.change(&job, Status::Queued, job.attempt, now, code, class, next);
                        Answer::Job(Box::new(job))
                    }
                    None => {
                        let expected = "failed or canceled";
                        Answer::Refused(self.refusal(txn, namespace, id, "retry", expected).await?)
                    }
                },
                Op::Delete { namespace, id, .. } => {
                    if write::delete(txn, namespace, id).await? {
                        self.definitions.forget(id);
                        Answer::Done
                    } else {
                        Answer::Refused(
                            self.refusal(
                                txn,
                                namespace,
                                id,
                                "delete",
                                "succeeded, failed or canceled",
                            )
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
        write::insert_audit_entries(txn, audit::entries(requests, &answers, now)).await?;
        Ok(answers)
    }

    /// The queues the submits among `requests` name, by name. Missing ones are
    /// created (with no limits) when the service creates queues on use; otherwise
    /// they stay missing and their submits are refused.
    pub(super) async fn queues_of_submits(
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
    pub(super) async fn queues_for(
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
    pub(super) fn stage(
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
            // A paused queue's jobs wait for its resume, perhaps long and by the
            // million: their claim reads them back rather than memory holding them.
            if queue.is_none_or(|q| !q.paused) {
                self.definitions.keep(&job);
            }
            self.staged.push(job.id.clone());
        } else {
            self.due.push(Reverse(job.run_at));
        }
        self.change(&job, Status::Queued, 0, now, None, None, Some(job.run_at));
        inserts.push(jobs::Model::clone(&job));
        job
    }

    /// Why an op on job `id` did not apply: it does not exist, or it is in another state.
    pub(super) async fn refusal(
        &self,
        txn: &DatabaseTransaction,
        namespace: &str,
        id: &str,
        action: &'static str,
        expected: &'static str,
    ) -> Result<EngineError, StoreError> {
        Ok(match write::job_in(txn, namespace, id).await? {
            None => EngineError::NotFound(id.to_string()),
            Some(job) => EngineError::WrongState {
                id: id.to_string(),
                status: Status::parse(&job.status)
                    .map(Status::as_str)
                    .unwrap_or("unknown"),
                action,
                expected,
            },
        })
    }

    /// Applies a change to a queue; the refusal when it does not apply.
    pub(super) async fn change_queue(
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
                    Ok(QueueChanged::Queue(Box::new(queue.clone())))
                } else {
                    Err(EngineError::QueueExists(queue.name.clone()))
                }
            }
            QueueChange::Update(queue, fields) => {
                match write::update_queue(txn, queue, *fields).await? {
                    Some(stored) => {
                        // Raised limits may let waiting jobs go.
                        self.due_queues.mark(&stored.name);
                        Ok(QueueChanged::Queue(Box::new(stored)))
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
                        Ok(QueueChanged::Queue(Box::new(stored)))
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
                self.note_ended_in_bulk(&canceled);
                self.changes.extend(canceled);
                Ok(QueueChanged::Purged(count))
            }
        })
    }
}

/// Counts the jobs a committed submit stored (not those its idempotency keys found).
pub(super) fn count_submits(tally: &mut Tally, op: &Op, answer: &Answer) {
    if let (Op::Submit { jobs, .. }, Answer::Submitted(submitted)) = (op, answer) {
        for ((job, _), s) in jobs.iter().zip(submitted) {
            if !s.existing {
                tally.queue(&job.queue).submitted += 1;
            }
        }
    }
}

/// A submitted job with its queue's defaults in the fields the client left unset.
pub(super) fn with_defaults(
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
