//! Limits per namespace (`JOBQUEUE_NAMESPACE_LIMITS`), through the real server
//! with keys of two namespaces: `billing` is limited, `search` is not. Past the
//! jobs it may store, billing's submits are refused with RESOURCE_EXHAUSTED and
//! nothing of them is stored (while search goes on, and billing again once room
//! is made); its calls never exceed its concurrency across its queues, nor its
//! rate; search's calls are held by neither.

mod common;

use std::time::Duration;

use common::keys::{keys_file, new_key, with_key};
use common::*;
use jobqueue::namespace::Limits;
use jobqueue::proto;
use tonic::Code;

struct Tenants {
    server: Server,
    billing: String,
    search: String,
    _keys: tempfile::TempDir,
}

async fn start(limits: &str) -> Tenants {
    let (billing, search) = (new_key(), new_key());
    let (dir, path) = keys_file(&[(&billing, "billing"), (&search, "search")]);
    let limits = Limits::parse(limits).expect("limits");
    let server = Server::start_with(|c| {
        c.keys_file = Some(path);
        c.namespace_limits = limits;
        c.maintenance_interval = Duration::from_millis(200);
    })
    .await;
    Tenants {
        server,
        billing,
        search,
        _keys: dir,
    }
}

async fn submit_as(
    client: &mut Client,
    key: &str,
    spec: proto::JobSpec,
) -> Result<proto::SubmitJobResponse, tonic::Status> {
    client
        .submit_job(with_key(proto::SubmitJobRequest { job: Some(spec) }, key))
        .await
        .map(tonic::Response::into_inner)
}

async fn listed(client: &mut Client, key: &str) -> Vec<proto::Job> {
    client
        .list_jobs(with_key(proto::ListJobsRequest::default(), key))
        .await
        .expect("list")
        .into_inner()
        .jobs
}

async fn wait_finished(client: &mut Client, key: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = listed(client, key).await;
        let done = jobs.iter().filter(|j| j.finish_time.is_some()).count();
        if done >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {count} jobs finished within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_namespace_stores_no_more_jobs_than_its_limit() {
    let Tenants {
        mut server,
        billing,
        search,
        _keys,
    } = start("billing:jobs=3").await;
    let target = Target::start().await.unwrap();
    let client = &mut server.client;
    let keyed = |key: &str| proto::JobSpec {
        idempotency_key: key.into(),
        ..get(target.url("/ok"))
    };
    for key in ["k-1", "k-2", "k-3"] {
        submit_as(client, &billing, keyed(key))
            .await
            .expect("within the limit");
    }
    let refused = submit_as(client, &billing, keyed("k-4"))
        .await
        .expect_err("one past the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt;
    assert!(
        refused.get_details_retry_info().is_some(),
        "the refusal says when to try again"
    );
    assert!(
        refused.message().contains("namespace billing") && refused.message().contains("limit is 3"),
        "{}",
        refused.message()
    );
    let batch = client
        .submit_jobs(with_key(
            proto::SubmitJobsRequest {
                jobs: vec![keyed("k-5"), keyed("k-6")],
            },
            &billing,
        ))
        .await
        .expect_err("a batch past the limit");
    assert_eq!(batch.code(), Code::ResourceExhausted);
    // A key that names a stored job takes no room: it answers that job.
    let again = submit_as(client, &billing, keyed("k-2"))
        .await
        .expect("an idempotent submit at the limit");
    assert!(again.existing);
    // Nothing of what was refused is stored, and another namespace is not held.
    assert_eq!(listed(client, &billing).await.len(), 3);
    for _ in 0..5 {
        submit_as(client, &search, get(target.url("/search")))
            .await
            .expect("search has no limit");
    }
    assert_eq!(listed(client, &search).await.len(), 5);

    // Room made (a finished job deleted): billing submits again, once the next
    // maintenance pass has counted.
    wait_finished(client, &billing, 3).await;
    let first = listed(client, &billing).await.remove(0);
    client
        .delete_job(with_key(proto::DeleteJobRequest { id: first.id }, &billing))
        .await
        .expect("delete a finished job");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match submit_as(client, &billing, keyed("k-7")).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(std::time::Instant::now() < deadline, "no room after 10 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status}"),
        }
    }
    assert_eq!(listed(client, &billing).await.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn a_namespace_runs_no_more_calls_at_once_than_its_concurrency() {
    let Tenants {
        mut server,
        billing,
        search,
        _keys,
    } = start("billing:concurrency=2").await;
    let (theirs, others) = (
        Target::start().await.unwrap(),
        Target::start().await.unwrap(),
    );
    let client = &mut server.client;
    // Two queues: the limit is the namespace's, across them.
    for queue in ["a", "b", "a", "b", "a", "b", "a", "b"] {
        submit_as(
            client,
            &billing,
            get_in(queue, theirs.url("/slow?delay_ms=250")),
        )
        .await
        .expect("submit");
    }
    for _ in 0..6 {
        submit_as(client, &search, get(others.url("/slow?delay_ms=250")))
            .await
            .expect("submit");
    }
    assert!(theirs.wait_for(8, Duration::from_secs(20)).await);
    assert!(others.wait_for(6, Duration::from_secs(20)).await);
    wait_finished(client, &billing, 8).await;
    assert_eq!(
        theirs.max_in_flight(),
        2,
        "billing's calls run two at once, never more"
    );
    assert!(
        others.max_in_flight() > 2,
        "search's calls are not held by billing's limit ({} at most at once)",
        others.max_in_flight()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_namespace_starts_no_more_calls_a_second_than_its_rate() {
    let Tenants {
        mut server,
        billing,
        search,
        _keys,
    } = start("billing:rate=5,burst=1").await;
    let (theirs, others) = (
        Target::start().await.unwrap(),
        Target::start().await.unwrap(),
    );
    let client = &mut server.client;
    let started = std::time::Instant::now();
    for queue in ["a", "b", "a", "b", "a", "b"] {
        submit_as(client, &billing, get_in(queue, theirs.url("/rated")))
            .await
            .expect("submit");
    }
    for _ in 0..6 {
        submit_as(client, &search, get(others.url("/free")))
            .await
            .expect("submit");
    }
    assert!(others.wait_for(6, Duration::from_secs(10)).await);
    let free = started.elapsed();
    assert!(theirs.wait_for(6, Duration::from_secs(20)).await);
    let rated = started.elapsed();
    // One at once, then one every 200 ms: the sixth no sooner than 1 s in.
    assert!(
        rated >= Duration::from_millis(950),
        "six calls at 5 a second took {rated:?}"
    );
    assert!(
        free < rated,
        "search's calls ({free:?}) are not held to billing's rate ({rated:?})"
    );
    server.stop().await;
}
