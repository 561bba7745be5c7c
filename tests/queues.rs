//! Named queues through the real server: isolation, limits, pause, resume, purge,
//! state, job defaults, and every refusal.

mod common;

use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobStatus};
use tonic::Code;

const SOON: Duration = Duration::from_secs(10);

fn queue(name: &str) -> proto::Queue {
    proto::Queue {
        name: name.into(),
        ..Default::default()
    }
}

async fn create(queues: &mut Queues, q: proto::Queue) -> proto::Queue {
    queues
        .create_queue(proto::CreateQueueRequest { queue: Some(q) })
        .await
        .expect("queue created")
        .into_inner()
}

async fn wait_all(client: &mut Client, ids: &[String], status: JobStatus, within: Duration) {
    for id in ids {
        wait_status(client, id, status, within).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_target_hangs_leaves_the_others_their_slots() {
    let hanging = Target::start().await.unwrap();
    let fast = Target::start().await.unwrap();
    let server = Server::start_with(|c| {
        c.concurrency = 64;
        c.queue_concurrency = 8;
    })
    .await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    // First the queue that hangs, with more jobs than it has slots.
    let stuck: Vec<_> = (0..40)
        .map(|i| {
            let mut spec = get_in("stuck", hanging.url(&format!("/hang/{i}?mode=hang")));
            spec.timeout = Some(ms(60_000));
            spec
        })
        .collect();
    submit_all(&mut client, stuck).await;
    assert!(hanging.wait_for(8, SOON).await);
    // Then the other queue: every job of it runs, using all of its own slots.
    let quick: Vec<_> = (0..300)
        .map(|i| get_in("quick", fast.url(&format!("/quick/{i}?delay_ms=20"))))
        .collect();
    let ids = submit_all(&mut client, quick).await;
    wait_all(&mut client, &ids, JobStatus::Succeeded, SOON).await;
    assert_eq!(fast.count(), 300);
    assert_eq!(fast.max_in_flight(), 8, "the quick queue had all its slots");
    // The hanging queue never held more than its share, and the rest of it waits.
    assert_eq!(hanging.count(), 8);
    let state = queue_state(&mut queues, "stuck").await;
    let stats = state.stats.unwrap();
    assert_eq!((stats.running, stats.waiting), (8, 32));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_limited_to_three_never_has_a_fourth_call_open_across_processes() {
    let target = Target::start().await.unwrap();
    let first = Server::start().await;
    let second = Server::start_beside(&first, |_| {}).await;
    let mut queues = queues(first.addr).await;
    let created = create(
        &mut queues,
        proto::Queue {
            max_concurrency: Some(3),
            ..queue("narrow")
        },
    )
    .await;
    assert_eq!(created.max_concurrency, Some(3));
    // Jobs arrive through both processes, and both claim.
    let mut ids = Vec::new();
    for (n, server) in [&first, &second].into_iter().enumerate() {
        let mut client = server.client.clone();
        let specs = (0..15)
            .map(|i| get_in("narrow", target.url(&format!("/n/{n}/{i}?delay_ms=200"))))
            .collect();
        ids.extend(submit_all(&mut client, specs).await);
    }
    let mut client = first.client.clone();
    wait_all(
        &mut client,
        &ids,
        JobStatus::Succeeded,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(target.count(), 30);
    assert_eq!(
        target.max_in_flight(),
        3,
        "at most 3 at once, and 3 were used"
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_twenty_a_second_holds_over_ten_seconds() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    create(
        &mut queues,
        proto::Queue {
            rate_limit: Some(proto::RateLimit {
                per_second: 20.0,
                burst: Some(1),
            }),
            ..queue("paced")
        },
    )
    .await;
    let specs = (0..260)
        .map(|i| get_in("paced", target.url(&format!("/paced/{i}"))))
        .collect();
    submit_all(&mut client, specs).await;
    // Ten seconds from the first call, then count what arrived in them.
    assert!(target.wait_for(1, SOON).await);
    let start = target.received()[0].at;
    tokio::time::sleep_until((start + Duration::from_secs(10)).into()).await;
    let window = target
        .received()
        .iter()
        .filter(|r| r.at < start + Duration::from_secs(10))
        .count();
    assert!(
        (180..=220).contains(&window),
        "{window} calls in 10 s at 20/s"
    );
    // The state reports the rate.
    let stats = queue_state(&mut queues, "paced").await.stats.unwrap();
    assert!(
        (180..=240).contains(&stats.dispatched_last_minute),
        "{stats:?}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_starts_at_once_and_the_rest_wait_for_tokens() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    create(
        &mut queues,
        proto::Queue {
            rate_limit: Some(proto::RateLimit {
                per_second: 2.0,
                burst: Some(5),
            }),
            ..queue("bursty")
        },
    )
    .await;
    let specs = (0..7)
        .map(|i| get_in("bursty", target.url(&format!("/b/{i}"))))
        .collect();
    let ids = submit_all(&mut client, specs).await;
    assert!(target.wait_for(7, SOON).await);
    // Measured on the claims' clock, which the bucket counts on: the target's clock
    // adds each call's way there, which varies under load.
    let mut started = Vec::new();
    for id in &ids {
        let job = get_job(&mut client, id).await;
        started.push(millis(job.start_time.as_ref().expect("started")));
    }
    started.sort();
    let after_first: Vec<i64> = started.iter().map(|t| t - started[0]).collect();
    // Five together, then one token every 500 ms: the sixth no sooner than 500 ms
    // after the burst, the seventh no sooner than 1 s. (A claim that comes late
    // keeps the fraction of a token it did not use, so the gap between the sixth
    // and the seventh alone may be shorter.)
    assert!(after_first[4] < 300, "{after_first:?}");
    assert!(after_first[5] >= 500, "{after_first:?}");
    assert!(after_first[6] >= 1000, "{after_first:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_lets_running_calls_finish_and_starts_nothing_until_resume() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let other = Server::start_beside(&server, |_| {}).await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    create(
        &mut queues,
        proto::Queue {
            max_concurrency: Some(2),
            ..queue("lane")
        },
    )
    .await;
    let running = submit_all(
        &mut client,
        (0..2)
            .map(|i| get_in("lane", target.url(&format!("/first/{i}?delay_ms=1000"))))
            .collect(),
    )
    .await;
    assert!(target.wait_for(2, SOON).await);
    let paused = queues
        .pause_queue(proto::PauseQueueRequest {
            name: "lane".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    // Submits are still accepted, through either process.
    let mut other_client = other.client.clone();
    let waiting = submit_all(
        &mut other_client,
        (0..3)
            .map(|i| get_in("lane", target.url(&format!("/later/{i}"))))
            .collect(),
    )
    .await;
    wait_all(&mut client, &running, JobStatus::Succeeded, SOON).await;
    // Nothing new starts on either process, polls and announcements included.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(target.count(), 2);
    let state = queue_state(&mut queues, "lane").await;
    assert!(state.paused);
    let stats = state.stats.unwrap();
    assert_eq!(
        (stats.waiting, stats.running, stats.succeeded),
        (3, 0, 2),
        "{stats:?}"
    );
    assert!(stats.oldest_waiting_age.unwrap().seconds >= 1, "{stats:?}");
    assert_eq!(stats.dispatched_last_minute, 2);
    // Pausing twice is refused, and so is resuming a queue that runs.
    let again = queues
        .pause_queue(proto::PauseQueueRequest {
            name: "lane".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let resumed = queues
        .resume_queue(proto::ResumeQueueRequest {
            name: "lane".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.paused);
    wait_all(&mut client, &waiting, JobStatus::Succeeded, SOON).await;
    assert_eq!(target.count(), 5);
    let twice = queues
        .resume_queue(proto::ResumeQueueRequest {
            name: "lane".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");
    other.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_cancels_exactly_the_queued_jobs_of_its_queue() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    create(
        &mut queues,
        proto::Queue {
            max_concurrency: Some(2),
            ..queue("purged")
        },
    )
    .await;
    let mut watching = client.clone();
    let mut events = watching
        .watch_jobs(proto::WatchJobsRequest {
            queue: "purged".into(),
            statuses: vec![JobStatus::Canceled as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids = submit_all(
        &mut client,
        (0..7)
            .map(|i| get_in("purged", target.url(&format!("/p/{i}?delay_ms=800"))))
            .collect(),
    )
    .await;
    // Another queue's queued jobs stay as they are.
    let mut later = get_in("kept", target.url("/kept"));
    later.schedule_time = Some(prost_types::Timestamp {
        seconds: (jobqueue::now_ms() / 1000) + 3600,
        nanos: 0,
    });
    let kept = submit(&mut client, later).await;
    assert!(target.wait_for(2, SOON).await);

    let purged = queues
        .purge_queue(proto::PurgeQueueRequest {
            name: "purged".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.canceled, 5);
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(status_of(&get_job(&mut client, id).await));
    }
    let canceled = statuses
        .iter()
        .filter(|s| **s == JobStatus::Canceled)
        .count();
    assert_eq!(canceled, 5, "{statuses:?}");
    // The two that were running finish.
    for (id, status) in ids.iter().zip(&statuses) {
        if *status != JobStatus::Canceled {
            wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
        }
    }
    assert_eq!(target.count(), 2);
    assert_eq!(
        status_of(&get_job(&mut client, &kept).await),
        JobStatus::Queued
    );
    // Watchers hear of each cancel.
    for _ in 0..5 {
        let event = tokio::time::timeout(SOON, events.message())
            .await
            .expect("a cancel event")
            .unwrap()
            .unwrap();
        assert_eq!(event.status, JobStatus::Canceled as i32);
    }
    // Purging an empty queue cancels nothing.
    let empty = queues
        .purge_queue(proto::PurgeQueueRequest {
            name: "purged".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.canceled, 0);
    drop(events);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_s_job_defaults_fill_what_a_job_leaves_unset() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    create(
        &mut queues,
        proto::Queue {
            job_defaults: Some(proto::JobDefaults {
                timeout: Some(ms(200)),
                max_attempts: Some(1),
                backoff: backoff(proto::BackoffStrategy::Fixed, 10),
                ttl: Some(ms(3_600_000)),
            }),
            ..queue("strict")
        },
    )
    .await;
    // Left unset: the queue's timeout and single attempt apply.
    let defaulted = submit(
        &mut client,
        get_in("strict", target.url("/slow?delay_ms=1000")),
    )
    .await;
    let job = wait_status(&mut client, &defaulted, JobStatus::Failed, SOON).await;
    assert_eq!(job.max_attempts, 1);
    assert_eq!(job.timeout, Some(ms(200)));
    assert_eq!(job.ttl, Some(ms(3_600_000)));
    let outcome = result(&mut client, &defaulted).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(
        outcome.attempts[0].error_class,
        proto::ErrorClass::Timeout as i32
    );
    // Set by the job: its own values win.
    let mut own = get_in("strict", target.url("/own?fail=1"));
    own.max_attempts = Some(2);
    own.timeout = Some(ms(5_000));
    let own = submit(&mut client, own).await;
    let job = wait_status(&mut client, &own, JobStatus::Succeeded, SOON).await;
    assert_eq!((job.max_attempts, job.attempt), (2, 2));
    assert_eq!(job.timeout, Some(ms(5_000)));

    // An update changes only what its mask names.
    let updated = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(proto::Queue {
                max_concurrency: Some(4),
                ..queue("strict")
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_concurrency".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.max_concurrency, Some(4));
    let defaults = updated.job_defaults.expect("defaults kept");
    assert_eq!(defaults.timeout, Some(ms(200)));
    // No mask: what the request sets changes, the rest stays (AIP-134).
    let rated = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(proto::Queue {
                rate_limit: Some(proto::RateLimit {
                    per_second: 5.0,
                    burst: Some(2),
                }),
                ..queue("strict")
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rated.rate_limit.as_ref().map(|r| r.per_second), Some(5.0));
    assert_eq!(rated.max_concurrency, Some(4), "not set, so kept");
    assert_eq!(
        rated.job_defaults.and_then(|d| d.timeout),
        Some(ms(200)),
        "not set, so kept"
    );
    // `*`: everything as the request has it, unset settings cleared.
    let replaced = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(proto::Queue {
                max_concurrency: Some(1),
                ..queue("strict")
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["*".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.max_concurrency, Some(1));
    assert_eq!(replaced.rate_limit, None);
    assert_eq!(replaced.job_defaults, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_made_on_first_use_or_only_by_create_as_configured() {
    let target = Target::start().await.unwrap();
    let open = Server::start().await;
    let mut client = open.client.clone();
    let mut queues = queues(open.addr).await;
    let id = submit(&mut client, get_in("fresh", target.url("/fresh"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let state = queue_state(&mut queues, "fresh").await;
    assert_eq!(state.stats.unwrap().succeeded, 1);
    let listed = queues
        .list_queues(proto::ListQueuesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.queues.len(), 1);
    assert!(!listed.next_page_token.is_empty());
    let rest = queues
        .list_queues(proto::ListQueuesRequest {
            page_size: 10,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = listed
        .queues
        .iter()
        .chain(&rest.queues)
        .map(|q| q.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["default", "fresh"]);
    assert!(rest.next_page_token.is_empty());
    open.stop().await;

    let strict = Server::start_with(|c| c.create_queues_on_use = false).await;
    let mut client = strict.client.clone();
    let mut queues = common::queues(strict.addr).await;
    let refused = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![
                get_in("default", target.url("/ok")),
                get_in("unknown", target.url("/no")),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert!(refused.message().contains("unknown"), "{refused:?}");
    let none = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.total_size, 0, "a refused batch stores nothing");
    create(&mut queues, queue("unknown")).await;
    let id = submit(&mut client, get_in("unknown", target.url("/yes"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_requests_are_refused_and_change_nothing() {
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    let refuse = |q: proto::Queue| proto::CreateQueueRequest { queue: Some(q) };
    for (q, field) in [
        (queue("Bad!"), "queue.name"),
        (queue(""), "queue.name"),
        (
            proto::Queue {
                max_concurrency: Some(0),
                ..queue("zero")
            },
            "queue.max_concurrency",
        ),
        (
            proto::Queue {
                max_concurrency: Some(-2),
                ..queue("negative")
            },
            "queue.max_concurrency",
        ),
        (
            proto::Queue {
                rate_limit: Some(proto::RateLimit {
                    per_second: 0.0,
                    burst: None,
                }),
                ..queue("still")
            },
            "queue.rate_limit.per_second",
        ),
        (
            proto::Queue {
                rate_limit: Some(proto::RateLimit {
                    per_second: -5.0,
                    burst: None,
                }),
                ..queue("backwards")
            },
            "queue.rate_limit.per_second",
        ),
        (
            proto::Queue {
                rate_limit: Some(proto::RateLimit {
                    per_second: 5.0,
                    burst: Some(0),
                }),
                ..queue("noburst")
            },
            "queue.rate_limit.burst",
        ),
        (
            proto::Queue {
                job_defaults: Some(proto::JobDefaults {
                    timeout: Some(ms(0)),
                    ..Default::default()
                }),
                ..queue("notime")
            },
            "queue.job_defaults.timeout",
        ),
        (
            proto::Queue {
                job_defaults: Some(proto::JobDefaults {
                    max_attempts: Some(0),
                    ..Default::default()
                }),
                ..queue("noattempts")
            },
            "queue.job_defaults.max_attempts",
        ),
    ] {
        let error = queues.create_queue(refuse(q.clone())).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{q:?}: {error:?}");
        assert_eq!(bad_fields(&error), [field], "{q:?}: {error:?}");
        if !q.name.is_empty() && q.name != "Bad!" {
            let missing = queues
                .get_queue(proto::GetQueueRequest { name: q.name })
                .await
                .unwrap_err();
            assert_eq!(missing.code(), Code::NotFound, "nothing was created");
        }
    }
    // A job naming a bad queue.
    let error = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(get_in("Nope Nope", "http://127.0.0.1:9/")),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&error), ["job.queue"]);
    // Unknown queues.
    let unknown = "ghost".to_string();
    let paused = queues
        .pause_queue(proto::PauseQueueRequest {
            name: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(paused.code(), Code::NotFound, "{paused:?}");
    let purged = queues
        .purge_queue(proto::PurgeQueueRequest {
            name: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(purged.code(), Code::NotFound, "{purged:?}");
    let resumed = queues
        .resume_queue(proto::ResumeQueueRequest {
            name: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(resumed.code(), Code::NotFound, "{resumed:?}");
    let updated = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(queue(&unknown)),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(updated.code(), Code::NotFound, "{updated:?}");
    let bad_name = queues
        .pause_queue(proto::PauseQueueRequest {
            name: "UPPER".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&bad_name), ["name"]);
    // Resuming a queue that runs; creating one that exists.
    let resumed = queues
        .resume_queue(proto::ResumeQueueRequest {
            name: "default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(resumed.code(), Code::FailedPrecondition, "{resumed:?}");
    let exists = queues
        .create_queue(refuse(queue("default")))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::AlreadyExists, "{exists:?}");
    // A mask naming no setting, and a page token the service did not make.
    let mask = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(queue("default")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["paused".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&mask), ["update_mask.paths[0]"]);
    let token = queues
        .list_queues(proto::ListQueuesRequest {
            page_size: 0,
            page_token: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&token), ["page_token"]);
    let size = queues
        .list_queues(proto::ListQueuesRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&size), ["page_size"]);
    // The default queue is as it was.
    let state = queue_state(&mut queues, "default").await;
    let q = state.clone();
    assert!(!q.paused && q.max_concurrency.is_none() && q.rate_limit.is_none());
    server.stop().await;
}

/// A queue's `follow_redirects` is set, read back, changed alone through its
/// mask, and refused past its most (what following does is in `tests/ssrf.rs`).
#[tokio::test]
async fn a_queue_says_how_many_redirects_its_calls_follow() {
    let server = Server::start().await;
    let mut queues = queues(server.addr).await;
    let too_many = queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "hops".into(),
                follow_redirects: 11,
                ..Default::default()
            }),
        })
        .await
        .expect_err("more than 10 redirects");
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_fields(&too_many), ["queue.follow_redirects"]);
    let created = create(
        &mut queues,
        proto::Queue {
            name: "hops".into(),
            max_concurrency: Some(4),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created.follow_redirects, 0, "none unless asked");
    let updated = queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(proto::Queue {
                name: "hops".into(),
                follow_redirects: 3,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["follow_redirects".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.follow_redirects, 3);
    assert_eq!(
        updated.max_concurrency,
        Some(4),
        "the mask changes nothing else"
    );
    let read = queue_state(&mut queues, "hops").await;
    assert_eq!(read.follow_redirects, 3);
    server.stop().await;
}
