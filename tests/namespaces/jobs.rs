//! JobService rows: submitting under alpha's idempotency keys, reading, listing
//! and watching alpha's jobs from beta, and every change to them.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::callers::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::proto::{self, JobEvent, JobSpec, JobStatus};
use serde_json::json;
use tonic::{Code, Status};

pub async fn submit_job(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    // `k-1` names its own namespace's job, for every key of that namespace.
    for (who, own, other) in [
        (beta, &w.b.done, &w.a.done),
        (alpha, &w.a.done, &w.b.done),
        (&w.alpha2, &w.a.done, &w.b.done),
    ] {
        let again = submit_as(who, k1_job(t, who.ns)).await;
        assert!(
            again.existing && &again.id == own,
            "{}'s `k-1` must answer its namespace's job {own} (existing), never {other}: {again:?}",
            who.label
        );
    }
    // A key alpha used first is new to beta.
    let first = submit_as(alpha, keyed(later_job(t, "alpha"), "k-fresh")).await;
    assert!(!first.existing, "{first:?}");
    let second = submit_as(beta, keyed(later_job(t, "beta"), "k-fresh")).await;
    assert!(
        !second.existing && second.id != first.id,
        "LEAK: beta's first `k-fresh` must make beta a job of its own, not answer alpha's {}: {second:?}",
        first.id
    );
    let again = submit_as(alpha, keyed(later_job(t, "alpha"), "k-fresh")).await;
    assert!(again.existing && again.id == first.id, "{again:?}");
    bare("beta's job", &read_job(beta, &second.id).await.queue);

    // A template or queue only alpha has, as one nobody has.
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "SubmitJob from a template only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            jobs.submit_job(proto::SubmitJobRequest {
                job: Some(template_job(&name, json!({"id": 1})))
            })
        )
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "SubmitJob into a queue only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            jobs.submit_job(proto::SubmitJobRequest {
                job: Some(JobSpec {
                    queue: name,
                    ..later_job(t, "beta")
                })
            })
        )
    );
    let qualified = call!(
        beta,
        jobs.submit_job(proto::SubmitJobRequest {
            job: Some(JobSpec {
                queue: "alpha/emails".into(),
                ..later_job(t, "beta")
            })
        })
    );
    assert!(
        qualified.is_err(),
        "LEAK: beta submitted into alpha's queue by its qualified name: {qualified:?}"
    );
    // The template both have: beta's own, whose contract takes what alpha's refuses.
    let made = call!(
        beta,
        jobs.submit_job(proto::SubmitJobRequest {
            job: Some(template_job("notify", json!({"name": "from-beta"})))
        })
    )
    .unwrap_or_else(|e| {
        panic!("beta's job from its own template `notify` (its input fits beta's `order`, not alpha's) was refused: {e:?}")
    });
    let job = wait_job_of(beta, &made.id, JobStatus::Succeeded).await;
    assert_eq!(job.queue, "emails", "beta's template's queue, bare");
    assert_eq!(
        t.received_on("/beta/notify/from-beta").len(),
        1,
        "beta's job called beta's template's url"
    );
    assert!(t.received_on("/alpha/notify/from-beta").is_empty());
}

pub async fn submit_jobs(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let batch = |ns| vec![k2_job(t, ns), keyed(later_job(t, ns), "k-batch")];
    let a = call!(
        alpha,
        jobs.submit_jobs(proto::SubmitJobsRequest {
            jobs: batch("alpha")
        })
    )
    .expect("alpha's batch")
    .results;
    assert!(a[0].existing && a[0].id == w.a.failed, "{a:?}");
    assert!(!a[1].existing, "{a:?}");
    let b = call!(
        beta,
        jobs.submit_jobs(proto::SubmitJobsRequest {
            jobs: batch("beta")
        })
    )
    .expect("beta's batch")
    .results;
    assert!(
        b[0].existing && b[0].id == w.b.failed,
        "beta's `k-2` must answer beta's job {} (existing), never alpha's {}: {b:?}",
        w.b.failed,
        w.a.failed
    );
    assert!(
        !b[1].existing && b[1].id != a[1].id,
        "LEAK: beta's first `k-batch` must make beta a job, not answer alpha's {}: {b:?}",
        a[1].id
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "SubmitJobs with a job from a template only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            jobs.submit_jobs(proto::SubmitJobsRequest {
                jobs: vec![later_job(t, "beta"), template_job(&name, json!({"id": 1}))]
            })
        )
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "SubmitJobs with a job in a queue only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            jobs.submit_jobs(proto::SubmitJobsRequest {
                jobs: vec![
                    later_job(t, "beta"),
                    JobSpec {
                        queue: name,
                        ..later_job(t, "beta")
                    }
                ]
            })
        )
    );
}

pub async fn get_job_row(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_job();
    let mut theirs = w.a.jobs();
    theirs.push(("alpha-only's run", &w.only.only_run));
    for (what, id) in theirs {
        hidden!(format!("GetJob of alpha's {what}"), id, &fake, |id| call!(
            beta,
            jobs.get_job(proto::GetJobRequest { id })
        ));
    }
    hidden!(
        "GetJob of beta's finished job, by alpha",
        &w.b.done,
        &fake,
        |id| call!(alpha, jobs.get_job(proto::GetJobRequest { id }))
    );
    let shared = read_job(&w.alpha2, &w.a.done).await;
    assert_eq!(
        shared.id, w.a.done,
        "a second key of alpha reads alpha's job"
    );
    for (what, id) in w.b.jobs() {
        let job = read_job(beta, id).await;
        assert_eq!(job.queue, "emails", "beta's {what}: its queue, bare");
    }
}

pub async fn get_job_result(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_job();
    for (what, id) in w.a.jobs() {
        hidden!(
            format!("GetJobResult of alpha's {what}"),
            id,
            &fake,
            |id| call!(beta, jobs.get_job_result(proto::GetJobResultRequest { id }))
        );
    }
    hidden!(
        "GetJobResult of beta's finished job, by alpha",
        &w.b.done,
        &fake,
        |id| call!(
            alpha,
            jobs.get_job_result(proto::GetJobResultRequest { id })
        )
    );
    let shared = call!(
        w.alpha2,
        jobs.get_job_result(proto::GetJobResultRequest {
            id: w.a.done.clone()
        })
    )
    .expect("a second key of alpha reads alpha's result");
    assert_eq!(shared.attempts.len(), 1);
}

pub async fn list_jobs(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let alpha_known = w.alpha_jobs();
    let beta_known = w.b.job_ids();
    let filters = [
        ("every job", proto::ListJobsRequest::default()),
        (
            "queue emails",
            proto::ListJobsRequest {
                queue: "emails".into(),
                ..Default::default()
            },
        ),
        (
            "tag t",
            proto::ListJobsRequest {
                tags: vec!["t".into()],
                ..Default::default()
            },
        ),
        (
            "schedule nightly",
            proto::ListJobsRequest {
                schedule_id: "nightly".into(),
                ..Default::default()
            },
        ),
        (
            "status succeeded",
            proto::ListJobsRequest {
                statuses: vec![JobStatus::Succeeded as i32],
                ..Default::default()
            },
        ),
    ];
    for (what, filter) in filters {
        let (a_jobs, a_total) = jobs_listed(alpha, filter.clone())
            .await
            .unwrap_or_else(|e| panic!("alpha lists by {what}: {e:?}"));
        let (b_jobs, b_total) = jobs_listed(beta, filter.clone())
            .await
            .unwrap_or_else(|e| panic!("beta lists by {what}: {e:?}"));
        let a_ids: BTreeSet<&str> = a_jobs.iter().map(|j| j.id.as_str()).collect();
        let b_ids: BTreeSet<&str> = b_jobs.iter().map(|j| j.id.as_str()).collect();
        let both: Vec<&&str> = a_ids.intersection(&b_ids).collect();
        assert!(
            both.is_empty(),
            "LEAK: ListJobs by {what} lists these jobs to both namespaces: {both:?}"
        );
        let leaked: Vec<&&str> = b_ids
            .iter()
            .filter(|id| alpha_known.contains(**id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: ListJobs by {what} shows beta alpha's jobs {leaked:?}"
        );
        let leaked: Vec<&&str> = a_ids
            .iter()
            .filter(|id| beta_known.contains(**id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: ListJobs by {what} shows alpha beta's jobs {leaked:?}"
        );
        assert!(
            !b_ids.is_empty(),
            "ListJobs by {what} shows beta none of its own jobs"
        );
        assert_eq!(
            b_total,
            b_jobs.len() as i64,
            "LEAK: ListJobs by {what}: beta's total_size counts more than beta's jobs"
        );
        assert_eq!(
            a_total,
            a_jobs.len() as i64,
            "ListJobs by {what}: alpha's total_size counts more than alpha's jobs"
        );
        for job in a_jobs.iter().chain(&b_jobs) {
            bare(&format!("ListJobs by {what}: job {}", job.id), &job.queue);
        }
        let shared: BTreeSet<String> = job_ids(&w.alpha2, filter).await;
        assert_eq!(
            shared,
            a_ids.iter().map(|s| s.to_string()).collect(),
            "ListJobs by {what}: alpha's two keys list the same jobs"
        );
    }
    // A page token alpha was given, presented by beta.
    for (from, to, theirs) in [(alpha, beta, &alpha_known), (beta, alpha, &beta_known)] {
        let token = call!(
            from,
            jobs.list_jobs(proto::ListJobsRequest {
                page_size: 1,
                ..Default::default()
            })
        )
        .expect("a first page")
        .next_page_token;
        assert!(!token.is_empty(), "{} has more than one job", from.label);
        if let Ok(page) = call!(
            to,
            jobs.list_jobs(proto::ListJobsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
        ) {
            let leaked: Vec<&str> = page
                .jobs
                .iter()
                .map(|j| j.id.as_str())
                .filter(|id| theirs.contains(*id))
                .collect();
            assert!(
                leaked.is_empty(),
                "LEAK: {}'s page token shows {} its jobs {leaked:?}",
                from.label,
                to.label
            );
        }
    }
}

type Events = tonic::Streaming<JobEvent>;

/// What a watch that must be refused did: its refusal (from the call, or as
/// the stream's first item), or what it served instead.
async fn watch_refusal(who: &Caller, request: proto::WatchJobsRequest) -> Result<String, Status> {
    let mut events = call!(who, jobs.watch_jobs(request))?;
    match tokio::time::timeout(SILENCE, events.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(Some(event))) => Ok(format!("the event {event:?}")),
        Ok(Ok(None)) => Ok("a stream that ended cleanly".into()),
        Err(_) => Ok(format!("a stream still open after {SILENCE:?}")),
    }
}

/// Every event until `marker` has finished.
async fn events_until(what: &str, events: &mut Events, marker: &str) -> Vec<JobEvent> {
    let until = Instant::now() + SOON;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.message()).await {
            Err(_) => panic!("{what}: {marker} never finished on the stream; seen {seen:#?}"),
            Ok(Err(status)) => panic!("{what}: the stream failed: {status:?}"),
            Ok(Ok(None)) => panic!("{what}: the stream ended before {marker} finished"),
            Ok(Ok(Some(event))) => {
                let end = event.job_id == marker && finished(event.status);
                seen.push(event);
                if end {
                    return seen;
                }
            }
        }
    }
}

#[track_caller]
fn none_of(what: &str, events: &[JobEvent], theirs: &HashSet<String>) {
    let leaked: Vec<&JobEvent> = events
        .iter()
        .filter(|e| theirs.contains(&e.job_id))
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: {what} carried another namespace's jobs: {leaked:#?}"
    );
    for event in events {
        bare(&format!("{what}: event of {}", event.job_id), &event.queue);
    }
}

pub async fn watch_jobs(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let by_ids = |ids: &[&str]| proto::WatchJobsRequest {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        snapshot: true,
        ..Default::default()
    };
    // By id: alpha's unfinished job, alone or beside one of beta's own.
    let fake = made_up_job();
    hidden!(
        "WatchJobs by the id of alpha's queued job",
        &w.a.queued,
        &fake,
        |id| watch_refusal(beta, by_ids(&[&id])).await
    );
    hidden!(
        "WatchJobs by the ids of beta's job and alpha's",
        &w.a.queued,
        &fake,
        |id| watch_refusal(beta, by_ids(&[&w.b.queued, &id])).await
    );
    hidden!(
        "WatchJobs by the id of beta's queued job, by alpha",
        &w.b.queued,
        &fake,
        |id| watch_refusal(alpha, by_ids(&[&id])).await
    );

    // By filter, while alpha's jobs run: beta sees only its own.
    let filters = [
        (
            "WatchJobs by queue emails",
            proto::WatchJobsRequest {
                queue: "emails".into(),
                ..Default::default()
            },
        ),
        (
            "WatchJobs by tag t",
            proto::WatchJobsRequest {
                tags: vec!["t".into()],
                ..Default::default()
            },
        ),
        (
            "WatchJobs of every job",
            proto::WatchJobsRequest {
                all: true,
                ..Default::default()
            },
        ),
        (
            "WatchJobs by queue emails with a snapshot",
            proto::WatchJobsRequest {
                queue: "emails".into(),
                snapshot: true,
                ..Default::default()
            },
        ),
        (
            "WatchJobs by schedule nightly",
            proto::WatchJobsRequest {
                schedule_id: "nightly".into(),
                ..Default::default()
            },
        ),
    ];
    let mut watching = Vec::new();
    for (what, filter) in filters {
        let by_schedule = !filter.schedule_id.is_empty();
        let events = call!(beta, jobs.watch_jobs(filter))
            .unwrap_or_else(|e| panic!("{what}: beta's watch refused: {e:?}"));
        watching.push((what, by_schedule, events));
    }
    let mut alphas = call!(
        alpha,
        jobs.watch_jobs(proto::WatchJobsRequest {
            queue: "emails".into(),
            ..Default::default()
        })
    )
    .expect("alpha watches its queue emails");
    let a_live = submit_as(alpha, emails_job(t, "/alpha/live")).await.id;
    let a_run = trigger_as(alpha, "nightly").await.job_id;
    let seen = events_until("alpha's own watch of emails", &mut alphas, &a_live).await;
    let cursor = seen
        .iter()
        .find(|e| e.job_id == a_live)
        .expect("alpha's watch carries alpha's job")
        .cursor
        .clone();
    wait_job_of(alpha, &a_run, JobStatus::Succeeded).await;
    let mut theirs = w.alpha_jobs();
    theirs.extend([a_live.clone(), a_run.clone()]);

    let b_live = submit_as(beta, emails_job(t, "/beta/live")).await.id;
    let b_run = trigger_as(beta, "nightly").await.job_id;
    for (what, by_schedule, events) in &mut watching {
        let marker = if *by_schedule { &b_run } else { &b_live };
        let seen = events_until(what, events, marker).await;
        none_of(what, &seen, &theirs);
    }
    // Nor does alpha see beta's.
    let a_after = submit_as(alpha, emails_job(t, "/alpha/after")).await.id;
    let seen = events_until("alpha's watch of emails", &mut alphas, &a_after).await;
    let mut ours = w.b.job_ids();
    ours.extend([b_live.clone(), b_run]);
    none_of("alpha's watch of its queue emails", &seen, &ours);
    theirs.insert(a_after);

    // Resumed from a cursor of alpha's stream: alpha's later events stay alpha's.
    match call!(
        beta,
        jobs.watch_jobs(proto::WatchJobsRequest {
            all: true,
            cursor,
            ..Default::default()
        })
    ) {
        Ok(mut events) => {
            let what = "WatchJobs resumed by beta from a cursor of alpha's stream";
            let seen = events_until(what, &mut events, &b_live).await;
            none_of(what, &seen, &theirs);
        }
        Err(refused) => {
            // Refused outright: nothing of alpha's shown either.
            assert!(
                !theirs
                    .iter()
                    .any(|id| refused.message().contains(id.as_str())),
                "LEAK: the refusal names alpha's job: {refused:?}"
            );
        }
    }
}

/// One job a change is tried on: who asks, whose job it is, what it is.
type JobCase<'a> = (&'a Caller, &'a Caller, String, String);

/// Cases of beta asking about alpha's jobs `(what, id)`, and of alpha asking
/// about beta's.
fn job_cases<'a>(
    w: &'a World,
    alphas: Vec<(&str, String)>,
    betas: Vec<(&str, String)>,
) -> Vec<JobCase<'a>> {
    let mut cases: Vec<JobCase> = alphas
        .into_iter()
        .map(|(what, id)| (&w.beta, &w.alpha, format!("alpha's {what}"), id))
        .collect();
    for (what, id) in betas {
        cases.push((&w.alpha, &w.beta, format!("beta's {what}, by alpha"), id));
    }
    cases
}

/// Runs a change on each case's job: each must be refused as for a job that
/// never was, and leave the job as it was.
macro_rules! job_change {
    ($cases:expr, $rpc:literal, |$who:ident, $id:ident| $call:expr) => {{
        let fake = made_up_job();
        for (asker, owner, what, id) in $cases {
            let before = read_job(owner, &id).await;
            let $who = asker;
            hidden!(format!("{} of {what}", $rpc), &id, &fake, |$id| $call);
            let after = call!(owner, jobs.get_job(proto::GetJobRequest { id: id.clone() }))
                .unwrap_or_else(|e| {
                    panic!("LEAK: {} by another namespace removed {what}: {e:?}", $rpc)
                });
            assert_eq!(
                before, after,
                "LEAK: {} by another namespace changed {what}",
                $rpc
            );
        }
    }};
}

/// A job of alpha's made for one row, so that a change which leaks spoils
/// nothing another row reads.
async fn alphas_own(w: &World, path: &str, status: JobStatus) -> String {
    let spec = if status == JobStatus::Queued {
        later_job(&w.target, "alpha")
    } else {
        emails_job(&w.target, path)
    };
    let id = submit_as(&w.alpha, spec).await.id;
    wait_job_of(&w.alpha, &id, status).await;
    id
}

pub async fn cancel_job(w: Arc<World>) {
    let queued = alphas_own(&w, "", JobStatus::Queued).await;
    let mut alphas: Vec<(&str, String)> = vec![("queued job", queued)];
    alphas.extend(
        w.a.jobs()
            .into_iter()
            .filter(|(what, _)| *what != "queued job")
            .map(|(what, id)| (what, id.to_string())),
    );
    let cases = job_cases(&w, alphas, vec![("finished job", w.b.done.clone())]);
    job_change!(cases, "CancelJob", |who, id| call!(
        who,
        jobs.cancel_job(proto::CancelJobRequest { id })
    ));
}

pub async fn retry_job(w: Arc<World>) {
    let failed = alphas_own(&w, "/alpha/retry?status=400", JobStatus::Failed).await;
    let mut alphas: Vec<(&str, String)> = vec![("failed job", failed)];
    alphas.extend(
        w.a.jobs()
            .into_iter()
            .filter(|(what, _)| *what != "failed job")
            .map(|(what, id)| (what, id.to_string())),
    );
    let cases = job_cases(&w, alphas, vec![("finished job", w.b.done.clone())]);
    job_change!(cases, "RetryJob", |who, id| call!(
        who,
        jobs.retry_job(proto::RetryJobRequest { id })
    ));
}

pub async fn delete_job(w: Arc<World>) {
    let done = alphas_own(&w, "/alpha/delete", JobStatus::Succeeded).await;
    let failed = alphas_own(&w, "/alpha/delete?status=400", JobStatus::Failed).await;
    let mut alphas: Vec<(&str, String)> = vec![("finished job", done), ("failed job", failed)];
    // Those a delete refuses even to their owner: unfinished, or a chain's.
    alphas.push(("queued job", w.a.queued.clone()));
    alphas.push(("chain step's job", w.a.step_job.clone()));
    let cases = job_cases(&w, alphas, vec![("queued job", w.b.queued.clone())]);
    job_change!(cases, "DeleteJob", |who, id| call!(
        who,
        jobs.delete_job(proto::DeleteJobRequest { id })
    ));
}
