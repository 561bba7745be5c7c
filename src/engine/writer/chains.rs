//! Chains changed in the writer's transaction: new ones stored with their steps
//! waiting (submitted, or started by a schedule's run), and running ones canceled
//! or ended ones run again. How they move on as their steps end is
//! `chain_moves.rs`.

use super::*;
use crate::store::{chain_steps, chains as chain_rows};

impl Writer {
    /// Stores new chains, every step waiting; the steps that depend on nothing
    /// start as jobs when this turn moves its chains.
    pub(super) async fn start_chains(
        &mut self,
        txn: &DatabaseTransaction,
        new: Vec<NewChain>,
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(new.len());
        let mut steps = Vec::new();
        for NewChain { chain, definition } in new {
            steps.extend(
                definition
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| chain_steps::Model {
                        chain_id: chain.id.clone(),
                        step_id: s.id.clone(),
                        position: i as i32,
                        status: "waiting".into(),
                        job_id: None,
                        reason: None,
                        error_class: None,
                        output: None,
                        started_at: None,
                        finished_at: None,
                    }),
            );
            self.chain_moves.add(&chain.id);
            self.chains_kept.keep_new(&chain, definition);
            rows.push(chain);
        }
        write::insert_chains(txn, rows).await?;
        write::write_steps(txn, steps).await
    }

    /// Applies a change to a chain; the refusal when it does not apply.
    pub(super) async fn change_chain(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        change: &ChainChange,
        after: &mut AfterCommit,
    ) -> Result<Result<ChainChanged, EngineError>, StoreError> {
        match change {
            ChainChange::Submit(new) => {
                if let Some(key) = &new.chain.idempotency_key
                    && let Some(existing) = write::chain_by_idempotency_key(txn, key).await?
                {
                    return Ok(Ok(ChainChanged {
                        chain: existing,
                        existing: true,
                    }));
                }
                let mut chain = new.chain.clone();
                chain.created_at = now;
                chain.updated_at = now;
                chain.status = "running".into();
                let start = NewChain {
                    chain: chain.clone(),
                    definition: new.definition.clone(),
                };
                self.start_chains(txn, vec![start]).await?;
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
            ChainChange::Cancel(id) => {
                let Some(mut chain) = self.locked_chain(txn, id).await? else {
                    return Ok(Err(EngineError::ChainNotFound(id.clone())));
                };
                if chain.status != "running" {
                    return Ok(Err(EngineError::ChainState {
                        id: id.clone(),
                        status: chain.status,
                        action: "cancel",
                        expected: "running",
                    }));
                }
                let mut steps = write::steps_of_chains(txn, &[id]).await?;
                for step in &mut steps {
                    match step.status.as_str() {
                        "waiting" => {}
                        "started" => {
                            if let Some(job) = match &step.job_id {
                                Some(job_id) => write::cancel(txn, job_id, now).await?,
                                None => None,
                            } {
                                self.definitions.forget(&job.id);
                                let (code, class) =
                                    (job.last_status_code, job.last_error_class.clone());
                                self.change(
                                    &job,
                                    Status::Canceled,
                                    job.attempt,
                                    now,
                                    code,
                                    class,
                                    None,
                                );
                                after.cancels.push(job.id.clone());
                            }
                        }
                        _ => continue,
                    }
                    step.status = "canceled".into();
                    step.reason = Some("the chain was canceled".into());
                    step.finished_at = Some(now);
                }
                write::save_steps(txn, steps).await?;
                chain.status = "canceled".into();
                chain.finished_at = Some(now);
                chain.expires_at = Some(now + chain.ttl_ms);
                chain.updated_at = now;
                write::save_chains(txn, vec![chain.clone()]).await?;
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
            ChainChange::Retry(id) => {
                let Some(mut chain) = self.locked_chain(txn, id).await? else {
                    return Ok(Err(EngineError::ChainNotFound(id.clone())));
                };
                if !matches!(chain.status.as_str(), "failed" | "canceled") {
                    return Ok(Err(EngineError::ChainState {
                        id: id.clone(),
                        status: chain.status,
                        action: "retry",
                        expected: "failed or canceled",
                    }));
                }
                let mut steps = write::steps_of_chains(txn, &[id]).await?;
                for step in &mut steps {
                    if matches!(step.status.as_str(), "failed" | "canceled" | "skipped") {
                        step.status = "waiting".into();
                        step.job_id = None;
                        step.reason = None;
                        step.error_class = None;
                        step.output = None;
                        step.started_at = None;
                        step.finished_at = None;
                    }
                }
                write::save_steps(txn, steps).await?;
                chain.status = "running".into();
                chain.finished_at = None;
                chain.expires_at = None;
                chain.updated_at = now;
                write::save_chains(txn, vec![chain.clone()]).await?;
                self.chain_moves.add(&chain.id);
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
        }
    }

    async fn locked_chain(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
    ) -> Result<Option<chain_rows::Model>, StoreError> {
        Ok(write::chains_for_update(txn, &[id]).await?.pop())
    }
}
