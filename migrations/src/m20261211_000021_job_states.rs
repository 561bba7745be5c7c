use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// On PostgreSQL, a job's row is split in two: `job_states`, narrow, holds what
/// changes as the job runs (and the few fixed columns its claim, lease and expiry
/// read), and `job_definitions` the rest (the request, its retry policy, tags,
/// links), written once. `jobs` becomes a view joining them, so everything that
/// reads a job reads it as before.
///
/// Why: PostgreSQL writes a whole new row version, and an entry in every index,
/// for each update that changes an indexed column; a job's status is in the claim
/// and lease indexes' conditions, so each claim and each outcome rewrote the job's
/// whole row (its URL, headers and body) and added to every index of `jobs`. Now
/// they rewrite a row of about 150 bytes with two indexes.
///
/// Text keys compare bytewise (`COLLATE "C"`): they are ASCII identifiers, and the
/// database's own collation made every index comparison a locale one.
///
/// SQLite keeps the one `jobs` table: it updates rows in place.
///
/// A later migration that changes a job's columns on PostgreSQL changes one of the
/// two tables and the view.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for statement in UP {
            db.execute_unprepared(statement).await?;
        }
        db.execute_unprepared(&view()).await?;
        db.execute_unprepared(&view_writes()).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for statement in DOWN {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

/// Which of the two tables keeps a column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    Definition,
    State,
    /// `id`, `queue`, `schedule_id` and `chain_id`, which never change; the view
    /// reads the definition's.
    Both,
}

/// A job's columns, in the order the table had them.
const COLUMNS: [(&str, Kept); 38] = [
    ("id", Kept::Both),
    ("queue", Kept::Both),
    ("status", Kept::State),
    ("priority", Kept::State),
    ("attempt", Kept::State),
    ("max_attempts", Kept::State),
    ("retry_base", Kept::State),
    ("method", Kept::Definition),
    ("url", Kept::Definition),
    ("headers", Kept::Definition),
    ("params", Kept::Definition),
    ("body_kind", Kept::Definition),
    ("body", Kept::Definition),
    ("timeout_ms", Kept::State),
    ("backoff_strategy", Kept::Definition),
    ("backoff_base_ms", Kept::Definition),
    ("backoff_max_ms", Kept::Definition),
    ("ttl_ms", Kept::State),
    ("tags", Kept::Definition),
    ("idempotency_key", Kept::Definition),
    ("created_at", Kept::Definition),
    ("scheduled_at", Kept::Definition),
    ("run_at", Kept::State),
    ("started_at", Kept::State),
    ("finished_at", Kept::State),
    ("lease_expires_at", Kept::State),
    ("expires_at", Kept::State),
    ("last_status_code", Kept::State),
    ("last_error_class", Kept::State),
    ("schedule_id", Kept::Both),
    ("fire_at", Kept::Definition),
    ("trace_context", Kept::Definition),
    ("chain_id", Kept::Both),
    ("step_id", Kept::Definition),
    ("contract", Kept::Definition),
    ("namespace", Kept::Definition),
    ("signing", Kept::Definition),
    ("follow_redirects", Kept::Definition),
];

/// The columns `job_definitions` keeps (`definition`), or `job_states`.
fn kept_in(definition: bool) -> impl Iterator<Item = &'static str> {
    let wanted = if definition {
        Kept::Definition
    } else {
        Kept::State
    };
    COLUMNS
        .iter()
        .filter(move |(_, kept)| *kept == Kept::Both || *kept == wanted)
        .map(|(name, _)| *name)
}

/// `jobs`, the view: its columns in the table's order, so that `SELECT *`
/// answers what it did.
fn view() -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, kept)| match kept {
            Kept::State => format!("s.{name}"),
            _ => format!("d.{name}"),
        })
        .collect();
    format!(
        "CREATE VIEW jobs AS SELECT {} FROM job_definitions d JOIN job_states s ON s.id = d.id",
        columns.join(", ")
    )
}

/// Writes to the view go to the two tables, so that a process of the version
/// before, still running while a rolling upgrade replaces it, goes on working.
/// This version writes to the tables themselves.
fn view_writes() -> String {
    let list = |definition: bool, prefix: &str| -> String {
        kept_in(definition)
            .map(|c| format!("{prefix}{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set = |definition: bool| -> String {
        kept_in(definition)
            .filter(|c| *c != "id")
            .map(|c| format!("{c} = NEW.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "CREATE FUNCTION jobs_view_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF TG_OP = 'INSERT' THEN
                 INSERT INTO job_definitions ({dc}) VALUES ({dn});
                 INSERT INTO job_states ({sc}) VALUES ({sn});
                 RETURN NEW;
             ELSIF TG_OP = 'UPDATE' THEN
                 IF ROW({dn}) IS DISTINCT FROM ROW({dold}) THEN
                     UPDATE job_definitions SET {dset} WHERE id = OLD.id;
                 END IF;
                 UPDATE job_states SET {sset} WHERE id = OLD.id;
                 RETURN NEW;
             ELSE
                 DELETE FROM job_states WHERE id = OLD.id;
                 DELETE FROM job_definitions WHERE id = OLD.id;
                 RETURN OLD;
             END IF;
         END $$;
         CREATE TRIGGER jobs_view_write INSTEAD OF INSERT OR UPDATE OR DELETE ON jobs
             FOR EACH ROW EXECUTE FUNCTION jobs_view_write();",
        dc = list(true, ""),
        dn = list(true, "NEW."),
        dold = list(true, "OLD."),
        sc = list(false, ""),
        sn = list(false, "NEW."),
        dset = set(true),
        sset = set(false),
    )
}

const UP: &[&str] = &[
    "CREATE TABLE job_states (
        id VARCHAR COLLATE \"C\" NOT NULL PRIMARY KEY,
        queue VARCHAR COLLATE \"C\" NOT NULL,
        schedule_id VARCHAR COLLATE \"C\",
        chain_id VARCHAR COLLATE \"C\",
        priority INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        retry_base INTEGER NOT NULL,
        timeout_ms BIGINT NOT NULL,
        ttl_ms BIGINT NOT NULL,
        run_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        lease_expires_at BIGINT,
        expires_at BIGINT,
        last_status_code INTEGER,
        last_error_class VARCHAR
    )",
    "INSERT INTO job_states SELECT id, queue, schedule_id, chain_id, priority, status, attempt,
        max_attempts, retry_base, timeout_ms, ttl_ms, run_at, started_at, finished_at, lease_expires_at,
        expires_at, last_status_code, last_error_class FROM jobs",
    "ALTER TABLE jobs RENAME TO job_definitions",
    "ALTER INDEX jobs_pkey RENAME TO job_definitions_pkey",
    // Dropping a column drops the indexes on it: the claim, lease, expiry and
    // unfinished-runs indexes, made again on job_states below.
    "ALTER TABLE job_definitions DROP COLUMN status, DROP COLUMN priority, DROP COLUMN attempt,
        DROP COLUMN max_attempts, DROP COLUMN retry_base, DROP COLUMN timeout_ms,
        DROP COLUMN ttl_ms, DROP COLUMN run_at, DROP COLUMN started_at, DROP COLUMN finished_at,
        DROP COLUMN lease_expires_at, DROP COLUMN expires_at, DROP COLUMN last_status_code,
        DROP COLUMN last_error_class",
    "ALTER TABLE job_definitions ALTER COLUMN id TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN namespace TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN queue TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN idempotency_key TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN schedule_id TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN chain_id TYPE VARCHAR COLLATE \"C\"",
    "ALTER TABLE job_tags ALTER COLUMN tag TYPE VARCHAR COLLATE \"C\",
        ALTER COLUMN job_id TYPE VARCHAR COLLATE \"C\"",
    "ALTER TABLE attempts ALTER COLUMN job_id TYPE VARCHAR COLLATE \"C\"",
    "CREATE INDEX jobs_claim ON job_states (queue, priority DESC, run_at, id) \
     WHERE status = 'queued'",
    "CREATE INDEX jobs_lease ON job_states (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX jobs_expiry ON job_states (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX jobs_schedule_unfinished ON job_states (schedule_id) \
     WHERE schedule_id IS NOT NULL AND status IN ('queued', 'running')",
];

const DOWN: &[&str] = &[
    "DROP VIEW jobs",
    "DROP FUNCTION jobs_view_write()",
    "ALTER TABLE job_definitions RENAME TO jobs",
    "ALTER INDEX job_definitions_pkey RENAME TO jobs_pkey",
    "ALTER TABLE jobs ADD COLUMN status VARCHAR, ADD COLUMN priority INTEGER,
        ADD COLUMN attempt INTEGER, ADD COLUMN max_attempts INTEGER, ADD COLUMN retry_base INTEGER,
        ADD COLUMN timeout_ms BIGINT, ADD COLUMN ttl_ms BIGINT, ADD COLUMN run_at BIGINT,
        ADD COLUMN started_at BIGINT, ADD COLUMN finished_at BIGINT,
        ADD COLUMN lease_expires_at BIGINT, ADD COLUMN expires_at BIGINT,
        ADD COLUMN last_status_code INTEGER, ADD COLUMN last_error_class VARCHAR",
    "UPDATE jobs SET status = s.status, priority = s.priority, attempt = s.attempt,
        max_attempts = s.max_attempts, retry_base = s.retry_base, timeout_ms = s.timeout_ms,
        ttl_ms = s.ttl_ms, run_at = s.run_at, started_at = s.started_at,
        finished_at = s.finished_at, lease_expires_at = s.lease_expires_at,
        expires_at = s.expires_at, last_status_code = s.last_status_code,
        last_error_class = s.last_error_class
        FROM job_states s WHERE s.id = jobs.id",
    "ALTER TABLE jobs ALTER COLUMN status SET NOT NULL, ALTER COLUMN priority SET NOT NULL,
        ALTER COLUMN attempt SET NOT NULL, ALTER COLUMN max_attempts SET NOT NULL,
        ALTER COLUMN retry_base SET NOT NULL, ALTER COLUMN timeout_ms SET NOT NULL,
        ALTER COLUMN ttl_ms SET NOT NULL, ALTER COLUMN run_at SET NOT NULL",
    "DROP TABLE job_states",
    "CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE status = 'queued'",
    "CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX jobs_schedule_unfinished ON jobs (schedule_id) \
     WHERE schedule_id IS NOT NULL AND status IN ('queued', 'running')",
];
