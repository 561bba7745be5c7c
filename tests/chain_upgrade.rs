//! A database written when every step of a chain kept a row of its own (and a
//! copy of its output), upgraded in place by starting the server on it: an ended
//! chain reads as it did, and a running one goes on where it was, its next step
//! reading the output of a step that ended before the upgrade from that step's
//! job, and nothing that ran before running again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::chains::*;
use common::*;
use jobqueue::chain::definition::{
    BodyTemplate, CallTemplate, Definition, RunIfName, StepDef, StepJob,
};
use jobqueue::proto::{self, ChainStatus, StepStatus};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DbBackend};
use serde_json::json;

/// The schema's version before steps stood where their jobs stand.
const BEFORE: u32 = 11;

fn step_def(
    id: &str,
    parents: &[&str],
    method: &str,
    url: String,
    body: Option<serde_json::Value>,
) -> StepDef {
    StepDef {
        id: id.into(),
        parents: parents.iter().map(|p| p.to_string()).collect(),
        run_if: RunIfName::OnSuccess,
        call: CallTemplate {
            method: method.into(),
            url,
            headers: BTreeMap::new(),
            params: BTreeMap::new(),
            body: body.map(BodyTemplate::Json),
        },
        contract: None,
        job: StepJob {
            queue: "default".into(),
            priority: 0,
            timeout_ms: 10_000,
            max_attempts: 1,
            backoff_strategy: "exponential".into(),
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            unset_timeout: false,
            unset_max_attempts: false,
            unset_backoff: false,
        },
        template: None,
        input: None,
    }
}

fn blob(backend: DbBackend, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match backend {
        DbBackend::Postgres => format!("'\\x{hex}'::bytea"),
        _ => format!("X'{hex}'"),
    }
}

fn text(value: Option<&str>) -> String {
    value.map_or("NULL".into(), |v| format!("'{}'", v.replace('\'', "''")))
}

struct OldJob<'a> {
    id: &'a str,
    chain: &'a str,
    step: &'a str,
    status: &'a str,
    method: &'a str,
    url: String,
    body: Option<serde_json::Value>,
    code: Option<i32>,
}

/// The old database: chain `ended` failed (`a` failed with a 500, `b` skipped),
/// and chain `running` whose `a` succeeded (its output copied into its row, as
/// then), whose `b` runs again after a retry (its failed first job still names
/// the step) and whose `c` waits, reading `a`'s output.
async fn old_database(url: &str, target: &Target) -> (String, String) {
    let db = sea_orm::Database::connect(url).await.expect("connect");
    migration::Migrator::up(&db, Some(BEFORE))
        .await
        .expect("the schema before");
    let backend = db.get_database_backend();
    let run = |sql: String| {
        let db = &db;
        async move {
            db.execute_raw(sea_orm::Statement::from_string(backend, sql.clone()))
                .await
                .unwrap_or_else(|e| panic!("an old row: {e}: {sql}"));
        }
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 60_000;
    let ttl = 86_400_000i64;
    let id = |p: &str| format!("{p}_{}", ulid::Ulid::new());
    let (ended, running) = (id("c"), id("c"));
    let chain = |id: &str, status: &str, definition: &Definition, finished: Option<i64>| {
        format!(
            "INSERT INTO chains (id, status, input, definition, tags, idempotency_key, ttl_ms, \
             created_at, updated_at, finished_at, expires_at, schedule_id, trace_context, fire_at) \
             VALUES ('{id}', '{status}', 'null', {}, '[]', NULL, {ttl}, {t0}, {t0}, {f}, {e}, NULL, NULL, NULL)",
            text(Some(&serde_json::to_string(definition).unwrap())),
            f = finished.map_or("NULL".into(), |f| f.to_string()),
            e = finished.map_or("NULL".into(), |f| (f + ttl).to_string()),
        )
    };
    let job = |j: &OldJob| {
        let finished = matches!(j.status, "succeeded" | "failed").then_some(t0 + 100);
        format!(
            "INSERT INTO jobs (id, queue, status, priority, attempt, max_attempts, retry_base, method, url, \
             headers, params, body_kind, body, timeout_ms, backoff_strategy, backoff_base_ms, backoff_max_ms, \
             ttl_ms, tags, idempotency_key, created_at, scheduled_at, run_at, started_at, finished_at, \
             lease_expires_at, expires_at, last_status_code, last_error_class, schedule_id, fire_at, \
             trace_context, chain_id, step_id, contract) VALUES \
             ('{}', 'default', '{}', 0, {}, 1, 0, '{}', {}, '{{}}', '{{}}', {}, {}, 10000, 'exponential', 1000, \
             60000, {ttl}, '[]', NULL, {t0}, {t0}, {t0}, {}, {}, NULL, {}, {}, NULL, NULL, NULL, NULL, '{}', '{}', NULL)",
            j.id,
            j.status,
            i32::from(finished.is_some()),
            j.method,
            text(Some(&j.url)),
            text(j.body.as_ref().map(|_| "json")),
            j.body
                .as_ref()
                .map_or("NULL".into(), |b| blob(backend, b.to_string().as_bytes())),
            finished.map_or("NULL".into(), |_| t0.to_string()),
            finished.map_or("NULL".into(), |f| f.to_string()),
            finished.map_or("NULL".into(), |f| (f + ttl).to_string()),
            j.code.map_or("NULL".into(), |c| c.to_string()),
            j.chain,
            j.step,
        )
    };
    let attempt = |job: &str, code: i32, body: &serde_json::Value| {
        format!(
            "INSERT INTO attempts (job_id, number, started_at, finished_at, duration_ms, status_code, headers, \
             body, body_size, truncated, error_class, error_message) VALUES \
             ('{job}', 1, {t0}, {}, 100, {code}, '{{\"Content-Type\":\"application/json\"}}', {}, {}, FALSE, NULL, NULL)",
            t0 + 100,
            blob(backend, body.to_string().as_bytes()),
            body.to_string().len(),
        )
    };
    let step_row = |chain: &str,
                    step: &str,
                    position: i32,
                    status: &str,
                    job: Option<&str>,
                    reason: Option<&str>,
                    output: Option<&str>| {
        format!(
            "INSERT INTO chain_steps (chain_id, step_id, position, status, job_id, reason, error_class, \
             output, started_at, finished_at) VALUES ('{chain}', '{step}', {position}, '{status}', {}, {}, \
             NULL, {}, {}, {})",
            text(job),
            text(reason),
            text(output),
            job.map_or("NULL".into(), |_| t0.to_string()),
            matches!(status, "succeeded" | "failed" | "skipped")
                .then_some(t0 + 100)
                .map_or("NULL".into(), |f| f.to_string()),
        )
    };

    // The chain that ended.
    let failing = target.url("/ended-a?status=500");
    run(chain(
        &ended,
        "failed",
        &Definition {
            steps: vec![
                step_def("a", &[], "GET", failing.clone(), None),
                step_def("b", &["a"], "GET", target.url("/ended-b"), None),
            ],
            input_contract: None,
        },
        Some(t0 + 100),
    ))
    .await;
    let ended_a = id("j");
    run(job(&OldJob {
        id: &ended_a,
        chain: &ended,
        step: "a",
        status: "failed",
        method: "GET",
        url: failing,
        body: None,
        code: Some(500),
    }))
    .await;
    run(attempt(&ended_a, 500, &json!({"error": "down"}))).await;
    run(step_row(
        &ended,
        "a",
        0,
        "failed",
        Some(&ended_a),
        Some("its call answered status 500"),
        None,
    ))
    .await;
    run(step_row(
        &ended,
        "b",
        1,
        "skipped",
        None,
        Some("runs only when every step it depends on succeeds (a failed)"),
        None,
    ))
    .await;

    // The chain still running.
    run(chain(
        &running,
        "running",
        &Definition {
            steps: vec![
                step_def("a", &[], "GET", target.url("/run-a"), None),
                step_def("b", &["a"], "POST", target.url("/run-b?echo=1"), Some(json!({"n": 1}))),
                step_def(
                    "c",
                    &["b"],
                    "POST",
                    target.url("/run-c?echo=1"),
                    Some(json!({"t": "{{ steps.a.output.body.token }}", "n": "{{ steps.b.output.body.n }}"})),
                ),
            ],
            input_contract: None,
        },
        None,
    ))
    .await;
    let (run_a, run_b_old, run_b) = (id("j"), id("j"), id("j"));
    run(job(&OldJob {
        id: &run_a,
        chain: &running,
        step: "a",
        status: "succeeded",
        method: "GET",
        url: target.url("/run-a"),
        body: None,
        code: Some(200),
    }))
    .await;
    run(attempt(&run_a, 200, &json!({"token": "t-1"}))).await;
    run(job(&OldJob {
        id: &run_b_old,
        chain: &running,
        step: "b",
        status: "failed",
        method: "POST",
        url: target.url("/run-b?echo=1"),
        body: Some(json!({"n": 1})),
        code: Some(503),
    }))
    .await;
    run(job(&OldJob {
        id: &run_b,
        chain: &running,
        step: "b",
        status: "queued",
        method: "POST",
        url: target.url("/run-b?echo=1"),
        body: Some(json!({"n": 1})),
        code: None,
    }))
    .await;
    let copied = r#"{"status":200,"headers":{},"body":{"token":"t-1"}}"#;
    run(step_row(
        &running,
        "a",
        0,
        "succeeded",
        Some(&run_a),
        None,
        Some(copied),
    ))
    .await;
    run(step_row(
        &running,
        "b",
        1,
        "started",
        Some(&run_b),
        None,
        None,
    ))
    .await;
    run(step_row(&running, "c", 2, "waiting", None, None, None)).await;
    db.close().await.expect("close");
    (ended, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_an_old_database_read_as_they_did_and_running_ones_go_on() {
    let target = Target::start().await.unwrap();
    let db = std::sync::Arc::new(TestDb::new().await);
    let (ended, running) = old_database(&db.url, &target).await;
    let server = Server::restart(db, |_| {}).await;
    let mut client = chains(server.addr).await;

    let read = get_chain(&mut client, &ended).await;
    assert_eq!(read.status, ChainStatus::Failed as i32, "{read:#?}");
    let a = step_of(&read, "a");
    assert_eq!(a.status, StepStatus::Failed as i32);
    assert_eq!(a.reason, "its call answered status 500");
    assert_eq!(a.attempts.len(), 1);
    let b = step_of(&read, "b");
    assert_eq!(b.status, StepStatus::Skipped as i32);
    assert!(b.reason.contains("a failed"), "{}", b.reason);

    let done = wait_chain(&mut client, &running, Duration::from_secs(15)).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert!(
        target.received_on("/run-a").is_empty(),
        "a is not run again"
    );
    assert_eq!(
        target.received_on("/run-b").len(),
        1,
        "b ran once, as its queued job"
    );
    assert_eq!(
        body_json(&target.received_on("/run-c")[0]),
        json!({"t": "t-1", "n": 1}),
        "c read a's output from a's job"
    );
    assert!(target.received_on("/ended-a").is_empty() && target.received_on("/ended-b").is_empty());
    let steps: Vec<(String, i32, usize)> = done
        .steps
        .iter()
        .map(|s| (s.id.clone(), s.status, s.attempts.len()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("a".into(), StepStatus::Succeeded as i32, 1),
            ("b".into(), StepStatus::Succeeded as i32, 1),
            ("c".into(), StepStatus::Succeeded as i32, 1),
        ]
    );
    let listed = client
        .list_chains(proto::ListChainsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.chains.len(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        target.received_on("/run-b").len(),
        1,
        "and nothing runs after"
    );
    server.stop().await;
}
