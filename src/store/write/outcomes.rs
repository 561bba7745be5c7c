//! Attempts' outcomes: each written to its job (only while the job still runs
//! that attempt), and the attempt recorded with its response.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};

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

/// Writes attempts' outcomes to jobs still running that attempt; returns the ids
/// written. A job canceled or rescued meanwhile is left as it is.
pub async fn finish(
    txn: &DatabaseTransaction,
    finishes: &[Finish],
) -> Result<HashSet<String>, StoreError> {
    let jobs = states(backend(txn));
    let mut written = HashSet::with_capacity(finishes.len());
    for chunk in finishes.chunks(SMALL_ROWS_PER_STATEMENT) {
        let rows = value_rows(8, chunk.len());
        let text = format!(
            "WITH v(vid, vattempt, vstatus, vrun_at, vfinished_at, vexpires_at, vcode, verror) AS \
             (VALUES {rows}) \
             UPDATE {jobs} SET status = v.vstatus, run_at = v.vrun_at, finished_at = v.vfinished_at, \
             expires_at = v.vexpires_at, lease_expires_at = NULL, last_status_code = v.vcode, \
             last_error_class = v.verror \
             FROM v WHERE {jobs}.id = v.vid AND {jobs}.status = 'running' \
             AND {jobs}.attempt = v.vattempt RETURNING id"
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
