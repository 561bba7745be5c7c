//! Reading chains: one whole (its steps, their jobs and attempts, read in one
//! transaction so they agree), or a page of them. Steps stand where their jobs
//! and notes say (see [`crate::chain::progress`]).

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::{Store, StoreError, attempts, chain_steps, chains, jobs, write};
use crate::chain::progress::StepJob;

/// A chain with everything a read shows of it.
pub struct ChainRead {
    pub chain: chains::Model,
    /// Its steps' jobs (the newest of a step counts) and notes.
    pub step_jobs: Vec<StepJob>,
    pub notes: Vec<chain_steps::Model>,
    /// The jobs of the steps that started, by id (a whole read only).
    pub jobs: HashMap<String, jobs::Model>,
    /// Their attempts, oldest first, by job id (a whole read only).
    pub attempts: HashMap<String, Vec<attempts::Model>>,
}

fn step_job(job: &jobs::Model) -> Option<StepJob> {
    Some(StepJob {
        step_id: job.step_id.clone()?,
        job_id: job.id.clone(),
        status: job.status.clone(),
        created_at: job.created_at,
        finished_at: job.finished_at,
        last_status_code: job.last_status_code,
        last_error_class: job.last_error_class.clone(),
    })
}

impl Store {
    /// A chain of `namespace`, its steps, their jobs and attempts; None when
    /// there is no such chain there.
    pub async fn chain(&self, namespace: &str, id: &str) -> Result<Option<ChainRead>, StoreError> {
        let txn = self.reader.begin().await?;
        let Some(chain) = chains::Entity::find_by_id(id.to_string())
            .filter(chains::Column::Namespace.eq(namespace))
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        let notes = chain_steps::Entity::find()
            .filter(chain_steps::Column::ChainId.eq(id))
            .all(&txn)
            .await?;
        let mut jobs = HashMap::new();
        let mut step_jobs = Vec::new();
        for job in jobs::Entity::find()
            .filter(jobs::Column::ChainId.eq(id))
            .filter(jobs::Column::StepId.is_not_null())
            .all(&txn)
            .await?
        {
            step_jobs.extend(step_job(&job));
            jobs.insert(job.id.clone(), job);
        }
        let mut attempts: HashMap<String, Vec<attempts::Model>> = HashMap::new();
        if !jobs.is_empty() {
            for attempt in attempts::Entity::find()
                .filter(attempts::Column::JobId.is_in(jobs.keys().map(String::as_str)))
                .order_by_asc(attempts::Column::Number)
                .all(&txn)
                .await?
            {
                attempts
                    .entry(attempt.job_id.clone())
                    .or_default()
                    .push(attempt);
            }
        }
        txn.commit().await?;
        Ok(Some(ChainRead {
            chain,
            step_jobs,
            notes,
            jobs,
            attempts,
        }))
    }

    /// Up to `limit` chains of `namespace` before `before` (ids sort by
    /// creation), newest first, in `statuses` when given, with their steps' jobs
    /// and notes (not the jobs whole).
    pub async fn list_chains(
        &self,
        namespace: &str,
        statuses: &[&str],
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ChainRead>, StoreError> {
        let txn = self.reader.begin().await?;
        let mut query = chains::Entity::find().filter(chains::Column::Namespace.eq(namespace));
        if !statuses.is_empty() {
            query = query.filter(chains::Column::Status.is_in(statuses.iter().copied()));
        }
        if let Some(before) = before {
            query = query.filter(chains::Column::Id.lt(before));
        }
        let page = query
            .order_by_desc(chains::Column::Id)
            .limit(limit)
            .all(&txn)
            .await?;
        let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
        let mut step_jobs: HashMap<String, Vec<StepJob>> = HashMap::new();
        let mut notes: HashMap<String, Vec<chain_steps::Model>> = HashMap::new();
        if !ids.is_empty() {
            let (jobs, page_notes) = write::step_records(&txn, &ids).await?;
            for (chain_id, job) in jobs {
                step_jobs.entry(chain_id).or_default().push(job);
            }
            for note in page_notes {
                notes.entry(note.chain_id.clone()).or_default().push(note);
            }
        }
        txn.commit().await?;
        Ok(page
            .into_iter()
            .map(|chain| ChainRead {
                step_jobs: step_jobs.remove(&chain.id).unwrap_or_default(),
                notes: notes.remove(&chain.id).unwrap_or_default(),
                chain,
                jobs: HashMap::new(),
                attempts: HashMap::new(),
            })
            .collect())
    }
}
