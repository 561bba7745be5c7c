//! Schedules that fire chains, through the real server against a real target: a
//! chain at each due time with the key a job run would get, its contract versions
//! pinned when the schedule was written, triggered runs, the overlap policy
//! waiting for a chain still running, a job schedule turned into a chain one, and
//! bad chains refused under `schedule.chain` with nothing stored.

mod common;

use std::time::{Duration, Instant};

use common::chains::*;
use common::*;
use jobqueue::proto::{self, ChainStatus, OverlapPolicy, RunTrigger, schedule::Timetable};
use serde_json::json;
use tonic::Code;

const SOON: Duration = Duration::from_secs(15);

fn every_second(chain: proto::ChainSpec) -> proto::Schedule {
    proto::Schedule {
        timetable: Some(Timetable::Interval(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        })),
        chain: Some(chain),
        ..Default::default()
    }
}

async fn create(
    schedules: &mut Schedules,
    id: &str,
    schedule: proto::Schedule,
) -> Result<proto::Schedule, tonic::Status> {
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: id.into(),
            schedule: Some(schedule),
        })
        .await
        .map(|r| r.into_inner())
}

async fn read(schedules: &mut Schedules, id: &str) -> proto::Schedule {
    schedules
        .get_schedule(proto::GetScheduleRequest { id: id.into() })
        .await
        .expect("schedule readable")
        .into_inner()
}

/// Waits until `schedule_id` has at least `n` chain runs whose chains ended;
/// answers those runs with their chains, oldest first.
async fn ended_runs(
    schedules: &mut Schedules,
    client: &mut Chains,
    schedule_id: &str,
    n: usize,
) -> Vec<(proto::ScheduleRun, proto::Chain)> {
    let until = Instant::now() + SOON;
    loop {
        let mut ended = Vec::new();
        for run in all_runs(schedules, schedule_id).await.into_iter().rev() {
            if run.chain_status != ChainStatus::Running as i32 {
                let chain = get_chain(client, &run.chain_id).await;
                ended.push((run, chain));
            }
        }
        if ended.len() >= n {
            return ended;
        }
        assert!(
            Instant::now() < until,
            "{schedule_id}: {} runs ended, waited for {n}",
            ended.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A two-step pipeline: `count` answers `{"n": 7}` keeping `counted`, whose
/// output schema promises an integer `n`; `report` posts it on.
fn counting_chain(target: &Target) -> proto::ChainSpec {
    let count = keeping(
        step(
            "count",
            "GET",
            answering(target, "/count", &json!({"n": 7})),
        ),
        "counted",
        0,
    );
    let report = with_body(
        step("report", "POST", target.url("/report?echo=1")),
        json!({"n": "{{ steps.count.output.body.n }}"}),
    );
    proto::ChainSpec {
        tags: vec!["nightly".into()],
        ..chain(vec![count, report], json!(null))
    }
}

async fn counted(contracts: &mut Contracts, extra: bool) -> u32 {
    let mut properties = json!({"n": {"type": "integer"}});
    if extra {
        properties["note"] = json!({"type": "string"});
    }
    create_contract(
        contracts,
        "counted",
        None,
        Some(json!({"type": "object", "required": ["n"], "properties": properties})),
        false,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_its_chain_at_each_due_time_on_the_versions_pinned_when_written() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let mut client = chains(server.addr).await;
    let mut contracts = contracts(server.addr).await;
    let first = counted(&mut contracts, false).await;

    let created = create(
        &mut schedules,
        "pipeline",
        every_second(counting_chain(&target)),
    )
    .await
    .expect("schedule created");
    assert!(created.job.is_none(), "{created:#?}");
    let shown = created.chain.expect("the chain reads back");
    assert_eq!(
        shown.steps[0].contract.as_ref().unwrap().version,
        first,
        "version 0 reads back as the version pinned"
    );
    assert_eq!(shown.steps.len(), 2);
    assert_eq!(shown.tags, ["nightly"]);

    // A later version of the contract does not change what the schedule fires.
    let second = counted(&mut contracts, true).await;
    assert!(second > first);

    let runs = ended_runs(&mut schedules, &mut client, "pipeline", 2).await;
    for (run, chain) in &runs {
        assert_eq!(run.trigger, RunTrigger::Timetable as i32);
        assert!(run.job_id.is_empty(), "{run:#?}");
        assert_eq!(run.chain_id, chain.id);
        assert_eq!(
            run.chain_status,
            ChainStatus::Succeeded as i32,
            "{chain:#?}"
        );
        assert_eq!(chain.status, ChainStatus::Succeeded as i32, "{chain:#?}");
        assert_eq!(chain.schedule_id, "pipeline");
        assert_eq!(chain.fire_time, run.fire_time);
        let fire_time = run.fire_time.as_ref().unwrap();
        assert_eq!(chain.idempotency_key, run_key("pipeline", fire_time));
        assert_eq!(chain.tags, ["nightly"]);
        assert_eq!(
            step_of(chain, "count").contract.as_ref().unwrap().version,
            first
        );
        assert_eq!(run.finish_time, chain.finish_time);
    }
    // Due a second apart, each due time one chain.
    let fired: Vec<i64> = runs
        .iter()
        .map(|(run, _)| millis(run.fire_time.as_ref().unwrap()))
        .collect();
    assert!(fired.windows(2).all(|w| w[1] - w[0] == 1000), "{fired:?}");
    for received in target.received_on("/report") {
        assert_eq!(body_json(&received), json!({"n": 7}), "types kept");
    }

    // Triggered, it fires now, with a manual key naming the chain.
    let triggered = schedules
        .trigger_schedule(proto::TriggerScheduleRequest {
            id: "pipeline".into(),
        })
        .await
        .expect("triggered")
        .into_inner();
    assert_eq!(triggered.trigger, RunTrigger::Manual as i32);
    assert!(triggered.job_id.is_empty() && !triggered.chain_id.is_empty());
    let chain = wait_chain(&mut client, &triggered.chain_id, SOON).await;
    assert_eq!(chain.status, ChainStatus::Succeeded as i32, "{chain:#?}");
    assert_eq!(
        chain.idempotency_key,
        format!("pipeline/manual/{}", triggered.chain_id)
    );
    assert!(chain.fire_time.is_none());

    schedules
        .pause_schedule(proto::PauseScheduleRequest {
            id: "pipeline".into(),
        })
        .await
        .unwrap();
    let paused = read(&mut schedules, "pipeline").await;
    let listed = all_runs(&mut schedules, "pipeline").await;
    assert_eq!(paused.run_count as usize, listed.len(), "{listed:#?}");
    assert!(listed.iter().any(|r| r.chain_id == triggered.chain_id));
    assert_eq!(
        paused.recent_runs.first().map(|r| &r.chain_id),
        listed.first().map(|r| &r.chain_id),
        "newest first"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_newest_first_across_jobs_and_chains_page_by_page() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let mut client = chains(server.addr).await;
    // A job schedule that fires only when triggered, turned into a chain one.
    let in_an_hour = chrono::Utc::now().timestamp_millis() + 3_600_000;
    create(
        &mut schedules,
        "mixed",
        proto::Schedule {
            timetable: Some(Timetable::Interval(ms(3_600_000))),
            start_time: Some(timestamp(in_an_hour)),
            job: Some(get(target.url("/job"))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    schedules
        .pause_schedule(proto::PauseScheduleRequest { id: "mixed".into() })
        .await
        .unwrap();
    let trigger = |schedules: &mut Schedules| {
        let mut schedules = schedules.clone();
        async move {
            schedules
                .trigger_schedule(proto::TriggerScheduleRequest { id: "mixed".into() })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(trigger(&mut schedules).await);
    }
    let updated = schedules
        .update_schedule(proto::UpdateScheduleRequest {
            schedule: Some(proto::Schedule {
                id: "mixed".into(),
                chain: Some(chain(
                    vec![step("only", "GET", target.url("/chain"))],
                    json!(null),
                )),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["chain".into()],
            }),
        })
        .await
        .expect("a job schedule becomes a chain schedule")
        .into_inner();
    assert!(
        updated.job.is_none() && updated.chain.is_some(),
        "{updated:#?}"
    );
    for _ in 0..3 {
        made.push(trigger(&mut schedules).await);
    }
    assert!(made[..3].iter().all(|r| !r.job_id.is_empty()));
    assert!(made[3..].iter().all(|r| !r.chain_id.is_empty()));
    wait_chain(&mut client, &made[5].chain_id, SOON).await;

    // Pages of two, newest first, run into each other across the two kinds.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = schedules
            .list_schedule_runs(proto::ListScheduleRunsRequest {
                schedule_id: "mixed".into(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.runs.len() <= 2);
        listed.extend(page.runs);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let ids = |runs: &[proto::ScheduleRun]| -> Vec<String> {
        runs.iter()
            .map(|r| format!("{}{}", r.job_id, r.chain_id))
            .collect()
    };
    let mut expected = ids(&made);
    expected.reverse();
    assert_eq!(ids(&listed), expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skip_policy_waits_for_a_chain_still_running() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let mut client = chains(server.addr).await;
    let slow = chain(
        vec![
            step("slow", "GET", target.url("/slow?delay_ms=2500")),
            step("after", "GET", target.url("/after")),
        ],
        json!(null),
    );
    create(
        &mut schedules,
        "one-at-a-time",
        proto::Schedule {
            overlap_policy: OverlapPolicy::Skip as i32,
            ..every_second(slow)
        },
    )
    .await
    .unwrap();
    // While the first chain runs, due times pass and are skipped.
    let until = Instant::now() + SOON;
    let first = loop {
        let runs = all_runs(&mut schedules, "one-at-a-time").await;
        let skipped = read(&mut schedules, "one-at-a-time")
            .await
            .skipped_run_count;
        if skipped >= 1 {
            assert_eq!(runs.len(), 1, "one run at a time: {runs:#?}");
            break runs[0].clone();
        }
        assert!(Instant::now() < until, "nothing skipped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let done = wait_chain(&mut client, &first.chain_id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    // Once it ended, the next due time fires again.
    let runs = ended_runs(&mut schedules, &mut client, "one-at-a-time", 2).await;
    let started = |run: &proto::ScheduleRun| millis(run.start_time.as_ref().unwrap());
    let ended = |run: &proto::ScheduleRun| millis(run.finish_time.as_ref().unwrap());
    assert!(
        started(&runs[1].0) >= ended(&runs[0].0),
        "the second run started after the first ended: {runs:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scheduled_chains_are_refused_under_schedule_chain_and_store_nothing() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let mut client = chains(server.addr).await;
    let mut contracts = contracts(server.addr).await;
    create_contract(
        &mut contracts,
        "gives-text",
        None,
        Some(json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "string"}}})),
        false,
    )
    .await;
    create_contract(
        &mut contracts,
        "takes-number",
        Some(
            json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}),
        ),
        None,
        false,
    )
    .await;
    let good = || chain(vec![step("a", "GET", target.url("/a"))], json!(null));

    let both = create(
        &mut schedules,
        "both",
        proto::Schedule {
            job: Some(get(target.url("/job"))),
            ..every_second(good())
        },
    )
    .await
    .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&both), ["schedule.chain"], "{both:?}");

    let keyed = create(
        &mut schedules,
        "keyed",
        every_second(proto::ChainSpec {
            idempotency_key: "mine".into(),
            ..good()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(keyed.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&keyed), ["schedule.chain.idempotency_key"]);

    let miswired = chain(
        vec![
            keeping(step("a", "GET", target.url("/a")), "gives-text", 0),
            keeping(
                with_body(
                    step("b", "POST", target.url("/b")),
                    json!({"n": "{{ steps.a.output.body.n }}"}),
                ),
                "takes-number",
                0,
            ),
        ],
        json!(null),
    );
    let refused = create(&mut schedules, "miswired", every_second(miswired))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = bad_fields(&refused);
    assert!(
        !fields.is_empty()
            && fields
                .iter()
                .all(|f| f == "schedule.chain.steps[1].request.body/n"),
        "{refused:?}"
    );
    assert!(refused.message().contains("/properties/n"), "{refused:?}");

    let unknown = create(
        &mut schedules,
        "unknown",
        every_second(chain(
            vec![keeping(step("a", "GET", target.url("/a")), "no-such", 0)],
            json!(null),
        )),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown
            .message()
            .contains("schedule.chain.steps[0].contract"),
        "{unknown:?}"
    );

    let twice = create(
        &mut schedules,
        "twice",
        every_second(chain(
            vec![
                step("a", "GET", target.url("/a")),
                step("a", "GET", target.url("/b")),
            ],
            json!(null),
        )),
    )
    .await
    .unwrap_err();
    assert_eq!(twice.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&twice)
            .iter()
            .all(|f| f.starts_with("schedule.chain.steps[1]")),
        "{twice:?}"
    );

    let neither = create(
        &mut schedules,
        "neither",
        proto::Schedule {
            chain: None,
            ..every_second(good())
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&neither), ["schedule.job"]);

    // A bad chain in an update leaves the schedule as it was.
    create(
        &mut schedules,
        "kept",
        proto::Schedule {
            timetable: Some(Timetable::Interval(ms(3_600_000))),
            job: Some(get(target.url("/kept"))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bad_update = schedules
        .update_schedule(proto::UpdateScheduleRequest {
            schedule: Some(proto::Schedule {
                id: "kept".into(),
                chain: Some(chain(Vec::new(), json!(null))),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["chain".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_update.code(), Code::InvalidArgument, "{bad_update:?}");
    let kept = read(&mut schedules, "kept").await;
    assert_eq!(kept.job.unwrap().request.unwrap().url, target.url("/kept"));
    assert!(kept.chain.is_none());

    let listed = schedules
        .list_schedules(proto::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );
    no_chains(&mut client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_fire_each_due_chain_once() {
    let target = Target::start().await.unwrap();
    let first = Server::start().await;
    let second = Server::start_beside(&first, |_| {}).await;
    let mut schedules = schedules(first.addr).await;
    let mut client = chains(second.addr).await;
    create(
        &mut schedules,
        "shared",
        every_second(chain(
            vec![
                step("a", "GET", target.url("/a")),
                step("b", "GET", target.url("/b")),
            ],
            json!(null),
        )),
    )
    .await
    .unwrap();
    let runs = ended_runs(&mut schedules, &mut client, "shared", 3).await;
    schedules
        .pause_schedule(proto::PauseScheduleRequest {
            id: "shared".into(),
        })
        .await
        .unwrap();
    let runs_now = all_runs(&mut schedules, "shared").await;
    for run in &runs_now {
        wait_chain(&mut client, &run.chain_id, SOON).await;
    }
    let mut fired: Vec<i64> = runs_now
        .iter()
        .map(|r| millis(r.fire_time.as_ref().unwrap()))
        .collect();
    fired.sort();
    let mut distinct = fired.clone();
    distinct.dedup();
    assert_eq!(fired, distinct, "each due time one chain: {runs:#?}");
    // Each chain's steps ran once: as many calls as chains.
    assert_eq!(target.received_on("/a").len(), runs_now.len());
    assert_eq!(target.received_on("/b").len(), runs_now.len());
    second.stop().await;
    first.stop().await;
}
