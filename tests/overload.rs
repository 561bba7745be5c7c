//! Overload answered, not queued: past `JOBQUEUE_MAX_IN_FLIGHT` calls at once a
//! call is refused with `RESOURCE_EXHAUSTED` and a retry hint while the accepted
//! ones finish and are kept; past `JOBQUEUE_KEY_RATE` a key's calls are refused
//! the same way, and another key's are not; a client's deadline is answered at
//! the deadline, and its retry with the same idempotency key makes one job.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto;
use jobqueue::store::sqlx::{self, Connection};
use tonic::Code;
use tonic_types::StatusExt;

/// A connection holding the database's write lock, so the writer's commits wait.
enum Held {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn hold_writes(url: &str) -> Held {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        Held::Sqlite(conn)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE jobs IN EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        Held::Postgres(conn)
    }
}

async fn release(held: Held) {
    match held {
        Held::Sqlite(mut c) => drop(sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap()),
        Held::Postgres(mut c) => drop(sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap()),
    }
}

fn retry_hint(status: &tonic::Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a retry hint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_most_calls_at_once_a_call_is_refused_and_the_accepted_are_kept() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.max_in_flight = 3).await;
    let held = hold_writes(&server.db.url).await;
    // Three submits wait for the writer, which waits for the lock.
    let mut waiting = Vec::new();
    for n in 0..3 {
        let mut client = server.client.clone();
        let job = get(target.url(&format!("/kept/{n}")));
        waiting.push(tokio::spawn(async move {
            client
                .submit_job(proto::SubmitJobRequest { job: Some(job) })
                .await
        }));
    }
    // Let them in first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = server.client.clone();
    let until = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        // A probe let in before the three waits too: the client gives up on it soon.
        let mut probe = tonic::Request::new(proto::SubmitJobRequest {
            job: Some(get(target.url("/probe"))),
        });
        probe.set_timeout(Duration::from_millis(200));
        let answer = client.submit_job(probe).await;
        match answer {
            Err(status) if status.code() == Code::ResourceExhausted => break status,
            other => {
                assert!(Instant::now() < until, "never refused: {other:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        refused.message().contains("JOBQUEUE_MAX_IN_FLIGHT"),
        "{refused:?}"
    );
    assert!(retry_hint(&refused) > Duration::ZERO);
    // Health still answers while the calls are full.
    connect(server.addr).await;
    release(held).await;
    let mut accepted = Vec::new();
    for call in waiting {
        // Let in, each one is answered once the lock goes; one a probe beat to a
        // slot was refused as the probes are.
        match call.await.unwrap() {
            Ok(answer) => accepted.push(answer.into_inner().id),
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert!(!accepted.is_empty());
    let stored: Vec<String> = all_jobs(&mut client)
        .await
        .into_iter()
        .map(|j| j.id)
        .collect();
    let mut expected = accepted.clone();
    expected.sort();
    let mut got = stored.clone();
    got.sort();
    // Every accepted job is kept (a probe the client gave up on may be too).
    for id in &expected {
        assert!(got.contains(id), "{id} kept: {got:?}");
    }
    assert!(
        target
            .wait_for(accepted.len(), Duration::from_secs(10))
            .await
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_rate_is_refused_and_another_is_not() {
    let keys: Vec<String> = (0..2).map(|_| jobqueue::auth::key::generate().1).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    std::fs::write(
        &file,
        serde_json::json!({"keys": keys.iter().map(|k| serde_json::json!({"key": k, "scopes": ["read"]})).collect::<Vec<_>>()})
            .to_string(),
    )
    .unwrap();
    let server = Server::start_with(|c| {
        c.keys_file = Some(file);
        c.key_rate = 2;
    })
    .await;
    let mut client = server.client.clone();
    let list = |key: &str| {
        let mut request = tonic::Request::new(proto::ListJobsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        request
    };
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(match client.list_jobs(list(&keys[0])).await {
            Ok(_) => Code::Ok,
            Err(status) => {
                assert!(status.message().contains("JOBQUEUE_KEY_RATE"), "{status:?}");
                assert!(retry_hint(&status) > Duration::ZERO);
                status.code()
            }
        });
    }
    assert!(
        codes
            .iter()
            .filter(|c| **c == Code::ResourceExhausted)
            .count()
            >= 2,
        "{codes:?}"
    );
    assert_eq!(codes[0], Code::Ok);
    client
        .list_jobs(list(&keys[1]))
        .await
        .expect("another key has its own rate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_deadline_is_honoured_and_a_retry_with_its_key_makes_one_job() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let held = hold_writes(&server.db.url).await;
    let mut client = server.client.clone();
    let job = || proto::JobSpec {
        idempotency_key: "deadline-1".into(),
        ..get(target.url("/once"))
    };
    let mut request = tonic::Request::new(proto::SubmitJobRequest { job: Some(job()) });
    request.set_timeout(Duration::from_millis(300));
    let sent = Instant::now();
    let answer = client.submit_job(request).await;
    let waited = sent.elapsed();
    let status = answer.expect_err("answered while the database was held");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "the deadline of 300 ms was answered after {waited:?}"
    );
    release(held).await;
    // The client retries with its key: one job, whether or not the first landed.
    let first = client
        .submit_job(proto::SubmitJobRequest { job: Some(job()) })
        .await
        .expect("the retry is accepted")
        .into_inner();
    let again = client
        .submit_job(proto::SubmitJobRequest { job: Some(job()) })
        .await
        .expect("and again")
        .into_inner();
    assert_eq!(first.id, again.id);
    assert!(target.wait_for(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.received_on("/once").len(), 1, "the job ran once");
    let stored = all_jobs(&mut client).await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    server.stop().await;
}
