//! Reading chains: one whole (its steps, their jobs and attempts, read in one
//! transaction so they agree), or a page of them.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::{Store, StoreError, attempts, chain_steps, chains, jobs};

/// A chain with everything a read shows of it.
pub struct ChainRead {
    pub chain: chains::Model,
    /// In the order submitted.
    pub steps: Vec<chain_steps::Model>,
    /// The jobs of the steps that started, by id.
    pub jobs: HashMap<String, jobs::Model>,
    /// Their attempts, oldest first, by job id.
    pub attempts: HashMap<String, Vec<attempts::Model>>,
}

impl Store {
    /// A chain, its steps, their jobs and attempts; None when there is no such
    /// chain.
    pub async fn chain(&self, id: &str) -> Result<Option<ChainRead>, StoreError> {
        let txn = self.reader.begin().await?;
        let Some(chain) = chains::Entity::find_by_id(id.to_string()).one(&txn).await? else {
            return Ok(None);
        };
        let steps = chain_steps::Entity::find()
            .filter(chain_steps::Column::ChainId.eq(id))
            .order_by_asc(chain_steps::Column::Position)
            .all(&txn)
            .await?;
        let job_ids: Vec<&str> = steps.iter().filter_map(|s| s.job_id.as_deref()).collect();
        let mut jobs = HashMap::new();
        let mut attempts: HashMap<String, Vec<attempts::Model>> = HashMap::new();
        if !job_ids.is_empty() {
            for job in jobs::Entity::find()
                .filter(jobs::Column::Id.is_in(job_ids.iter().copied()))
                .all(&txn)
                .await?
            {
                jobs.insert(job.id.clone(), job);
            }
            for attempt in attempts::Entity::find()
                .filter(attempts::Column::JobId.is_in(job_ids.iter().copied()))
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
            steps,
            jobs,
            attempts,
        }))
    }

    /// Up to `limit` chains before `before` (ids sort by creation), newest
    /// first, in `statuses` when given, with their steps.
    pub async fn list_chains(
        &self,
        statuses: &[&str],
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<(chains::Model, Vec<chain_steps::Model>)>, StoreError> {
        let mut query = chains::Entity::find();
        if !statuses.is_empty() {
            query = query.filter(chains::Column::Status.is_in(statuses.iter().copied()));
        }
        if let Some(before) = before {
            query = query.filter(chains::Column::Id.lt(before));
        }
        let page = query
            .order_by_desc(chains::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
        let mut steps: HashMap<String, Vec<chain_steps::Model>> = HashMap::new();
        if !ids.is_empty() {
            for step in chain_steps::Entity::find()
                .filter(chain_steps::Column::ChainId.is_in(ids.iter().copied()))
                .order_by_asc(chain_steps::Column::Position)
                .all(&self.reader)
                .await?
            {
                steps.entry(step.chain_id.clone()).or_default().push(step);
            }
        }
        Ok(page
            .into_iter()
            .map(|c| {
                let s = steps.remove(&c.id).unwrap_or_default();
                (c, s)
            })
            .collect())
    }
}
