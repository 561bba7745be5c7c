//! A database written by the schema before the compact event log, upgraded in place
//! by starting the server on it: the log's changes keep their cursors (a watcher
//! resumes across the upgrade), tags and attempts keep their rows, and new changes
//! draw cursors after every old one, pruned ones included.

mod common;

use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobEvent, JobEventKind, JobStatus};
use migration::MigratorTrait;
use sea_orm::ConnectionTrait;

/// The schema's version before the compact log.
const BEFORE: u32 = 4;

/// An old database: one finished job tagged `old` with two attempts, and the log of
/// its four changes at cursors 5 to 8 (1 to 4 pruned).
async fn old_database(url: &str) -> String {
    let db = sea_orm::Database::connect(url).await.expect("connect");
    migration::Migrator::up(&db, Some(BEFORE))
        .await
        .expect("the schema before");
    let id = format!("j_{}", ulid::Ulid::new());
    // A minute ago: recent enough that nothing expires or is pruned meanwhile.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 60_000;
    let (t1, t2, t3) = (t0 + 500, t0 + 2000, t0 + 2100);
    let backend = db.get_database_backend();
    let run = |text: String| {
        let db = &db;
        async move {
            db.execute_raw(sea_orm::Statement::from_string(backend, text))
                .await
                .expect("an old row");
        }
    };
    run(format!(
        "INSERT INTO jobs (id, queue, status, priority, attempt, max_attempts, retry_base, method, url, \
         headers, params, body_kind, body, timeout_ms, backoff_strategy, backoff_base_ms, backoff_max_ms, \
         ttl_ms, tags, idempotency_key, created_at, scheduled_at, run_at, started_at, finished_at, \
         lease_expires_at, expires_at, last_status_code, last_error_class, schedule_id, fire_at) VALUES \
         ('{id}', 'default', 'succeeded', 0, 2, 3, 0, 'GET', 'http://127.0.0.1:9/old', '[]', '[]', NULL, \
         NULL, 10000, 'fixed', 1000, 60000, 86400000, '[\"old\"]', NULL, {t0}, {t0}, {t2}, {t2}, {t3}, \
         NULL, {expires}, 200, NULL, NULL, NULL)",
        expires = t3 + 86_400_000
    ))
    .await;
    run(format!(
        "INSERT INTO job_tags (tag, job_id) VALUES ('old', '{id}')"
    ))
    .await;
    run(format!(
        "INSERT INTO attempts (job_id, number, started_at, finished_at, duration_ms, status_code, headers, \
         body, body_size, truncated, error_class, error_message) VALUES \
         ('{id}', 1, {t0}, {t1}, 500, 503, '[]', NULL, 0, FALSE, 'http_status', NULL), \
         ('{id}', 2, {t2}, {t3}, 100, 200, '[]', NULL, 0, FALSE, NULL, NULL)"
    ))
    .await;
    let changes = [
        (5, "running", 1, t0, "NULL", "NULL", "NULL".to_string()),
        (6, "queued", 1, t1, "503", "'http_status'", t2.to_string()),
        (7, "running", 2, t2, "NULL", "NULL", "NULL".to_string()),
        (8, "succeeded", 2, t3, "200", "NULL", "NULL".to_string()),
    ];
    for (seq, status, attempt, at, code, error, next) in changes {
        run(format!(
            "INSERT INTO job_events (seq, job_id, status, attempt, at, queue, tags, status_code, \
             error_class, next_attempt_at, schedule_id) VALUES \
             ({seq}, '{id}', '{status}', {attempt}, {at}, 'default', '[\"old\"]', {code}, {error}, {next}, NULL)"
        ))
        .await;
    }
    run("UPDATE event_log SET pruned_through = 4 WHERE id = 1".into()).await;
    db.close().await.expect("close");
    id
}

async fn next(events: &mut tonic::Streaming<JobEvent>) -> JobEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event within 10 s")
            .expect("the stream did not fail")
            .expect("the stream goes on");
        if event.kind != JobEventKind::Heartbeat as i32 {
            return event;
        }
    }
}

#[tokio::test]
async fn an_old_database_is_upgraded_in_place_and_its_cursors_still_resume() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let old = old_database(&db.url).await;
    let mut server = Server::restart(db, |_| {}).await;
    let client = &mut server.client;

    // The job, its tag and its attempts are all there.
    let job = get_job(client, &old).await;
    assert_eq!(status_of(&job), JobStatus::Succeeded);
    let tagged = client
        .list_jobs(proto::ListJobsRequest {
            tags: vec!["old".into()],
            ..Default::default()
        })
        .await
        .expect("list by tag")
        .into_inner();
    assert_eq!(tagged.jobs.len(), 1, "the tag's row survived");
    let attempts = result(client, &old).await.attempts;
    let codes: Vec<Option<i32>> = attempts
        .iter()
        .map(|a| a.response.as_ref().map(|r| r.status_code))
        .collect();
    assert_eq!(codes, vec![Some(503), Some(200)]);

    // A cursor from before the upgrade resumes where it was, with what it held.
    let mut events = client
        .watch_jobs(proto::WatchJobsRequest {
            tags: vec!["old".into()],
            cursor: "5".into(),
            ..Default::default()
        })
        .await
        .expect("resume from an old cursor")
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut events).await);
    }
    let got: Vec<(String, JobStatus, i32)> = seen
        .iter()
        .map(|e| {
            (
                e.cursor.clone(),
                JobStatus::try_from(e.status).unwrap(),
                e.attempt,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("6".to_string(), JobStatus::Queued, 1),
            ("7".to_string(), JobStatus::Running, 2),
            ("8".to_string(), JobStatus::Succeeded, 2),
        ]
    );
    assert!(seen.iter().all(|e| e.job_id == old && e.queue == "default"));
    assert!(seen[0].next_attempt_time.is_some(), "the retry's due time");

    // A cursor the old log had pruned is still refused.
    let pruned = client
        .watch_jobs(proto::WatchJobsRequest {
            all: true,
            cursor: "3".into(),
            ..Default::default()
        })
        .await;
    let refused = match pruned {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .message()
            .await
            .expect_err("a pruned cursor is refused"),
    };
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");

    // New changes come after every old cursor, on the same stream.
    let target = Target::start().await.expect("a target");
    let mut spec = get(target.url("/new"));
    spec.tags = vec!["old".into()];
    let new = submit(client, spec).await;
    let queued = next(&mut events).await;
    assert_eq!(queued.job_id, new);
    assert_eq!(queued.cursor, "9");
    wait_status(client, &new, JobStatus::Succeeded, Duration::from_secs(10)).await;
    server.stop().await;
}
