//! Every write, as set-based statements inside the writer's transaction: one
//! statement per kind of change, however many jobs it touches. Each state change is
//! guarded by the state it expects, so a cancel or a rescue that landed first is never
//! overwritten.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, Value,
};

use super::log::Event;
use super::{StoreError, attempts, job_tags, jobs, placeholders, queues, schedules, sql};
use crate::engine::QueueFields;
use crate::job::Status;

/// Rows per multi-row statement: SQLite allows 32,766 bound values, PostgreSQL 65,535.
const JOB_ROWS_PER_STATEMENT: usize = 500;
const SMALL_ROWS_PER_STATEMENT: usize = 2000;

/// `(?, ?), (?, ?)`: `rows` rows of `columns` placeholders, for a multi-row VALUES.
fn value_rows(columns: usize, rows: usize) -> String {
    vec![format!("({})", placeholders(columns)); rows].join(", ")
}

fn backend(txn: &DatabaseTransaction) -> DbBackend {
    txn.get_database_backend()
}

/// Existing jobs holding any of these idempotency keys: key, id, status.
pub async fn jobs_by_idempotency_key(
    txn: &DatabaseTransaction,
    keys: &[String],
) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut found = Vec::new();
    for chunk in keys.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT idempotency_key, id, status FROM jobs WHERE idempotency_key IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|k| Value::from(k.as_str())).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push((
                row.try_get::<String>("", "idempotency_key")?,
                row.try_get::<String>("", "id")?,
                row.try_get::<String>("", "status")?,
            ));
        }
    }
    Ok(found)
}

const JOB_COLUMNS: [&str; 31] = [
    "id",
    "queue",
    "status",
    "priority",
    "attempt",
    "max_attempts",
    "retry_base",
    "method",
    "url",
    "headers",
    "params",
    "body_kind",
    "body",
    "timeout_ms",
    "backoff_strategy",
    "backoff_base_ms",
    "backoff_max_ms",
    "ttl_ms",
    "tags",
    "idempotency_key",
    "created_at",
    "scheduled_at",
    "run_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "expires_at",
    "last_status_code",
    "last_error_class",
    "schedule_id",
    "fire_at",
];

/// A row's values in [`JOB_COLUMNS`] order; every field is named, so a new column
/// breaks the build here until it is written.
fn job_values(job: jobs::Model) -> [Value; 31] {
    let jobs::Model {
        id,
        queue,
        status,
        priority,
        attempt,
        max_attempts,
        retry_base,
        method,
        url,
        headers,
        params,
        body_kind,
        body,
        timeout_ms,
        backoff_strategy,
        backoff_base_ms,
        backoff_max_ms,
        ttl_ms,
        tags,
        idempotency_key,
        created_at,
        scheduled_at,
        run_at,
        started_at,
        finished_at,
        lease_expires_at,
        expires_at,
        last_status_code,
        last_error_class,
        schedule_id,
        fire_at,
    } = job;
    [
        id.into(),
        queue.into(),
        status.into(),
        priority.into(),
        attempt.into(),
        max_attempts.into(),
        retry_base.into(),
        method.into(),
        url.into(),
        headers.into(),
        params.into(),
        body_kind.into(),
        body.into(),
        timeout_ms.into(),
        backoff_strategy.into(),
        backoff_base_ms.into(),
        backoff_max_ms.into(),
        ttl_ms.into(),
        tags.into(),
        idempotency_key.into(),
        created_at.into(),
        scheduled_at.into(),
        run_at.into(),
        started_at.into(),
        finished_at.into(),
        lease_expires_at.into(),
        expires_at.into(),
        last_status_code.into(),
        last_error_class.into(),
        schedule_id.into(),
        fire_at.into(),
    ]
}

pub async fn insert_jobs(
    txn: &DatabaseTransaction,
    rows: Vec<jobs::Model>,
) -> Result<(), StoreError> {
    let mut tags = Vec::new();
    for job in &rows {
        let job_tags: Vec<String> = serde_json::from_str(&job.tags).unwrap_or_default();
        for tag in job_tags {
            tags.push(job_tags::Model {
                tag,
                job_id: job.id.clone(),
            });
        }
    }
    // A plain multi-row INSERT with the values moved out of the rows: the query
    // builder's copies of every value were a measured share of the writer's time.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut values = Vec::with_capacity(JOB_ROWS_PER_STATEMENT * JOB_COLUMNS.len());
        let mut count = 0;
        for job in rows.by_ref().take(JOB_ROWS_PER_STATEMENT) {
            values.extend(job_values(job));
            count += 1;
        }
        let text = format!(
            "INSERT INTO jobs ({}) VALUES {}",
            JOB_COLUMNS.join(", "),
            value_rows(JOB_COLUMNS.len(), count)
        );
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    let mut tags = tags.into_iter().peekable();
    while tags.peek().is_some() {
        let chunk = tags
            .by_ref()
            .take(SMALL_ROWS_PER_STATEMENT)
            .map(|m| job_tags::ActiveModel::from(m).reset_all());
        job_tags::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([job_tags::Column::Tag, job_tags::Column::JobId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

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
    let lock = match backend(txn) {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
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
            // process may have paused the queue a moment ago. `LIMIT ? + 0`, not
            // `LIMIT ?`: SQLite plans a bare parameter limit by its value and prepares
            // the statement again whenever the value changes, which is every turn.
            picks.push(format!(
                "c{n} AS (SELECT id FROM jobs WHERE status = 'queued' AND queue = ? AND run_at <= ? \
                 AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ? AND paused) \
                 ORDER BY priority DESC, run_at, id LIMIT ? + 0{lock})"
            ));
            union.push(format!("SELECT id FROM c{n}"));
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
        let text = format!(
            "WITH {} UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = ?, \
             lease_expires_at = ? + timeout_ms WHERE id IN ({}) \
             RETURNING id, queue, attempt, retry_base",
            picks.join(", "),
            union.join(" UNION ALL ")
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

/// The stored jobs with these ids (those that exist).
pub async fn jobs_by_id(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<jobs::Model>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT * FROM jobs WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push(jobs::Model::from_query_result(&row, "")?);
        }
    }
    Ok(found)
}

/// How an attempt leaves its job.
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: String,
    /// The attempt this outcome belongs to: only that attempt may write it.
    pub attempt: i32,
    /// Queued (a retry), succeeded or failed.
    pub status: Status,
    pub run_at: i64,
    pub finished_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_status_code: Option<i32>,
    pub last_error_class: Option<String>,
}

/// Writes attempts' outcomes to jobs still running that attempt; returns the ids
/// written. A job canceled or rescued meanwhile is left as it is.
pub async fn finish(
    txn: &DatabaseTransaction,
    finishes: &[Finish],
) -> Result<HashSet<String>, StoreError> {
    let mut written = HashSet::with_capacity(finishes.len());
    for chunk in finishes.chunks(SMALL_ROWS_PER_STATEMENT) {
        let rows = value_rows(8, chunk.len());
        let text = format!(
            "WITH v(vid, vattempt, vstatus, vrun_at, vfinished_at, vexpires_at, vcode, verror) AS \
             (VALUES {rows}) \
             UPDATE jobs SET status = v.vstatus, run_at = v.vrun_at, finished_at = v.vfinished_at, \
             expires_at = v.vexpires_at, lease_expires_at = NULL, last_status_code = v.vcode, \
             last_error_class = v.verror \
             FROM v WHERE jobs.id = v.vid AND jobs.status = 'running' AND jobs.attempt = v.vattempt \
             RETURNING id"
        );
        let mut values = Vec::with_capacity(chunk.len() * 8);
        for f in chunk {
            values.extend([
                Value::from(f.id.as_str()),
                f.attempt.into(),
                f.status.as_str().into(),
                f.run_at.into(),
                f.finished_at.into(),
                f.expires_at.into(),
                f.last_status_code.into(),
                f.last_error_class.clone().into(),
            ]);
        }
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            written.insert(row.try_get::<String>("", "id")?);
        }
    }
    Ok(written)
}

/// Records attempts. An attempt already recorded (same job and number) is kept.
pub async fn insert_attempts(
    txn: &DatabaseTransaction,
    rows: Vec<attempts::Model>,
) -> Result<(), StoreError> {
    const COLUMNS: &str = "job_id, number, started_at, finished_at, duration_ms, status_code, \
                           headers, body, body_size, truncated, error_class, error_message";
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut values = Vec::with_capacity(JOB_ROWS_PER_STATEMENT * 12);
        let mut count = 0;
        for row in rows.by_ref().take(JOB_ROWS_PER_STATEMENT) {
            let attempts::Model {
                job_id,
                number,
                started_at,
                finished_at,
                duration_ms,
                status_code,
                headers,
                body,
                body_size,
                truncated,
                error_class,
                error_message,
            } = row;
            values.extend([
                Value::from(job_id),
                number.into(),
                started_at.into(),
                finished_at.into(),
                duration_ms.into(),
                status_code.into(),
                headers.into(),
                body.into(),
                body_size.into(),
                truncated.into(),
                error_class.into(),
                error_message.into(),
            ]);
            count += 1;
        }
        let text = format!(
            "INSERT INTO attempts ({COLUMNS}) VALUES {} ON CONFLICT (job_id, number) DO NOTHING",
            value_rows(12, count)
        );
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

async fn update_returning_job(
    txn: &DatabaseTransaction,
    text: &str,
    values: Vec<Value>,
) -> Result<Option<jobs::Model>, StoreError> {
    let row = txn.query_one_raw(sql(backend(txn), text, values)).await?;
    Ok(match row {
        Some(row) => Some(jobs::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// Cancels a queued or running job; `None` when it is neither (or unknown).
pub async fn cancel(
    txn: &DatabaseTransaction,
    id: &str,
    now: i64,
) -> Result<Option<jobs::Model>, StoreError> {
    update_returning_job(
        txn,
        "UPDATE jobs SET status = 'canceled', finished_at = ?, expires_at = ? + ttl_ms, \
         lease_expires_at = NULL WHERE id = ? AND status IN ('queued', 'running') RETURNING *",
        vec![now.into(), now.into(), id.into()],
    )
    .await
}

/// Queues a failed or canceled job again with a fresh attempt budget; `None` when it
/// is in another state (or unknown).
pub async fn retry(
    txn: &DatabaseTransaction,
    id: &str,
    now: i64,
) -> Result<Option<jobs::Model>, StoreError> {
    update_returning_job(
        txn,
        "UPDATE jobs SET status = 'queued', retry_base = attempt, run_at = ?, finished_at = NULL, \
         expires_at = NULL, lease_expires_at = NULL WHERE id = ? AND status IN ('failed', 'canceled') \
         RETURNING *",
        vec![now.into(), id.into()],
    )
    .await
}

/// Removes a finished job with its attempts and tags; false when it is not finished
/// (or unknown).
pub async fn delete(txn: &DatabaseTransaction, id: &str) -> Result<bool, StoreError> {
    let finished = "jobs.id = ? AND jobs.status IN ('succeeded', 'failed', 'canceled')";
    txn.execute_raw(sql(
        backend(txn),
        &delete_tags(backend(txn), finished),
        vec![id.into()],
    ))
    .await?;
    let deleted = txn
        .execute_raw(sql(
            backend(txn),
            &format!("DELETE FROM jobs WHERE {finished}"),
            vec![id.into()],
        ))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Ok(false);
    }
    txn.execute_raw(sql(
        backend(txn),
        "DELETE FROM attempts WHERE job_id = ?",
        vec![id.into()],
    ))
    .await?;
    Ok(true)
}

/// The statement that removes the tags of the jobs `condition` picks, found from
/// their `tags` column (so `job_tags` needs no index by job). Runs before the jobs
/// themselves go.
fn delete_tags(backend: DbBackend, condition: &str) -> String {
    let each = match backend {
        DbBackend::Postgres => "json_array_elements_text(jobs.tags::json) AS t(value)",
        _ => "json_each(jobs.tags) AS t",
    };
    format!(
        "DELETE FROM job_tags WHERE (tag, job_id) IN \
         (SELECT t.value, jobs.id FROM jobs, {each} WHERE {condition})"
    )
}

/// Puts running jobs interrupted by a shutdown back in the queue, as if the attempt
/// had not been made.
pub async fn requeue(
    txn: &DatabaseTransaction,
    jobs: &[(String, i32)],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut requeued = HashSet::new();
    for (id, attempt) in jobs {
        let changed = txn
            .execute_raw(sql(
                backend(txn),
                "UPDATE jobs SET status = 'queued', attempt = attempt - 1, run_at = ?, \
             lease_expires_at = NULL WHERE id = ? AND status = 'running' AND attempt = ?",
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
    let text = format!(
        "UPDATE jobs SET status = CASE WHEN {spent} THEN 'failed' ELSE 'queued' END, run_at = ?, \
         finished_at = CASE WHEN {spent} THEN ? ELSE NULL END, \
         expires_at = CASE WHEN {spent} THEN ? + ttl_ms ELSE NULL END, \
         lease_expires_at = NULL, last_status_code = NULL, last_error_class = 'interrupted' \
         WHERE status = 'running' AND lease_expires_at < ? \
         RETURNING id, attempt, started_at, status, queue, tags, schedule_id"
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

/// Removes up to `limit` finished jobs whose ttl ran out, with their attempts and
/// tags; returns how many.
pub async fn remove_expired(
    txn: &DatabaseTransaction,
    now: i64,
    limit: usize,
) -> Result<u64, StoreError> {
    let expired = "SELECT id FROM jobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?";
    let values = || vec![Value::from(now), Value::from(limit as i64)];
    for text in [
        delete_tags(backend(txn), &format!("jobs.id IN ({expired})")),
        format!("DELETE FROM attempts WHERE job_id IN ({expired})"),
    ] {
        txn.execute_raw(sql(backend(txn), &text, values())).await?;
    }
    let removed = txn
        .execute_raw(sql(
            backend(txn),
            &format!("DELETE FROM jobs WHERE id IN ({expired})"),
            values(),
        ))
        .await?
        .rows_affected();
    Ok(removed)
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

/// The PostgreSQL channel on which processes announce their commits.
pub const ANNOUNCE_CHANNEL: &str = "jobqueue";

/// Tells the other processes on this PostgreSQL database that this transaction
/// changed jobs (delivered when it commits), so their writers look for due work and
/// their watchers read the log now rather than at the next poll. `me` names this
/// process, so it can ignore its own word. Nothing to do on SQLite.
pub async fn announce(
    txn: &DatabaseTransaction,
    me: &str,
    canceled: &[String],
) -> Result<(), StoreError> {
    if backend(txn) == DbBackend::Postgres {
        txn.execute_raw(sql(
            backend(txn),
            "SELECT pg_notify(?, ?)",
            vec![
                ANNOUNCE_CHANNEL.into(),
                Announcement::write(me, canceled).into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// What a process says when it commits: who it is, and the jobs it canceled, whose
/// calls may be running in another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub from: String,
    pub canceled: Vec<String>,
    /// Too many cancels to list: every process checks its running calls.
    pub check_running: bool,
}

impl Announcement {
    /// Below PostgreSQL's 8,000-byte payload limit.
    const MAX_PAYLOAD: usize = 7_000;

    fn write(me: &str, canceled: &[String]) -> String {
        if canceled.is_empty() {
            return me.to_string();
        }
        let listed = format!("{me} {}", canceled.join(","));
        if listed.len() <= Self::MAX_PAYLOAD {
            listed
        } else {
            format!("{me} *")
        }
    }

    pub fn read(payload: &str) -> Announcement {
        let (from, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        Announcement {
            from: from.to_string(),
            canceled: match rest {
                "" | "*" => Vec::new(),
                ids => ids.split(',').map(str::to_string).collect(),
            },
            check_running: rest == "*",
        }
    }
}

/// Which of these jobs (running here) someone else canceled.
pub async fn canceled_among(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut canceled = Vec::new();
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT id FROM jobs WHERE status = 'canceled' AND id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            canceled.push(row.try_get::<String>("", "id")?);
        }
    }
    Ok(canceled)
}

/// The stored queues among `names`.
pub async fn queues_named(
    txn: &DatabaseTransaction,
    names: &[&str],
) -> Result<Vec<queues::Model>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(queues::Entity::find()
        .filter(queues::Column::Name.is_in(names.iter().copied()))
        .all(txn)
        .await?)
}

/// Every queue, in name order: what a claim plans with.
pub async fn all_queues(txn: &DatabaseTransaction) -> Result<Vec<queues::Model>, StoreError> {
    Ok(queues::Entity::find()
        .order_by_asc(queues::Column::Name)
        .all(txn)
        .await?)
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
        "SELECT queue, COUNT(*) AS running FROM jobs WHERE status = 'running' \
         AND {queue} IN ({}) GROUP BY {queue}",
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

/// Stores rate limiters' buckets after a claim: `(queue, tokens, at)`.
pub async fn save_buckets(
    txn: &DatabaseTransaction,
    buckets: &[(String, f64, i64)],
) -> Result<(), StoreError> {
    for (name, tokens, at) in buckets {
        txn.execute_raw(sql(
            backend(txn),
            "UPDATE queues SET tokens = ?, tokens_at = ? WHERE name = ?",
            vec![(*tokens).into(), (*at).into(), name.as_str().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Adds queues that do not exist yet, with no limits; existing ones stay as they are.
pub async fn create_queues_if_missing(
    txn: &DatabaseTransaction,
    names: &[&str],
    now: i64,
) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let text = format!(
        "INSERT INTO queues (name, paused, tokens, tokens_at, created_at, updated_at) VALUES {} \
         ON CONFLICT (name) DO NOTHING",
        value_rows(6, names.len())
    );
    let mut values = Vec::with_capacity(names.len() * 6);
    for name in names {
        values.extend([
            Value::from(*name),
            false.into(),
            0f64.into(),
            now.into(),
            now.into(),
            now.into(),
        ]);
    }
    txn.execute_raw(sql(backend(txn), &text, values)).await?;
    Ok(())
}

/// Stores a new queue; false when one by that name exists.
pub async fn create_queue(
    txn: &DatabaseTransaction,
    queue: queues::Model,
) -> Result<bool, StoreError> {
    let inserted = queues::Entity::insert(queues::ActiveModel::from(queue))
        .on_conflict(
            OnConflict::column(queues::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}

fn set_if<V: Into<Value>>(yes: bool, value: V) -> sea_orm::ActiveValue<V> {
    if yes {
        sea_orm::ActiveValue::Set(value)
    } else {
        sea_orm::ActiveValue::NotSet
    }
}

/// Replaces the settings of a queue that `fields` names (never its pause switch);
/// the stored queue, or `None` when there is none by that name.
pub async fn update_queue(
    txn: &DatabaseTransaction,
    queue: &queues::Model,
    fields: QueueFields,
) -> Result<Option<queues::Model>, StoreError> {
    use sea_orm::ActiveValue::{NotSet, Set};
    let Some(stored) = queues::Entity::find_by_id(queue.name.clone())
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let rate = fields.rate_limit
        && (stored.rate_burst != queue.rate_burst
            || stored.rate_per_second != queue.rate_per_second);
    let active = queues::ActiveModel {
        name: Set(queue.name.clone()),
        paused: NotSet,
        max_concurrency: set_if(fields.max_concurrency, queue.max_concurrency),
        rate_per_second: set_if(fields.rate_limit, queue.rate_per_second),
        rate_burst: set_if(fields.rate_limit, queue.rate_burst),
        // A new rate limit starts with a full bucket of its own size.
        tokens: set_if(rate, f64::from(queue.rate_burst.unwrap_or(1))),
        tokens_at: set_if(rate, queue.updated_at),
        default_timeout_ms: set_if(fields.timeout, queue.default_timeout_ms),
        default_max_attempts: set_if(fields.max_attempts, queue.default_max_attempts),
        default_backoff_strategy: set_if(fields.backoff, queue.default_backoff_strategy.clone()),
        default_backoff_base_ms: set_if(fields.backoff, queue.default_backoff_base_ms),
        default_backoff_max_ms: set_if(fields.backoff, queue.default_backoff_max_ms),
        default_ttl_ms: set_if(fields.ttl, queue.default_ttl_ms),
        created_at: NotSet,
        updated_at: Set(queue.updated_at),
    };
    Ok(Some(active.update(txn).await?))
}

/// Pauses (or resumes) a queue that is not already so; `None` when it is, or when
/// there is no such queue.
pub async fn set_paused(
    txn: &DatabaseTransaction,
    name: &str,
    paused: bool,
    now: i64,
) -> Result<Option<queues::Model>, StoreError> {
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "UPDATE queues SET paused = ?, updated_at = ? WHERE name = ? AND paused = ? RETURNING *",
            vec![paused.into(), now.into(), name.into(), (!paused).into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(queues::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// A job's tags, from the JSON array its row keeps.
pub fn tags_of(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Cancels every queued job of a queue; returns the changes to log.
pub async fn purge(
    txn: &DatabaseTransaction,
    queue: &str,
    now: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            "UPDATE jobs SET status = 'canceled', finished_at = ?, expires_at = ? + ttl_ms \
             WHERE queue = ? AND status = 'queued' \
             RETURNING id, attempt, tags, last_status_code, last_error_class, schedule_id",
            vec![now.into(), now.into(), queue.into()],
        ))
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        changes.push(Event {
            seq: 0,
            job_id: row.try_get("", "id")?,
            status: Status::Canceled,
            attempt: row.try_get("", "attempt")?,
            at: now,
            queue: queue.to_string(),
            tags: tags_of(&row.try_get::<String>("", "tags")?),
            status_code: row.try_get("", "last_status_code")?,
            error_class: row.try_get("", "last_error_class")?,
            next_attempt_at: None,
            schedule_id: row.try_get("", "schedule_id")?,
        });
    }
    Ok(changes)
}

/// Stores a new schedule; false when one by that id exists.
pub async fn create_schedule(
    txn: &DatabaseTransaction,
    schedule: schedules::Model,
) -> Result<bool, StoreError> {
    let inserted = schedules::Entity::insert(schedules::ActiveModel::from(schedule))
        .on_conflict(
            OnConflict::column(schedules::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}

pub async fn schedule(
    txn: &DatabaseTransaction,
    id: &str,
) -> Result<Option<schedules::Model>, StoreError> {
    Ok(schedules::Entity::find_by_id(id.to_string())
        .one(txn)
        .await?)
}

/// Reads a schedule to change it, holding its row to the commit (on PostgreSQL a
/// replica firing it is waited for, so neither overwrites the other).
pub async fn lock_schedule(
    txn: &DatabaseTransaction,
    id: &str,
) -> Result<Option<schedules::Model>, StoreError> {
    if backend(txn) != DbBackend::Postgres {
        return schedule(txn, id).await;
    }
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "SELECT * FROM schedules WHERE id = ? FOR UPDATE",
            vec![id.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(schedules::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// Writes back every column of a schedule read in this transaction.
pub async fn save_schedule(
    txn: &DatabaseTransaction,
    schedule: schedules::Model,
) -> Result<schedules::Model, StoreError> {
    let mut active = schedules::ActiveModel::from(schedule);
    for column in <schedules::Column as sea_orm::Iterable>::iter() {
        if !matches!(column, schedules::Column::Id) {
            active.reset(column);
        }
    }
    Ok(active.update(txn).await?)
}

/// Removes a schedule; false when there is none by that id. Its jobs stay.
pub async fn delete_schedule(txn: &DatabaseTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(schedules::Entity::delete_by_id(id.to_string())
        .exec(txn)
        .await?
        .rows_affected
        == 1)
}

/// The earliest time a schedule is due, to know when to look again.
pub async fn earliest_fire(txn: &DatabaseTransaction) -> Result<Option<i64>, StoreError> {
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "SELECT MIN(next_fire_at) AS due FROM schedules WHERE next_fire_at IS NOT NULL",
            vec![],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "due"))
        .transpose()?
        .flatten())
}

/// Up to `limit` schedules due at `now`, earliest first, held to the commit. On
/// PostgreSQL a schedule another replica holds is skipped: that replica is firing
/// it, and the row's next due time moves on when it commits, so each due time
/// fires once. (On SQLite the write transaction holds the whole file.)
pub async fn lock_due_schedules(
    txn: &DatabaseTransaction,
    now: i64,
    limit: usize,
) -> Result<Vec<schedules::Model>, StoreError> {
    let lock = match backend(txn) {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let text = format!(
        "SELECT * FROM schedules WHERE next_fire_at <= ? ORDER BY next_fire_at LIMIT ?{lock}"
    );
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            &text,
            vec![now.into(), (limit as i64).into()],
        ))
        .await?;
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        due.push(schedules::Model::from_query_result(&row, "")?);
    }
    Ok(due)
}

/// Records runs of a schedule: `runs` more of them (and `skipped` due times
/// without one), the latest for `last_fire`, and where its timetable goes next.
pub async fn advance_schedule(
    txn: &DatabaseTransaction,
    id: &str,
    next: Option<i64>,
    runs: usize,
    skipped: usize,
    last_fire: Option<i64>,
) -> Result<(), StoreError> {
    txn.execute_raw(sql(
        backend(txn),
        "UPDATE schedules SET next_fire_at = ?, run_count = run_count + ?, \
         skipped_count = skipped_count + ?, last_fire_at = COALESCE(?, last_fire_at) \
         WHERE id = ?",
        vec![
            next.into(),
            (runs as i64).into(),
            (skipped as i64).into(),
            last_fire.into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Which of these schedules have a run queued or running.
pub async fn with_unfinished_runs(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut busy = HashSet::new();
    if ids.is_empty() {
        return Ok(busy);
    }
    let text = format!(
        "SELECT DISTINCT schedule_id FROM jobs WHERE schedule_id IN ({}) \
         AND status IN ('queued', 'running')",
        placeholders(ids.len())
    );
    let values = ids.iter().map(|id| Value::from(*id)).collect();
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        busy.insert(row.try_get::<String>("", "schedule_id")?);
    }
    Ok(busy)
}

#[cfg(test)]
mod tests {
    use super::Announcement;

    #[test]
    fn an_announcement_carries_its_sender_and_cancels() {
        let plain = Announcement::read(&Announcement::write("A1", &[]));
        assert_eq!(
            plain,
            Announcement {
                from: "A1".into(),
                canceled: vec![],
                check_running: false
            }
        );
        let ids = vec!["j_1".to_string(), "j_2".to_string()];
        let listed = Announcement::read(&Announcement::write("A1", &ids));
        assert_eq!((listed.from.as_str(), listed.canceled), ("A1", ids));
        // Too many to list: the others check what runs there instead.
        let many: Vec<String> = (0..1000).map(|n| format!("j_{n:026}")).collect();
        let summary = Announcement::read(&Announcement::write("A1", &many));
        assert!(summary.check_running && summary.canceled.is_empty());
    }
}
