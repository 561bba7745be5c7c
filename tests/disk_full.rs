//! A full disk loses nothing: the SQLite database on a small tmpfs, filled by
//! concurrent submits (batches and single jobs), cancels and queue changes. Every
//! change answered OK is stored, every refusal is RESOURCE_EXHAUSTED naming the
//! database, reads keep working, the log tells of the episode once and a metric
//! shows it, writes work again once space is freed with no restart, and after a
//! kill -9 the same jobs are there and the database passes its integrity check.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::{self, JobSpec};
use jobqueue::store::sqlx;

/// The tmpfs's size: small enough to fill in a few seconds.
const TMPFS: &str = "size=24m";
/// Bytes taken before the service starts and freed to end the episode.
const BALLAST: usize = 6 << 20;
/// Each job's body: the 32 KiB bodies that fill the disk quickly.
const BODY: usize = 32 << 10;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this machine cannot mount one (not root, no tmpfs).
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS, "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// What the load was told.
#[derive(Default)]
struct Ledger {
    /// Jobs acknowledged, by id.
    jobs: Vec<String>,
    /// Jobs whose cancel was acknowledged.
    canceled: HashSet<String>,
    /// Queues whose creation was acknowledged, with the concurrency last set OK.
    queues: Vec<(String, i32)>,
    /// Refusals: their code and message.
    refused: Vec<(tonic::Code, String)>,
    first_refusal: Option<Instant>,
}

impl Ledger {
    fn refuse(&mut self, status: tonic::Status) {
        self.first_refusal.get_or_insert_with(Instant::now);
        self.refused
            .push((status.code(), status.message().to_string()));
    }
}

fn big_job(n: usize) -> JobSpec {
    let mut spec = get(format!("http://127.0.0.1:9/full/{n}"));
    if let Some(request) = spec.request.as_mut() {
        request.body = Some(proto::http_request::Body::Text("x".repeat(BODY)));
    }
    spec.schedule_time = Some(timestamp(jobqueue::now_ms() + 3_600_000));
    spec
}

/// Keeps the load on until enough refusals came and the episode lasted a while.
fn keep_going(ledger: &Mutex<Ledger>, started: Instant) -> bool {
    let ledger = ledger.lock().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the disk never filled: {} jobs acknowledged, {} refusals",
        ledger.jobs.len(),
        ledger.refused.len()
    );
    !(ledger.refused.len() >= 60
        && ledger
            .first_refusal
            .is_some_and(|at| at.elapsed() > Duration::from_secs(2)))
}

async fn load(addr: std::net::SocketAddr, ledger: Arc<Mutex<Ledger>>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Batches of 16 from three callers, single submits from one.
    for caller in 0..4 {
        let (ledger, mut client) = (ledger.clone(), connect(addr).await);
        tasks.push(tokio::spawn(async move {
            let mut n = caller * 1_000_000;
            while keep_going(&ledger, started) {
                let batch = if caller < 3 { 16 } else { 1 };
                let jobs: Vec<JobSpec> = (0..batch).map(|i| big_job(n + i)).collect();
                n += batch;
                let answer = client.submit_jobs(proto::SubmitJobsRequest { jobs }).await;
                let mut ledger = ledger.lock().unwrap();
                match answer {
                    Ok(ok) => ledger
                        .jobs
                        .extend(ok.into_inner().results.into_iter().map(|r| r.id)),
                    Err(status) => ledger.refuse(status),
                }
            }
        }));
    }
    // Cancels of jobs acknowledged before.
    {
        let (ledger, mut client) = (ledger.clone(), connect(addr).await);
        tasks.push(tokio::spawn(async move {
            let mut next = 0;
            while keep_going(&ledger, started) {
                let id = ledger.lock().unwrap().jobs.get(next).cloned();
                let Some(id) = id else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                next += 7;
                let answer = client
                    .cancel_job(proto::CancelJobRequest { id: id.clone() })
                    .await;
                let mut ledger = ledger.lock().unwrap();
                match answer {
                    Ok(_) => drop(ledger.canceled.insert(id)),
                    Err(status) => ledger.refuse(status),
                }
            }
        }));
    }
    // Queues created, then changed.
    {
        let (ledger, mut queues) = (ledger.clone(), queues(addr).await);
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while keep_going(&ledger, started) {
                n += 1;
                let existing = ledger.lock().unwrap().queues.last().cloned();
                let answer = match existing.filter(|_| n % 2 == 0) {
                    Some((name, _)) => queues
                        .update_queue(proto::UpdateQueueRequest {
                            queue: Some(proto::Queue {
                                name: name.clone(),
                                max_concurrency: Some(n),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["max_concurrency".into()],
                            }),
                        })
                        .await
                        .map(|_| (name, n)),
                    None => {
                        let name = format!("lane-{n}");
                        queues
                            .create_queue(proto::CreateQueueRequest {
                                queue: Some(proto::Queue {
                                    name: name.clone(),
                                    max_concurrency: Some(n),
                                    ..Default::default()
                                }),
                            })
                            .await
                            .map(|_| (name, n))
                    }
                };
                {
                    let mut ledger = ledger.lock().unwrap();
                    match answer {
                        Ok((name, concurrency)) => {
                            ledger.queues.retain(|(q, _)| *q != name);
                            ledger.queues.push((name, concurrency));
                        }
                        Err(status) => ledger.refuse(status),
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
}

/// Every acknowledged change, read through the API.
async fn check_acknowledged(addr: std::net::SocketAddr, ledger: &Ledger) {
    let mut client = connect(addr).await;
    for id in &ledger.jobs {
        let job = client
            .get_job(proto::GetJobRequest { id: id.clone() })
            .await
            .unwrap_or_else(|status| panic!("acknowledged job {id}: {status}"))
            .into_inner();
        let expected = match ledger.canceled.contains(id) {
            true => proto::JobStatus::Canceled,
            false => proto::JobStatus::Queued,
        };
        assert_eq!(status_of(&job), expected, "acknowledged job {id}");
    }
    let mut queues = queues(addr).await;
    for (name, concurrency) in &ledger.queues {
        let queue = queue_state(&mut queues, name).await;
        let settings = queue.clone();
        assert_eq!(
            settings.max_concurrency,
            Some(*concurrency),
            "acknowledged change of queue {name}"
        );
    }
}

async fn stored_jobs(db: &Path) -> (i64, String) {
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open database");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .expect("count jobs");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity check");
    pool.close().await;
    (count, integrity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers_by_itself() {
    if std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres") {
        eprintln!("SKIPPED: the full-disk test is SQLite's; it runs in the SQLite pass");
        return;
    }
    let Some(tmpfs) = Tmpfs::mount() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "cannot mount a tmpfs (needs root) and CI=true");
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let ballast: PathBuf = tmpfs.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; BALLAST]).expect("ballast");
    let db_path = tmpfs.path().join("jobqueue.db");
    let url = format!("sqlite://{}?mode=rwc", db_path.display());
    let metrics_addr = free_port();
    let metrics = metrics_addr.to_string();
    let args = ["--metrics-addr", metrics.as_str(), "--db-timeout", "5s"];
    let mut server = Process::start_on(&url, &args);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    load(server.addr, ledger.clone()).await;

    {
        let ledger = ledger.lock().unwrap();
        let database = format!("sqlite:{}", db_path.display());
        for (code, message) in &ledger.refused {
            assert_eq!(
                *code,
                tonic::Code::ResourceExhausted,
                "a refusal for a full disk: {message}"
            );
            assert!(
                message.contains("disk is full") && message.contains(&database),
                "the refusal names the database and says the disk is full: {message}"
            );
        }
        eprintln!(
            "disk full: {} jobs, {} cancels, {} queues acknowledged; {} refusals",
            ledger.jobs.len(),
            ledger.canceled.len(),
            ledger.queues.len(),
            ledger.refused.len()
        );
        assert!(
            ledger.jobs.len() > 100,
            "the load stored too little to mean much"
        );
    }

    // While the disk is full: reads work and the metric shows the refusals.
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("load done")
        .into_inner()
        .unwrap();
    let mut client = connect(server.addr).await;
    let first = get_job(&mut client, &ledger.jobs[0]).await;
    assert_eq!(first.id, ledger.jobs[0]);
    client
        .list_jobs(proto::ListJobsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("listing works while the disk is full");
    let page = metrics_page(metrics_addr).await;
    assert_eq!(
        sample(
            &page,
            "jobqueue_store_refusing_writes{reason=\"disk_full\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "jobqueue_store_refused_writes_total{reason=\"disk_full\"}"
        )
        .is_some_and(|n| n >= ledger.refused.len() as f64)
    );
    assert_eq!(server.log_lines("the disk is full").len(), 1, "logged once");

    // Space comes back: writes work again, without a restart.
    std::fs::remove_file(&ballast).expect("free the ballast");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        match client
            .submit_job(proto::SubmitJobRequest {
                job: Some(big_job(9_999_999)),
            })
            .await
        {
            Ok(answer) => break answer.into_inner().id,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                assert!(
                    Instant::now() < deadline,
                    "writes never came back: {status}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(get_job(&mut client, &after).await.id, after);
    // The episode ends once writes have gone a few seconds without failing.
    let mut extra = 0;
    loop {
        let page = metrics_page(metrics_addr).await;
        let refusing = sample(
            &page,
            "jobqueue_store_refusing_writes{reason=\"disk_full\"}",
        );
        if refusing == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "{page}"
        );
        submit(&mut client, big_job(8_000_000 + extra)).await;
        extra += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.log_lines("writes work again").len(), 1);
    assert_eq!(server.log_lines("the disk is full").len(), 1, "still once");

    check_acknowledged(server.addr, &ledger).await;
    let (before, _) = stored_jobs(&db_path).await;
    assert_eq!(
        before,
        (ledger.jobs.len() + 1 + extra) as i64,
        "stored = acknowledged"
    );

    // And after a kill -9: the same jobs, an intact database.
    server.kill9();
    let restarted = Process::start_on(&url, &args);
    check_acknowledged(restarted.addr, &ledger).await;
    let (after_restart, integrity) = stored_jobs(&db_path).await;
    assert_eq!(after_restart, before, "the same jobs after kill -9");
    assert_eq!(integrity, "ok");
    drop(restarted);
}
