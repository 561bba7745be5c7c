//! Outcomes: attempts' results written (in the turn, or on their own after a group
//! commit the requests were at fault for), and requests applied one by one.

use super::*;

impl Writer {
    /// A call ended: its slot is free whatever happens to the write of its outcome,
    /// and it counts in this process's metrics.
    pub(super) fn call_ended(&mut self, c: &Completion) {
        if self.running.remove(&c.record.job_id).is_some() {
            self.slot_freed(&c.job.queue);
        }
        let counts = self.tally.queue(&c.job.queue);
        counts.running -= 1;
        counts.attempt_seconds.push(seconds(c.record.duration_ms));
        let outcome = match c.next {
            Next::Succeeded => Outcome::Succeeded,
            Next::Failed => Outcome::Failed,
            Next::Retry(_) => Outcome::Retried,
            Next::Canceled => Outcome::Canceled,
            Next::Requeue => Outcome::Interrupted,
        };
        *counts.finished.entry(outcome).or_default() += 1;
        if let (Outcome::Failed, Some(trace)) = (outcome, &c.job.trace_context) {
            if self.failed_traces.len() >= FAILED_TRACES_KEPT {
                self.failed_traces.clear();
            }
            self.failed_traces.insert(c.job.id.clone(), trace.clone());
        }
        match outcome {
            Outcome::Retried => {
                let reason = retry_reason(c.record.error_class.as_deref(), c.record.status_code);
                *counts.retries.entry(reason).or_default() += 1;
            }
            Outcome::Succeeded | Outcome::Failed | Outcome::Canceled => counts
                .latency_seconds
                .push(seconds(c.record.finished_at - c.job.created_at)),
            Outcome::Interrupted => {}
        }
    }

    /// Calls that ended while this turn ran, read just before it claims, so that
    /// their slots go to this turn's claim rather than the next one's: without this
    /// a slot served one call every two turns. Requests read with them wait for the
    /// next turn, as if they had come after this one.
    pub(super) fn late_completions(&mut self) -> Vec<Completion> {
        let mut late = Vec::new();
        while self.carried.len() < MAX_OPS_PER_TURN {
            match self.ops.try_recv() {
                Ok(Op::Complete(c)) => {
                    self.call_ended(&c);
                    late.push(c);
                }
                Ok(other) => self.carried.push(other),
                Err(_) => break,
            }
        }
        late
    }

    /// Writes attempts' outcomes. They are borrowed: when the transaction fails they
    /// are held and written again, and writing one twice changes nothing (each write
    /// is guarded by the attempt it ends, and an attempt is recorded once).
    pub(super) async fn apply_completions(
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
                self.note_step_left(&c.job, r);
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
        let finished = write::write_outcomes(txn, &finishes, records).await?;
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
        self.note_ended_calls(completions);
        Ok(())
    }

    /// Writes outcomes in a transaction of their own, after a group commit the
    /// requests were at fault for. When the database fails they are held; one that
    /// fails alone for a reason of its own is a bug, logged and dropped, so it cannot
    /// hold up the others forever.
    pub(super) async fn write_outcomes(&mut self, completions: Vec<Completion>) {
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
                self.ended_calls.clear();
                self.apply_completions(&txn, &group).await?;
                self.account_ended_calls(&txn).await?;
                self.move_chains(&txn, now_ms()).await?;
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

    /// After a group commit the request or a row was at fault for: each request in a
    /// transaction of its own, so one bad op fails alone and the rest still land.
    pub(super) async fn apply_one_by_one(&mut self, now: i64, requests: Vec<Op>) {
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
                self.move_chains(&txn, now).await?;
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
}
