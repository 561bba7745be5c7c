//! Attempts' outcomes: each written to its job (only while the job still runs
//! that attempt), and the attempt recorded with its response.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Value};

use super::{JOB_ROWS_PER_STATEMENT, SMALL_ROWS_PER_STATEMENT, backend, value_rows};
use crate::job::Status;
use crate::store::job_tables::states;
use crate::store::{StoreError, attempts, sql};

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

/// Writes attempts' outcomes to jobs still running that attempt (as [`finish`])
/// and records attempts (as [`insert_attempts`]); returns the ids written. On
/// PostgreSQL, when both fit in one statement, that is one round trip.
pub async fn write_outcomes(
    txn: &DatabaseTransaction,
    finishes: &[Finish],
    records: Vec<attempts::Model>,
) -> Result<HashSet<String>, StoreError> {
    let one_statement = backend(txn) == DbBackend::Postgres
        && !finishes.is_empty()
        && !records.is_empty()
        && finishes.len() <= JOB_ROWS_PER_STATEMENT
        && records.len() <= JOB_ROWS_PER_STATEMENT;
    if !one_statement {
        let written = finish(txn, finishes).await?;
        insert_attempts(txn, records).await?;
        return Ok(written);
    }
    let jobs = states(backend(txn));
    let (outcomes, update) = finish_parts(jobs, finishes.len());
    let text = format!(
        "WITH {outcomes}, written AS ({update} RETURNING {jobs}.id), \
         recorded AS ({}) SELECT id FROM written",
        record_attempts(records.len())
    );
    let mut values = finish_values(finishes);
    values.extend(attempt_values(records));
    let mut written = HashSet::with_capacity(finishes.len());
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        written.insert(row.try_get::<String>("", "id")?);
    }
    Ok(written)
}

/// Writes attempts' outcomes to jobs still running that attempt; returns the ids
/// written. A job canceled or rescued meanwhile is left as it is.
async fn finish(
    txn: &DatabaseTransaction,
    finishes: &[Finish],
) -> Result<HashSet<String>, StoreError> {
    let jobs = states(backend(txn));
    let mut written = HashSet::with_capacity(finishes.len());
    for chunk in finishes.chunks(SMALL_ROWS_PER_STATEMENT) {
        let (outcomes, update) = finish_parts(jobs, chunk.len());
        let text = format!("WITH {outcomes} {update} RETURNING id");
        let values = finish_values(chunk);
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            written.insert(row.try_get::<String>("", "id")?);
        }
    }
    Ok(written)
}

/// `rows` outcomes as the CTE `v`, and the UPDATE of `jobs` (the states' table)
/// that writes them, guarded by the status and attempt each expects.
fn finish_parts(jobs: &str, rows: usize) -> (String, String) {
    (
        format!(
            "v(vid, vattempt, vstatus, vrun_at, vfinished_at, vexpires_at, vcode, verror) AS \
             (VALUES {})",
            value_rows(8, rows)
        ),
        format!(
            "UPDATE {jobs} SET status = v.vstatus, run_at = v.vrun_at, \
             finished_at = v.vfinished_at, expires_at = v.vexpires_at, lease_expires_at = NULL, \
             last_status_code = v.vcode, last_error_class = v.verror \
             FROM v WHERE {jobs}.id = v.vid AND {jobs}.status = 'running' \
             AND {jobs}.attempt = v.vattempt"
        ),
    )
}

/// The values of [`finish_parts`]' CTE.
fn finish_values(finishes: &[Finish]) -> Vec<Value> {
    let mut values = Vec::with_capacity(finishes.len() * 8);
    for f in finishes {
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
    values
}

/// Records attempts. An attempt already recorded (same job and number) is kept.
pub(super) async fn insert_attempts(
    txn: &DatabaseTransaction,
    rows: Vec<attempts::Model>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<attempts::Model> = rows.by_ref().take(JOB_ROWS_PER_STATEMENT).collect();
        let text = record_attempts(chunk.len());
        txn.execute_raw(sql(backend(txn), &text, attempt_values(chunk)))
            .await?;
    }
    Ok(())
}

/// The INSERT of `rows` attempts, keeping an attempt already recorded: one whose
/// lease ran out is recorded by the rescue, and its process may still report it.
fn record_attempts(rows: usize) -> String {
    format!(
        "INSERT INTO attempts (job_id, number, started_at, finished_at, duration_ms, \
         status_code, headers, body, body_size, truncated, error_class, error_message) \
         VALUES {} ON CONFLICT (job_id, number) DO NOTHING",
        value_rows(12, rows)
    )
}

/// The values of [`record_attempts`], moved out of the rows.
fn attempt_values(rows: Vec<attempts::Model>) -> Vec<Value> {
    let mut values = Vec::with_capacity(rows.len() * 12);
    for row in rows {
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
    }
    values
}
