//! Chains: a new chain with its steps, where steps stand as they move, and the
//! chain's own status. Every chain a turn moves is read locked (on PostgreSQL), so
//! two replicas ending two steps of one chain at once take turns and the second
//! sees the first's outcome.

use std::collections::HashSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Value,
};

use super::{SMALL_ROWS_PER_STATEMENT, backend, value_rows};
use crate::store::{StoreError, chain_steps, chains};
use crate::store::{placeholders, sql};

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

/// A chain as a move reads it: where it stands, the rest being fixed at submit.
#[derive(Debug, Clone)]
pub struct ChainHead {
    pub id: String,
    pub status: String,
}

/// The heads of these chains, locked until the commit on PostgreSQL in id order
/// (so two replicas locking overlapping sets cannot deadlock).
pub async fn lock_chain_heads(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<ChainHead>, StoreError> {
    let lock = match backend(txn) {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    let mut heads = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT id, status FROM chains WHERE id IN ({}) ORDER BY id{lock}",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            heads.push(ChainHead {
                id: row.try_get("", "id")?,
                status: row.try_get("", "status")?,
            });
        }
    }
    Ok(heads)
}

/// These chains whole, unlocked.
pub async fn chains_by_id(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<chains::Model>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        found.extend(
            chains::Entity::find()
                .filter(chains::Column::Id.is_in(chunk.iter().copied()))
                .all(txn)
                .await?,
        );
    }
    Ok(found)
}

/// Where the steps of these chains stand, without their outputs (`output` is
/// `None`): see [`step_outputs`].
pub async fn step_states(
    txn: &DatabaseTransaction,
    chain_ids: &[&str],
) -> Result<Vec<chain_steps::Model>, StoreError> {
    let mut found = Vec::new();
    for chunk in chain_ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT chain_id, step_id, position, status, job_id, reason, error_class, \
             started_at, finished_at FROM chain_steps WHERE chain_id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push(chain_steps::Model {
                chain_id: row.try_get("", "chain_id")?,
                step_id: row.try_get("", "step_id")?,
                position: row.try_get("", "position")?,
                status: row.try_get("", "status")?,
                job_id: row.try_get("", "job_id")?,
                reason: row.try_get("", "reason")?,
                error_class: row.try_get("", "error_class")?,
                output: None,
                started_at: row.try_get("", "started_at")?,
                finished_at: row.try_get("", "finished_at")?,
            });
        }
    }
    Ok(found)
}

/// The stored outputs of steps whose calls these jobs made: `(job id, output)`.
pub async fn step_outputs(
    txn: &DatabaseTransaction,
    job_ids: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut found = Vec::new();
    for chunk in job_ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT job_id, output FROM chain_steps WHERE job_id IN ({}) AND output IS NOT NULL",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push((row.try_get("", "job_id")?, row.try_get("", "output")?));
        }
    }
    Ok(found)
}

/// Writes steps: new ones inserted, known ones changed. A step read by
/// [`step_states`] carries no output: `None` keeps the one stored.
pub async fn write_steps(
    txn: &DatabaseTransaction,
    steps: Vec<chain_steps::Model>,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 10;
    for chunk in steps.chunks(SMALL_ROWS_PER_STATEMENT / COLUMNS) {
        let row = format!("({})", placeholders(COLUMNS));
        let text = format!(
            "INSERT INTO chain_steps (chain_id, step_id, position, status, job_id, reason, \
             error_class, output, started_at, finished_at) VALUES {} \
             ON CONFLICT (chain_id, step_id) DO UPDATE SET status = excluded.status, \
             job_id = excluded.job_id, reason = excluded.reason, \
             error_class = excluded.error_class, \
             output = COALESCE(excluded.output, chain_steps.output), \
             started_at = excluded.started_at, finished_at = excluded.finished_at",
            vec![row; chunk.len()].join(", ")
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for s in chunk {
            values.extend([
                Value::from(s.chain_id.as_str()),
                Value::from(s.step_id.as_str()),
                Value::from(s.position),
                Value::from(s.status.as_str()),
                Value::from(s.job_id.clone()),
                Value::from(s.reason.clone()),
                Value::from(s.error_class.clone()),
                Value::from(s.output.clone()),
                Value::from(s.started_at),
                Value::from(s.finished_at),
            ]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// Inserts new chains.
pub async fn insert_chains(
    txn: &DatabaseTransaction,
    rows: Vec<chains::Model>,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 15;
    for chunk in rows.chunks(SMALL_ROWS_PER_STATEMENT / COLUMNS) {
        let text = format!(
            "INSERT INTO chains (id, status, input, definition, tags, idempotency_key, ttl_ms, \
             created_at, updated_at, finished_at, expires_at, schedule_id, trace_context, \
             fire_at) VALUES {}",
            value_rows(COLUMNS - 1, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for c in chunk {
            values.extend([
                Value::from(c.id.as_str()),
                Value::from(c.status.as_str()),
                Value::from(c.input.as_str()),
                Value::from(c.definition.as_str()),
                Value::from(c.tags.as_str()),
                Value::from(c.idempotency_key.clone()),
                Value::from(c.ttl_ms),
                Value::from(c.created_at),
                Value::from(c.updated_at),
                Value::from(c.finished_at),
                Value::from(c.expires_at),
                Value::from(c.schedule_id.clone()),
                Value::from(c.trace_context.clone()),
                Value::from(c.fire_at),
            ]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// A chain a move ended.
#[derive(Debug, Clone)]
pub struct ChainEnd {
    pub id: String,
    pub status: String,
    pub at: i64,
    pub expires_at: i64,
}

/// Records chains' ends.
pub async fn end_chains(txn: &DatabaseTransaction, ends: &[ChainEnd]) -> Result<(), StoreError> {
    for end in ends {
        txn.execute_raw(sql(
            backend(txn),
            "UPDATE chains SET status = ?, updated_at = ?, finished_at = ?, expires_at = ? \
             WHERE id = ?",
            vec![
                end.status.as_str().into(),
                end.at.into(),
                end.at.into(),
                end.expires_at.into(),
                end.id.as_str().into(),
            ],
        ))
        .await?;
    }
    Ok(())
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
