//! A database written before a job's state had a row of its own (on PostgreSQL:
//! `job_states` beside `job_definitions`, `jobs` a view of both), upgraded in place
//! by starting the server on it: a finished job keeps its status, attempts and tag;
//! a queued one runs; a running one whose lease ran out while the service was down
//! is rescued and runs again. The schema also steps back down to the one table and
//! up again with nothing lost. A process of the version before, still running
//! during a rolling upgrade, goes on writing `jobs` as it did (a submit, a cancel,
//! a delete). On SQLite the migration changes nothing, and the same jobs come
//! through the same way.

mod common;

use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobStatus};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// The schema's version before the split.
const BEFORE: u32 = 20;

struct OldJobs {
    finished: String,
    queued: String,
    lost: String,
}

/// An old database: a finished job with two attempts and the tag `old`, a queued
/// job due now, and a running job whose lease ran out a minute ago, the last two
/// calling `target`.
async fn old_database(db: &DatabaseConnection, target: &testkit::Target) -> OldJobs {
    migration::Migrator::up(db, Some(BEFORE))
        .await
        .expect("the schema before");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 120_000;
    let ids = OldJobs {
        finished: format!("j_{}", ulid::Ulid::new()),
        queued: format!("j_{}", ulid::Ulid::new()),
        lost: format!("j_{}", ulid::Ulid::new()),
    };
    let job = |id: &str, status: &str, attempt: i32, url: String, tail: &str| {
        format!(
            "INSERT INTO jobs (id, namespace, queue, status, priority, attempt, max_attempts, \
             retry_base, method, url, headers, params, timeout_ms, backoff_strategy, \
             backoff_base_ms, backoff_max_ms, ttl_ms, tags, created_at, scheduled_at, run_at, \
             started_at, finished_at, lease_expires_at, expires_at, last_status_code) VALUES \
             ('{id}', 'default', 'default', '{status}', 0, {attempt}, 3, 0, 'GET', '{url}', '{{}}', \
             '{{}}', 10000, 'fixed', 1000, 60000, 86400000, '[\"old\"]', {t0}, {t0}, {t0}, {tail})"
        )
    };
    let expires = t0 + 86_400_000;
    let attempt = |n: i32, code: i32| {
        format!(
            "INSERT INTO attempts (job_id, number, started_at, finished_at, duration_ms, \
             status_code, headers, body, body_size, truncated) VALUES \
             ('{}', {n}, {t0}, {t0}, 5, {code}, '{{}}', NULL, 0, FALSE)",
            ids.finished
        )
    };
    for text in [
        job(
            &ids.finished,
            "succeeded",
            2,
            "http://127.0.0.1:9/old".into(),
            &format!("{t0}, {t0}, NULL, {expires}, 200"),
        ),
        attempt(1, 503),
        attempt(2, 200),
        format!(
            "INSERT INTO job_tags (tag, job_id) VALUES ('old', '{}')",
            ids.finished
        ),
        job(
            &ids.queued,
            "queued",
            0,
            target.url("/queued"),
            "NULL, NULL, NULL, NULL, NULL",
        ),
        job(
            &ids.lost,
            "running",
            1,
            target.url("/lost"),
            &format!("{t0}, NULL, {}, NULL, NULL", t0 + 60_000),
        ),
    ] {
        db.execute_unprepared(&text).await.expect("an old row");
    }
    ids
}

fn millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The INSERT the version before made for a submit: every column of `jobs`.
fn old_style_submit(id: &str, url: &str) -> String {
    let now = millis_now();
    format!(
        "INSERT INTO jobs (id, queue, status, priority, attempt, max_attempts, retry_base, \
         method, url, headers, params, body_kind, body, timeout_ms, backoff_strategy, \
         backoff_base_ms, backoff_max_ms, ttl_ms, tags, idempotency_key, created_at, \
         scheduled_at, run_at, started_at, finished_at, lease_expires_at, expires_at, \
         last_status_code, last_error_class, schedule_id, fire_at, trace_context, chain_id, \
         step_id, contract, namespace, signing, follow_redirects) VALUES \
         ('{id}', 'default', 'queued', 0, 0, 3, 0, 'GET', '{url}', '{{}}', '{{}}', NULL, NULL, \
         10000, 'fixed', 1000, 60000, 86400000, '[]', NULL, {now}, {now}, {now}, NULL, NULL, \
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'default', NULL, NULL)"
    )
}

/// `(id, status, attempt)` of every job, as the `jobs` table or view reads them,
/// on a connection of its own (one that prepared the statement before a change
/// of the schema could not run it after).
async fn jobs_as_stored(url: &str) -> Vec<(String, String, i32)> {
    let db = sea_orm::Database::connect(url).await.expect("connect");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT id, status, attempt FROM jobs ORDER BY id",
        ))
        .await
        .expect("read jobs");
    db.close().await.expect("close");
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "status").unwrap(),
                r.try_get("", "attempt").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn jobs_stored_before_the_split_finish_run_and_are_rescued_after_it() {
    let test_db = std::sync::Arc::new(TestDb::new().await);
    let target = testkit::Target::start().await.unwrap();
    let db = sea_orm::Database::connect(&test_db.url)
        .await
        .expect("connect");
    let old = old_database(&db, &target).await;
    let before = jobs_as_stored(&test_db.url).await;
    assert_eq!(before.len(), 3);

    // Up, down to the one table, and up again: the same rows each time.
    migration::Migrator::up(&db, None).await.expect("upgrade");
    assert_eq!(
        jobs_as_stored(&test_db.url).await,
        before,
        "after the upgrade"
    );
    migration::Migrator::down(&db, Some(1))
        .await
        .expect("one step back");
    assert_eq!(
        jobs_as_stored(&test_db.url).await,
        before,
        "after stepping back"
    );
    migration::Migrator::up(&db, None)
        .await
        .expect("upgrade again");
    assert_eq!(
        jobs_as_stored(&test_db.url).await,
        before,
        "after the second upgrade"
    );
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let kind = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT relkind::text AS kind FROM pg_class WHERE relname = 'jobs'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "kind")
            .unwrap();
        assert_eq!(
            kind, "v",
            "jobs is a view of job_definitions and job_states"
        );
    }
    // A process of the version before, still running while a rolling upgrade
    // replaces it, writes `jobs` as it always did: a submit, a cancel, a delete.
    let rollout = format!("j_{}", ulid::Ulid::new());
    let canceled = format!("j_{}", ulid::Ulid::new());
    let deleted = format!("j_{}", ulid::Ulid::new());
    for (id, path) in [
        (&rollout, "/rollout"),
        (&canceled, "/canceled"),
        (&deleted, "/deleted"),
    ] {
        db.execute_unprepared(&old_style_submit(id, &target.url(path)))
            .await
            .expect("a submit of the version before");
    }
    let now = millis_now();
    let answered = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "UPDATE jobs SET status = 'canceled', finished_at = {now}, \
                 expires_at = {now} + ttl_ms, lease_expires_at = NULL WHERE id = '{canceled}' \
                 AND status IN ('queued', 'running') RETURNING *"
            ),
        ))
        .await
        .expect("a cancel of the version before");
    assert_eq!(answered.len(), 1, "the cancel answers the job it changed");
    assert_eq!(
        answered[0].try_get::<String>("", "status").unwrap(),
        "canceled"
    );
    let gone = db
        .execute_unprepared(&format!("DELETE FROM jobs WHERE id = '{deleted}'"))
        .await
        .expect("a delete of the version before");
    assert_eq!(gone.rows_affected(), 1);
    db.close().await.expect("close");

    let mut server = Server::restart(test_db, |c| {
        c.maintenance_interval = Duration::from_millis(200);
    })
    .await;
    let client = &mut server.client;

    let finished = result(client, &old.finished).await;
    assert_eq!(finished.status, JobStatus::Succeeded as i32);
    let codes: Vec<i32> = finished
        .attempts
        .iter()
        .map(|a| a.response.as_ref().map_or(0, |r| r.status_code))
        .collect();
    assert_eq!(codes, [503, 200], "its attempts, in order");
    let tagged = client
        .list_jobs(proto::ListJobsRequest {
            tags: vec!["old".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let tagged: Vec<&str> = tagged.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(tagged, [old.finished.as_str()], "listed by its tag");

    let queued = wait_status(
        client,
        &old.queued,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(queued.attempt, 1);
    let lost = wait_status(
        client,
        &old.lost,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(lost.attempt, 2, "the lost attempt counts, and one more ran");
    let lost = result(client, &old.lost).await;
    assert_eq!(
        lost.attempts[0].error_class,
        proto::ErrorClass::Interrupted as i32,
        "the attempt whose lease ran out is recorded as interrupted"
    );
    wait_status(
        client,
        &rollout,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        status_of(&get_job(client, &canceled).await),
        JobStatus::Canceled
    );
    let missing = client
        .get_job(proto::GetJobRequest { id: deleted })
        .await
        .expect_err("the deleted job is gone");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(
        target.count(),
        3,
        "the queued job, the rescued one and the one the version before submitted called"
    );
    server.stop().await;
}
