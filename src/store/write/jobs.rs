//! Jobs as rows: submitting them (with their idempotency keys), reading them back,
//! and the changes a caller asks for one job at a time (cancel, retry, delete), plus
//! the removal of finished jobs whose time to live ran out.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, Value,
};

use super::{JOB_ROWS_PER_STATEMENT, SMALL_ROWS_PER_STATEMENT, backend, value_rows};
use crate::store::job_tables::{
    definitions, delete_jobs, is_definition, is_state, states, update_returning,
};
use crate::store::{StoreError, job_tags, jobs, placeholders, sql};

/// Existing jobs holding any of these idempotency keys (each of a namespace):
/// namespace, key, id, status.
pub async fn jobs_by_idempotency_key(
    txn: &DatabaseTransaction,
    keys: &[(&str, &str)],
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let mut found = Vec::new();
    for chunk in keys.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT namespace, idempotency_key, id, status FROM jobs \
             WHERE (namespace, idempotency_key) IN ({})",
            value_rows(2, chunk.len())
        );
        let values = chunk
            .iter()
            .flat_map(|(namespace, key)| [Value::from(*namespace), Value::from(*key)])
            .collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            found.push((
                row.try_get::<String>("", "namespace")?,
                row.try_get::<String>("", "idempotency_key")?,
                row.try_get::<String>("", "id")?,
                row.try_get::<String>("", "status")?,
            ));
        }
    }
    Ok(found)
}

/// The last columns of [`JOB_COLUMNS`]: a chain step's and a signed job's, NULL
/// for other jobs.
const RARE_COLUMNS: usize = 5;

const JOB_COLUMNS: [&str; 38] = [
    "id",
    "namespace",
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
    "trace_context",
    "chain_id",
    "step_id",
    "contract",
    "signing",
    "follow_redirects",
];

/// A row's values in [`JOB_COLUMNS`] order; every field is named, so a new column
/// breaks the build here until it is written.
fn job_values(job: jobs::Model) -> [Value; 38] {
    let jobs::Model {
        id,
        namespace,
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
        trace_context,
        chain_id,
        step_id,
        contract,
        signing,
        follow_redirects,
    } = job;
    [
        id.into(),
        namespace.into(),
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
        trace_context.into(),
        chain_id.into(),
        step_id.into(),
        contract.into(),
        signing.into(),
        follow_redirects.into(),
    ]
}

pub async fn insert_jobs(
    txn: &DatabaseTransaction,
    rows: Vec<jobs::Model>,
) -> Result<(), StoreError> {
    let mut tags = Vec::new();
    for job in &rows {
        let mut job_tags: Vec<String> = serde_json::from_str(&job.tags).unwrap_or_default();
        // Each tag once: the rows are new (the job's own insert would fail first), so
        // a plain insert cannot conflict, and costs PostgreSQL no speculative insert.
        job_tags.sort();
        job_tags.dedup();
        for tag in job_tags {
            tags.push(job_tags::Model {
                tag,
                job_id: job.id.clone(),
            });
        }
    }
    // A plain multi-row INSERT with the values moved out of the rows: the query
    // builder's copies of every value were a measured share of the writer's time.
    // A plain job leaves the rare columns out (they stay NULL) rather than bind
    // five NULLs per row.
    let (rare, plain): (Vec<jobs::Model>, Vec<jobs::Model>) = rows.into_iter().partition(|j| {
        j.chain_id.is_some()
            || j.step_id.is_some()
            || j.contract.is_some()
            || j.signing.is_some()
            || j.follow_redirects.is_some()
    });
    // On PostgreSQL a job is a row of each of two tables (see job_tables): each
    // value goes to the table that keeps its column, the few kept by both copied.
    // On SQLite the first table is `jobs` and keeps them all.
    let split = backend(txn) == DbBackend::Postgres;
    let tables = if split {
        [
            definitions(DbBackend::Postgres),
            states(DbBackend::Postgres),
        ]
    } else {
        ["jobs", ""]
    };
    for (rows, columns) in [
        (plain, &JOB_COLUMNS[..JOB_COLUMNS.len() - RARE_COLUMNS]),
        (rare, &JOB_COLUMNS[..]),
    ] {
        // Where each column goes, worked out once rather than for every row.
        let kept: Vec<[bool; 2]> = columns
            .iter()
            .map(|c| match split {
                true => [is_definition(c), is_state(c)],
                false => [true, false],
            })
            .collect();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut values: [Vec<Value>; 2] = Default::default();
            let mut count = 0;
            for job in rows.by_ref().take(JOB_ROWS_PER_STATEMENT) {
                for (value, [first, second]) in job_values(job).into_iter().zip(&kept) {
                    match (first, second) {
                        (true, true) => {
                            values[0].push(value.clone());
                            values[1].push(value);
                        }
                        (true, false) => values[0].push(value),
                        _ => values[1].push(value),
                    }
                }
                count += 1;
            }
            for (n, (table, values)) in tables.iter().zip(values).enumerate() {
                if values.is_empty() {
                    continue;
                }
                let names: Vec<&str> = columns
                    .iter()
                    .zip(&kept)
                    .filter(|(_, k)| k[n])
                    .map(|(c, _)| *c)
                    .collect();
                let text = format!(
                    "INSERT INTO {table} ({}) VALUES {}",
                    names.join(", "),
                    value_rows(names.len(), count)
                );
                txn.execute_raw(sql(backend(txn), &text, values)).await?;
            }
        }
    }
    let mut tags = tags.into_iter().peekable();
    while tags.peek().is_some() {
        let chunk = tags
            .by_ref()
            .take(SMALL_ROWS_PER_STATEMENT)
            .map(|m| job_tags::ActiveModel::from(m).reset_all());
        job_tags::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

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

/// The job `id` if it is of `namespace`.
pub async fn job_in(
    txn: &DatabaseTransaction,
    namespace: &str,
    id: &str,
) -> Result<Option<jobs::Model>, StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(jobs::Entity::find_by_id(id.to_string())
        .filter(jobs::Column::Namespace.eq(namespace))
        .one(txn)
        .await?)
}

/// Runs `update` (of the job states' table, without RETURNING) and answers the
/// job it changed, whole.
async fn update_returning_job(
    txn: &DatabaseTransaction,
    update: &str,
    values: Vec<Value>,
) -> Result<Option<jobs::Model>, StoreError> {
    let text = update_returning(backend(txn), update, &JOB_COLUMNS);
    let row = txn.query_one_raw(sql(backend(txn), &text, values)).await?;
    Ok(match row {
        Some(row) => Some(jobs::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// Cancels a queued or running job of `namespace`; `None` when it is neither (or
/// unknown there).
pub async fn cancel(
    txn: &DatabaseTransaction,
    namespace: &str,
    id: &str,
    now: i64,
) -> Result<Option<jobs::Model>, StoreError> {
    let update = format!(
        "UPDATE {} SET status = 'canceled', finished_at = ?, expires_at = ? + ttl_ms, \
         lease_expires_at = NULL WHERE id = ({}) AND status IN ('queued', 'running')",
        states(backend(txn)),
        one_of_namespace(backend(txn))
    );
    update_returning_job(
        txn,
        &update,
        vec![now.into(), now.into(), id.into(), namespace.into()],
    )
    .await
}

/// Queues a failed or canceled job of `namespace` again with a fresh attempt
/// budget; `None` when it is in another state (or unknown there).
pub async fn retry(
    txn: &DatabaseTransaction,
    namespace: &str,
    id: &str,
    now: i64,
) -> Result<Option<jobs::Model>, StoreError> {
    let update = format!(
        "UPDATE {} SET status = 'queued', retry_base = attempt, run_at = ?, finished_at = NULL, \
         expires_at = NULL, lease_expires_at = NULL WHERE id = ({}) \
         AND status IN ('failed', 'canceled')",
        states(backend(txn)),
        one_of_namespace(backend(txn))
    );
    update_returning_job(txn, &update, vec![now.into(), id.into(), namespace.into()]).await
}

/// A subquery answering the id given (first placeholder) if that job is of the
/// namespace given (second), for statements on the states' table, which does
/// not hold the namespace.
fn one_of_namespace(backend: DbBackend) -> String {
    format!(
        "SELECT id FROM {} WHERE id = ? AND namespace = ?",
        definitions(backend)
    )
}

/// Removes a finished job of `namespace` with its attempts and tags; false when it
/// is not finished (or unknown there).
pub async fn delete(
    txn: &DatabaseTransaction,
    namespace: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let finished = "jobs.id = ? AND jobs.namespace = ? \
                    AND jobs.status IN ('succeeded', 'failed', 'canceled')";
    let values = || vec![Value::from(id), Value::from(namespace)];
    txn.execute_raw(sql(
        backend(txn),
        &delete_tags(backend(txn), finished),
        values(),
    ))
    .await?;
    let deleted = txn
        .execute_raw(sql(
            backend(txn),
            &delete_jobs(
                backend(txn),
                &format!("SELECT id FROM jobs WHERE {finished}"),
            ),
            values(),
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

/// Removes up to `limit` finished jobs whose ttl ran out, with their attempts and
/// tags; returns how many. A chain's jobs are kept as long as their chain (see
/// [`remove_jobs_of_chains`]).
pub async fn remove_expired(
    txn: &DatabaseTransaction,
    now: i64,
    limit: usize,
) -> Result<u64, StoreError> {
    let expired = format!(
        "SELECT id FROM {} WHERE expires_at <= ? AND chain_id IS NULL \
         ORDER BY expires_at LIMIT ?",
        states(backend(txn))
    );
    remove_jobs(txn, &expired, || {
        vec![Value::from(now), Value::from(limit as i64)]
    })
    .await
}

/// Removes the jobs of these chains, with their attempts and tags.
pub async fn remove_jobs_of_chains(
    txn: &DatabaseTransaction,
    chain_ids: &[&str],
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for chunk in chain_ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let picked = format!(
            "SELECT id FROM jobs WHERE chain_id IN ({})",
            placeholders(chunk.len())
        );
        removed += remove_jobs(txn, &picked, || {
            chunk.iter().map(|id| Value::from(*id)).collect()
        })
        .await?;
    }
    Ok(removed)
}

/// Removes the jobs `picked` selects (by id, with `values` for its
/// placeholders), their tags and attempts first.
async fn remove_jobs(
    txn: &DatabaseTransaction,
    picked: &str,
    values: impl Fn() -> Vec<Value>,
) -> Result<u64, StoreError> {
    for text in [
        delete_tags(backend(txn), &format!("jobs.id IN ({picked})")),
        format!("DELETE FROM attempts WHERE job_id IN ({picked})"),
    ] {
        txn.execute_raw(sql(backend(txn), &text, values())).await?;
    }
    let removed = txn
        .execute_raw(sql(
            backend(txn),
            &delete_jobs(backend(txn), picked),
            values(),
        ))
        .await?
        .rows_affected();
    Ok(removed)
}

/// A job's tags, from the JSON array its row keeps.
pub fn tags_of(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}
