use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Fewer rows and index entries per job, with nothing it kept forgotten.
///
/// - The event log stores a transaction's changes together, a page of them per row
///   of `event_pages`, keyed by the cursor of the page's last change; `event_log.head`
///   counts the cursors drawn. Existing changes become pages of one, under the cursors
///   they had, so a watcher's cursor resumes across the upgrade.
/// - Calls started per queue and second, in `queue_dispatches`, for a queue's
///   dispatches over the last minute (they were counted from the log through an index
///   of their own). Calls started before the upgrade are not counted, so the figure
///   is low for the minute after it.
/// - On SQLite, tags and attempts live in tables keyed by their primary key alone
///   (`WITHOUT ROWID`): one b-tree each instead of a table and an index. A job's tags
///   are found from its `tags` column when it is removed, so the index of tags by job
///   goes on both engines.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sqlite = db.get_database_backend() == DbBackend::Sqlite;
        let (key, change) = if sqlite {
            (
                // The rowid itself: no index beside the table.
                "INTEGER PRIMARY KEY",
                "json_array(json_array(job_id, status, attempt, at, queue, json(tags), \
                 status_code, error_class, next_attempt_at, schedule_id))",
            )
        } else {
            (
                "BIGINT PRIMARY KEY",
                "json_build_array(json_build_array(job_id, status, attempt, at, queue, \
                 tags::json, status_code, error_class, next_attempt_at, schedule_id))::text",
            )
        };
        let mut statements = vec![
            "ALTER TABLE event_log ADD COLUMN head BIGINT NOT NULL DEFAULT 0".to_string(),
            format!(
                "CREATE TABLE event_pages (last {key}, count INTEGER NOT NULL, \
                 at BIGINT NOT NULL, changes TEXT NOT NULL)"
            ),
            format!(
                "INSERT INTO event_pages (last, count, at, changes) \
                 SELECT seq, 1, at, {change} FROM job_events"
            ),
            // Cursors never go back, even past changes already pruned.
            "UPDATE event_log SET head = (SELECT COALESCE(MAX(seq), 0) FROM job_events) \
             WHERE id = 1"
                .to_string(),
            "UPDATE event_log SET head = pruned_through WHERE head < pruned_through".to_string(),
            "DROP TABLE job_events".to_string(),
            format!(
                "CREATE TABLE queue_dispatches (queue TEXT NOT NULL, second BIGINT NOT NULL, \
                 count BIGINT NOT NULL, PRIMARY KEY (queue, second)){}",
                if sqlite { " WITHOUT ROWID" } else { "" }
            ),
            "DROP INDEX IF EXISTS job_tags_job".to_string(),
        ];
        if sqlite {
            statements.extend(
                [
                    "CREATE TABLE job_tags_keyed (tag TEXT NOT NULL, job_id TEXT NOT NULL, \
                     PRIMARY KEY (tag, job_id)) WITHOUT ROWID",
                    "INSERT INTO job_tags_keyed (tag, job_id) SELECT tag, job_id FROM job_tags",
                    "DROP TABLE job_tags",
                    "ALTER TABLE job_tags_keyed RENAME TO job_tags",
                    "CREATE TABLE attempts_keyed (job_id TEXT NOT NULL, number INTEGER NOT NULL, \
                     started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL, \
                     duration_ms BIGINT NOT NULL, status_code INTEGER NULL, headers TEXT NULL, \
                     body BLOB NULL, body_size BIGINT NOT NULL, truncated BOOLEAN NOT NULL, \
                     error_class TEXT NULL, error_message TEXT NULL, \
                     PRIMARY KEY (job_id, number)) WITHOUT ROWID",
                    "INSERT INTO attempts_keyed SELECT job_id, number, started_at, finished_at, \
                     duration_ms, status_code, headers, body, body_size, truncated, error_class, \
                     error_message FROM attempts",
                    "DROP TABLE attempts",
                    "ALTER TABLE attempts_keyed RENAME TO attempts",
                ]
                .map(str::to_string),
            );
        }
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    /// Back to a row per change: the log starts empty after the cursors drawn so far
    /// (older ones cannot resume); tags and attempts keep their rows.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let (key, resume) = match db.get_database_backend() {
            DbBackend::Sqlite => (
                "INTEGER PRIMARY KEY AUTOINCREMENT",
                "INSERT INTO sqlite_sequence (name, seq) \
                 SELECT 'job_events', head FROM event_log WHERE id = 1",
            ),
            _ => (
                "BIGSERIAL PRIMARY KEY",
                "SELECT setval('job_events_seq_seq', GREATEST(head, 1)) FROM event_log WHERE id = 1",
            ),
        };
        for statement in [
            "DROP TABLE event_pages".to_string(),
            "DROP TABLE queue_dispatches".to_string(),
            format!(
                "CREATE TABLE job_events (seq {key}, job_id TEXT NOT NULL, status TEXT NOT NULL, \
                 attempt INTEGER NOT NULL, at BIGINT NOT NULL, queue TEXT NOT NULL, \
                 tags TEXT NOT NULL, status_code INTEGER NULL, error_class TEXT NULL, \
                 next_attempt_at BIGINT NULL, schedule_id TEXT NULL)"
            ),
            "CREATE INDEX job_events_job ON job_events (job_id, seq)".to_string(),
            "CREATE INDEX job_events_dispatch ON job_events (at, queue) WHERE status = 'running'"
                .to_string(),
            resume.to_string(),
            "UPDATE event_log SET pruned_through = head WHERE id = 1".to_string(),
            "ALTER TABLE event_log DROP COLUMN head".to_string(),
            "CREATE INDEX job_tags_job ON job_tags (job_id)".to_string(),
        ] {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}
