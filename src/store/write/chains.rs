//! Chains: a new chain with its steps, where steps stand as they move, and the
//! chain's own status. Every chain a turn moves is read locked (on PostgreSQL), so
//! two replicas ending two steps of one chain at once take turns and the second
//! sees the first's outcome.

use std::collections::HashSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::{SMALL_ROWS_PER_STATEMENT, backend};
use crate::store::{StoreError, chain_steps, chains};

pub async fn chain_by_idempotency_key(
    txn: &DatabaseTransaction,
    key: &str,
) -> Result<Option<chains::Model>, StoreError> {
    Ok(chains::Entity::find()
        .filter(chains::Column::IdempotencyKey.eq(key))
        .one(txn)
        .await?)
}

/// Which of these keys some chain already holds.
pub async fn chain_keys_taken(
    txn: &DatabaseTransaction,
    keys: &[String],
) -> Result<HashSet<String>, StoreError> {
    let mut taken = HashSet::new();
    for chunk in keys.chunks(SMALL_ROWS_PER_STATEMENT) {
        let rows = chains::Entity::find()
            .select_only()
            .column(chains::Column::IdempotencyKey)
            .filter(chains::Column::IdempotencyKey.is_in(chunk.iter().map(String::as_str)))
            .into_tuple::<Option<String>>()
            .all(txn)
            .await?;
        taken.extend(rows.into_iter().flatten());
    }
    Ok(taken)
}

/// The chains with these ids, locked until the commit on PostgreSQL, in id order
/// (so two replicas locking overlapping sets cannot deadlock).
pub async fn chains_for_update(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<chains::Model>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let mut query =
            chains::Entity::find().filter(chains::Column::Id.is_in(chunk.iter().copied()));
        if backend(txn) == DbBackend::Postgres {
            query = query.lock_exclusive();
        }
        found.extend(query.all(txn).await?);
    }
    Ok(found)
}

/// The steps of these chains.
pub async fn steps_of_chains(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<chain_steps::Model>, StoreError> {
    steps_where(txn, chain_steps::Column::ChainId, ids).await
}

/// The steps whose call these jobs make.
pub async fn steps_of_jobs(
    txn: &DatabaseTransaction,
    job_ids: &[&str],
) -> Result<Vec<chain_steps::Model>, StoreError> {
    steps_where(txn, chain_steps::Column::JobId, job_ids).await
}

async fn steps_where(
    txn: &DatabaseTransaction,
    column: chain_steps::Column,
    values: &[&str],
) -> Result<Vec<chain_steps::Model>, StoreError> {
    let mut found = Vec::new();
    for chunk in values.chunks(SMALL_ROWS_PER_STATEMENT) {
        found.extend(
            chain_steps::Entity::find()
                .filter(column.is_in(chunk.iter().copied()))
                .all(txn)
                .await?,
        );
    }
    Ok(found)
}

/// Writes chains whole: new ones inserted, known ones replaced.
pub async fn save_chains(
    txn: &DatabaseTransaction,
    rows: Vec<chains::Model>,
) -> Result<(), StoreError> {
    use chains::Column as C;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk = rows
            .by_ref()
            .take(SMALL_ROWS_PER_STATEMENT / 16)
            .map(chains::ActiveModel::from);
        chains::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(C::Id)
                    .update_columns([C::Status, C::UpdatedAt, C::FinishedAt, C::ExpiresAt])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Writes steps whole: new ones inserted, known ones replaced.
pub async fn save_steps(
    txn: &DatabaseTransaction,
    rows: Vec<chain_steps::Model>,
) -> Result<(), StoreError> {
    use chain_steps::Column as C;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk = rows
            .by_ref()
            .take(SMALL_ROWS_PER_STATEMENT / 16)
            .map(chain_steps::ActiveModel::from);
        chain_steps::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([C::ChainId, C::StepId])
                    .update_columns([
                        C::Status,
                        C::JobId,
                        C::Reason,
                        C::ErrorClass,
                        C::Output,
                        C::StartedAt,
                        C::FinishedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Removes up to `limit` chains that ended and whose ttl ran out, with their
/// steps (their jobs expire on their own); how many went.
pub async fn remove_expired_chains(
    txn: &DatabaseTransaction,
    now: i64,
    limit: u64,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = chains::Entity::find()
        .select_only()
        .column(chains::Column::Id)
        .filter(chains::Column::ExpiresAt.lt(now))
        .limit(limit)
        .into_tuple()
        .all(txn)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    chain_steps::Entity::delete_many()
        .filter(chain_steps::Column::ChainId.is_in(ids.iter().map(String::as_str)))
        .exec(txn)
        .await?;
    let removed = chains::Entity::delete_many()
        .filter(chains::Column::Id.is_in(ids.iter().map(String::as_str)))
        .exec(txn)
        .await?;
    Ok(removed.rows_affected)
}
