//! Where a job's columns are stored, for the statements that write them.
//!
//! SQLite keeps a job in one row of `jobs` and updates it in place. PostgreSQL
//! writes a new version of a row, with a new entry in each of its indexes, on
//! every update that changes an indexed column, and a job's status is in the
//! claim and lease indexes' conditions: there a job is two rows. `job_states`,
//! narrow, holds what changes as the job runs, with the fixed columns its claim,
//! lease, expiry and schedule checks read; `job_definitions` holds the rest (the
//! request, its retry policy, tags, links), written once. `jobs` is a view joining
//! them, so reads are the same SQL on both engines; writes name the table that
//! holds their columns through this module.

use sea_orm::DbBackend;

/// The columns of `job_states`. `id`, `queue`, `schedule_id` and `chain_id`
/// (which never change) are in `job_definitions` too.
const STATE_COLUMNS: [&str; 18] = [
    "id",
    "queue",
    "schedule_id",
    "chain_id",
    "priority",
    "status",
    "attempt",
    "max_attempts",
    "retry_base",
    "timeout_ms",
    "ttl_ms",
    "run_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "expires_at",
    "last_status_code",
    "last_error_class",
];

/// The table that holds a job's state (status, attempt, times, lease, outcome).
pub(crate) fn states(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "job_states",
        _ => "jobs",
    }
}

/// The table that holds a job's definition (the request and everything else
/// that is not its state).
pub(crate) fn definitions(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "job_definitions",
        _ => "jobs",
    }
}

/// Whether a job's `column` is kept in [`states`] (on PostgreSQL).
pub(crate) fn is_state(column: &str) -> bool {
    STATE_COLUMNS.contains(&column)
}

/// Whether a job's `column` is kept in [`definitions`] (on PostgreSQL).
pub(crate) fn is_definition(column: &str) -> bool {
    !is_state(column) || matches!(column, "id" | "queue" | "schedule_id" | "chain_id")
}

/// `update`, an UPDATE of [`states`] without RETURNING, answering `columns` of
/// each job it changed; those of the definition are joined in on PostgreSQL.
pub(crate) fn update_returning(backend: DbBackend, update: &str, columns: &[&str]) -> String {
    match backend {
        DbBackend::Postgres => {
            let columns: Vec<String> = columns
                .iter()
                .map(|c| {
                    let table = if is_state(c) { "s" } else { "d" };
                    format!("{table}.{c}")
                })
                .collect();
            format!(
                "WITH s AS ({update} RETURNING *) SELECT {} FROM s \
                 JOIN job_definitions d ON d.id = s.id",
                columns.join(", ")
            )
        }
        _ => format!("{update} RETURNING {}", columns.join(", ")),
    }
}

/// Deletes the jobs whose ids `picked` selects (its placeholders' values are the
/// statement's); the rows affected are the jobs deleted.
pub(crate) fn delete_jobs(backend: DbBackend, picked: &str) -> String {
    match backend {
        DbBackend::Postgres => format!(
            "WITH p AS MATERIALIZED ({picked}), \
             s AS (DELETE FROM job_states WHERE id IN (SELECT id FROM p)) \
             DELETE FROM job_definitions WHERE id IN (SELECT id FROM p)"
        ),
        _ => format!("DELETE FROM jobs WHERE id IN ({picked})"),
    }
}
