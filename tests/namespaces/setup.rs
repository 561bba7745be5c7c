//! What the namespaces make before the table runs: the requests that build
//! queues, contracts, templates, schedules, jobs and chains, `populate` (the
//! names both namespaces use), `make_alpha_only`, the `World` every row reads,
//! and the keys file the server is started with.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::callers::*;
use crate::common::chains::{chain, step};
use crate::common::*;
use jobqueue::api::convert::value_from_json;
use jobqueue::auth::Scope;
use jobqueue::now_ms;
use jobqueue::proto::schedule::Timetable;
use jobqueue::proto::{self, ChainStatus, JobSpec, JobStatus};
use serde_json::{Value, json};

pub const HOUR_MS: i64 = 3_600_000;
/// A name alpha has for a queue, schedule, contract and template, and beta not.
pub const ONLY: &str = "alpha-only";

/// The field alpha's contract `order` requires in its input, and beta's: an
/// input fits one namespace's `order` and not the other's.
pub fn order_field(ns: &str) -> (&'static str, &'static str) {
    if ns == "alpha" {
        ("id", "integer")
    } else {
        ("name", "string")
    }
}

pub fn order_contract(ns: &str, description: &str) -> proto::CreateContractRequest {
    let (field, kind) = order_field(ns);
    let mut properties = serde_json::Map::new();
    properties.insert(field.into(), json!({ "type": kind }));
    proto::CreateContractRequest {
        contract: Some(proto::Contract {
            name: "order".into(),
            description: description.into(),
            input_schema: Some(value_from_json(json!({
                "type": "object", "required": [field], "properties": properties
            }))),
            output_schema: Some(value_from_json(json!({"type": "object"}))),
            ..Default::default()
        }),
        allow_breaking: false,
    }
}

pub fn contract_named(name: &str, input: Value) -> proto::CreateContractRequest {
    proto::CreateContractRequest {
        contract: Some(proto::Contract {
            name: name.into(),
            description: format!("{name}, a probe"),
            input_schema: Some(value_from_json(input)),
            output_schema: Some(value_from_json(json!({"type": "object"}))),
            ..Default::default()
        }),
        allow_breaking: false,
    }
}

/// `notify` of `ns`: a GET of `/<ns>/notify/<the input's field>` keeping `order`.
pub fn notify_template(ns: &str, target: &Target) -> proto::Template {
    let (field, _) = order_field(ns);
    proto::Template {
        name: "notify".into(),
        description: format!("{ns}'s notify"),
        request: Some(proto::HttpRequest {
            method: "GET".into(),
            url: target.url(&format!("/{ns}/notify/{{{{ input.{field} }}}}")),
            ..Default::default()
        }),
        max_attempts: Some(1),
        queue: "emails".into(),
        tags: vec!["t".into()],
        contract: Some(proto::ContractVersion {
            name: "order".into(),
            version: 0,
        }),
        ..Default::default()
    }
}

pub fn plain_template(name: &str, url: String, contract: Option<(&str, u32)>) -> proto::Template {
    proto::Template {
        name: name.into(),
        description: format!("{name}, a probe"),
        request: Some(proto::HttpRequest {
            method: "GET".into(),
            url,
            ..Default::default()
        }),
        max_attempts: Some(1),
        contract: contract.map(|(name, version)| proto::ContractVersion {
            name: name.into(),
            version,
        }),
        ..Default::default()
    }
}

/// A GET of `path` in `emails`, tagged `t`, one attempt.
pub fn emails_job(target: &Target, path: &str) -> JobSpec {
    JobSpec {
        queue: "emails".into(),
        tags: vec!["t".into()],
        max_attempts: Some(1),
        ..get(target.url(path))
    }
}

pub fn keyed(spec: JobSpec, key: &str) -> JobSpec {
    JobSpec {
        idempotency_key: key.into(),
        ..spec
    }
}

pub fn in_an_hour() -> prost_types::Timestamp {
    timestamp(now_ms() + HOUR_MS)
}

/// A job of `emails` due in an hour: it stays queued through the test.
pub fn later_job(target: &Target, ns: &str) -> JobSpec {
    JobSpec {
        schedule_time: Some(in_an_hour()),
        ..emails_job(target, &format!("/{ns}/later"))
    }
}

pub fn k1_job(target: &Target, ns: &str) -> JobSpec {
    keyed(emails_job(target, &format!("/{ns}/done")), "k-1")
}

pub fn k2_job(target: &Target, ns: &str) -> JobSpec {
    keyed(
        emails_job(target, &format!("/{ns}/failed?status=400")),
        "k-2",
    )
}

pub fn template_job(name: &str, input: Value) -> JobSpec {
    JobSpec {
        template: Some(proto::TemplateCall {
            name: name.into(),
            version: 0,
            input: Some(value_from_json(input)),
        }),
        ..Default::default()
    }
}

/// Hourly from an hour ahead: it never fires within the test.
pub fn idle_schedule(description: &str, job: JobSpec) -> proto::Schedule {
    proto::Schedule {
        description: description.into(),
        timetable: Some(Timetable::Interval(ms(HOUR_MS as u64))),
        start_time: Some(timestamp((now_ms() + HOUR_MS + 999) / 1000 * 1000)),
        job: Some(job),
        ..Default::default()
    }
}

pub fn create_schedule(id: &str, schedule: proto::Schedule) -> proto::CreateScheduleRequest {
    proto::CreateScheduleRequest {
        schedule_id: id.into(),
        schedule: Some(schedule),
    }
}

pub fn in_emails(mut spec: proto::ChainSpec) -> proto::ChainSpec {
    spec.queue = "emails".into();
    spec.tags = vec!["t".into()];
    spec
}

pub fn k1_chain(target: &Target, ns: &str) -> proto::ChainSpec {
    let mut spec = in_emails(chain(
        vec![step("a", "GET", target.url(&format!("/{ns}/chain")))],
        json!(null),
    ));
    spec.idempotency_key = "k-1".into();
    spec
}

pub fn template_step(id: &str, name: &str, input: Value) -> proto::ChainStep {
    proto::ChainStep {
        id: id.into(),
        template: Some(proto::TemplateCall {
            name: name.into(),
            version: 0,
            input: Some(value_from_json(input)),
        }),
        ..Default::default()
    }
}

pub fn contract_version(name: &str, version: u32) -> Option<proto::ContractVersion> {
    Some(proto::ContractVersion {
        name: name.into(),
        version,
    })
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// What one namespace made under the names both use.
pub struct Made {
    /// `k-1`, succeeded.
    pub done: String,
    /// `k-2` (submitted with SubmitJobs), failed.
    pub failed: String,
    /// Due in an hour.
    pub queued: String,
    /// The job of `nightly`'s triggered run, succeeded.
    pub run_job: String,
    /// `k-1`, succeeded.
    pub chain: String,
    pub failed_chain: String,
    /// The job of `chain`'s step.
    pub step_job: String,
}

impl Made {
    pub fn jobs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("finished job", &self.done),
            ("failed job", &self.failed),
            ("queued job", &self.queued),
            ("schedule run's job", &self.run_job),
            ("chain step's job", &self.step_job),
        ]
    }

    pub fn job_ids(&self) -> HashSet<String> {
        self.jobs()
            .into_iter()
            .map(|(_, id)| id.to_string())
            .collect()
    }

    pub fn chains(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("succeeded chain", &self.chain),
            ("failed chain", &self.failed_chain),
        ]
    }
}

/// Makes the objects both namespaces name alike; `max_concurrency` tells their
/// queues `emails` apart.
pub async fn populate(who: &Caller, target: &Target, max_concurrency: i32) -> Made {
    let ns = who.ns;
    call!(
        who,
        queues.create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "emails".into(),
                max_concurrency: Some(max_concurrency),
                ..Default::default()
            }),
        })
    )
    .unwrap_or_else(|e| panic!("{ns} creates its queue `emails` (names are per namespace): {e:?}"));
    let order = call!(
        who,
        contracts.create_contract(order_contract(ns, &format!("{ns}'s order")))
    )
    .unwrap_or_else(|e| panic!("{ns} creates its contract `order`: {e:?}"));
    assert_eq!(order.version, 1, "{ns}'s contract `order` starts at 1");
    let notify = call!(
        who,
        templates.create_template(proto::CreateTemplateRequest {
            template: Some(notify_template(ns, target)),
        })
    )
    .unwrap_or_else(|e| panic!("{ns} creates its template `notify`: {e:?}"));
    assert_eq!(notify.version, 1, "{ns}'s template `notify` starts at 1");
    call!(
        who,
        schedules.create_schedule(create_schedule(
            "nightly",
            idle_schedule(
                &format!("{ns}'s nightly"),
                emails_job(target, &format!("/{ns}/nightly"))
            )
        ))
    )
    .unwrap_or_else(|e| panic!("{ns} creates its schedule `nightly`: {e:?}"));
    let done = submit_as(who, k1_job(target, ns)).await;
    assert!(!done.existing, "{ns}'s first `k-1` makes a job: {done:?}");
    let failed = call!(
        who,
        jobs.submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![k2_job(target, ns)]
        })
    )
    .unwrap_or_else(|e| panic!("{ns} submits `k-2`: {e:?}"))
    .results
    .remove(0);
    assert!(
        !failed.existing,
        "{ns}'s first `k-2` makes a job: {failed:?}"
    );
    let queued = submit_as(who, later_job(target, ns)).await.id;
    let first = call!(
        who,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(k1_chain(target, ns))
        })
    )
    .unwrap_or_else(|e| panic!("{ns} submits its chain `k-1`: {e:?}"));
    assert!(
        !first.existing,
        "{ns}'s first chain `k-1` is new: {first:?}"
    );
    let failing = in_emails(chain(
        vec![step(
            "a",
            "GET",
            target.url(&format!("/{ns}/chain-fail?status=400")),
        )],
        json!(null),
    ));
    let failed_chain = call!(
        who,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(failing)
        })
    )
    .unwrap_or_else(|e| panic!("{ns} submits a chain: {e:?}"))
    .id;
    let run = trigger_as(who, "nightly").await;
    wait_job_of(who, &done.id, JobStatus::Succeeded).await;
    wait_job_of(who, &failed.id, JobStatus::Failed).await;
    wait_job_of(who, &run.job_id, JobStatus::Succeeded).await;
    let ended = wait_chain_of(who, &first.id).await;
    assert_eq!(ended.status, ChainStatus::Succeeded as i32, "{ended:#?}");
    let ended_failed = wait_chain_of(who, &failed_chain).await;
    assert_eq!(
        ended_failed.status,
        ChainStatus::Failed as i32,
        "{ended_failed:#?}"
    );
    Made {
        done: done.id,
        failed: failed.id,
        queued,
        run_job: run.job_id,
        chain: first.id,
        failed_chain,
        step_job: ended.steps[0].job_id.clone(),
    }
}

/// What only alpha has: the chain waiting in its paused queue `held`, and the
/// job of its paused schedule `alpha-only`'s one run.
pub struct AlphaOnly {
    pub held_chain: String,
    pub only_run: String,
}

pub async fn make_alpha_only(alpha: &Caller, target: &Target) -> AlphaOnly {
    for (name, paused) in [(ONLY, false), ("held", true)] {
        call!(
            alpha,
            queues.create_queue(proto::CreateQueueRequest {
                queue: Some(proto::Queue {
                    name: name.into(),
                    paused,
                    ..Default::default()
                }),
            })
        )
        .unwrap_or_else(|e| panic!("alpha creates its queue {name}: {e:?}"));
    }
    let v2 = call!(
        alpha,
        contracts.create_contract(order_contract("alpha", "alpha's order, again"))
    )
    .expect("alpha's second version of `order`");
    assert_eq!(v2.version, 2);
    call!(
        alpha,
        contracts.create_contract(contract_named(ONLY, json!({"type": "object"})))
    )
    .expect("alpha's contract alpha-only");
    let mut only = plain_template(ONLY, target.url("/alpha/only"), None);
    only.queue = ONLY.into();
    call!(
        alpha,
        templates.create_template(proto::CreateTemplateRequest {
            template: Some(only)
        })
    )
    .expect("alpha's template alpha-only");
    let job = JobSpec {
        queue: ONLY.into(),
        ..get(target.url("/alpha/only-run"))
    };
    call!(
        alpha,
        schedules.create_schedule(create_schedule(
            ONLY,
            idle_schedule("alpha's alpha-only", job)
        ))
    )
    .expect("alpha's schedule alpha-only");
    call!(
        alpha,
        schedules.pause_schedule(proto::PauseScheduleRequest { id: ONLY.into() })
    )
    .expect("alpha pauses alpha-only");
    let only_run = trigger_as(alpha, ONLY).await.job_id;
    wait_job_of(alpha, &only_run, JobStatus::Succeeded).await;
    let mut held = chain(
        vec![step("a", "GET", target.url("/alpha/held"))],
        json!(null),
    );
    held.queue = "held".into();
    let held_chain = call!(
        alpha,
        chains.submit_chain(proto::SubmitChainRequest { chain: Some(held) })
    )
    .expect("alpha's chain in its paused queue")
    .id;
    AlphaOnly {
        held_chain,
        only_run,
    }
}

pub struct World {
    pub target: Target,
    pub alpha: Caller,
    /// A second key of alpha's namespace: it sees what alpha made.
    pub alpha2: Caller,
    pub beta: Caller,
    pub a: Made,
    pub b: Made,
    pub only: AlphaOnly,
}

impl World {
    /// Every job alpha made in the setup.
    pub fn alpha_jobs(&self) -> HashSet<String> {
        let mut ids = self.a.job_ids();
        ids.insert(self.only.only_run.clone());
        ids
    }
}

/// A keys file of `(namespace, description, (id, key))`, each key holding every scope.
pub fn keys_file(keys: &[(&str, &str, (String, String))]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let keys: Vec<Value> = keys
        .iter()
        .map(|(ns, label, (_, key))| {
            json!({
                "key": key, "namespace": ns, "scopes": scopes, "description": label,
            })
        })
        .collect();
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    (dir, path)
}
