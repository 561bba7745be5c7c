//! A database written before namespaces, upgraded in place by starting the server
//! on it with keys: everything in it lands in the `default` namespace. A key of
//! `default` finds the old queue, job (by id, list and idempotency key) and
//! contract as before; a key of another namespace finds none of them, and its
//! own queue, job and contract of the same names are new ones of its own.

mod common;

use common::keys::{keys_file, new_key, with_key};
use common::*;
use jobqueue::proto::{
    self, contract_service_client::ContractServiceClient, queue_service_client::QueueServiceClient,
};
use migration::MigratorTrait;
use sea_orm::ConnectionTrait;
use tonic::Code;

/// The schema's version before namespaces.
const BEFORE: u32 = 14;

/// An old database: a queue `emails`, a job in it with the idempotency key
/// `k-1`, and version 1 of a contract `order`. Returns the job's id.
async fn old_database(url: &str) -> String {
    let db = sea_orm::Database::connect(url).await.expect("connect");
    migration::Migrator::up(&db, Some(BEFORE))
        .await
        .expect("the schema before");
    let id = format!("j_{}", ulid::Ulid::new());
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 60_000;
    let backend = db.get_database_backend();
    for text in [
        format!(
            "INSERT INTO queues (name, paused, tokens, tokens_at, created_at, updated_at) \
             VALUES ('emails', FALSE, 0, {t0}, {t0}, {t0})"
        ),
        format!(
            "INSERT INTO jobs (id, queue, status, priority, attempt, max_attempts, retry_base, \
             method, url, headers, params, timeout_ms, backoff_strategy, backoff_base_ms, \
             backoff_max_ms, ttl_ms, tags, idempotency_key, created_at, scheduled_at, run_at, \
             finished_at, expires_at, last_status_code) VALUES \
             ('{id}', 'emails', 'succeeded', 0, 1, 3, 0, 'GET', 'http://127.0.0.1:9/old', '{{}}', \
             '{{}}', 10000, 'fixed', 1000, 60000, 86400000, '[\"old\"]', 'k-1', {t0}, {t0}, {t0}, \
             {t0}, {expires}, 200)",
            expires = t0 + 86_400_000
        ),
        "INSERT INTO job_tags (tag, job_id) VALUES ('old', 'JOB')".replace("JOB", &id),
        format!(
            "INSERT INTO contracts (name, version, description, input_schema, output_schema, \
             active, created_at) VALUES ('order', 1, 'old', '{{\"type\": \"object\"}}', NULL, \
             TRUE, {t0})"
        ),
    ] {
        db.execute_raw(sea_orm::Statement::from_string(backend, text))
            .await
            .expect("an old row");
    }
    db.close().await.expect("close");
    id
}

#[tokio::test]
async fn what_was_stored_before_namespaces_is_the_default_namespaces() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let old = old_database(&db.url).await;
    let (mine, theirs) = (new_key(), new_key());
    let (_dir, path) = keys_file(&[(&mine, "default"), (&theirs, "billing")]);
    let mut server = Server::restart(db, |c| c.keys_file = Some(path)).await;
    let mut queues = QueueServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let mut contracts = ContractServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let jobs = &mut server.client;
    let target = Target::start().await.unwrap();

    // The default namespace has it all, as it was.
    let job = jobs
        .get_job(with_key(proto::GetJobRequest { id: old.clone() }, &mine))
        .await
        .expect("the old job, by id")
        .into_inner();
    assert_eq!(
        (job.queue.as_str(), job.idempotency_key.as_str()),
        ("emails", "k-1")
    );
    let listed = jobs
        .list_jobs(with_key(
            proto::ListJobsRequest {
                queue: "emails".into(),
                tags: vec!["old".into()],
                ..Default::default()
            },
            &mine,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1, "listed by its queue and tag");
    let again = jobs
        .submit_job(with_key(
            proto::SubmitJobRequest {
                job: Some(proto::JobSpec {
                    idempotency_key: "k-1".into(),
                    ..get_in("emails", target.url("/new"))
                }),
            },
            &mine,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.existing, "its idempotency key still names it");
    assert_eq!(again.id, old);
    let queue = queues
        .get_queue(with_key(
            proto::GetQueueRequest {
                name: "emails".into(),
            },
            &mine,
        ))
        .await
        .expect("the old queue")
        .into_inner();
    assert_eq!(queue.name, "emails");
    assert_eq!(queue.stats.unwrap().succeeded, 1, "its job counts in it");
    let contract = contracts
        .get_contract(with_key(
            proto::GetContractRequest {
                name: "order".into(),
                version: 1,
            },
            &mine,
        ))
        .await
        .expect("the old contract")
        .into_inner();
    assert_eq!(contract.description, "old");

    // Another namespace sees none of it, and makes its own of the same names.
    let status = jobs
        .get_job(with_key(proto::GetJobRequest { id: old.clone() }, &theirs))
        .await
        .expect_err("another namespace's job");
    assert_eq!(status.code(), Code::NotFound);
    let status = queues
        .get_queue(with_key(
            proto::GetQueueRequest {
                name: "emails".into(),
            },
            &theirs,
        ))
        .await
        .expect_err("another namespace's queue");
    assert_eq!(status.code(), Code::NotFound);
    let status = contracts
        .get_contract(with_key(
            proto::GetContractRequest {
                name: "order".into(),
                version: 1,
            },
            &theirs,
        ))
        .await
        .expect_err("another namespace's contract");
    assert_eq!(status.code(), Code::NotFound);
    queues
        .create_queue(with_key(
            proto::CreateQueueRequest {
                queue: Some(proto::Queue {
                    name: "emails".into(),
                    ..Default::default()
                }),
            },
            &theirs,
        ))
        .await
        .expect("a queue of the same name, its own");
    let own = jobs
        .submit_job(with_key(
            proto::SubmitJobRequest {
                job: Some(proto::JobSpec {
                    idempotency_key: "k-1".into(),
                    ..get_in("emails", target.url("/theirs"))
                }),
            },
            &theirs,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!own.existing, "the key is free in its namespace");
    assert_ne!(own.id, old);
    let listed = jobs
        .list_jobs(with_key(proto::ListJobsRequest::default(), &theirs))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [own.id.as_str()], "only its own job is listed");
    assert_eq!(listed.total_size, 1);
    server.stop().await;
}
