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
//!
//! The test is split by what each part holds: `callers` (a key and its calls),
//! `probes` (the "answers as a made-up object" checks), `setup` (what the
//! namespaces make), and one module of rows per service: `jobs`, `queues`,
//! `schedules`, `chains`, `registry` (contracts and templates) and
//! `keys_audit`.

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod callers;
#[macro_use]
mod probes;
mod chains;
mod jobs;
mod keys_audit;
mod queues;
mod registry;
mod schedules;
mod setup;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::future::BoxFuture;
use jobqueue::auth::key;
use tonic::transport::Channel;

use callers::*;
use chains::*;
use jobs::*;
use keys_audit::*;
use queues::*;
use registry::*;
use schedules::*;
use setup::*;

/// The most one row may take.
const ROW_LIMIT: Duration = Duration::from_secs(20);

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
        "RPCs without an isolation check in tests/namespaces/main.rs (add a row to `table`): {missing:#?}"
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
