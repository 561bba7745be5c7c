//! PostgreSQL going away under load costs no acknowledged job and repeats no call.
//! The service reaches the database through a proxy; 64 callers submit 3,000 jobs
//! while the proxy cuts the database away for 4 s (longer than a job's lease), then
//! twice loses a COMMIT's answer: once after the COMMIT reached the database, once
//! before. Every refusal is UNAVAILABLE and comes within the database timeout; the
//! process lives on and writes again by itself; every acknowledged job is stored
//! and succeeds; a refusal saying nothing was written left nothing behind; and the
//! target received each job's call exactly as often as its result lists attempts,
//! none interrupted: outcomes of calls that finished while the database was gone
//! were written before the lease rescue could run their jobs again, and jobs
//! claimed by a lost commit went back to the queue without a call. The log tells of
//! each episode once as it begins and once as it ends (to the service, outages
//! less than 5 s apart are one episode).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use futures::StreamExt;
use jobqueue::proto::{self, JobStatus};
use testkit::proxy::Proxy;
use tokio::sync::watch;
use tokio::time::Instant;

/// The service's `--db-timeout`: the longest a write RPC may wait for the database.
const DB_TIMEOUT: Duration = Duration::from_secs(2);
/// What a call may take beyond `DB_TIMEOUT`: the round trip and a busy runtime.
const LATENCY_SLACK: Duration = Duration::from_millis(1500);
const JOBS: usize = 3000;
const CALLERS: usize = 64;
/// Each caller makes one call about this often, so that the 3,000 jobs span the
/// episodes instead of being spent before the first one ends.
const PACE: Duration = Duration::from_millis(500);
/// And waits about this long after a refusal: refusals come at once during an
/// outage.
const PAUSE_AFTER_REFUSAL: Duration = Duration::from_secs(1);
/// How long the target takes to answer, so that calls claimed just before a cut
/// finish while the database is gone.
const CALL_MS: u64 = 300;
/// Each job's timeout, and the service's `--lease-grace`: a lease of 2.5 s.
const JOB_TIMEOUT_MS: u64 = 2000;
const LEASE_GRACE_MS: u64 = 500;
/// The first cut: longer than a lease, so the rescuer would run again every call
/// in flight at the cut whose outcome was not written first.
const OUTAGE: Duration = Duration::from_secs(4);
/// How long each trap keeps the database away.
const TRAP_OUTAGE: Duration = Duration::from_secs(1);

/// What the answer to a request says when the COMMIT it was in lost its answer
/// (refusals that follow quote it too, as the reason, saying nothing was written).
const LOST_COMMIT: &str = "the commit's outcome is unknown";
const MAY_BE_STORED: &str = "may or may not be stored";
/// The writer's log lines at the start and at the end of an episode.
const STARTS: &str = "takes no writes";
const ENDS: &str = "writes work again";

/// One SubmitJob call as its caller saw it.
struct Call {
    n: usize,
    took: Duration,
    answer: Result<String, (tonic::Code, String)>,
}

#[derive(Clone, Copy, Default)]
struct Progress {
    acknowledged: usize,
    callers_done: usize,
}

fn path(n: usize) -> String {
    format!("/j/{n}")
}

fn job(target: &Target, n: usize) -> proto::JobSpec {
    let mut spec = get(target.url(&format!("{}?delay_ms={CALL_MS}", path(n))));
    spec.timeout = Some(ms(JOB_TIMEOUT_MS));
    spec.max_attempts = Some(5);
    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 100);
    spec
}

/// Between half and one and a half times `pause`, drawn from `seed`.
fn jittered(pause: Duration, seed: &mut u64) -> Duration {
    // xorshift64: enough to keep the callers from falling into step.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    pause / 2 + pause.mul_f64((*seed % 1000) as f64 / 1000.0)
}

/// Submits jobs numbered from `next` until all are taken; no retries. The pauses
/// are jittered: callers that an outage put in step (all refused at once, or all
/// answered by the same commit) would otherwise submit in bursts, with commits
/// that carry no submit in between, which a trap would catch.
async fn caller(
    mut seed: u64,
    mut client: Client,
    target: Arc<Target>,
    next: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<Call>>>,
    progress: Arc<watch::Sender<Progress>>,
) {
    tokio::time::sleep(jittered(PACE, &mut seed)).await;
    loop {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= JOBS {
            break;
        }
        let began = Instant::now();
        let answer = client
            .submit_job(proto::SubmitJobRequest {
                job: Some(job(&target, n)),
            })
            .await;
        let took = began.elapsed();
        let answer = answer
            .map(|a| a.into_inner().id)
            .map_err(|s| (s.code(), s.message().to_string()));
        let pause = match answer.is_ok() {
            true => jittered(PACE, &mut seed),
            false => jittered(PAUSE_AFTER_REFUSAL, &mut seed),
        };
        if answer.is_ok() {
            progress.send_modify(|p| p.acknowledged += 1);
        }
        calls.lock().unwrap().push(Call { n, took, answer });
        tokio::time::sleep_until(began + pause).await;
    }
    progress.send_modify(|p| p.callers_done += 1);
}

/// Waits until `count` submits were acknowledged; fails if the load ends first.
async fn acknowledged(progress: &mut watch::Receiver<Progress>, count: usize) {
    let reached = *progress
        .wait_for(|p| p.acknowledged >= count || p.callers_done == CALLERS)
        .await
        .expect("callers report");
    assert!(
        reached.acknowledged >= count,
        "the load ended with {} acknowledged, before {count}",
        reached.acknowledged
    );
}

/// Waits until the log tells that every episode it told of has ended. The service
/// says so once writes have gone 5 s without failing.
async fn recovered(server: &Process) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.log_lines(ENDS).len() < server.log_lines(STARTS).len() {
        assert!(
            Instant::now() < deadline,
            "the log told of no end to the last episode within 15 s of the restore"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The jobs whose submit was answered that the commit it was in lost its answer,
/// in the order the answers came.
fn lost_with_a_commit(calls: &Mutex<Vec<Call>>) -> Vec<usize> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| {
            matches!(&c.answer, Err((_, m)) if m.contains(MAY_BE_STORED) && m.contains(LOST_COMMIT))
        })
        .map(|c| c.n)
        .collect()
}

/// Loses the answer of the next COMMIT (after it reached PostgreSQL if `forward`),
/// keeps the database away for `TRAP_OUTAGE`, and brings it back.
async fn lose_a_commit(proxy: &Proxy, forward: bool) {
    proxy.cut_when_client_sends(b"COMMIT", forward);
    tokio::time::timeout(Duration::from_secs(10), proxy.trapped())
        .await
        .expect("a COMMIT passed the proxy within 10 s");
    tokio::time::sleep(TRAP_OUTAGE).await;
    proxy.restore().await.expect("proxy listens again");
}

/// Submits job `n` until it is acknowledged, at most 10 s: right after a restore
/// the first tries may still be refused. Its own idempotency key for all tries, so
/// a try that may have been stored is not stored twice.
async fn submit_after_restore(client: &mut Client, target: &Target, n: usize) -> String {
    let spec = proto::JobSpec {
        idempotency_key: format!("after-restore-{n}"),
        ..job(target, n)
    };
    let restored = Instant::now();
    loop {
        let answer = client
            .submit_job(proto::SubmitJobRequest {
                job: Some(spec.clone()),
            })
            .await;
        match answer {
            Ok(answer) => {
                eprintln!("acknowledged {:?} after the restore", restored.elapsed());
                return answer.into_inner().id;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    restored.elapsed() < Duration::from_secs(10),
                    "no submit acknowledged within 10 s of a restore: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What the episodes left for the checks.
struct Episodes {
    /// How many outages the test caused: the cut and every trap set.
    outages: usize,
    /// Jobs submitted right after each restore.
    fresh: Vec<String>,
    /// When the first cut began and ended, on the clock attempts are stamped with.
    dark: (SystemTime, SystemTime),
    /// Jobs whose submit lost its commit's answer when the trap forwarded the
    /// COMMIT, and when it dropped it.
    lost: [Vec<usize>; 2],
}

/// Cuts and restores while the load runs, and after each restore submits until one
/// is acknowledged.
async fn episodes(
    proxy: &Proxy,
    server: &Process,
    mut progress: watch::Receiver<Progress>,
    calls: &Mutex<Vec<Call>>,
    target: &Target,
) -> Episodes {
    let mut client = connect(server.addr).await;
    let mut fresh = Vec::new();
    acknowledged(&mut progress, 500).await;
    proxy.cut().await;
    let cut_at = SystemTime::now();
    tokio::time::sleep(OUTAGE).await;
    let restored_at = SystemTime::now();
    proxy.restore().await.expect("proxy listens again");
    fresh.push(submit_after_restore(&mut client, target, JOBS).await);
    // The cut's episode ends in the log before the traps begin theirs.
    recovered(server).await;
    let mut outages = 1;

    acknowledged(&mut progress, 1500).await;
    let mut lost = [Vec::new(), Vec::new()];
    for (forward, lost) in [true, false].into_iter().zip(&mut lost) {
        // A trap may catch a COMMIT of the event hub's (it reads the event log in a
        // transaction each poll) or one of the writer's that carried no request;
        // it is set again until a writer's COMMIT with submits in it is lost.
        for tries in 1.. {
            assert!(
                tries <= 10,
                "ten traps in a row lost no COMMIT of the writer's with submits in it"
            );
            // Callers refused by the last outage pause; the trap waits for the
            // submits to flow again.
            let flowing = progress.borrow().acknowledged + CALLERS;
            acknowledged(&mut progress, flowing).await;
            let before = lost_with_a_commit(calls).len();
            outages += 1;
            lose_a_commit(proxy, forward).await;
            fresh.push(submit_after_restore(&mut client, target, JOBS + outages).await);
            lost.extend(lost_with_a_commit(calls).split_off(before));
            eprintln!(
                "trap {} the COMMIT, try {tries}: {} submits lost their commit's answer",
                if forward { "forwarding" } else { "dropping" },
                lost.len()
            );
            if !lost.is_empty() {
                break;
            }
        }
    }
    recovered(server).await;
    Episodes {
        outages,
        fresh,
        dark: (cut_at, restored_at),
        lost,
    }
}

/// Lists the jobs until none is queued or running, within `within`.
async fn all_finished(client: &mut Client, within: Duration) -> Vec<proto::Job> {
    let deadline = Instant::now() + within;
    loop {
        let jobs = all_jobs(client).await;
        let open: Vec<&proto::Job> = jobs
            .iter()
            .filter(|j| matches!(status_of(j), JobStatus::Queued | JobStatus::Running))
            .collect();
        if open.is_empty() {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{} jobs still queued or running after {within:?}; the first: {:#?}",
            open.len(),
            open[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The job number in a stored job's URL.
fn number_of(job: &proto::Job) -> usize {
    let url = job.request.as_ref().map_or("", |r| r.url.as_str());
    url.split("/j/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("job {} has a URL the test did not submit: {url}", job.id))
}

fn millis_since_epoch(t: SystemTime) -> i64 {
    let since = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    since.as_millis() as i64
}

/// How many times the target received each path.
fn deliveries(target: &Target) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in target.received() {
        *counts.entry(r.path().to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_costs_no_acknowledged_job_and_repeats_no_call() {
    if !std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres") {
        eprintln!(
            "SKIPPED: the database-outage test cuts PostgreSQL away through a proxy; it runs \
             in the PostgreSQL pass (JOBQUEUE_TEST_DB=postgres)"
        );
        return;
    }
    let db = TestDb::new().await;
    let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(upstream).await.expect("proxy");
    // Without TLS, or the proxy could not see a COMMIT go by (PostgreSQL's clients
    // prefer TLS when the server offers it).
    let url = db
        .url
        .replace(&upstream.to_string(), &proxy.addr.to_string())
        + "?sslmode=disable";
    assert_ne!(url, db.url, "the service's URL goes through the proxy");
    let target = Arc::new(Target::start().await.unwrap());
    let timeout = format!("{}ms", DB_TIMEOUT.as_millis());
    let grace = format!("{LEASE_GRACE_MS}ms");
    // The poll and maintenance intervals (200 ms, 100 ms) are `Process`'s own.
    let mut server = Process::start_on(&url, &["--db-timeout", &timeout, "--lease-grace", &grace]);
    let client = connect(server.addr).await;
    let started = Instant::now();

    let calls = Arc::new(Mutex::new(Vec::<Call>::with_capacity(JOBS)));
    let (progress, watching) = watch::channel(Progress::default());
    let progress = Arc::new(progress);
    let next = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            tokio::spawn(caller(
                0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
                client.clone(),
                target.clone(),
                next.clone(),
                calls.clone(),
                progress.clone(),
            ))
        })
        .collect();
    let episodes = episodes(&proxy, &server, watching, &calls, &target).await;
    for c in callers {
        c.await.expect("caller");
    }
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    assert!(
        server.child.try_wait().expect("process state").is_none(),
        "the service exited during the outages"
    );

    // Answers: OK, or UNAVAILABLE within the database timeout.
    let slowest = calls.iter().max_by_key(|c| c.took).expect("calls");
    eprintln!(
        "slowest submit: job {} took {:?}: {:?}",
        slowest.n, slowest.took, slowest.answer
    );
    assert!(
        slowest.took <= DB_TIMEOUT + LATENCY_SLACK,
        "job {} was answered after {:?}, past the database timeout {DB_TIMEOUT:?} + {LATENCY_SLACK:?}",
        slowest.n,
        slowest.took
    );
    for call in &calls {
        if let Err((code, message)) = &call.answer {
            assert_eq!(*code, tonic::Code::Unavailable, "job {}: {message}", call.n);
            assert!(
                message.contains("nothing was written") || message.contains(MAY_BE_STORED),
                "job {}: the refusal says whether the job may be stored: {message}",
                call.n
            );
        }
    }

    // Every stored job runs to its end; the acknowledged ones all succeed.
    let mut reader = client.clone();
    let stored = all_finished(&mut reader, Duration::from_secs(60)).await;
    let by_id: HashMap<&str, &proto::Job> = stored.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut by_number: HashMap<usize, &proto::Job> = HashMap::new();
    for job in &stored {
        if let Some(twin) = by_number.insert(number_of(job), job) {
            panic!(
                "job {} is stored twice: {} and {}",
                number_of(job),
                twin.id,
                job.id
            );
        }
    }
    for id in &episodes.fresh {
        let job = by_id
            .get(id.as_str())
            .expect("a submit after a restore is stored");
        assert_eq!(status_of(job), JobStatus::Succeeded, "job {id}");
    }
    let received = deliveries(&target);
    let (mut acknowledged, mut none_written, mut unknown_stored, mut unknown_absent) = (0, 0, 0, 0);
    for call in &calls {
        let job = by_number.get(&call.n);
        match &call.answer {
            Ok(id) => {
                acknowledged += 1;
                let job = by_id.get(id.as_str()).unwrap_or_else(|| {
                    panic!("job {} was acknowledged as {id} but is not stored", call.n)
                });
                assert_eq!(number_of(job), call.n, "job {id}");
                assert_eq!(status_of(job), JobStatus::Succeeded, "job {id}: {job:#?}");
            }
            Err((_, message)) if message.contains("nothing was written") => {
                none_written += 1;
                assert!(
                    job.is_none() && !received.contains_key(&path(call.n)),
                    "job {} was refused with \"{message}\", yet it is stored as {:?}, and the \
                     target received it {} times",
                    call.n,
                    job.map(|j| &j.id),
                    received.get(&path(call.n)).unwrap_or(&0)
                );
            }
            Err(_) => match job {
                Some(_) => unknown_stored += 1,
                None => unknown_absent += 1,
            },
        }
    }
    for stored_path in received.keys() {
        let n: usize = stored_path
            .strip_prefix("/j/")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the target received {stored_path}"));
        assert!(
            by_number.contains_key(&n),
            "the target received {stored_path}, a job that is not stored"
        );
    }

    // A forwarded COMMIT landed: its submits are stored, and the jobs it claimed had
    // to be put back, not left running for the rescuer.
    let stored_of = |ns: &[usize]| ns.iter().filter(|n| by_number.contains_key(n)).count();
    let [forwarded, dropped] = &episodes.lost;
    eprintln!(
        "lost commits: {} of {} submits stored when the COMMIT was forwarded, {} of {} \
         when it was dropped",
        stored_of(forwarded),
        forwarded.len(),
        stored_of(dropped),
        dropped.len()
    );
    assert!(
        stored_of(forwarded) > 0,
        "none of the jobs of a forwarded COMMIT is stored ({forwarded:?}): it did not \
         land, so no claim of a landed commit was put back"
    );

    // Repeats: each call the target received is an attempt the result lists, and
    // no attempt is a lease rescue's.
    let results: Vec<proto::JobResult> = futures::stream::iter(stored.iter().map(|j| {
        let mut client = client.clone();
        let id = j.id.clone();
        async move { result(&mut client, &id).await }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let (cut_at, restored_at) = episodes.dark;
    let (cut_at, restored_at) = (millis_since_epoch(cut_at), millis_since_epoch(restored_at));
    let lease_ms = (JOB_TIMEOUT_MS + LEASE_GRACE_MS) as i64;
    let mut retried = 0;
    let mut finished_in_the_dark = 0;
    for r in &results {
        // Calls that ended while the database was gone, whose lease ran out before
        // it came back: the rescuer would have run them again had their outcomes
        // not been written first.
        finished_in_the_dark += r
            .attempts
            .iter()
            .filter(|a| {
                let (Some(start), Some(finish)) = (&a.start_time, &a.finish_time) else {
                    return false;
                };
                let (start, finish) = (millis(start), millis(finish));
                finish > cut_at && finish < restored_at && start + lease_ms < restored_at
            })
            .count();
        let job = by_id[r.id.as_str()];
        let calls_made = received.get(&path(number_of(job))).copied().unwrap_or(0);
        assert_eq!(
            calls_made,
            r.attempts.len(),
            "job {} (/j/{}): the target received {calls_made} calls, the result lists {} attempts: {:#?}",
            r.id,
            number_of(job),
            r.attempts.len(),
            r.attempts
        );
        assert!(
            r.attempts
                .iter()
                .all(|a| a.error_class != proto::ErrorClass::Interrupted as i32),
            "job {}: an attempt was interrupted, so the rescuer ran it again: {:#?}",
            r.id,
            r.attempts
        );
        retried += usize::from(r.attempts.len() > 1);
    }
    assert!(
        finished_in_the_dark > 0,
        "no call ended during the first cut with its lease running out before the restore, \
         so the cut put nothing to the test"
    );
    eprintln!(
        "calls that ended during the {OUTAGE:?} cut and whose lease ran out in it: \
         {finished_in_the_dark}"
    );
    let repeats = received.values().filter(|&&c| c > 1).count();
    eprintln!("jobs retried (a failed attempt, not a rescue): {retried}");

    // The log: each episode starts once and ends once, in that order.
    let logged: Vec<&str> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| {
            if l.contains(STARTS) {
                Some(STARTS)
            } else if l.contains(ENDS) {
                Some(ENDS)
            } else {
                None
            }
        })
        .collect();
    // Traps set again at once fall in one episode: the service ends an episode
    // only after writes went 5 s without failing.
    let told = logged.len() / 2;
    assert!(
        logged == [STARTS, ENDS].repeat(told) && (2..=episodes.outages).contains(&told),
        "{} outages caused (the cut's ended before the traps began), and the log tells \
         of their starts and ends: {logged:?}",
        episodes.outages
    );

    eprintln!(
        "outages: {acknowledged} acknowledged, {} refused ({none_written} with nothing \
         written; {unknown_stored} + {unknown_absent} may or may not be stored: stored + \
         absent), slowest answer {:?}, {repeats} jobs called more than once ({retried} \
         retried), {} calls in all, {} outages in {told} episodes, {:?}",
        calls.len() - acknowledged,
        slowest.took,
        received.values().sum::<usize>(),
        episodes.outages,
        started.elapsed()
    );
}
