//! QueueService rows: beta making, reading, listing and changing queues under
//! alpha's names, and alpha's queues staying as they were.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::callers::*;
use crate::common::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::proto::{self, JobSpec, JobStatus};
use tonic::{Code, Status};

fn queue_with(name: &str, max_concurrency: i32) -> proto::CreateQueueRequest {
    proto::CreateQueueRequest {
        queue: Some(proto::Queue {
            name: name.into(),
            max_concurrency: Some(max_concurrency),
            ..Default::default()
        }),
    }
}

fn counted(stats: &proto::QueueStats) -> i64 {
    stats.waiting
        + stats.scheduled
        + stats.running
        + stats.succeeded
        + stats.failed
        + stats.canceled
}

/// A queue's settings (its state moves with time).
async fn settings(who: &Caller, name: &str) -> proto::Queue {
    proto::Queue {
        stats: None,
        ..read_queue(who, name).await
    }
}

pub async fn create_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    call!(alpha, queues.create_queue(queue_with("fresh-q", 7))).expect("alpha's fresh-q");
    let made = call!(beta, queues.create_queue(queue_with("fresh-q", 9))).unwrap_or_else(|e| {
        panic!("LEAK: beta's queue fresh-q, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (made.name.as_str(), made.max_concurrency),
        ("fresh-q", Some(9)),
        "beta's new queue, its name bare"
    );
    assert_eq!(
        settings(alpha, "fresh-q").await.max_concurrency,
        Some(7),
        "LEAK: beta's create changed alpha's fresh-q"
    );
    assert_eq!(settings(beta, "fresh-q").await.max_concurrency, Some(9));
    let before = settings(alpha, "held").await;
    let qualified = call!(beta, queues.create_queue(queue_with("alpha/held", 1)));
    assert_eq!(
        qualified.as_ref().map_err(Status::code).err(),
        Some(Code::InvalidArgument),
        "a qualified name is no queue name: {qualified:?}"
    );
    assert_eq!(before, settings(alpha, "held").await);
}

pub async fn get_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_queue(beta, "emails").await;
    let queue = own.clone();
    assert_eq!(
        (queue.name.as_str(), queue.max_concurrency),
        ("emails", Some(9)),
        "LEAK: beta's GetQueue of emails must be beta's queue, named bare"
    );
    assert_eq!(settings(alpha, "emails").await.max_concurrency, Some(7));
    for who in [alpha, beta] {
        let stats = read_queue(who, "emails").await.stats.expect("stats");
        let (_, total) = jobs_listed(
            who,
            proto::ListJobsRequest {
                queue: "emails".into(),
                ..Default::default()
            },
        )
        .await
        .expect("jobs listed");
        assert_eq!(
            counted(&stats),
            total,
            "LEAK: {}'s queue emails counts other jobs than the {total} it lists: {stats:?}",
            who.label
        );
    }
    for name in [ONLY, "held"] {
        hidden!(
            format!("GetQueue of alpha's {name}"),
            name,
            NOBODY,
            |name| call!(beta, queues.get_queue(proto::GetQueueRequest { name }))
        );
        read_queue(&w.alpha2, name).await;
    }
    let qualified = call!(
        beta,
        queues.get_queue(proto::GetQueueRequest {
            name: "alpha/emails".into()
        })
    );
    assert!(
        qualified.is_err(),
        "LEAK: beta read alpha's queue by its qualified name: {qualified:?}"
    );
}

pub async fn list_queues(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let listed = |who: &Caller, queues: Vec<proto::Queue>| -> Vec<proto::Queue> {
        for q in &queues {
            bare(&format!("ListQueues to {}", who.label), &q.name);
        }
        queues
    };
    let leaks = |queues: &[proto::Queue]| -> Vec<String> {
        queues
            .iter()
            .filter(|q| {
                [ONLY, "held"].contains(&q.name.as_str())
                    || (q.name == "emails" && q.max_concurrency != Some(9))
                    || (q.name == "fresh-q" && q.max_concurrency != Some(9))
            })
            .map(|q| format!("{q:?}"))
            .collect()
    };
    let b = all_pages!(
        beta,
        queues.list_queues(proto::ListQueuesRequest::default()),
        queues
    )
    .expect("beta lists queues");
    let b = listed(beta, b);
    let leaked = leaks(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListQueues shows beta alpha's queues {leaked:#?}"
    );
    assert!(b.iter().any(|q| q.name == "emails"), "beta's emails: {b:?}");
    let a = all_pages!(
        alpha,
        queues.list_queues(proto::ListQueuesRequest::default()),
        queues
    )
    .expect("alpha lists queues");
    let a = listed(alpha, a);
    let names: BTreeSet<&str> = a.iter().map(|q| q.name.as_str()).collect();
    assert!(
        names.contains(ONLY) && names.contains("held"),
        "alpha lists its own: {names:?}"
    );
    for q in &a {
        if q.name == "emails" {
            assert_eq!(
                q.max_concurrency,
                Some(7),
                "LEAK: alpha was shown beta's emails"
            );
        }
    }
    let token = call!(
        alpha,
        queues.list_queues(proto::ListQueuesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one queue");
    if let Ok(page) = call!(
        beta,
        queues.list_queues(proto::ListQueuesRequest {
            page_size: 1000,
            page_token: token
        })
    ) {
        let leaked = leaks(&listed(beta, page.queues));
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's queues {leaked:#?}"
        );
    }
}

fn concurrency_update(name: &str, max_concurrency: i32) -> proto::UpdateQueueRequest {
    proto::UpdateQueueRequest {
        queue: Some(proto::Queue {
            name: name.into(),
            max_concurrency: Some(max_concurrency),
            ..Default::default()
        }),
        update_mask: mask(&["max_concurrency"]),
    }
}

pub async fn update_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    for name in [ONLY, "held"] {
        let before = settings(alpha, name).await;
        hidden!(
            format!("UpdateQueue of alpha's {name}"),
            name,
            NOBODY,
            |name| call!(beta, queues.update_queue(concurrency_update(&name, 1)))
        );
        assert_eq!(
            before,
            settings(alpha, name).await,
            "LEAK: beta's UpdateQueue changed alpha's {name}"
        );
    }
    let before = settings(alpha, "emails").await;
    let changed = call!(beta, queues.update_queue(concurrency_update("emails", 11)))
        .expect("beta updates its emails");
    call!(beta, queues.update_queue(concurrency_update("emails", 9)))
        .expect("beta restores its emails");
    assert_eq!(
        (changed.name.as_str(), changed.max_concurrency),
        ("emails", Some(11))
    );
    assert_eq!(
        before,
        settings(alpha, "emails").await,
        "LEAK: beta's update of its emails changed alpha's"
    );
}

pub async fn pause_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    for name in [ONLY, "held"] {
        let before = settings(alpha, name).await;
        hidden!(
            format!("PauseQueue of alpha's {name}"),
            name,
            NOBODY,
            |name| call!(beta, queues.pause_queue(proto::PauseQueueRequest { name }))
        );
        assert_eq!(
            before,
            settings(alpha, name).await,
            "LEAK: beta's PauseQueue changed alpha's {name}"
        );
    }
    // Beta's own emails paused: alpha's runs on.
    let paused = call!(
        beta,
        queues.pause_queue(proto::PauseQueueRequest {
            name: "emails".into()
        })
    );
    let alphas = settings(alpha, "emails").await;
    let ran = if alphas.paused {
        None
    } else {
        let id = submit_as(alpha, emails_job(&w.target, "/alpha/beta-paused"))
            .await
            .id;
        Some(wait_job_of(alpha, &id, JobStatus::Succeeded).await)
    };
    let resumed = call!(
        beta,
        queues.resume_queue(proto::ResumeQueueRequest {
            name: "emails".into()
        })
    );
    let paused = paused.expect("beta pauses its emails");
    assert!(paused.paused && paused.name == "emails", "{paused:?}");
    assert!(
        !alphas.paused,
        "LEAK: beta's pause of its emails paused alpha's"
    );
    assert!(ran.is_some());
    resumed.expect("beta resumes its emails");
}

/// A paused queue of alpha's made for one row, with a job of alpha's waiting
/// in it: what a resume or a purge that leaks would start or cancel.
async fn alphas_paused(w: &World, name: &str) -> String {
    call!(
        w.alpha,
        queues.create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: name.into(),
                paused: true,
                ..Default::default()
            }),
        })
    )
    .unwrap_or_else(|e| panic!("alpha creates its paused queue {name}: {e:?}"));
    let spec = JobSpec {
        queue: name.into(),
        ..get(w.target.url(&format!("/alpha/{name}")))
    };
    submit_as(&w.alpha, spec).await.id
}

pub async fn resume_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let waiting = alphas_paused(&w, "paused-r").await;
    let before = read_job(alpha, &waiting).await;
    for name in ["paused-r", ONLY] {
        let before = settings(alpha, name).await;
        hidden!(
            format!("ResumeQueue of alpha's {name}"),
            name,
            NOBODY,
            |name| call!(
                beta,
                queues.resume_queue(proto::ResumeQueueRequest { name })
            )
        );
        assert_eq!(
            before,
            settings(alpha, name).await,
            "LEAK: beta's ResumeQueue changed alpha's {name}"
        );
    }
    assert_eq!(
        before,
        read_job(alpha, &waiting).await,
        "LEAK: beta's ResumeQueue released alpha's job waiting in paused-r"
    );
    // Alpha's emails paused, beta's paused and resumed: alpha's stays paused.
    let name = || "emails".to_string();
    call!(
        alpha,
        queues.pause_queue(proto::PauseQueueRequest { name: name() })
    )
    .expect("alpha pauses its emails");
    let paused = call!(
        beta,
        queues.pause_queue(proto::PauseQueueRequest { name: name() })
    );
    let resumed = call!(
        beta,
        queues.resume_queue(proto::ResumeQueueRequest { name: name() })
    );
    let alphas = settings(alpha, "emails").await;
    let restored = call!(
        alpha,
        queues.resume_queue(proto::ResumeQueueRequest { name: name() })
    );
    assert!(
        alphas.paused,
        "LEAK: beta's resume of its emails resumed alpha's"
    );
    restored.expect("alpha resumes its emails");
    paused.expect("beta pauses its emails, alpha's being paused");
    let resumed = resumed.expect("beta resumes its emails");
    assert!(!resumed.paused && resumed.name == "emails", "{resumed:?}");
}

pub async fn purge_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let waiting = alphas_paused(&w, "paused-p").await;
    let before = read_job(alpha, &waiting).await;
    for name in ["paused-p", ONLY] {
        let before = settings(alpha, name).await;
        hidden!(
            format!("PurgeQueue of alpha's {name}"),
            name,
            NOBODY,
            |name| call!(beta, queues.purge_queue(proto::PurgeQueueRequest { name }))
        );
        assert_eq!(before, settings(alpha, name).await);
    }
    assert_eq!(
        before,
        read_job(alpha, &waiting).await,
        "LEAK: beta's PurgeQueue canceled alpha's job waiting in paused-p"
    );
    // Beta's purge of its own emails cancels beta's queued jobs only.
    submit_as(beta, later_job(&w.target, "beta")).await;
    let queued = proto::ListJobsRequest {
        queue: "emails".into(),
        statuses: vec![JobStatus::Queued as i32],
        ..Default::default()
    };
    let alphas = job_ids(alpha, queued.clone()).await;
    let betas = job_ids(beta, queued.clone()).await;
    assert!(alphas.contains(&w.a.queued) && !betas.is_empty());
    let purged = call!(
        beta,
        queues.purge_queue(proto::PurgeQueueRequest {
            name: "emails".into()
        })
    )
    .expect("beta purges its emails");
    let alphas_after = job_ids(alpha, queued.clone()).await;
    assert_eq!(
        alphas, alphas_after,
        "LEAK: beta's purge of its emails canceled alpha's queued jobs"
    );
    assert_eq!(
        purged.canceled,
        betas.len() as i64,
        "LEAK: beta's purge of emails counts {} canceled; beta had {} queued there, alpha {}",
        purged.canceled,
        betas.len(),
        alphas.len()
    );
    assert!(job_ids(beta, queued).await.is_empty());
}
