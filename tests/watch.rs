//! WatchJobs through the real server: order, snapshot, resume by cursor, slow
//! watchers, the end of a single-job watch, and bad requests.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::{self, JobEvent, JobEventKind, JobStatus};
use tonic::Code;

const SOON: Duration = Duration::from_secs(10);

type Events = tonic::Streaming<JobEvent>;

async fn watch(
    client: &mut Client,
    request: proto::WatchJobsRequest,
) -> Result<Events, tonic::Status> {
    client.watch_jobs(request).await.map(|r| r.into_inner())
}

/// The next item, or `None` when the stream ended cleanly.
async fn next(events: &mut Events) -> Option<JobEvent> {
    tokio::time::timeout(SOON, events.message())
        .await
        .expect("an event within 10 s")
        .expect("the stream did not fail")
}

/// Every item until the stream ends cleanly.
async fn to_end(events: &mut Events) -> Vec<JobEvent> {
    let mut all = Vec::new();
    while let Some(event) = next(events).await {
        all.push(event);
    }
    all
}

fn statuses(events: &[JobEvent]) -> Vec<JobStatus> {
    events
        .iter()
        .map(|e| JobStatus::try_from(e.status).unwrap())
        .collect()
}

fn by_id(ids: &[&str]) -> proto::WatchJobsRequest {
    proto::WatchJobsRequest {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_watcher_sees_every_change_of_a_job_in_order_and_the_stream_ends() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/retry?fail=1"));
    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 100);
    spec.schedule_time = Some(in_ms(300));
    spec.tags = vec!["w".into()];
    let id = submit(&mut client, spec).await;

    let mut events = watch(
        &mut client,
        proto::WatchJobsRequest {
            snapshot: true,
            ..by_id(&[&id])
        },
    )
    .await
    .unwrap();
    let all = to_end(&mut events).await;
    assert_eq!(all[0].kind, JobEventKind::Snapshot as i32);
    assert_eq!(all[0].job_id, id);
    assert!(
        all[1..]
            .iter()
            .all(|e| e.kind == JobEventKind::Change as i32 && e.job_id == id)
    );
    use JobStatus::*;
    assert_eq!(
        statuses(&all),
        [Queued, Running, Queued, Running, Succeeded]
    );
    assert_eq!(
        all.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [0, 1, 1, 2, 2]
    );
    assert_eq!(
        all[2].status_code, 503,
        "the retry carries the outcome that caused it"
    );
    assert!(all[2].next_attempt_time.is_some());
    assert_eq!(all[4].status_code, 200);
    assert_eq!(all[4].tags, ["w"]);
    let cursors: Vec<i64> = all.iter().map(|e| e.cursor.parse().unwrap()).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursors grow: {cursors:?}"
    );
    server.stop().await;
}

fn in_ms(ms: u64) -> prost_types::Timestamp {
    let at = std::time::SystemTime::now() + Duration::from_millis(ms);
    let d = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

#[tokio::test]
async fn watching_a_finished_job_with_a_snapshot_answers_at_once_and_ends() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let id = submit(&mut client, get(target.url("/done"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let mut events = watch(
        &mut client,
        proto::WatchJobsRequest {
            snapshot: true,
            ..by_id(&[&id])
        },
    )
    .await
    .unwrap();
    let all = to_end(&mut events).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].kind, JobEventKind::Snapshot as i32);
    assert_eq!(all[0].status, JobStatus::Succeeded as i32);
    // Without a snapshot, a job that already finished leaves nothing to wait for.
    let mut events = watch(&mut client, by_id(&[&id])).await.unwrap();
    assert!(to_end(&mut events).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn cancel_and_failure_are_delivered() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut hanging = get(target.url("/hang?delay_ms=5000"));
    hanging.timeout = Some(ms(10_000));
    let hanging = submit(&mut client, hanging).await;
    let mut failing = get(target.url("/bad?status=400"));
    failing.schedule_time = Some(in_ms(300));
    let failing = submit(&mut client, failing).await;
    let mut events = watch(&mut client, by_id(&[&hanging, &failing]))
        .await
        .unwrap();
    assert!(target.wait_for(2, SOON).await);
    wait_status(&mut client, &hanging, JobStatus::Running, SOON).await;
    client
        .cancel_job(proto::CancelJobRequest {
            id: hanging.clone(),
        })
        .await
        .unwrap();
    let all = to_end(&mut events).await;
    let last: HashMap<&str, &JobEvent> = all.iter().map(|e| (e.job_id.as_str(), e)).collect();
    assert_eq!(last[hanging.as_str()].status, JobStatus::Canceled as i32);
    assert_eq!(last[failing.as_str()].status, JobStatus::Failed as i32);
    assert_eq!(last[failing.as_str()].status_code, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_resumed_watch_loses_nothing_and_repeats_nothing() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut events = watch(
        &mut client,
        proto::WatchJobsRequest {
            tags: vec!["resume".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let spec = |n: usize| {
        let mut spec = get(target.url(&format!("/r/{n}")));
        spec.tags = vec!["resume".into()];
        spec
    };
    let mut ids = Vec::new();
    for chunk in 0..4 {
        let jobs = (0..250).map(|n| spec(chunk * 250 + n)).collect();
        let answers = client
            .submit_jobs(proto::SubmitJobsRequest { jobs })
            .await
            .unwrap()
            .into_inner()
            .results;
        ids.extend(answers.into_iter().map(|a| a.id));
    }
    // Read a few hundred changes, then go away while the rest happen.
    let mut seen = Vec::new();
    while seen.len() < 300 {
        seen.push(next(&mut events).await.unwrap());
    }
    drop(events);
    assert!(target.wait_for(1000, Duration::from_secs(30)).await);
    for id in &ids {
        wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
    }
    // A job submitted now is not one of ours: the filter keeps it out.
    submit(&mut client, get(target.url("/other"))).await;

    let cursor = seen.last().unwrap().cursor.clone();
    let mut resumed = watch(
        &mut client,
        proto::WatchJobsRequest {
            tags: vec!["resume".into()],
            cursor,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    while seen.len() < 3000 {
        let event = next(&mut resumed).await.unwrap();
        if event.kind == JobEventKind::Heartbeat as i32 {
            continue;
        }
        seen.push(event);
    }
    let mut per_job: HashMap<String, Vec<JobStatus>> = HashMap::new();
    for e in &seen {
        per_job
            .entry(e.job_id.clone())
            .or_default()
            .push(JobStatus::try_from(e.status).unwrap());
    }
    assert_eq!(per_job.len(), 1000, "every job, and only ours");
    for (id, changes) in &per_job {
        assert_eq!(
            changes,
            &[JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
            "job {id}"
        );
    }
    let cursors: Vec<i64> = seen.iter().map(|e| e.cursor.parse().unwrap()).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "no repeats, in order"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_holds_nothing_up_and_catches_up_from_the_log() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    // Watches everything and reads nothing while 3,000 jobs run.
    let mut stalled = watch(
        &mut client,
        proto::WatchJobsRequest {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for chunk in 0..6 {
        let jobs = (0..500)
            .map(|n| get(target.url(&format!("/s/{}", chunk * 500 + n))))
            .collect();
        let answers = client
            .submit_jobs(proto::SubmitJobsRequest { jobs })
            .await
            .unwrap()
            .into_inner()
            .results;
        ids.extend(answers.into_iter().map(|a| a.id));
    }
    assert!(
        target.wait_for(3000, Duration::from_secs(60)).await,
        "jobs ran while a watcher stalled"
    );
    for id in &ids {
        wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
    }
    eprintln!(
        "3,000 jobs finished in {:?} with a stalled watcher",
        started.elapsed()
    );
    // The stalled watcher still gets all 9,000 changes, in order, once it reads.
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut last = 0i64;
    let mut changes = 0;
    while changes < 9000 {
        let e = next(&mut stalled).await.unwrap();
        if e.kind == JobEventKind::Heartbeat as i32 {
            continue;
        }
        let cursor: i64 = e.cursor.parse().unwrap();
        assert!(cursor > last, "in order, no repeats");
        last = cursor;
        *count.entry(e.job_id).or_default() += 1;
        changes += 1;
    }
    assert_eq!(count.len(), 3000);
    assert!(count.values().all(|n| *n == 3));
    server.stop().await;
}

#[tokio::test]
async fn an_idle_watch_sends_heartbeats() {
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut events = watch(
        &mut client,
        proto::WatchJobsRequest {
            all: true,
            heartbeat_interval: Some(ms(1000)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let beat = next(&mut events).await.unwrap();
    assert_eq!(beat.kind, JobEventKind::Heartbeat as i32);
    assert!(beat.job_id.is_empty());
    assert!(beat.cursor.parse::<i64>().is_ok());
    server.stop().await;
}

#[tokio::test]
async fn bad_watch_requests_are_refused_with_the_field() {
    let server = Server::start_with(|c| c.event_retention = Duration::from_millis(200)).await;
    let mut client = server.client.clone();
    let unknown = "j_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let err = watch(&mut client, by_id(&[unknown])).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains(unknown) && err.message().starts_with("ids"),
        "{}",
        err.message()
    );
    for (request, field) in [
        (proto::WatchJobsRequest::default(), "all"),
        (by_id(&["nope"]), "ids[0]"),
        (
            proto::WatchJobsRequest {
                all: true,
                cursor: "abc".into(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            proto::WatchJobsRequest {
                all: true,
                cursor: "-4".into(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            proto::WatchJobsRequest {
                all: true,
                snapshot: true,
                cursor: "1".into(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            proto::WatchJobsRequest {
                all: true,
                tags: vec!["x".into()],
                ..Default::default()
            },
            "all",
        ),
        (
            proto::WatchJobsRequest {
                all: true,
                heartbeat_interval: Some(ms(10)),
                ..Default::default()
            },
            "heartbeat_interval",
        ),
        (
            proto::WatchJobsRequest {
                statuses: vec![9],
                ..Default::default()
            },
            "statuses[0]",
        ),
        // JOB_STATUS_UNSPECIFIED names no status: refused, as the proto says.
        (
            proto::WatchJobsRequest {
                statuses: vec![JobStatus::Queued as i32, 0],
                ..Default::default()
            },
            "statuses[1]",
        ),
        (
            proto::WatchJobsRequest {
                all: true,
                cursor: "999999".into(),
                ..Default::default()
            },
            "cursor",
        ),
    ] {
        let err = watch(&mut client, request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}: {err:?}");
        assert_eq!(bad_fields(&err), [field], "{request:?}: {}", err.message());
    }

    // A cursor whose changes the log has pruned.
    let target = Target::start().await.unwrap();
    let id = submit(&mut client, get(target.url("/p"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let deadline = std::time::Instant::now() + SOON;
    loop {
        match watch(
            &mut client,
            proto::WatchJobsRequest {
                all: true,
                cursor: "1".into(),
                ..Default::default()
            },
        )
        .await
        {
            Err(e) if e.code() == Code::OutOfRange => {
                assert!(
                    e.message().contains("watch without a cursor"),
                    "{}",
                    e.message()
                );
                break;
            }
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("cursor 1 still accepted after its retention: {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_changes_made_by_another_process_on_the_same_database() {
    let target = Target::start().await.unwrap();
    let watched = Server::start().await;
    let other = Server::start_beside(&watched, |_| {}).await;
    let mut watching = watched.client.clone();
    let mut events = watch(
        &mut watching,
        proto::WatchJobsRequest {
            tags: vec!["elsewhere".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Submitted to, and run by, the other process.
    let mut submitting = other.client.clone();
    let mut spec = get(target.url("/elsewhere"));
    spec.tags = vec!["elsewhere".into()];
    let id = submit(&mut submitting, spec).await;
    let mut seen = Vec::new();
    while seen.last().map(|e: &JobEvent| e.status) != Some(JobStatus::Succeeded as i32) {
        let e = next(&mut events).await.unwrap();
        if e.kind == JobEventKind::Change as i32 {
            assert_eq!(e.job_id, id);
            seen.push(e);
        }
    }
    assert_eq!(
        statuses(&seen),
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]
    );
    drop(events);
    other.stop().await;
    watched.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_commit_wakes_the_other_replicas_at_once() {
    if !std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres") {
        eprintln!(
            "SKIPPED: replicas announce commits only on PostgreSQL (JOBQUEUE_TEST_DB=postgres runs this)"
        );
        return;
    }
    // Polling alone would take 30 s to notice anything.
    let slow_poll = |c: &mut jobqueue::config::Config| c.poll_interval = Duration::from_secs(30);
    let target = Target::start().await.unwrap();
    let busy = Server::start_with(|c| {
        slow_poll(c);
        c.concurrency = 1;
    })
    .await;
    let idle = Server::start_beside(&busy, slow_poll).await;
    let mut watching = idle.client.clone();
    let mut events = watch(
        &mut watching,
        proto::WatchJobsRequest {
            tags: vec!["wake".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // The busy replica's only slot is taken; a second job can only run on the idle one.
    let mut client = busy.client.clone();
    let mut blocker = get(target.url("/blocker?delay_ms=4000"));
    blocker.timeout = Some(ms(10_000));
    submit(&mut client, blocker).await;
    assert!(target.wait_for(1, SOON).await);
    let mut spec = get(target.url("/woken"));
    spec.tags = vec!["wake".into()];
    let id = submit(&mut client, spec).await;
    assert!(
        target.wait_for(2, Duration::from_secs(3)).await,
        "the idle replica was not woken"
    );
    assert_eq!(target.received()[1].path(), "/woken");
    // And the idle replica's watcher saw the other's commits without waiting for a poll.
    let first = tokio::time::timeout(Duration::from_secs(3), events.message())
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.job_id.as_str(), first.status),
        (id.as_str(), JobStatus::Queued as i32)
    );
    drop(events);
    idle.stop().await;
    busy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_watches_at_once() {
    let metrics = free_port();
    let server = Server::start_with(|c| c.metrics_addr = Some(metrics)).await;
    let watchers = |page: &str| sample(page, "jobqueue_watchers");
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut client = server.client.clone();
        let stream = watch(
            &mut client,
            proto::WatchJobsRequest {
                tags: vec![format!("t{i}")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        streams.push(stream);
    }
    assert_eq!(watchers(&metrics_page(metrics).await), Some(50.0));
    // The clients go away while nothing happens: no change or heartbeat is due for
    // 15 s, so only noticing the cancel itself frees them.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let open = watchers(&metrics_page(metrics).await);
        if open == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "still open: {open:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}
