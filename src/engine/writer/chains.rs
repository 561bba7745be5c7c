//! Chains changed in the writer's transaction: new ones stored (submitted, or
//! started by a schedule's run), and running ones canceled or ended ones run
//! again. How they move on as their steps end is `chain_moves.rs`.

use super::chain_moves::steps_of;
use super::*;
use crate::chain::progress::{self, StepStatus};
use crate::store::chains as chain_rows;

impl Writer {
    /// Stores new chains when this turn moves its chains (one statement for all
    /// the turn's submits), which starts the steps that depend on nothing.
    pub(super) fn start_chains(&mut self, new: Vec<NewChain>) {
        for NewChain { chain, definition } in new {
            self.chains_kept.keep_new(&chain, definition);
            self.chain_moves.start(chain);
        }
    }

    /// Stores new chains at once (a schedule's runs, which the turn's next
    /// overlap check must see); this turn moves them as it moves the others.
    pub(super) async fn start_chains_now(
        &mut self,
        txn: &DatabaseTransaction,
        new: Vec<NewChain>,
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(new.len());
        for NewChain { chain, definition } in new {
            self.chains_kept.keep_new(&chain, definition);
            self.chain_moves.add(&chain.id);
            rows.push(chain);
        }
        write::insert_chains(txn, rows).await
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
                if let Some(key) = &new.chain.idempotency_key {
                    let namespace = &new.chain.namespace;
                    let existing = match self.chain_moves.started_with_key(namespace, key) {
                        Some(chain) => Some(chain.clone()),
                        None => write::chain_by_idempotency_key(txn, namespace, key).await?,
                    };
                    if let Some(existing) = existing {
                        return Ok(Ok(ChainChanged {
                            chain: existing,
                            existing: true,
                        }));
                    }
                }
                let mut chain = new.chain.clone();
                chain.created_at = now;
                chain.updated_at = now;
                chain.status = "running".into();
                let start = NewChain {
                    chain: chain.clone(),
                    definition: new.definition.clone(),
                };
                self.start_chains(vec![start]);
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
            ChainChange::Cancel { namespace, id } => {
                let Some(mut chain) = self.locked_chain(txn, namespace, id).await? else {
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
                let order: Arc<[String]> = match serde_json::from_str::<
                    crate::chain::definition::Definition,
                >(&chain.definition)
                {
                    Ok(definition) => definition.order().into(),
                    Err(_) => Arc::from(Vec::new()),
                };
                let steps = steps_of(txn, &[id], |_| Some(order.clone()))
                    .await?
                    .remove(id.as_str())
                    .unwrap_or_default();
                let mut notes = Vec::new();
                for (position, mut step) in steps.into_iter().enumerate() {
                    match step.status {
                        StepStatus::Waiting => {}
                        StepStatus::Queued | StepStatus::Running => {
                            if let Some(job) = match &step.job_id {
                                Some(job_id) => {
                                    write::cancel(txn, &chain.namespace, job_id, now).await?
                                }
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
                    step.status = StepStatus::Canceled;
                    step.reason = Some("the chain was canceled".into());
                    step.finished_at = Some(now);
                    notes.push(progress::note(id, position, &step));
                }
                write::write_notes(txn, notes).await?;
                chain.status = "canceled".into();
                chain.finished_at = Some(now);
                chain.expires_at = Some(now + chain.ttl_ms);
                chain.updated_at = now;
                write::end_chains(
                    txn,
                    &[write::ChainEnd {
                        id: chain.id.clone(),
                        status: chain.status.clone(),
                        at: now,
                        expires_at: now + chain.ttl_ms,
                    }],
                )
                .await?;
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
            ChainChange::Retry { namespace, id } => {
                let Some(mut chain) = self.locked_chain(txn, namespace, id).await? else {
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
                write::rerun_chain(txn, id, now).await?;
                chain.status = "running".into();
                chain.finished_at = None;
                chain.expires_at = None;
                chain.updated_at = now;
                self.chain_moves.add(&chain.id);
                Ok(Ok(ChainChanged {
                    chain,
                    existing: false,
                }))
            }
        }
    }

    /// The chain `id` of `namespace`, locked; a chain of another is not found.
    async fn locked_chain(
        &self,
        txn: &DatabaseTransaction,
        namespace: &str,
        id: &str,
    ) -> Result<Option<chain_rows::Model>, StoreError> {
        let chain = write::chains_for_update(txn, &[id]).await?.pop();
        Ok(chain.filter(|c| c.namespace == namespace))
    }
}
