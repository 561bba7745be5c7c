//! Health as probes read it: readiness follows the database (NOT_SERVING while it does
//! not answer, SERVING when it returns) while liveness stays SERVING; on SIGTERM
//! readiness turns NOT_SERVING first, calls are still served for the shutdown delay,
//! and the process exits 0.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto;
use tonic_health::pb::health_check_response::ServingStatus;

async fn status(addr: std::net::SocketAddr, service: &str) -> Option<ServingStatus> {
    health_status(addr, service).await
}

/// Waits until `service` reports `expected`; panics with the last answer after `within`.
async fn wait_status(
    addr: std::net::SocketAddr,
    service: &str,
    expected: ServingStatus,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = status(addr, service).await;
        if now == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never became {expected:?}; last {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_liveness_stays_serving() {
    let postgres = std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres");
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("db");
    let moved = dir.path().join("elsewhere");
    let db = TestDb::new().await;
    // On PostgreSQL the database is reached through a proxy the test can cut.
    let proxy = match postgres {
        true => Some(
            testkit::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap())
                .await
                .unwrap(),
        ),
        false => None,
    };
    let url = match &proxy {
        Some(proxy) => db.url.replace("127.0.0.1:5432", &proxy.addr.to_string()),
        None => format!("sqlite://{}/jobqueue.db?mode=rwc", folder.display()),
    };
    let server = Server::start_with(|c| {
        c.db_url = url.clone();
        c.db_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = server.addr;
    for service in ["readiness", "jobqueue.v1.JobService"] {
        wait_status(addr, service, ServingStatus::Serving, SOON).await;
    }
    assert_eq!(status(addr, "liveness").await, Some(ServingStatus::Serving));

    // The database stops answering: its folder is gone (a volume lost), or
    // PostgreSQL is cut away.
    match &proxy {
        Some(proxy) => proxy.cut().await,
        None => std::fs::rename(&folder, &moved).unwrap(),
    }
    for service in ["readiness", "jobqueue.v1.JobService"] {
        wait_status(addr, service, ServingStatus::NotServing, SOON).await;
    }
    assert_eq!(
        status(addr, "liveness").await,
        Some(ServingStatus::Serving),
        "an outage must not get the process restarted"
    );

    // It comes back: ready again, and a submit works.
    match &proxy {
        Some(proxy) => proxy.restore().await.unwrap(),
        None => std::fs::rename(&moved, &folder).unwrap(),
    }
    wait_status(addr, "readiness", ServingStatus::Serving, SOON).await;
    let mut client = server.client.clone();
    let deadline = Instant::now() + SOON;
    loop {
        match client
            .submit_job(proto::SubmitJobRequest {
                job: Some(get("http://127.0.0.1:9/after")),
            })
            .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                assert!(
                    Instant::now() < deadline,
                    "writes never came back: {status}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    server.stop().await;
}

const SOON: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_first_serves_for_the_delay_then_exits_0() {
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--shutdown-delay", "2s", "--shutdown-grace", "1s"]);
    let addr = server.addr;
    wait_status(addr, "readiness", ServingStatus::Serving, SOON).await;
    let mut client = connect(addr).await;
    let id = submit(&mut client, get("http://127.0.0.1:9/x")).await;

    let asked = Instant::now();
    server.sigterm();
    wait_status(addr, "readiness", ServingStatus::NotServing, SOON).await;
    let flipped = asked.elapsed();
    // Still serving calls during the delay, and still alive for the probe.
    assert_eq!(get_job(&mut client, &id).await.id, id);
    assert_eq!(status(addr, "liveness").await, Some(ServingStatus::Serving));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the checks ran within the delay ({:?}); readiness flipped after {flipped:?}",
        asked.elapsed()
    );
    let exit = server.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "exit {exit:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "it waited for the delay"
    );
}
