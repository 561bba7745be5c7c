//! ScheduleService rows: beta making, reading, listing, triggering and changing
//! schedules under alpha's names, and alpha's schedules staying as they were.

use std::collections::HashSet;
use std::sync::Arc;

use crate::callers::*;
use crate::common::chains::{chain, keeping, step};
use crate::common::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::proto::{self, JobSpec, ScheduleState};
use serde_json::json;
use tonic::Code;

pub async fn create_schedule_row(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let fresh = |ns: &str| {
        create_schedule(
            "fresh-s",
            idle_schedule(
                &format!("{ns}'s fresh-s"),
                emails_job(t, &format!("/{ns}/fresh-s")),
            ),
        )
    };
    call!(alpha, schedules.create_schedule(fresh("alpha"))).expect("alpha's fresh-s");
    let made = call!(beta, schedules.create_schedule(fresh("beta"))).unwrap_or_else(|e| {
        panic!("LEAK: beta's schedule fresh-s, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (made.id.as_str(), made.description.as_str()),
        ("fresh-s", "beta's fresh-s")
    );
    bare("beta's new schedule's job", &made.job.expect("a job").queue);
    assert_eq!(
        read_schedule(alpha, "fresh-s").await.description,
        "alpha's fresh-s",
        "LEAK: beta's create changed alpha's fresh-s"
    );
    let chain_schedule = |spec: proto::ChainSpec| proto::Schedule {
        job: None,
        chain: Some(spec),
        ..idle_schedule("a probe", JobSpec::default())
    };
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateSchedule whose job runs in a queue only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            schedules.create_schedule(create_schedule(
                "probe-q",
                idle_schedule(
                    "a probe",
                    JobSpec {
                        queue: name,
                        ..get(t.url("/beta/probe"))
                    }
                )
            ))
        )
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateSchedule whose job comes from a template only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            schedules.create_schedule(create_schedule(
                "probe-t",
                idle_schedule("a probe", template_job(&name, json!({"id": 1})))
            ))
        )
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateSchedule whose chain keeps a contract only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            schedules.create_schedule(create_schedule(
                "probe-c",
                chain_schedule(in_emails(chain(
                    vec![keeping(step("a", "GET", t.url("/beta/probe")), &name, 0)],
                    json!(null)
                )))
            ))
        )
    );
}

pub async fn get_schedule(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_schedule(beta, "nightly").await;
    assert_eq!(
        own.description, "beta's nightly",
        "LEAK: beta's GetSchedule of nightly must be beta's: {own:#?}"
    );
    bare(
        "beta's nightly's job",
        &own.job.as_ref().expect("a job").queue,
    );
    let theirs = w.alpha_jobs();
    for run in &own.recent_runs {
        bare("beta's nightly's run", &run.schedule_id);
        assert!(
            !theirs.contains(&run.job_id),
            "LEAK: beta's nightly lists alpha's run {run:?}"
        );
    }
    assert!(
        own.recent_runs.iter().any(|r| r.job_id == w.b.run_job),
        "beta's nightly lists its run: {own:#?}"
    );
    assert_eq!(
        read_schedule(alpha, "nightly").await.description,
        "alpha's nightly"
    );
    hidden!(
        "GetSchedule of alpha's alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.get_schedule(proto::GetScheduleRequest { id })
        )
    );
    read_schedule(&w.alpha2, ONLY).await;
    let qualified = call!(
        beta,
        schedules.get_schedule(proto::GetScheduleRequest {
            id: "alpha/nightly".into()
        })
    );
    assert!(
        qualified.is_err(),
        "LEAK: beta read alpha's schedule by its qualified id: {qualified:?}"
    );
}

fn alphas_schedules(schedules: &[proto::Schedule]) -> Vec<String> {
    schedules
        .iter()
        .filter(|s| s.id == ONLY || s.description.starts_with("alpha's"))
        .map(|s| format!("{}: {}", s.id, s.description))
        .collect()
}

pub async fn list_schedules(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let b = all_pages!(
        beta,
        schedules.list_schedules(proto::ListSchedulesRequest::default()),
        schedules
    )
    .expect("beta lists schedules");
    let leaked = alphas_schedules(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListSchedules shows beta alpha's schedules {leaked:?}"
    );
    for s in &b {
        bare("ListSchedules", &s.id);
        if let Some(job) = &s.job {
            bare(&format!("ListSchedules: {}'s job", s.id), &job.queue);
        }
    }
    assert!(
        b.iter().any(|s| s.description == "beta's nightly"),
        "{b:#?}"
    );
    let a = all_pages!(
        alpha,
        schedules.list_schedules(proto::ListSchedulesRequest::default()),
        schedules
    )
    .expect("alpha lists schedules");
    assert!(
        a.iter().all(|s| !s.description.starts_with("beta's")),
        "LEAK: alpha was shown beta's schedules: {a:#?}"
    );
    assert!(a.iter().any(|s| s.id == ONLY));
    let token = call!(
        alpha,
        schedules.list_schedules(proto::ListSchedulesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one schedule");
    if let Ok(page) = call!(
        beta,
        schedules.list_schedules(proto::ListSchedulesRequest {
            page_size: 1000,
            page_token: token
        })
    ) {
        let leaked = alphas_schedules(&page.schedules);
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's schedules {leaked:?}"
        );
    }
}

pub async fn list_schedule_runs(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    macro_rules! runs {
        ($who:expr, $id:expr) => {
            all_pages!(
                $who,
                schedules.list_schedule_runs(proto::ListScheduleRunsRequest {
                    schedule_id: $id.to_string(),
                    ..Default::default()
                }),
                runs
            )
        };
    }
    let a: Vec<proto::ScheduleRun> = runs!(alpha, "").expect("alpha's runs");
    let b: Vec<proto::ScheduleRun> = runs!(beta, "").expect("beta's runs");
    let a_jobs: HashSet<String> = a.iter().map(|r| r.job_id.clone()).collect();
    let mut theirs = w.alpha_jobs();
    theirs.extend(a_jobs.iter().cloned());
    let leaked: Vec<&proto::ScheduleRun> = b
        .iter()
        .filter(|r| theirs.contains(&r.job_id) || r.schedule_id == ONLY)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListScheduleRuns shows beta alpha's runs {leaked:#?}"
    );
    for r in a.iter().chain(&b) {
        bare("ListScheduleRuns", &r.schedule_id);
    }
    assert!(a_jobs.contains(&w.a.run_job) && a_jobs.contains(&w.only.only_run));
    let nightly: Vec<proto::ScheduleRun> = runs!(beta, "nightly").expect("beta's nightly's runs");
    assert!(
        nightly.iter().all(|r| !theirs.contains(&r.job_id)),
        "LEAK: beta's runs of nightly include alpha's: {nightly:#?}"
    );
    assert!(nightly.iter().any(|r| r.job_id == w.b.run_job));
    let real = runs!(beta, ONLY);
    let fake = runs!(beta, NOBODY);
    listed_alike(
        "ListScheduleRuns of alpha's alpha-only",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let token = call!(
        alpha,
        schedules.list_schedule_runs(proto::ListScheduleRunsRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one run");
    if let Ok(page) = call!(
        beta,
        schedules.list_schedule_runs(proto::ListScheduleRunsRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked: Vec<&proto::ScheduleRun> = page
            .runs
            .iter()
            .filter(|r| theirs.contains(&r.job_id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's runs {leaked:#?}"
        );
    }
}

fn describe(id: &str, description: &str) -> proto::UpdateScheduleRequest {
    proto::UpdateScheduleRequest {
        schedule: Some(proto::Schedule {
            id: id.into(),
            description: description.into(),
            ..Default::default()
        }),
        update_mask: mask(&["description"]),
    }
}

pub async fn update_schedule(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_schedule(alpha, ONLY).await;
    hidden!(
        "UpdateSchedule of alpha's alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.update_schedule(describe(&id, "beta was here"))
        )
    );
    assert_eq!(
        before,
        read_schedule(alpha, ONLY).await,
        "LEAK: beta's UpdateSchedule changed alpha's alpha-only"
    );
    let before = read_schedule(alpha, "nightly").await;
    let changed = call!(
        beta,
        schedules.update_schedule(describe("nightly", "beta's nightly, renamed"))
    );
    let restored = call!(
        beta,
        schedules.update_schedule(describe("nightly", "beta's nightly"))
    );
    let changed = changed.expect("beta updates its nightly");
    assert_eq!(
        (changed.id.as_str(), changed.description.as_str()),
        ("nightly", "beta's nightly, renamed")
    );
    restored.expect("beta restores its nightly");
    assert_eq!(
        before,
        read_schedule(alpha, "nightly").await,
        "LEAK: beta's update of its nightly changed alpha's"
    );
}

pub async fn pause_schedule(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_schedule(alpha, ONLY).await;
    hidden!(
        "PauseSchedule of alpha's alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.pause_schedule(proto::PauseScheduleRequest { id })
        )
    );
    assert_eq!(before, read_schedule(alpha, ONLY).await);
    let before = read_schedule(alpha, "nightly").await;
    let paused = call!(
        beta,
        schedules.pause_schedule(proto::PauseScheduleRequest {
            id: "nightly".into()
        })
    );
    let alphas = read_schedule(alpha, "nightly").await;
    let resumed = call!(
        beta,
        schedules.resume_schedule(proto::ResumeScheduleRequest {
            id: "nightly".into()
        })
    );
    let paused = paused.expect("beta pauses its nightly");
    assert_eq!(paused.state, ScheduleState::Paused as i32);
    resumed.expect("beta resumes its nightly");
    assert_eq!(
        before, alphas,
        "LEAK: beta's pause of its nightly changed alpha's"
    );
}

pub async fn resume_schedule(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_schedule(alpha, ONLY).await;
    assert_eq!(before.state, ScheduleState::Paused as i32);
    hidden!(
        "ResumeSchedule of alpha's paused alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.resume_schedule(proto::ResumeScheduleRequest { id })
        )
    );
    assert_eq!(
        before,
        read_schedule(alpha, ONLY).await,
        "LEAK: beta's ResumeSchedule resumed alpha's alpha-only"
    );
    // Alpha's nightly paused, beta's paused and resumed: alpha's stays paused.
    let id = || "nightly".to_string();
    call!(
        alpha,
        schedules.pause_schedule(proto::PauseScheduleRequest { id: id() })
    )
    .expect("alpha pauses its nightly");
    let paused = call!(
        beta,
        schedules.pause_schedule(proto::PauseScheduleRequest { id: id() })
    );
    let resumed = call!(
        beta,
        schedules.resume_schedule(proto::ResumeScheduleRequest { id: id() })
    );
    let alphas = read_schedule(alpha, "nightly").await;
    let restored = call!(
        alpha,
        schedules.resume_schedule(proto::ResumeScheduleRequest { id: id() })
    );
    assert_eq!(
        alphas.state,
        ScheduleState::Paused as i32,
        "LEAK: beta's resume of its nightly resumed alpha's"
    );
    restored.expect("alpha resumes its nightly");
    paused.expect("beta pauses its nightly, alpha's being paused");
    let resumed = resumed.expect("beta resumes its nightly");
    assert_eq!(resumed.state, ScheduleState::Active as i32);
}

pub async fn trigger_schedule(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_schedule(alpha, ONLY).await;
    hidden!(
        "TriggerSchedule of alpha's alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.trigger_schedule(proto::TriggerScheduleRequest { id })
        )
    );
    assert_eq!(
        before,
        read_schedule(alpha, ONLY).await,
        "LEAK: beta's TriggerSchedule fired alpha's alpha-only"
    );
    let before = read_schedule(alpha, "nightly").await;
    let run = trigger_as(beta, "nightly").await;
    assert_eq!(run.schedule_id, "nightly", "the run's schedule, bare");
    let job = read_job(beta, &run.job_id).await;
    assert_eq!(job.schedule_id, "nightly", "the run's job's schedule, bare");
    assert_eq!(job.queue, "emails");
    hidden!(
        "GetJob of beta's triggered run, by alpha",
        &run.job_id,
        made_up_job(),
        |id| call!(alpha, jobs.get_job(proto::GetJobRequest { id }))
    );
    assert_eq!(
        before,
        read_schedule(alpha, "nightly").await,
        "LEAK: beta's trigger of its nightly fired alpha's"
    );
}

pub async fn delete_schedule(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let before = read_schedule(alpha, ONLY).await;
    hidden!(
        "DeleteSchedule of alpha's alpha-only",
        ONLY,
        NOBODY,
        |id| call!(
            beta,
            schedules.delete_schedule(proto::DeleteScheduleRequest { id })
        )
    );
    let after = call!(
        alpha,
        schedules.get_schedule(proto::GetScheduleRequest { id: ONLY.into() })
    )
    .unwrap_or_else(|e| panic!("LEAK: beta's DeleteSchedule removed alpha's alpha-only: {e:?}"));
    assert_eq!(
        before, after,
        "LEAK: beta's DeleteSchedule touched alpha's alpha-only"
    );
    for who in [alpha, beta] {
        call!(
            who,
            schedules.create_schedule(create_schedule(
                "doomed",
                idle_schedule(&format!("{}'s doomed", who.ns), emails_job(t, "/doomed"))
            ))
        )
        .unwrap_or_else(|e| panic!("{} creates doomed: {e:?}", who.label));
    }
    call!(
        beta,
        schedules.delete_schedule(proto::DeleteScheduleRequest {
            id: "doomed".into()
        })
    )
    .expect("beta deletes its doomed");
    let kept = call!(
        alpha,
        schedules.get_schedule(proto::GetScheduleRequest {
            id: "doomed".into()
        })
    )
    .unwrap_or_else(|e| panic!("LEAK: beta's delete of its doomed deleted alpha's: {e:?}"));
    assert_eq!(kept.description, "alpha's doomed");
    let gone = call!(
        beta,
        schedules.get_schedule(proto::GetScheduleRequest {
            id: "doomed".into()
        })
    );
    assert_eq!(gone.map_err(|e| e.code()).err(), Some(Code::NotFound));
}
