//! Chains: a new chain with its steps, where steps stand as they move, and the
//! chain's own status. Every chain a turn moves is read locked (on PostgreSQL), so
//! two replicas ending two steps of one chain at once take turns and the second
//! sees the first's outcome.

use std::collections::{HashMap, HashSet};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Value,
};

use super::{SMALL_ROWS_PER_STATEMENT, backend, value_rows};
use crate::chain::progress::StepJob;
use crate::store::job_tables::{definitions, states};
use crate::store::{StoreError, attempts, chain_steps, chains};
use crate::store::{placeholders, sql};

pub async fn chain_by_idempotency_key(
    txn: &DatabaseTransaction,
    namespace: &str,
    key: &str,
) -> Result<Option<chains::Model>, StoreError> {
    Ok(chains::Entity::find()
        .filter(chains::Column::Namespace.eq(namespace))
        .filter(chains::Column::IdempotencyKey.eq(key))
        .one(txn)
        .await?)
}

/// Which of these keys (each of a namespace) some chain already holds.
pub async fn chain_keys_taken(
    txn: &DatabaseTransaction,
    keys: &[(&str, &str)],
) -> Result<HashSet<(String, String)>, StoreError> {
    let mut taken = HashSet::new();
    for chunk in keys.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT namespace, idempotency_key FROM chains \
             WHERE (namespace, idempotency_key) IN ({})",
            super::value_rows(2, chunk.len())
        );
        let values = chunk
            .iter()
            .flat_map(|(namespace, key)| [Value::from(*namespace), Value::from(*key)])
            .collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            taken.insert((
                row.try_get::<String>("", "namespace")?,
                row.try_get::<String>("", "idempotency_key")?,
            ));
        }
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

/// What says where these chains' steps stand, read in one statement: their
/// steps' jobs as `(chain id, step job)` (a chain run again has detached the
/// jobs of the steps it runs again), and their notes (see
/// [`crate::chain::progress`]).
pub async fn step_records<C: ConnectionTrait>(
    db: &C,
    chain_ids: &[&str],
) -> Result<(Vec<(String, StepJob)>, Vec<chain_steps::Model>), StoreError> {
    let backend = db.get_database_backend();
    let mut jobs = Vec::new();
    let mut notes = Vec::new();
    for chunk in chain_ids.chunks(SMALL_ROWS_PER_STATEMENT / 2) {
        let list = placeholders(chunk.len());
        let text = format!(
            "SELECT 0 AS note, chain_id, step_id, id, status, created_at AS started_at, \
             finished_at, last_status_code, last_error_class AS error_class, NULL AS reason, \
             0 AS position FROM jobs WHERE chain_id IN ({list}) AND step_id IS NOT NULL \
             UNION ALL \
             SELECT 1, chain_id, step_id, job_id, status, started_at, finished_at, NULL, \
             error_class, reason, position FROM chain_steps WHERE chain_id IN ({list})"
        );
        let values = chunk
            .iter()
            .chain(chunk.iter())
            .map(|id| Value::from(*id))
            .collect();
        for row in db.query_all_raw(sql(backend, &text, values)).await? {
            let chain_id: String = row.try_get("", "chain_id")?;
            let step_id: String = row.try_get("", "step_id")?;
            let status: String = row.try_get("", "status")?;
            let finished_at: Option<i64> = row.try_get("", "finished_at")?;
            let error_class: Option<String> = row.try_get("", "error_class")?;
            if row.try_get::<i32>("", "note")? == 0 {
                jobs.push((
                    chain_id,
                    StepJob {
                        step_id,
                        job_id: row.try_get("", "id")?,
                        status,
                        created_at: row.try_get("", "started_at")?,
                        finished_at,
                        last_status_code: row.try_get("", "last_status_code")?,
                        last_error_class: error_class,
                    },
                ));
            } else {
                notes.push(chain_steps::Model {
                    chain_id,
                    step_id,
                    position: row.try_get("", "position")?,
                    status,
                    job_id: row.try_get("", "id")?,
                    reason: row.try_get("", "reason")?,
                    error_class,
                    started_at: row.try_get("", "started_at")?,
                    finished_at,
                });
            }
        }
    }
    Ok((jobs, notes))
}

/// The chains these jobs belong to.
pub async fn chains_of_jobs(
    txn: &DatabaseTransaction,
    job_ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for chunk in job_ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT DISTINCT chain_id FROM jobs WHERE id IN ({}) AND chain_id IS NOT NULL",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push(row.try_get("", "chain_id")?);
        }
    }
    Ok(found)
}

/// The last attempt of each of these jobs.
pub async fn last_attempts(
    txn: &DatabaseTransaction,
    job_ids: &[&str],
) -> Result<Vec<attempts::Model>, StoreError> {
    let mut last: HashMap<String, attempts::Model> = HashMap::new();
    for chunk in job_ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        for attempt in attempts::Entity::find()
            .filter(attempts::Column::JobId.is_in(chunk.iter().copied()))
            .all(txn)
            .await?
        {
            match last.get(&attempt.job_id) {
                Some(known) if known.number > attempt.number => {}
                _ => {
                    last.insert(attempt.job_id.clone(), attempt);
                }
            }
        }
    }
    Ok(last.into_values().collect())
}

/// Writes step notes: new ones inserted, known ones replaced.
pub async fn write_notes(
    txn: &DatabaseTransaction,
    notes: Vec<chain_steps::Model>,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 9;
    for chunk in notes.chunks(SMALL_ROWS_PER_STATEMENT / COLUMNS) {
        let text = format!(
            "INSERT INTO chain_steps (chain_id, step_id, position, status, job_id, reason, \
             error_class, started_at, finished_at) VALUES {} \
             ON CONFLICT (chain_id, step_id) DO UPDATE SET status = excluded.status, \
             job_id = excluded.job_id, reason = excluded.reason, \
             error_class = excluded.error_class, started_at = excluded.started_at, \
             finished_at = excluded.finished_at",
            value_rows(COLUMNS, chunk.len())
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
            "INSERT INTO chains (id, namespace, status, input, definition, tags, \
             idempotency_key, ttl_ms, created_at, updated_at, finished_at, expires_at, \
             schedule_id, trace_context, fire_at) VALUES {}",
            value_rows(COLUMNS, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for c in chunk {
            // Every field named, so a new column breaks the build here until it
            // is written.
            let chains::Model {
                id,
                namespace,
                status,
                input,
                definition,
                tags,
                idempotency_key,
                ttl_ms,
                created_at,
                updated_at,
                finished_at,
                expires_at,
                schedule_id,
                trace_context,
                fire_at,
            } = c;
            values.extend([
                Value::from(id.as_str()),
                Value::from(namespace.as_str()),
                Value::from(status.as_str()),
                Value::from(input.as_str()),
                Value::from(definition.as_str()),
                Value::from(tags.as_str()),
                Value::from(idempotency_key.clone()),
                Value::from(*ttl_ms),
                Value::from(*created_at),
                Value::from(*updated_at),
                Value::from(*finished_at),
                Value::from(*expires_at),
                Value::from(schedule_id.clone()),
                Value::from(trace_context.clone()),
                Value::from(*fire_at),
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
    const COLUMNS: usize = 4;
    for chunk in ends.chunks(SMALL_ROWS_PER_STATEMENT / COLUMNS) {
        let text = format!(
            "WITH v(vid, vstatus, vat, vexpires_at) AS (VALUES {}) \
             UPDATE chains SET status = v.vstatus, updated_at = v.vat, finished_at = v.vat, \
             expires_at = v.vexpires_at FROM v WHERE chains.id = v.vid",
            value_rows(COLUMNS, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for end in chunk {
            values.extend([
                Value::from(end.id.as_str()),
                Value::from(end.status.as_str()),
                Value::from(end.at),
                Value::from(end.expires_at),
            ]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// Runs an ended chain again: its failed and canceled steps' jobs detached from
/// their steps (they stay the chain's), its notes dropped, the chain running.
pub async fn rerun_chain(txn: &DatabaseTransaction, id: &str, now: i64) -> Result<(), StoreError> {
    let b = backend(txn);
    let detach = format!(
        "UPDATE {} SET step_id = NULL WHERE chain_id = ? AND step_id IS NOT NULL \
         AND id IN (SELECT id FROM {} WHERE status IN ('failed', 'canceled'))",
        definitions(b),
        states(b)
    );
    txn.execute_raw(sql(b, &detach, vec![id.into()])).await?;
    txn.execute_raw(sql(
        b,
        "DELETE FROM chain_steps WHERE chain_id = ?",
        vec![id.into()],
    ))
    .await?;
    txn.execute_raw(sql(
        b,
        "UPDATE chains SET status = 'running', updated_at = ?, finished_at = NULL, \
         expires_at = NULL WHERE id = ?",
        vec![now.into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// Removes up to `limit` chains that ended and whose ttl ran out, with their
/// notes and their jobs (a step's job is kept as long as its chain); how many
/// went.
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
    let chain_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    super::remove_jobs_of_chains(txn, &chain_ids).await?;
    let removed = chains::Entity::delete_many()
        .filter(chains::Column::Id.is_in(ids.iter().map(String::as_str)))
        .exec(txn)
        .await?;
    Ok(removed.rows_affected)
}
