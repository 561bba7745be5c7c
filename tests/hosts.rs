//! Destination hosts through the real service: a host's concurrency held across
//! queues and processes, its rate spacing calls, a 429's Retry-After holding
//! every job for the host, and a circuit that opens after failures, lets one
//! probe through and closes, or is reset by an operator. Every held job waits
//! queued, says why, and runs in the end.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::{self, ErrorClass, JobStatus};
use tokio_stream::StreamExt;

const SOON: Duration = Duration::from_secs(20);

/// Every change of every job on `server`, collected in the background.
fn watch_all(server: &Server) -> std::sync::Arc<std::sync::Mutex<Vec<proto::JobEvent>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let mut client = server.client.clone();
    tokio::spawn(async move {
        let mut stream = client
            .watch_jobs(proto::WatchJobsRequest {
                all: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(Ok(event)) = stream.next().await {
            kept.lock().unwrap().push(event);
        }
    });
    seen
}

fn held_as(events: &[proto::JobEvent], class: ErrorClass) -> usize {
    events
        .iter()
        .filter(|e| e.status == JobStatus::Queued as i32 && e.error_class == class as i32)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_s_concurrency_holds_across_queues_and_processes() {
    let target = Target::start().await.unwrap();
    let limits = |c: &mut jobqueue::config::Config| {
        c.host_limits = jobqueue::job::hosts::HostLimits::parse("127.0.0.1:concurrency=2").unwrap();
    };
    let first = Server::start_with(limits).await;
    let second = Server::start_beside(&first, limits).await;
    let seen = watch_all(&first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ids = Vec::new();
    for (server, queue) in [(&first, "a"), (&second, "b")] {
        let mut client = server.client.clone();
        for i in 0..4 {
            let spec = get_in(queue, target.url(&format!("/{queue}{i}?delay_ms=300")));
            ids.push((submit(&mut client, spec).await, server.client.clone()));
        }
    }
    for (id, mut client) in ids {
        wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    }
    assert_eq!(target.count(), 8);
    assert_eq!(target.max_in_flight(), 2, "two calls at once, never more");
    let events = seen.lock().unwrap().clone();
    assert!(
        held_as(&events, ErrorClass::HostLimited) > 0,
        "a held job says why: {events:?}"
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_host_s_rate_spaces_its_calls() {
    let target = Target::start().await.unwrap();
    let mut server = Server::start_with(|c| {
        c.host_limits = jobqueue::job::hosts::HostLimits::parse("*:rate=5,burst=1").unwrap();
    })
    .await;
    let specs = (0..6).map(|i| get(target.url(&format!("/r{i}")))).collect();
    let ids = submit_all(&mut server.client, specs).await;
    for id in &ids {
        wait_status(&mut server.client, id, JobStatus::Succeeded, SOON).await;
    }
    let mut at: Vec<Instant> = target.received().iter().map(|r| r.at).collect();
    at.sort();
    let span = at[5] - at[0];
    assert!(
        span >= Duration::from_millis(900),
        "six calls at 5/s took {span:?}"
    );
}

#[tokio::test]
async fn a_host_that_asks_for_time_gets_it_from_every_job() {
    // Kept in this process by default; in the store, for every process, once
    // hosts have limits.
    asks_for_time(|_| {}).await;
    asks_for_time(|c| {
        c.host_limits = jobqueue::job::hosts::HostLimits::parse("*:concurrency=100").unwrap();
    })
    .await;
}

async fn asks_for_time(tweak: impl FnOnce(&mut jobqueue::config::Config)) {
    let target = Target::start().await.unwrap();
    let mut server = Server::start_with(tweak).await;
    let mut asks = get(target.url("/busy?status=429&retry_after=2"));
    asks.max_attempts = Some(1);
    let first = submit(&mut server.client, asks).await;
    wait_status(&mut server.client, &first, JobStatus::Failed, SOON).await;
    let answered = target.received_on("/busy")[0].at;
    // Another job, another queue, same host: it waits for the time asked.
    let other = submit(
        &mut server.client,
        get_in("elsewhere", target.url("/other")),
    )
    .await;
    let waiting = wait_job(&mut server.client, &other, SOON, |j| {
        j.last_error_class == ErrorClass::HostLimited as i32
    })
    .await;
    assert_eq!(waiting.status, JobStatus::Queued as i32);
    assert_eq!(waiting.attempt, 0, "held, not attempted");
    assert!(waiting.next_attempt_time.is_some());
    wait_status(&mut server.client, &other, JobStatus::Succeeded, SOON).await;
    let waited = target.received_on("/other")[0].at - answered;
    assert!(
        waited >= Duration::from_millis(1_800),
        "called {waited:?} after the 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_failures_and_one_probe_closes_it() {
    let target = Target::start().await.unwrap();
    let metrics = free_port();
    let mut server = Server::start_with(|c| {
        c.host_breaker = Some(jobqueue::job::hosts::Breaker::parse("failures=2,open=2s").unwrap());
        c.metrics_addr = Some(metrics);
    })
    .await;
    let client = &mut server.client;
    for i in 0..2 {
        let mut down = get(target.url(&format!("/down{i}?status=500")));
        down.max_attempts = Some(1);
        let id = submit(client, down).await;
        wait_status(client, &id, JobStatus::Failed, SOON).await;
    }
    let opened = Instant::now();
    let open = metrics_page(metrics).await;
    assert_eq!(
        sample(&open, r#"jobqueue_host_circuit_open{host="127.0.0.1"}"#),
        Some(1.0),
        "{open}"
    );
    // Two jobs wait while it is open; one of them is the probe, then both run.
    let probe = submit(client, get(target.url("/up1"))).await;
    let held = wait_job(client, &probe, SOON, |j| {
        j.last_error_class == ErrorClass::CircuitOpen as i32
    })
    .await;
    assert_eq!((held.status, held.attempt), (JobStatus::Queued as i32, 0));
    let second = submit(client, get(target.url("/up2"))).await;
    for id in [&probe, &second] {
        wait_status(client, id, JobStatus::Succeeded, SOON).await;
    }
    assert!(
        target.received_on("/up1")[0].at - opened >= Duration::from_millis(1_500),
        "no call while open"
    );
    let closed = metrics_page(metrics).await;
    assert_eq!(
        sample(&closed, r#"jobqueue_host_circuit_open{host="127.0.0.1"}"#),
        Some(0.0)
    );
    // Closed: the next call goes at once.
    let now = Instant::now();
    let next = submit(client, get(target.url("/up3"))).await;
    wait_status(client, &next, JobStatus::Succeeded, SOON).await;
    assert!(now.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_closes_an_open_circuit() {
    let target = Target::start().await.unwrap();
    let mut server = Server::start_with(|c| {
        c.host_breaker = Some(jobqueue::job::hosts::Breaker::parse("failures=1,open=1h").unwrap());
    })
    .await;
    let url = server.db.url.clone();
    let client = &mut server.client;
    let mut down = get(target.url("/down?status=503"));
    down.max_attempts = Some(1);
    let id = submit(client, down).await;
    wait_status(client, &id, JobStatus::Failed, SOON).await;
    let waiting = submit(client, get(target.url("/later"))).await;
    wait_job(client, &waiting, SOON, |j| {
        j.last_error_class == ErrorClass::CircuitOpen as i32
    })
    .await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
            .args(["hosts"])
            .args(args)
            .args(["--db-url", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, listed) = cli(&["list"]);
    assert!(
        ok && listed.contains("127.0.0.1") && listed.contains("open for"),
        "{listed}"
    );
    let (ok, said) = cli(&["reset", "nowhere.example"]);
    assert!(!ok && said.contains("no state is kept"), "{said}");
    let (ok, said) = cli(&["reset", "127.0.0.1"]);
    assert!(ok, "{said}");
    let reset = Instant::now();
    wait_status(client, &waiting, JobStatus::Succeeded, SOON).await;
    assert!(reset.elapsed() < Duration::from_secs(5), "taken at once");
    let (_, listed) = cli(&["list"]);
    assert!(listed.contains("closed"), "{listed}");
}

#[test]
fn bad_host_settings_stop_the_start_naming_the_setting() {
    for (flag, value) in [
        ("--host-limits", "127.0.0.1:speed=3"),
        ("--host-breaker", "failures=3"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
            .args([
                "serve",
                "--listen-addr",
                "127.0.0.1:0",
                "--db-url",
                "sqlite::memory:",
            ])
            .args([flag, value])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(said.contains(flag), "{said}");
    }
}
