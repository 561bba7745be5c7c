//! A job's life in the writer's hands: claims that move due jobs to running (within
//! their queues' limits), and running jobs given back after a shutdown or rescued
//! after their process died. Their outcomes are written by [`super::outcomes`].

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, FromQueryResult, Value};

use super::outcomes::insert_attempts;
use super::{SMALL_ROWS_PER_STATEMENT, backend, queues_named, tags_of, value_rows};
use crate::job::Status;
use crate::store::job_tables::{states, update_returning};
use crate::store::log::Event;
use crate::store::{StoreError, attempts, placeholders, queues, sql};

/// A job the claim moved to running: what the claim changed, plus the budget it
/// counts against (a RetryJob elsewhere may have moved it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub attempt: i32,
    pub retry_base: i32,
    pub started_at: i64,
}

/// Claims due jobs, queue by queue: up to `limit` of each `(queue, limit)` asked,
/// highest priority first, then in due order. Each comes back with its queue.
pub async fn claim(
    txn: &DatabaseTransaction,
    now: i64,
    lease_grace_ms: i64,
    asks: &[(&str, usize)],
) -> Result<Vec<(String, String, Claim)>, StoreError> {
    // Another replica's claim holds its rows until it commits; skip them, not wait.
    // PostgreSQL finds the rows it picked again by their address (a TID scan), not
    // through the primary key; SQLite by id.
    let (lock, key) = match backend(txn) {
        DbBackend::Postgres => (" FOR UPDATE SKIP LOCKED", "ctid"),
        _ => ("", "id"),
    };
    let jobs = states(backend(txn));
    let mut claimed = Vec::new();
    for chunk in asks.chunks(CLAIM_QUEUES_PER_STATEMENT) {
        let mut values: Vec<Value> = vec![now.into(), (now + lease_grace_ms).into()];
        // Padded to a power of two with asks that match nothing (no queue is named
        // ''), so a handful of statement texts serve every number of queues and
        // each is prepared once, not once per turn.
        let padded = chunk.len().next_power_of_two();
        let padding = std::iter::repeat_n(&("", 0), padded - chunk.len());
        let mut picks = Vec::with_capacity(padded);
        let mut union = Vec::with_capacity(padded);
        for (n, (queue, limit)) in chunk.iter().chain(padding).enumerate() {
            // The pause switch is checked here, not only by the caller: another
            // process may have paused the queue a moment ago.
            picks.push(format!(
                "c{n} AS (SELECT {key} FROM {jobs} WHERE status = 'queued' AND queue = ? AND run_at <= ? \
                 AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ? AND paused) \
                 ORDER BY priority DESC, run_at, id LIMIT ?{lock})"
            ));
            union.push(format!("SELECT {key} FROM c{n}"));
            values.extend([
                Value::from(*queue),
                now.into(),
                Value::from(*queue),
                (*limit as i64).into(),
            ]);
        }
        // The CTEs come first in the text, their values after the SET's.
        let mut ordered: Vec<Value> = values.split_off(2);
        ordered.append(&mut values);
        let union = union.join(" UNION ALL ");
        let picked = match backend(txn) {
            DbBackend::Postgres => format!("ctid = ANY(ARRAY({union}))"),
            _ => format!("id IN ({union})"),
        };
        let text = format!(
            "WITH {} UPDATE {jobs} SET status = 'running', attempt = attempt + 1, started_at = ?, \
             lease_expires_at = ? + timeout_ms WHERE {picked} \
             RETURNING id, queue, attempt, retry_base",
            picks.join(", "),
        );
        let rows = txn.query_all_raw(sql(backend(txn), &text, ordered)).await?;
        for row in rows {
            let claim = Claim {
                attempt: row.try_get("", "attempt")?,
                retry_base: row.try_get("", "retry_base")?,
                started_at: now,
            };
            claimed.push((
                row.try_get::<String>("", "id")?,
                row.try_get::<String>("", "queue")?,
                claim,
            ));
        }
    }
    Ok(claimed)
}

/// Queues claimed from in one statement, one CTE each.
const CLAIM_QUEUES_PER_STATEMENT: usize = 128;

/// Puts running jobs interrupted by a shutdown back in the queue, as if the attempt
/// had not been made.
pub async fn requeue(
    txn: &DatabaseTransaction,
    jobs: &[(String, i32)],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let text = format!(
        "UPDATE {} SET status = 'queued', attempt = attempt - 1, run_at = ?, \
         lease_expires_at = NULL WHERE id = ? AND status = 'running' AND attempt = ?",
        states(backend(txn))
    );
    let mut requeued = HashSet::new();
    for (id, attempt) in jobs {
        let changed = txn
            .execute_raw(sql(
                backend(txn),
                &text,
                vec![now.into(), id.as_str().into(), (*attempt).into()],
            ))
            .await?;
        if changed.rows_affected() > 0 {
            requeued.insert(id.clone());
        }
    }
    Ok(requeued)
}

/// Running jobs whose lease ran out (their process died) go back to the queue, or
/// fail when that was their last attempt. The lost attempt is recorded. Returns the
/// changes, as events to log.
pub async fn rescue(txn: &DatabaseTransaction, now: i64) -> Result<Vec<Event>, StoreError> {
    let spent = "attempt - retry_base >= max_attempts";
    let update = format!(
        "UPDATE {} SET status = CASE WHEN {spent} THEN 'failed' ELSE 'queued' END, run_at = ?, \
         finished_at = CASE WHEN {spent} THEN ? ELSE NULL END, \
         expires_at = CASE WHEN {spent} THEN ? + ttl_ms ELSE NULL END, \
         lease_expires_at = NULL, last_status_code = NULL, last_error_class = 'interrupted' \
         WHERE status = 'running' AND lease_expires_at < ?",
        states(backend(txn))
    );
    let text = update_returning(
        backend(txn),
        &update,
        &[
            "id",
            "attempt",
            "started_at",
            "status",
            "queue",
            "tags",
            "schedule_id",
        ],
    );
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            &text,
            vec![now.into(), now.into(), now.into(), now.into()],
        ))
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut lost = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("", "id")?;
        let attempt: i32 = row.try_get("", "attempt")?;
        let status: String = row.try_get("", "status")?;
        let started_at: Option<i64> = row.try_get("", "started_at")?;
        let started_at = started_at.unwrap_or(now);
        let queued = status == Status::Queued.as_str();
        changes.push(Event {
            seq: 0,
            job_id: id.clone(),
            next_attempt_at: queued.then_some(now),
            status: if queued {
                Status::Queued
            } else {
                Status::Failed
            },
            attempt,
            at: now,
            queue: row.try_get("", "queue")?,
            tags: tags_of(&row.try_get::<String>("", "tags")?),
            status_code: None,
            error_class: Some("interrupted".into()),
            schedule_id: row.try_get("", "schedule_id")?,
        });
        lost.push(attempts::Model {
            job_id: id,
            number: attempt,
            started_at,
            finished_at: now,
            duration_ms: now - started_at,
            status_code: None,
            headers: None,
            body: None,
            body_size: 0,
            truncated: false,
            error_class: Some("interrupted".into()),
            error_message: Some(
                "the process running this attempt stopped; its lease ran out".into(),
            ),
        });
    }
    insert_attempts(txn, lost).await?;
    Ok(changes)
}

/// Counts calls started, per queue, in the second of `now`.
pub async fn record_dispatches(
    txn: &DatabaseTransaction,
    now: i64,
    started: &[(&str, i64)],
) -> Result<(), StoreError> {
    for chunk in started.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "INSERT INTO queue_dispatches (queue, second, count) VALUES {} \
             ON CONFLICT (queue, second) DO UPDATE SET count = queue_dispatches.count + excluded.count",
            value_rows(3, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for (queue, count) in chunk {
            values.extend([Value::from(*queue), (now / 1000).into(), (*count).into()]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// Forgets dispatch counts older than a queue's stats look back.
pub async fn prune_dispatches(txn: &DatabaseTransaction, now: i64) -> Result<(), StoreError> {
    txn.execute_raw(sql(
        backend(txn),
        "DELETE FROM queue_dispatches WHERE second < ?",
        vec![((now - 120_000) / 1000).into()],
    ))
    .await?;
    Ok(())
}

/// Re-reads limited queues for a claim, holding their rows to the commit, so
/// replicas claiming from one limited queue take turns and its running count and
/// bucket stay exact. A row another replica holds is skipped (it is claiming from
/// that queue now), so it is missing from the answer.
pub async fn lock_queues(
    txn: &DatabaseTransaction,
    names: &[&str],
) -> Result<Vec<queues::Model>, StoreError> {
    if names.is_empty() || backend(txn) != DbBackend::Postgres {
        return queues_named(txn, names).await;
    }
    let text = format!(
        "SELECT * FROM queues WHERE name IN ({}) ORDER BY name FOR UPDATE SKIP LOCKED",
        placeholders(names.len())
    );
    let values = names.iter().map(|n| Value::from(*n)).collect();
    let mut locked = Vec::with_capacity(names.len());
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        locked.push(queues::Model::from_query_result(&row, "")?);
    }
    Ok(locked)
}

/// Calls in flight per queue, across every process, for these queues.
pub async fn running_by_queue(
    txn: &DatabaseTransaction,
    names: &[&str],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut running = HashMap::new();
    if names.is_empty() {
        return Ok(running);
    }
    // Read through the small partial index of running jobs, not the index of every
    // job by queue (which also holds all the queue's finished jobs): on SQLite, a
    // unary `+` keeps the planner from using an index on `queue`.
    let queue = match backend(txn) {
        DbBackend::Sqlite => "+queue",
        _ => "queue",
    };
    let text = format!(
        "SELECT queue, COUNT(*) AS running FROM {} WHERE status = 'running' \
         AND {queue} IN ({}) GROUP BY {queue}",
        states(backend(txn)),
        placeholders(names.len())
    );
    let values = names.iter().map(|n| Value::from(*n)).collect();
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        running.insert(
            row.try_get::<String>("", "queue")?,
            row.try_get::<i64>("", "running")?,
        );
    }
    Ok(running)
}

/// Stores queues' rate limiter buckets after a claim: `(queue, tokens, at)`.
pub async fn save_buckets(
    txn: &DatabaseTransaction,
    buckets: &[(String, f64, i64)],
) -> Result<(), StoreError> {
    save_token_buckets(
        txn,
        "UPDATE queues SET tokens = ?, tokens_at = ? WHERE name = ?",
        buckets,
    )
    .await
}

/// Runs `update` (which sets tokens and their time of the row it names) for
/// each bucket.
pub(super) async fn save_token_buckets(
    txn: &DatabaseTransaction,
    update: &str,
    buckets: &[(String, f64, i64)],
) -> Result<(), StoreError> {
    for (name, tokens, at) in buckets {
        txn.execute_raw(sql(
            backend(txn),
            update,
            vec![(*tokens).into(), (*at).into(), name.as_str().into()],
        ))
        .await?;
    }
    Ok(())
}
