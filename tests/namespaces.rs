//! Namespaces through the real server. Keys of every scope in namespaces `alpha`
//! and `beta` (and a second key of `alpha`) make the same names in both: queue
//! `emails`, schedule `nightly`, contract `order`, template `notify`, jobs tagged
//! `t` with the idempotency keys `k-1` and `k-2`, a chain with `k-1`. Alpha also
//! makes what beta has no name for: `alpha-only` of each kind, a second version
//! of `order`, and a paused queue `held` with a chain waiting in it.
//!
//! Then a table holds one check per RPC the protos declare (a new RPC without a
//! row fails `every_rpc_declared_has_an_isolation_check`), each trying to reach
//! alpha's objects from beta: by id or name, by list with its filters, counts and
//! page tokens, by watch filter and cursor, by idempotency key, and by every
//! change. Another namespace's object answers exactly as one that never was
//! (NOT_FOUND, the same message once the name is swapped), stays as it was, and
//! what beta makes under alpha's names is beta's own, its names shown bare.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chains::{chain, keeping, step};
use common::*;
use futures::future::BoxFuture;
use jobqueue::api::convert::value_from_json;
use jobqueue::auth::{Scope, key};
use jobqueue::now_ms;
use jobqueue::proto::schedule::Timetable;
use jobqueue::proto::{
    self, ChainStatus, JobEvent, JobSpec, JobStatus, ScheduleState,
    audit_service_client::AuditServiceClient, chain_service_client::ChainServiceClient,
    contract_service_client::ContractServiceClient, job_service_client::JobServiceClient,
    key_service_client::KeyServiceClient, queue_service_client::QueueServiceClient,
    schedule_service_client::ScheduleServiceClient, template_service_client::TemplateServiceClient,
};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Status};

const SOON: Duration = Duration::from_secs(10);
/// How long a watch that must be refused may stay silent before it counts as
/// served: a refusal comes at once.
const SILENCE: Duration = Duration::from_millis(1500);
/// The most one row may take.
const ROW_LIMIT: Duration = Duration::from_secs(20);
const HOUR_MS: i64 = 3_600_000;
/// A name alpha has for a queue, schedule, contract and template, and beta not.
const ONLY: &str = "alpha-only";
/// A name of the same shape no namespace has.
const NOBODY: &str = "gamma-only";

// ---------------------------------------------------------------------------
// Callers

/// A key, the namespace it acts in, and a connection to present it on.
#[derive(Clone)]
struct Caller {
    ns: &'static str,
    /// Who it is, in failure messages.
    label: &'static str,
    key: String,
    id: String,
    channel: Channel,
}

impl Caller {
    fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.key).parse().unwrap(),
        );
        request
    }

    fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    fn queues(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(self.channel.clone())
    }

    fn schedules(&self) -> ScheduleServiceClient<Channel> {
        ScheduleServiceClient::new(self.channel.clone())
    }

    fn chains(&self) -> ChainServiceClient<Channel> {
        ChainServiceClient::new(self.channel.clone())
    }

    fn contracts(&self) -> ContractServiceClient<Channel> {
        ContractServiceClient::new(self.channel.clone())
    }

    fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel.clone())
    }

    fn keys(&self) -> KeyServiceClient<Channel> {
        KeyServiceClient::new(self.channel.clone())
    }

    fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }
}

/// `call!(who, jobs.get_job(request))`: the RPC with `who`'s key, its answer's
/// message or status.
macro_rules! call {
    ($who:expr, $service:ident . $method:ident ( $message:expr )) => {{
        let who: &Caller = &$who;
        who.$service()
            .$method(who.req($message))
            .await
            .map(tonic::Response::into_inner)
    }};
}

/// A list request, asked for one page.
trait Paged {
    fn page(self, page_size: i32, page_token: String) -> Self;
}

macro_rules! paged {
    ($($request:ident),+) => {$(
        impl Paged for proto::$request {
            fn page(self, page_size: i32, page_token: String) -> Self {
                let mut request = self;
                request.page_size = page_size;
                request.page_token = page_token;
                request
            }
        }
    )+};
}

paged!(
    ListQueuesRequest,
    ListSchedulesRequest,
    ListScheduleRunsRequest,
    ListChainsRequest,
    ListContractsRequest,
    ListTemplatesRequest,
    ListKeysRequest,
    ListAuditEntriesRequest
);

/// Every item of a list RPC, page by page (`$items` names the answer's list).
macro_rules! all_pages {
    ($who:expr, $service:ident . $method:ident ( $request:expr ), $items:ident) => {{
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            match call!(
                $who,
                $service.$method(Paged::page($request, 1000, page_token))
            ) {
                Err(status) => break Err(status),
                Ok(page) => {
                    all.extend(page.$items);
                    if page.next_page_token.is_empty() {
                        break Ok(all);
                    }
                    page_token = page.next_page_token;
                }
            }
        }
    }};
}

/// `hidden!(codes?, what, alpha's name, a made-up name, |name| call)`: makes the
/// call with each name and checks that alpha's object is refused exactly as the
/// made-up one (see `refused_alike`).
macro_rules! hidden {
    ([$($code:expr),+], $what:expr, $real:expr, $fake:expr, |$name:ident| $call:expr) => {{
        let what: String = $what.to_string();
        let real_name: String = $real.to_string();
        let fake_name: String = $fake.to_string();
        let real = {
            let $name = real_name.clone();
            $call
        };
        let fake = {
            let $name = fake_name.clone();
            $call
        };
        refused_alike(&[$($code),+], &what, real, &real_name, fake, &fake_name);
    }};
    ($what:expr, $real:expr, $fake:expr, |$name:ident| $call:expr) => {
        hidden!([Code::NotFound], $what, $real, $fake, |$name| $call)
    };
}

/// Checks that `real`, the answer about another namespace's object, is the
/// answer about `fake`, one that never was: a refusal with one of `codes`, the
/// same code, the same message and bad fields once the names are swapped, and
/// no namespace named in it.
#[track_caller]
fn refused_alike<T: Debug>(
    codes: &[Code],
    what: &str,
    real: Result<T, Status>,
    real_name: &str,
    fake: Result<T, Status>,
    fake_name: &str,
) {
    let real = match real {
        Ok(served) => {
            panic!("{what}: LEAK: {real_name} of another namespace was served: {served:?}")
        }
        Err(status) => status,
    };
    assert!(
        codes.contains(&real.code()),
        "{what}: {real_name} of another namespace answered {:?} {:?}; one that does not exist answers {codes:?}, and so must it",
        real.code(),
        real.message()
    );
    let fake = match fake {
        Ok(served) => {
            panic!("{what}: the made-up {fake_name} was served ({served:?}): the check is wrong")
        }
        Err(status) => status,
    };
    assert_eq!(
        real.code(),
        fake.code(),
        "{what}: {real_name} of another namespace and a made-up {fake_name} answer apart: {real:?} / {fake:?}"
    );
    let plain = |status: &Status, name: &str| {
        let fields: Vec<String> = bad_fields(status)
            .iter()
            .map(|f| f.replace(name, "<name>"))
            .collect();
        (status.message().replace(name, "<name>"), fields)
    };
    assert_eq!(
        plain(&real, real_name),
        plain(&fake, fake_name),
        "{what}: the refusal tells {real_name} of another namespace from a made-up {fake_name}"
    );
    for ns in ["alpha", "beta"] {
        assert!(
            !real.message().contains(&format!("{ns}/{real_name}")),
            "{what}: the refusal names {real_name} qualified by its namespace: {real:?}"
        );
    }
    if real.code() == Code::InvalidArgument {
        assert!(
            !bad_fields(&real).is_empty(),
            "{what}: an INVALID_ARGUMENT that names no field: {real:?}"
        );
    }
}

/// A list asked for by another namespace's name answers as for a name nobody
/// has: empty, or refused alike.
#[track_caller]
fn listed_alike<T: Debug>(
    what: &str,
    real: Result<Vec<T>, Status>,
    real_name: &str,
    fake: Result<Vec<T>, Status>,
    fake_name: &str,
) {
    match (real, fake) {
        (Ok(real), Ok(fake)) => {
            assert!(
                real.is_empty(),
                "{what}: LEAK: another namespace's {real_name} listed {real:#?}"
            );
            assert!(fake.is_empty(), "{what}: {fake_name} listed {fake:#?}");
        }
        (real, fake) => refused_alike(
            &[Code::NotFound, Code::InvalidArgument],
            what,
            real,
            real_name,
            fake,
            fake_name,
        ),
    }
}

fn made_up_job() -> String {
    format!("j_{}", ulid::Ulid::new())
}

fn made_up_chain() -> String {
    format!("c_{}", ulid::Ulid::new())
}

/// Asserts a name is shown as its namespace knows it.
#[track_caller]
fn bare(what: &str, name: &str) {
    assert!(
        !name.contains('/'),
        "{what}: the name {name:?} is shown qualified, not bare"
    );
}

// ---------------------------------------------------------------------------
// What the namespaces make

/// The field alpha's contract `order` requires in its input, and beta's: an
/// input fits one namespace's `order` and not the other's.
fn order_field(ns: &str) -> (&'static str, &'static str) {
    if ns == "alpha" {
        ("id", "integer")
    } else {
        ("name", "string")
    }
}

fn order_contract(ns: &str, description: &str) -> proto::CreateContractRequest {
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

fn contract_named(name: &str, input: Value) -> proto::CreateContractRequest {
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
fn notify_template(ns: &str, target: &Target) -> proto::Template {
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

fn plain_template(name: &str, url: String, contract: Option<(&str, u32)>) -> proto::Template {
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
fn emails_job(target: &Target, path: &str) -> JobSpec {
    JobSpec {
        queue: "emails".into(),
        tags: vec!["t".into()],
        max_attempts: Some(1),
        ..get(target.url(path))
    }
}

fn keyed(spec: JobSpec, key: &str) -> JobSpec {
    JobSpec {
        idempotency_key: key.into(),
        ..spec
    }
}

fn in_an_hour() -> prost_types::Timestamp {
    timestamp(now_ms() + HOUR_MS)
}

/// A job of `emails` due in an hour: it stays queued through the test.
fn later_job(target: &Target, ns: &str) -> JobSpec {
    JobSpec {
        scheduled_at: Some(in_an_hour()),
        ..emails_job(target, &format!("/{ns}/later"))
    }
}

fn k1_job(target: &Target, ns: &str) -> JobSpec {
    keyed(emails_job(target, &format!("/{ns}/done")), "k-1")
}

fn k2_job(target: &Target, ns: &str) -> JobSpec {
    keyed(
        emails_job(target, &format!("/{ns}/failed?status=400")),
        "k-2",
    )
}

fn template_job(name: &str, input: Value) -> JobSpec {
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
fn idle_schedule(description: &str, job: JobSpec) -> proto::Schedule {
    proto::Schedule {
        description: description.into(),
        timetable: Some(Timetable::Interval(ms(HOUR_MS as u64))),
        start_time: Some(timestamp((now_ms() + HOUR_MS + 999) / 1000 * 1000)),
        job: Some(job),
        ..Default::default()
    }
}

fn create_schedule(id: &str, schedule: proto::Schedule) -> proto::CreateScheduleRequest {
    proto::CreateScheduleRequest {
        schedule_id: id.into(),
        schedule: Some(schedule),
    }
}

fn in_emails(mut spec: proto::ChainSpec) -> proto::ChainSpec {
    spec.queue = "emails".into();
    spec.tags = vec!["t".into()];
    spec
}

fn k1_chain(target: &Target, ns: &str) -> proto::ChainSpec {
    let mut spec = in_emails(chain(
        vec![step("a", "GET", target.url(&format!("/{ns}/chain")))],
        json!(null),
    ));
    spec.idempotency_key = "k-1".into();
    spec
}

fn template_step(id: &str, name: &str, input: Value) -> proto::ChainStep {
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

fn contract_version(name: &str, version: u32) -> Option<proto::ContractVersion> {
    Some(proto::ContractVersion {
        name: name.into(),
        version,
    })
}

fn finished(status: i32) -> bool {
    [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled]
        .iter()
        .any(|s| *s as i32 == status)
}

async fn read_job(who: &Caller, id: &str) -> proto::Job {
    call!(who, jobs.get_job(proto::GetJobRequest { id: id.into() }))
        .unwrap_or_else(|e| panic!("{} reads its job {id}: {e:?}", who.label))
}

async fn wait_job_of(who: &Caller, id: &str, status: JobStatus) -> proto::Job {
    let until = Instant::now() + SOON;
    loop {
        let job = read_job(who, id).await;
        if job.status == status as i32 {
            return job;
        }
        assert!(
            Instant::now() < until,
            "{}'s job {id} never became {status:?}: {job:#?}",
            who.label
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_chain(who: &Caller, id: &str) -> proto::Chain {
    call!(
        who,
        chains.get_chain(proto::GetChainRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its chain {id}: {e:?}", who.label))
}

async fn wait_chain_of(who: &Caller, id: &str) -> proto::Chain {
    let until = Instant::now() + SOON;
    loop {
        let chain = read_chain(who, id).await;
        if chain.status != ChainStatus::Running as i32 {
            return chain;
        }
        assert!(
            Instant::now() < until,
            "{}'s chain {id} never ended: {chain:#?}",
            who.label
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_queue(who: &Caller, name: &str) -> proto::QueueState {
    call!(
        who,
        queues.get_queue(proto::GetQueueRequest { name: name.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its queue {name}: {e:?}", who.label))
}

async fn read_schedule(who: &Caller, id: &str) -> proto::Schedule {
    call!(
        who,
        schedules.get_schedule(proto::GetScheduleRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its schedule {id}: {e:?}", who.label))
}

async fn read_contract(who: &Caller, name: &str, version: u32) -> proto::Contract {
    call!(
        who,
        contracts.get_contract(proto::GetContractRequest {
            name: name.into(),
            version
        })
    )
    .unwrap_or_else(|e| panic!("{} reads its contract {name}/{version}: {e:?}", who.label))
}

async fn read_template(who: &Caller, name: &str, version: u32) -> proto::Template {
    call!(
        who,
        templates.get_template(proto::GetTemplateRequest {
            name: name.into(),
            version
        })
    )
    .unwrap_or_else(|e| panic!("{} reads its template {name}/{version}: {e:?}", who.label))
}

async fn submit_as(who: &Caller, spec: JobSpec) -> proto::SubmitJobResponse {
    call!(
        who,
        jobs.submit_job(proto::SubmitJobRequest { job: Some(spec) })
    )
    .unwrap_or_else(|e| panic!("{} submits a job: {e:?}", who.label))
}

async fn trigger_as(who: &Caller, id: &str) -> proto::ScheduleRun {
    call!(
        who,
        schedules.trigger_schedule(proto::TriggerScheduleRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} triggers its schedule {id}: {e:?}", who.label))
}

/// Every job a caller lists with `filter`, and the total the first page counts.
async fn jobs_listed(
    who: &Caller,
    filter: proto::ListJobsRequest,
) -> Result<(Vec<proto::Job>, i64), Status> {
    let mut jobs = Vec::new();
    let mut total = None;
    let mut page_token = String::new();
    loop {
        let page = call!(
            who,
            jobs.list_jobs(proto::ListJobsRequest {
                page_size: 1000,
                page_token,
                ..filter.clone()
            })
        )?;
        total.get_or_insert(page.total_size);
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            return Ok((jobs, total.unwrap_or_default()));
        }
        page_token = page.next_page_token;
    }
}

async fn job_ids(who: &Caller, filter: proto::ListJobsRequest) -> BTreeSet<String> {
    jobs_listed(who, filter)
        .await
        .unwrap_or_else(|e| panic!("{} lists its jobs: {e:?}", who.label))
        .0
        .into_iter()
        .map(|j| j.id)
        .collect()
}

/// What one namespace made under the names both use.
struct Made {
    /// `k-1`, succeeded.
    done: String,
    /// `k-2` (submitted with SubmitJobs), failed.
    failed: String,
    /// Due in an hour.
    queued: String,
    /// The job of `nightly`'s triggered run, succeeded.
    run_job: String,
    /// `k-1`, succeeded.
    chain: String,
    failed_chain: String,
    /// The job of `chain`'s step.
    step_job: String,
}

impl Made {
    fn jobs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("finished job", &self.done),
            ("failed job", &self.failed),
            ("queued job", &self.queued),
            ("schedule run's job", &self.run_job),
            ("chain step's job", &self.step_job),
        ]
    }

    fn job_ids(&self) -> HashSet<String> {
        self.jobs()
            .into_iter()
            .map(|(_, id)| id.to_string())
            .collect()
    }

    fn chains(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("succeeded chain", &self.chain),
            ("failed chain", &self.failed_chain),
        ]
    }
}

/// Makes the objects both namespaces name alike; `max_concurrency` tells their
/// queues `emails` apart.
async fn populate(who: &Caller, target: &Target, max_concurrency: i32) -> Made {
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
struct AlphaOnly {
    held_chain: String,
    only_run: String,
}

async fn make_alpha_only(alpha: &Caller, target: &Target) -> AlphaOnly {
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

struct World {
    target: Target,
    alpha: Caller,
    /// A second key of alpha's namespace: it sees what alpha made.
    alpha2: Caller,
    beta: Caller,
    a: Made,
    b: Made,
    only: AlphaOnly,
}

impl World {
    /// Every job alpha made in the setup.
    fn alpha_jobs(&self) -> HashSet<String> {
        let mut ids = self.a.job_ids();
        ids.insert(self.only.only_run.clone());
        ids
    }
}

// ---------------------------------------------------------------------------
// The table

type Check = Box<dyn Fn(Arc<World>) -> BoxFuture<'static, ()> + Send + Sync>;

struct Row {
    path: &'static str,
    check: Check,
}

fn row<F>(path: &'static str, check: impl Fn(Arc<World>) -> F + Send + Sync + 'static) -> Row
where
    F: Future<Output = ()> + Send + 'static,
{
    Row {
        path,
        check: Box::new(move |w| Box::pin(check(w))),
    }
}

/// One check per RPC, run in this order. A change that could spoil what other
/// rows read, should it leak, is tried on objects made for its row, or comes
/// after the rows that read them.
fn table() -> Vec<Row> {
    vec![
        row("/jobqueue.v1.JobService/SubmitJob", submit_job),
        row("/jobqueue.v1.JobService/SubmitJobs", submit_jobs),
        row("/jobqueue.v1.JobService/GetJob", get_job_row),
        row("/jobqueue.v1.JobService/GetJobResult", get_job_result),
        row("/jobqueue.v1.JobService/ListJobs", list_jobs),
        row("/jobqueue.v1.JobService/WatchJobs", watch_jobs),
        row("/jobqueue.v1.JobService/CancelJob", cancel_job),
        row("/jobqueue.v1.JobService/RetryJob", retry_job),
        row("/jobqueue.v1.JobService/DeleteJob", delete_job),
        row("/jobqueue.v1.QueueService/CreateQueue", create_queue),
        row("/jobqueue.v1.QueueService/GetQueue", get_queue),
        row("/jobqueue.v1.QueueService/ListQueues", list_queues),
        row("/jobqueue.v1.QueueService/UpdateQueue", update_queue),
        row("/jobqueue.v1.QueueService/PauseQueue", pause_queue),
        row("/jobqueue.v1.QueueService/ResumeQueue", resume_queue),
        row("/jobqueue.v1.QueueService/PurgeQueue", purge_queue),
        row(
            "/jobqueue.v1.ScheduleService/CreateSchedule",
            create_schedule_row,
        ),
        row("/jobqueue.v1.ScheduleService/GetSchedule", get_schedule),
        row("/jobqueue.v1.ScheduleService/ListSchedules", list_schedules),
        row(
            "/jobqueue.v1.ScheduleService/ListScheduleRuns",
            list_schedule_runs,
        ),
        row(
            "/jobqueue.v1.ScheduleService/UpdateSchedule",
            update_schedule,
        ),
        row("/jobqueue.v1.ScheduleService/PauseSchedule", pause_schedule),
        row(
            "/jobqueue.v1.ScheduleService/ResumeSchedule",
            resume_schedule,
        ),
        row(
            "/jobqueue.v1.ScheduleService/TriggerSchedule",
            trigger_schedule,
        ),
        row(
            "/jobqueue.v1.ScheduleService/DeleteSchedule",
            delete_schedule,
        ),
        row("/jobqueue.v1.ChainService/SubmitChain", submit_chain),
        row("/jobqueue.v1.ChainService/CheckChain", check_chain),
        row("/jobqueue.v1.ChainService/GetChain", get_chain),
        row("/jobqueue.v1.ChainService/ListChains", list_chains),
        row("/jobqueue.v1.ChainService/WatchChain", watch_chain),
        row("/jobqueue.v1.ChainService/CancelChain", cancel_chain),
        row("/jobqueue.v1.ChainService/RetryChain", retry_chain),
        row(
            "/jobqueue.v1.ContractService/CreateContract",
            create_contract,
        ),
        row("/jobqueue.v1.ContractService/GetContract", get_contract),
        row("/jobqueue.v1.ContractService/ListContracts", list_contracts),
        row(
            "/jobqueue.v1.TemplateService/CreateTemplate",
            create_template,
        ),
        row("/jobqueue.v1.TemplateService/GetTemplate", get_template),
        row("/jobqueue.v1.TemplateService/ListTemplates", list_templates),
        row("/jobqueue.v1.KeyService/CreateKey", create_key),
        row("/jobqueue.v1.KeyService/ListKeys", list_keys),
        row("/jobqueue.v1.KeyService/RevokeKey", revoke_key),
        row(
            "/jobqueue.v1.AuditService/ListAuditEntries",
            list_audit_entries,
        ),
        // Last: should they leak, they would deactivate what the rows above name.
        row(
            "/jobqueue.v1.ContractService/DeactivateContract",
            deactivate_contract,
        ),
        row(
            "/jobqueue.v1.TemplateService/DeactivateTemplate",
            deactivate_template,
        ),
    ]
}

/// Every RPC the protos declare, as `/jobqueue.v1.<Service>/<Method>`.
fn rpcs_declared() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/jobqueue/v1");
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut service = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim().to_string();
            }
            if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                found.insert(format!("/jobqueue.v1.{service}/{method}"));
            }
        }
    }
    found
}

fn assert_every_rpc_has_a_row() {
    let declared = rpcs_declared();
    assert!(declared.len() > 40, "the protos' RPCs: {declared:?}");
    let mut rows = BTreeSet::new();
    for row in table() {
        assert!(rows.insert(row.path), "{} has two rows", row.path);
    }
    let missing: Vec<&String> = declared
        .iter()
        .filter(|p| !rows.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without an isolation check in tests/namespaces.rs (add a row to `table`): {missing:#?}"
    );
    let stale: Vec<&&str> = rows.iter().filter(|p| !declared.contains(**p)).collect();
    assert!(
        stale.is_empty(),
        "rows for RPCs the protos do not declare: {stale:#?}"
    );
}

#[test]
fn every_rpc_declared_has_an_isolation_check() {
    assert_every_rpc_has_a_row();
}

/// A keys file of `(namespace, description, (id, key))`, each key holding every scope.
fn keys_file(keys: &[(&str, &str, (String, String))]) -> (tempfile::TempDir, PathBuf) {
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

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rpc_lets_one_namespace_reach_anothers_objects() {
    assert_every_rpc_has_a_row();
    let started = Instant::now();
    let target = Target::start().await.unwrap();
    let keys = [
        ("alpha", "alpha"),
        ("alpha", "alpha's second key"),
        ("beta", "beta"),
    ]
    .map(|(ns, label)| (ns, label, key::generate()));
    let (_dir, file) = keys_file(&keys);
    // A job naming a queue nobody has is refused, not given a new queue: then a
    // queue of alpha's and one that never was can be asked about alike.
    let server = Server::start_with(|c| {
        c.keys_file = Some(file);
        c.create_queues_on_use = false;
    })
    .await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let [alpha, alpha2, beta] = keys.map(|(ns, label, (id, key))| Caller {
        ns,
        label,
        key,
        id,
        channel: channel.clone(),
    });

    // Alpha first, so that beta's names are taken in alpha when beta makes them.
    let a = populate(&alpha, &target, 7).await;
    let only = make_alpha_only(&alpha, &target).await;
    let b = populate(&beta, &target, 9).await;
    let world = Arc::new(World {
        target,
        alpha,
        alpha2,
        beta,
        a,
        b,
        only,
    });
    let set_up = started.elapsed();

    let mut failures = Vec::new();
    let rows = table();
    for row in &rows {
        let mut check = tokio::spawn((row.check)(world.clone()));
        match tokio::time::timeout(ROW_LIMIT, &mut check).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(format!("{}: {}", row.path, panic_text(error))),
            Err(_) => {
                check.abort();
                failures.push(format!("{}: no end within {ROW_LIMIT:?}", row.path));
            }
        }
    }
    drop(world);
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} RPCs let beta reach alpha's objects, or their check failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "set up in {set_up:?}, every row checked in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// JobService

async fn submit_job(w: Arc<World>) {
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

async fn submit_jobs(w: Arc<World>) {
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

async fn get_job_row(w: Arc<World>) {
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

async fn get_job_result(w: Arc<World>) {
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

async fn list_jobs(w: Arc<World>) {
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

async fn watch_jobs(w: Arc<World>) {
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

async fn cancel_job(w: Arc<World>) {
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

async fn retry_job(w: Arc<World>) {
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

async fn delete_job(w: Arc<World>) {
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

// ---------------------------------------------------------------------------
// QueueService

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

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
    read_queue(who, name).await.queue.expect("a queue")
}

async fn create_queue(w: Arc<World>) {
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

async fn get_queue(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_queue(beta, "emails").await;
    let queue = own.queue.clone().expect("a queue");
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

async fn list_queues(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let listed = |who: &Caller, page: Vec<proto::QueueState>| -> Vec<proto::Queue> {
        let queues: Vec<proto::Queue> = page.into_iter().filter_map(|q| q.queue).collect();
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

async fn update_queue(w: Arc<World>) {
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

async fn pause_queue(w: Arc<World>) {
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

async fn resume_queue(w: Arc<World>) {
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

async fn purge_queue(w: Arc<World>) {
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

// ---------------------------------------------------------------------------
// ScheduleService

async fn create_schedule_row(w: Arc<World>) {
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

async fn get_schedule(w: Arc<World>) {
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

async fn list_schedules(w: Arc<World>) {
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

async fn list_schedule_runs(w: Arc<World>) {
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

async fn update_schedule(w: Arc<World>) {
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

async fn pause_schedule(w: Arc<World>) {
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

async fn resume_schedule(w: Arc<World>) {
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

async fn trigger_schedule(w: Arc<World>) {
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

async fn delete_schedule(w: Arc<World>) {
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

// ---------------------------------------------------------------------------
// ChainService

/// A one-step chain of `emails` calling `/beta/probe`.
fn probe_chain(target: &Target) -> proto::ChainSpec {
    in_emails(chain(
        vec![step("a", "GET", target.url("/beta/probe"))],
        json!(null),
    ))
}

/// The ways a chain names what only alpha has, each spec built from the name.
type Naming = (&'static str, fn(&Target, &str) -> proto::ChainSpec);

fn namings() -> Vec<Naming> {
    vec![
        ("a step keeping a contract only alpha has", |t, name| {
            in_emails(chain(
                vec![keeping(step("a", "GET", t.url("/beta/probe")), name, 0)],
                json!(null),
            ))
        }),
        ("an input keeping a contract only alpha has", |t, name| {
            let mut spec = probe_chain(t);
            spec.input = Some(value_from_json(json!({"id": 1})));
            spec.input_contract = contract_version(name, 0);
            spec
        }),
        ("a step from a template only alpha has", |_, name| {
            in_emails(chain(
                vec![template_step("a", name, json!({"id": 1}))],
                json!(null),
            ))
        }),
    ]
}

/// A chain whose steps run in queue `name`.
fn chain_in(target: &Target, name: &str) -> proto::ChainSpec {
    let mut spec = probe_chain(target);
    spec.queue = name.into();
    spec
}

/// How a chain ended, as its namespace may know it: `name` swapped out.
fn ending(chain: &proto::Chain, name: &str) -> Vec<(i32, i32, String)> {
    chain
        .steps
        .iter()
        .map(|s| (chain.status, s.status, s.reason.replace(name, "<name>")))
        .collect()
}

/// Checks that `real`, an answer naming another namespace's object, is the
/// answer naming `fake`, which never was: refused alike, or, when both are
/// answered, the same answer once the names are swapped.
#[track_caller]
fn answered_alike<T: Debug>(
    what: &str,
    real: Result<T, Status>,
    real_name: &str,
    fake: Result<T, Status>,
    fake_name: &str,
) {
    match (real, fake) {
        (Ok(real), Ok(fake)) => assert_eq!(
            format!("{real:?}").replace(real_name, "<name>"),
            format!("{fake:?}").replace(fake_name, "<name>"),
            "{what}: the answer tells {real_name} of another namespace from a made-up {fake_name}"
        ),
        (real, fake) => refused_alike(
            &[Code::NotFound, Code::InvalidArgument],
            what,
            real,
            real_name,
            fake,
            fake_name,
        ),
    }
}

/// A chain whose input keeps `order` at `version` and whose step calls
/// `notify`, with inputs that fit beta's contract and not alpha's.
fn betas_order_chain(version: u32, key: &str) -> proto::ChainSpec {
    let mut spec = in_emails(chain(
        vec![template_step("n", "notify", json!({"name": key}))],
        json!({"name": key}),
    ));
    spec.input_contract = contract_version("order", version);
    spec
}

async fn submit_chain(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    for (who, own, other) in [
        (beta, &w.b.chain, &w.a.chain),
        (alpha, &w.a.chain, &w.b.chain),
        (&w.alpha2, &w.a.chain, &w.b.chain),
    ] {
        let again = call!(
            who,
            chains.submit_chain(proto::SubmitChainRequest {
                chain: Some(k1_chain(t, who.ns))
            })
        )
        .unwrap_or_else(|e| panic!("{} resubmits its chain `k-1`: {e:?}", who.label));
        assert!(
            again.existing && &again.id == own,
            "{}'s chain `k-1` must answer its namespace's chain {own} (existing), never {other}: {again:?}",
            who.label
        );
    }
    let fresh = || proto::SubmitChainRequest {
        chain: Some(proto::ChainSpec {
            idempotency_key: "k-fresh".into(),
            ..probe_chain(t)
        }),
    };
    let first = call!(alpha, chains.submit_chain(fresh())).expect("alpha's chain k-fresh");
    let second = call!(beta, chains.submit_chain(fresh())).expect("beta's chain k-fresh");
    assert!(
        !first.existing && !second.existing && first.id != second.id,
        "LEAK: beta's first chain `k-fresh` must be beta's own, not alpha's {}: {second:?}",
        first.id
    );
    for (what, spec) in namings() {
        hidden!(
            [Code::NotFound, Code::InvalidArgument],
            format!("SubmitChain with {what}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                chains.submit_chain(proto::SubmitChainRequest {
                    chain: Some(spec(t, &name))
                })
            )
        );
    }
    // A queue is looked up when a step starts: a chain in alpha's queue ends as
    // one in a queue nobody has (or both are refused alike).
    let mut endings = Vec::new();
    for name in [ONLY, NOBODY] {
        let made = call!(
            beta,
            chains.submit_chain(proto::SubmitChainRequest {
                chain: Some(chain_in(t, name))
            })
        );
        endings.push(match made {
            Ok(made) => Ok(ending(&wait_chain_of(beta, &made.id).await, name)),
            Err(refused) => Err(refused),
        });
    }
    let fake = endings.pop().unwrap();
    let real = endings.pop().unwrap();
    if let Ok(steps) = &real {
        for (_, _, reason) in steps {
            assert!(
                !reason.contains("alpha/") && !reason.contains("beta/"),
                "SubmitChain: a step's reason names a queue qualified: {reason}"
            );
        }
        assert!(
            steps
                .iter()
                .all(|(_, step, _)| *step != proto::StepStatus::Succeeded as i32),
            "LEAK: beta's chain ran its step in alpha's queue {ONLY}: {steps:?}"
        );
    }
    answered_alike(
        "SubmitChain with its steps in a queue only alpha has",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let second_version = call!(
        beta,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(betas_order_chain(2, "chain-b2"))
        })
    );
    assert!(
        second_version.is_err(),
        "LEAK: beta's chain kept alpha's `order` version 2: {second_version:?}"
    );
    let made = call!(
        beta,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(betas_order_chain(0, "chain-b"))
        })
    )
    .unwrap_or_else(|e| {
        panic!("beta's chain keeping its own `order` and calling its own `notify` (inputs that fit beta's contract only) was refused: {e:?}")
    });
    assert_eq!(
        made.input_contract,
        contract_version("order", 1),
        "beta's `order` is at version 1 (alpha's at 2)"
    );
    let ended = wait_chain_of(beta, &made.id).await;
    assert_eq!(ended.status, ChainStatus::Succeeded as i32, "{ended:#?}");
    let n = &ended.steps[0];
    let url = &n.request.as_ref().expect("the call sent").url;
    assert!(
        url.contains("/beta/notify/chain-b"),
        "beta's template: {url}"
    );
    assert_eq!(n.contract, contract_version("order", 1));
    assert_eq!(t.received_on("/beta/notify/chain-b").len(), 1);
    assert_eq!(read_job(beta, &n.job_id).await.queue, "emails");
}

async fn check_chain(w: Arc<World>) {
    let (beta, t) = (&w.beta, &w.target);
    let check = call!(
        beta,
        chains.check_chain(proto::CheckChainRequest {
            chain: Some(betas_order_chain(0, "checked"))
        })
    )
    .unwrap_or_else(|e| {
        panic!("beta's check of a chain fitting its own `order` and `notify` was refused (checked against alpha's?): {e:?}")
    });
    assert!(check.accepted, "{check:#?}");
    let mut namings = namings();
    namings.push(("its steps in a queue only alpha has", chain_in));
    for (what, spec) in namings {
        let check = |name: &str| proto::CheckChainRequest {
            chain: Some(spec(t, name)),
        };
        answered_alike(
            &format!("CheckChain with {what}"),
            call!(beta, chains.check_chain(check(ONLY))),
            ONLY,
            call!(beta, chains.check_chain(check(NOBODY))),
            NOBODY,
        );
    }
    let second_version = call!(
        beta,
        chains.check_chain(proto::CheckChainRequest {
            chain: Some(betas_order_chain(2, "checked"))
        })
    );
    assert!(
        second_version.is_err(),
        "LEAK: beta's check used alpha's `order` version 2: {second_version:?}"
    );
}

impl World {
    fn alpha_chains(&self) -> Vec<(&'static str, &str)> {
        let mut chains = self.a.chains();
        chains.push(("chain waiting in a paused queue", &self.only.held_chain));
        chains
    }
}

async fn get_chain(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_chain();
    for (what, id) in w.alpha_chains() {
        hidden!(
            format!("GetChain of alpha's {what}"),
            id,
            &fake,
            |id| call!(beta, chains.get_chain(proto::GetChainRequest { id }))
        );
    }
    hidden!(
        "GetChain of beta's chain, by alpha",
        &w.b.chain,
        &fake,
        |id| call!(alpha, chains.get_chain(proto::GetChainRequest { id }))
    );
    read_chain(&w.alpha2, &w.only.held_chain).await;
    let own = read_chain(beta, &w.b.chain).await;
    assert_eq!(own.idempotency_key, "k-1");
}

async fn list_chains(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let ids = |chains: Vec<proto::Chain>| -> BTreeSet<String> {
        chains.into_iter().map(|c| c.id).collect()
    };
    let a = ids(all_pages!(
        alpha,
        chains.list_chains(proto::ListChainsRequest::default()),
        chains
    )
    .expect("alpha's chains"));
    let b = ids(all_pages!(
        beta,
        chains.list_chains(proto::ListChainsRequest::default()),
        chains
    )
    .expect("beta's chains"));
    let both: Vec<&String> = a.intersection(&b).collect();
    assert!(
        both.is_empty(),
        "LEAK: ListChains lists these chains to both namespaces: {both:?}"
    );
    for (what, id) in w.alpha_chains() {
        assert!(
            !b.contains(id),
            "LEAK: ListChains shows beta alpha's {what}"
        );
        assert!(a.contains(id), "alpha lists its {what}");
    }
    for (what, id) in w.b.chains() {
        assert!(
            !a.contains(id),
            "LEAK: ListChains shows alpha beta's {what}"
        );
    }
    let token = call!(
        alpha,
        chains.list_chains(proto::ListChainsRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one chain");
    if let Ok(page) = call!(
        beta,
        chains.list_chains(proto::ListChainsRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked: Vec<&String> = page
            .chains
            .iter()
            .map(|c| &c.id)
            .filter(|id| a.contains(*id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's chains {leaked:?}"
        );
    }
}

/// What a chain watch that must be refused did (see `watch_refusal`).
async fn chain_watch_refusal(who: &Caller, id: String) -> Result<String, Status> {
    let mut events = call!(who, chains.watch_chain(proto::WatchChainRequest { id }))?;
    match tokio::time::timeout(SILENCE, events.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(Some(event))) => Ok(format!("the event {event:?}")),
        Ok(Ok(None)) => Ok("a stream that ended cleanly".into()),
        Err(_) => Ok(format!("a stream still open after {SILENCE:?}")),
    }
}

async fn watch_chain(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_chain();
    for (what, id) in w.alpha_chains() {
        hidden!(format!("WatchChain of alpha's {what}"), id, &fake, |id| {
            chain_watch_refusal(beta, id).await
        });
    }
    hidden!(
        "WatchChain of beta's chain, by alpha",
        &w.b.chain,
        &fake,
        |id| chain_watch_refusal(alpha, id).await
    );
    let mut events = call!(
        w.alpha2,
        chains.watch_chain(proto::WatchChainRequest {
            id: w.only.held_chain.clone()
        })
    )
    .expect("alpha's second key follows alpha's chain");
    let first = tokio::time::timeout(SOON, events.message())
        .await
        .expect("a snapshot at once")
        .expect("the stream holds")
        .expect("a first event");
    assert_eq!(
        first.chain.map(|c| c.id),
        Some(w.only.held_chain.clone()),
        "the snapshot of alpha's chain"
    );
}

/// Runs a change by beta on each of alpha's chains (and by alpha on beta's):
/// each must be refused as for a chain that never was, and leave it as it was.
macro_rules! chain_change {
    ($w:expr, $rpc:literal, |$who:ident, $id:ident| $call:expr) => {{
        let w: &World = &$w;
        let fake = made_up_chain();
        let mut cases: Vec<(&Caller, &Caller, String, &str)> = w
            .alpha_chains()
            .into_iter()
            .map(|(what, id)| (&w.beta, &w.alpha, format!("alpha's {what}"), id))
            .collect();
        for (what, id) in w.b.chains() {
            cases.push((&w.alpha, &w.beta, format!("beta's {what}, by alpha"), id));
        }
        for (asker, owner, what, id) in cases {
            let before = read_chain(owner, id).await;
            let $who = asker;
            hidden!(format!("{} of {what}", $rpc), id, &fake, |$id| $call);
            let after = read_chain(owner, id).await;
            assert_eq!(
                before, after,
                "LEAK: {} by another namespace changed {what}",
                $rpc
            );
        }
    }};
}

async fn cancel_chain(w: Arc<World>) {
    chain_change!(w, "CancelChain", |who, id| call!(
        who,
        chains.cancel_chain(proto::CancelChainRequest { id })
    ));
}

async fn retry_chain(w: Arc<World>) {
    chain_change!(w, "RetryChain", |who, id| call!(
        who,
        chains.retry_chain(proto::RetryChainRequest { id })
    ));
}

// ---------------------------------------------------------------------------
// ContractService

fn described(
    mut request: proto::CreateContractRequest,
    description: String,
) -> proto::CreateContractRequest {
    if let Some(c) = request.contract.as_mut() {
        c.description = description;
    }
    request
}

async fn create_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fresh = |ns: &str| {
        described(
            contract_named("fresh-c", json!({"type": "object"})),
            format!("{ns}'s fresh-c"),
        )
    };
    let a = call!(alpha, contracts.create_contract(fresh("alpha"))).expect("alpha's fresh-c");
    assert_eq!(a.version, 1);
    let b = call!(beta, contracts.create_contract(fresh("beta"))).unwrap_or_else(|e| {
        panic!("LEAK: beta's contract fresh-c, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (b.name.as_str(), b.version),
        ("fresh-c", 1),
        "LEAK: beta's first fresh-c must be its version 1, not follow alpha's"
    );
    let kept = read_contract(alpha, "fresh-c", 0).await;
    assert_eq!(
        (kept.version, kept.description.as_str()),
        (1, "alpha's fresh-c"),
        "LEAK: beta's create changed alpha's fresh-c"
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateContract whose schema refers to a contract only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            contracts.create_contract(contract_named(
                "probe",
                json!({"type": "object", "properties": {
                    "x": {"$ref": format!("jobqueue:contract/{name}/1/input")}
                }})
            ))
        )
    );
    let second = call!(
        beta,
        contracts.create_contract(contract_named(
            "probe",
            json!({"properties": {"x": {"$ref": "jobqueue:contract/order/2/input"}}})
        ))
    );
    assert!(
        second.is_err(),
        "LEAK: beta's schema referred to alpha's `order` version 2: {second:?}"
    );
}

async fn get_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_contract(beta, "order", 0).await;
    assert_eq!(
        (own.version, own.description.as_str()),
        (1, "beta's order"),
        "LEAK: beta's latest `order` must be beta's version 1"
    );
    assert_eq!(read_contract(alpha, "order", 0).await.version, 2);
    let second = call!(
        beta,
        contracts.get_contract(proto::GetContractRequest {
            name: "order".into(),
            version: 2
        })
    );
    assert_eq!(
        second.as_ref().map_err(Status::code).err(),
        Some(Code::NotFound),
        "LEAK: beta read alpha's `order` version 2: {second:?}"
    );
    for version in [0, 1] {
        hidden!(
            format!("GetContract of alpha's alpha-only, version {version}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                contracts.get_contract(proto::GetContractRequest { name, version })
            )
        );
    }
    read_contract(&w.alpha2, ONLY, 0).await;
}

fn alphas_contracts(contracts: &[proto::Contract]) -> Vec<String> {
    contracts
        .iter()
        .filter(|c| c.name == ONLY || c.description.starts_with("alpha's"))
        .map(|c| format!("{}/{}: {}", c.name, c.version, c.description))
        .collect()
}

async fn list_contracts(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let b = all_pages!(
        beta,
        contracts.list_contracts(proto::ListContractsRequest::default()),
        contracts
    )
    .expect("beta's contracts");
    let leaked = alphas_contracts(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListContracts shows beta alpha's contracts {leaked:?}"
    );
    for c in &b {
        bare("ListContracts", &c.name);
    }
    let orders: Vec<u32> = b
        .iter()
        .filter(|c| c.name == "order")
        .map(|c| c.version)
        .collect();
    assert_eq!(orders, [1], "beta's `order` has one version");
    let named = |name: &str| proto::ListContractsRequest {
        name: name.into(),
        ..Default::default()
    };
    let real = all_pages!(beta, contracts.list_contracts(named(ONLY)), contracts);
    let fake = all_pages!(beta, contracts.list_contracts(named(NOBODY)), contracts);
    listed_alike(
        "ListContracts of alpha's alpha-only",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let token = call!(
        alpha,
        contracts.list_contracts(proto::ListContractsRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one contract");
    if let Ok(page) = call!(
        beta,
        contracts.list_contracts(proto::ListContractsRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked = alphas_contracts(&page.contracts);
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's contracts {leaked:?}"
        );
    }
}

async fn deactivate_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_contract(alpha, ONLY, 1).await;
    hidden!(
        "DeactivateContract of alpha's alpha-only version 1",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            contracts.deactivate_contract(proto::DeactivateContractRequest { name, version: 1 })
        )
    );
    assert_eq!(
        before,
        read_contract(alpha, ONLY, 1).await,
        "LEAK: beta's DeactivateContract changed alpha's alpha-only"
    );
    let before = read_contract(alpha, "order", 2).await;
    let second = call!(
        beta,
        contracts.deactivate_contract(proto::DeactivateContractRequest {
            name: "order".into(),
            version: 2
        })
    );
    assert_eq!(
        second.as_ref().map_err(Status::code).err(),
        Some(Code::NotFound),
        "LEAK: beta deactivated alpha's `order` version 2: {second:?}"
    );
    assert_eq!(before, read_contract(alpha, "order", 2).await);
    for who in [alpha, beta] {
        call!(
            who,
            contracts.create_contract(contract_named("doomed-c", json!({"type": "object"})))
        )
        .unwrap_or_else(|e| panic!("{} creates doomed-c: {e:?}", who.label));
    }
    call!(
        beta,
        contracts.deactivate_contract(proto::DeactivateContractRequest {
            name: "doomed-c".into(),
            version: 1
        })
    )
    .expect("beta deactivates its doomed-c");
    assert!(
        read_contract(alpha, "doomed-c", 1).await.active,
        "LEAK: beta's deactivation of its doomed-c deactivated alpha's"
    );
}

// ---------------------------------------------------------------------------
// TemplateService

async fn create_template(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let fresh = |ns: &str| {
        let mut template = plain_template(
            "fresh-t",
            t.url(&format!("/{ns}/fresh-t")),
            Some(("order", 0)),
        );
        template.description = format!("{ns}'s fresh-t");
        proto::CreateTemplateRequest {
            template: Some(template),
        }
    };
    let a = call!(alpha, templates.create_template(fresh("alpha"))).expect("alpha's fresh-t");
    assert_eq!((a.version, a.contract), (1, contract_version("order", 2)));
    let b = call!(beta, templates.create_template(fresh("beta"))).unwrap_or_else(|e| {
        panic!("LEAK: beta's template fresh-t, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (b.name.as_str(), b.version),
        ("fresh-t", 1),
        "LEAK: beta's first fresh-t must be its version 1, not follow alpha's"
    );
    assert_eq!(
        b.contract,
        contract_version("order", 1),
        "LEAK: beta's template must pin beta's `order` (version 1), not alpha's (2)"
    );
    let kept = read_template(alpha, "fresh-t", 0).await;
    assert_eq!(
        (kept.version, kept.description.as_str()),
        (1, "alpha's fresh-t"),
        "LEAK: beta's create changed alpha's fresh-t"
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateTemplate keeping a contract only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            templates.create_template(proto::CreateTemplateRequest {
                template: Some(plain_template(
                    "probe-t",
                    t.url("/beta/probe"),
                    Some((&name, 0))
                ))
            })
        )
    );
    let second = call!(
        beta,
        templates.create_template(proto::CreateTemplateRequest {
            template: Some(plain_template(
                "probe-t",
                t.url("/beta/probe"),
                Some(("order", 2))
            ))
        })
    );
    assert!(
        second.is_err(),
        "LEAK: beta's template kept alpha's `order` version 2: {second:?}"
    );
}

async fn get_template(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_template(beta, "notify", 0).await;
    assert_eq!(
        (own.version, own.description.as_str()),
        (1, "beta's notify"),
        "LEAK: beta's `notify` must be beta's: {own:#?}"
    );
    assert_eq!(own.contract, contract_version("order", 1));
    assert!(own.request.as_ref().unwrap().url.contains("/beta/notify/"));
    assert_eq!(own.queue, "emails", "beta's template's queue, bare");
    assert_eq!(
        read_template(alpha, "notify", 0).await.description,
        "alpha's notify"
    );
    for version in [0, 1] {
        hidden!(
            format!("GetTemplate of alpha's alpha-only, version {version}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                templates.get_template(proto::GetTemplateRequest { name, version })
            )
        );
    }
    read_template(&w.alpha2, ONLY, 0).await;
}

fn alphas_templates(templates: &[proto::Template]) -> Vec<String> {
    templates
        .iter()
        .filter(|t| t.name == ONLY || t.description.starts_with("alpha's"))
        .map(|t| format!("{}/{}: {}", t.name, t.version, t.description))
        .collect()
}

async fn list_templates(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let b = all_pages!(
        beta,
        templates.list_templates(proto::ListTemplatesRequest::default()),
        templates
    )
    .expect("beta's templates");
    let leaked = alphas_templates(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListTemplates shows beta alpha's templates {leaked:?}"
    );
    for t in &b {
        bare("ListTemplates", &t.name);
        bare("ListTemplates: a template's queue", &t.queue);
        if let Some(c) = &t.contract {
            bare("ListTemplates: a template's contract", &c.name);
        }
    }
    assert!(b.iter().any(|t| t.description == "beta's notify"));
    let named = |name: &str| proto::ListTemplatesRequest {
        name: name.into(),
        ..Default::default()
    };
    let real = all_pages!(beta, templates.list_templates(named(ONLY)), templates);
    let fake = all_pages!(beta, templates.list_templates(named(NOBODY)), templates);
    listed_alike(
        "ListTemplates of alpha's alpha-only",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let token = call!(
        alpha,
        templates.list_templates(proto::ListTemplatesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one template");
    if let Ok(page) = call!(
        beta,
        templates.list_templates(proto::ListTemplatesRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked = alphas_templates(&page.templates);
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's templates {leaked:?}"
        );
    }
}

async fn deactivate_template(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let before = read_template(alpha, ONLY, 1).await;
    hidden!(
        "DeactivateTemplate of alpha's alpha-only version 1",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            templates.deactivate_template(proto::DeactivateTemplateRequest { name, version: 1 })
        )
    );
    assert_eq!(
        before,
        read_template(alpha, ONLY, 1).await,
        "LEAK: beta's DeactivateTemplate changed alpha's alpha-only"
    );
    for who in [alpha, beta] {
        call!(
            who,
            templates.create_template(proto::CreateTemplateRequest {
                template: Some(plain_template("doomed-t", t.url("/doomed"), None))
            })
        )
        .unwrap_or_else(|e| panic!("{} creates doomed-t: {e:?}", who.label));
    }
    call!(
        beta,
        templates.deactivate_template(proto::DeactivateTemplateRequest {
            name: "doomed-t".into(),
            version: 1
        })
    )
    .expect("beta deactivates its doomed-t");
    assert!(
        read_template(alpha, "doomed-t", 1).await.active,
        "LEAK: beta's deactivation of its doomed-t deactivated alpha's"
    );
}

// ---------------------------------------------------------------------------
// KeyService

async fn create_key(w: Arc<World>) {
    for (maker, theirs, own) in [(&w.beta, &w.a, &w.b), (&w.alpha, &w.b, &w.a)] {
        let made = call!(
            maker,
            keys.create_key(proto::CreateKeyRequest {
                description: format!("{}'s reader", maker.ns),
                scopes: vec!["read".into()],
                ttl: None,
            })
        )
        .unwrap_or_else(|e| panic!("{} creates a key: {e:?}", maker.label));
        let key = made.key.expect("the key");
        assert_eq!(key.namespace, maker.ns, "a key is of its maker's namespace");
        let reader = Caller {
            ns: maker.ns,
            label: "a key made through the API",
            key: made.secret,
            id: key.id,
            channel: maker.channel.clone(),
        };
        hidden!(
            format!(
                "GetJob of another namespace's job, by a key {} made",
                maker.ns
            ),
            &theirs.done,
            made_up_job(),
            |id| call!(reader, jobs.get_job(proto::GetJobRequest { id }))
        );
        read_job(&reader, &own.done).await;
        assert_eq!(
            job_ids(&reader, Default::default()).await,
            job_ids(maker, Default::default()).await,
            "a key {} made lists what {} lists",
            maker.ns,
            maker.label
        );
    }
}

async fn list_keys(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let listed = |keys: Result<Vec<proto::Key>, Status>, who: &Caller| -> Vec<proto::Key> {
        keys.unwrap_or_else(|e| panic!("{} lists keys: {e:?}", who.label))
    };
    let b = listed(
        all_pages!(
            beta,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        beta,
    );
    let a = listed(
        all_pages!(
            alpha,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        alpha,
    );
    let a2 = listed(
        all_pages!(
            w.alpha2,
            keys.list_keys(proto::ListKeysRequest::default()),
            keys
        ),
        &w.alpha2,
    );
    let ids =
        |keys: &[proto::Key]| -> BTreeSet<String> { keys.iter().map(|k| k.id.clone()).collect() };
    let leaked: Vec<&proto::Key> = b
        .iter()
        .filter(|k| k.namespace != "beta" || k.id == alpha.id || k.id == w.alpha2.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListKeys shows beta alpha's keys {leaked:#?}"
    );
    assert!(ids(&b).contains(&beta.id));
    let leaked: Vec<&proto::Key> = a
        .iter()
        .filter(|k| k.namespace != "alpha" || k.id == beta.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListKeys shows alpha beta's keys {leaked:#?}"
    );
    assert!(ids(&a).contains(&alpha.id) && ids(&a).contains(&w.alpha2.id));
    assert_eq!(ids(&a), ids(&a2), "alpha's two keys list the same keys");
    let token = call!(
        alpha,
        keys.list_keys(proto::ListKeysRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one key");
    if let Ok(page) = call!(
        beta,
        keys.list_keys(proto::ListKeysRequest {
            page_size: 1000,
            page_token: token
        })
    ) {
        let leaked: Vec<&proto::Key> = page
            .keys
            .iter()
            .filter(|k| k.namespace != "beta" || ids(&a).contains(&k.id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's keys {leaked:#?}"
        );
    }
}

/// Whether a key is still accepted.
async fn accepted(who: &Caller) -> Result<(), Status> {
    match call!(
        who,
        jobs.list_jobs(proto::ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
    ) {
        Err(status) if status.code() == Code::Unauthenticated => Err(status),
        _ => Ok(()),
    }
}

async fn revoke_key(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let (fake, _) = key::generate();
    hidden!(
        "RevokeKey of alpha's second key",
        &w.alpha2.id,
        &fake,
        |id| call!(beta, keys.revoke_key(proto::RevokeKeyRequest { id }))
    );
    let still = accepted(&w.alpha2).await;
    assert!(
        still.is_ok(),
        "LEAK: beta's RevokeKey revoked alpha's key: {still:?}"
    );
    // The other way, on a key beta makes for it.
    let made = call!(
        beta,
        keys.create_key(proto::CreateKeyRequest {
            description: "beta's to keep".into(),
            scopes: vec!["read".into()],
            ttl: None,
        })
    )
    .expect("beta makes a key");
    let betas = Caller {
        ns: "beta",
        label: "a key beta made",
        key: made.secret,
        id: made.key.expect("the key").id,
        channel: beta.channel.clone(),
    };
    hidden!(
        "RevokeKey of beta's key, by alpha",
        &betas.id,
        &fake,
        |id| call!(alpha, keys.revoke_key(proto::RevokeKeyRequest { id }))
    );
    let still = accepted(&betas).await;
    assert!(
        still.is_ok(),
        "LEAK: alpha's RevokeKey revoked beta's key: {still:?}"
    );
}

// ---------------------------------------------------------------------------
// AuditService

async fn list_audit_entries(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    macro_rules! entries {
        ($who:expr, $filter:expr) => {
            all_pages!($who, audit.list_audit_entries($filter), entries)
                .unwrap_or_else(|e| panic!("{} lists audit entries: {e:?}", $who.label))
        };
    }
    let alpha_keys = [alpha.id.as_str(), w.alpha2.id.as_str()];
    let b: Vec<proto::AuditEntry> = entries!(beta, proto::ListAuditEntriesRequest::default());
    let leaked: Vec<&proto::AuditEntry> = b
        .iter()
        .filter(|e| e.namespace != "beta" || alpha_keys.contains(&e.key_id.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListAuditEntries shows beta alpha's entries {leaked:#?}"
    );
    for e in &b {
        assert!(
            !e.object.starts_with("beta/") && !e.object.starts_with("alpha/"),
            "the audit log names an object qualified: {e:?}"
        );
    }
    assert!(
        b.iter()
            .any(|e| e.action == "queue.create" && e.object == "emails" && e.outcome == "OK"),
        "beta's creation of its emails, named bare: {b:#?}"
    );
    let a: Vec<proto::AuditEntry> = entries!(alpha, proto::ListAuditEntriesRequest::default());
    let leaked: Vec<&proto::AuditEntry> = a
        .iter()
        .filter(|e| e.namespace != "alpha" || e.key_id == beta.id)
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: ListAuditEntries shows alpha beta's entries (its attempts on alpha's objects included) {leaked:#?}"
    );
    // By alpha's job as the object: only beta's own refused attempts on it.
    let of_alphas: Vec<proto::AuditEntry> = entries!(
        beta,
        proto::ListAuditEntriesRequest {
            object: w.a.done.clone(),
            ..Default::default()
        }
    );
    let leaked: Vec<&proto::AuditEntry> = of_alphas
        .iter()
        .filter(|e| e.key_id != beta.id || e.outcome == "OK")
        .collect();
    assert!(
        leaked.is_empty(),
        "LEAK: beta's audit log of alpha's job shows more than beta's own refused attempts: {leaked:#?}"
    );
    let by_alpha: Vec<proto::AuditEntry> = entries!(
        beta,
        proto::ListAuditEntriesRequest {
            key_id: alpha.id.clone(),
            ..Default::default()
        }
    );
    assert!(
        by_alpha.is_empty(),
        "LEAK: beta's audit log by alpha's key: {by_alpha:#?}"
    );
    let token = call!(
        alpha,
        audit.list_audit_entries(proto::ListAuditEntriesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one entry");
    if let Ok(page) = call!(
        beta,
        audit.list_audit_entries(proto::ListAuditEntriesRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked: Vec<&proto::AuditEntry> = page
            .entries
            .iter()
            .filter(|e| e.namespace != "beta" || alpha_keys.contains(&e.key_id.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's entries {leaked:#?}"
        );
    }
}
