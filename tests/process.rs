//! The service as a process: kill -9 loses no acknowledged job, running jobs come
//! back when their lease runs out, and SIGTERM drains and exits 0.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::job_service_client::JobServiceClient as JobServiceClientOf;
use jobqueue::proto::schedule::Timetable;
use jobqueue::proto::{self, JobStatus};
use jobqueue::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_job_survives_kill_9() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--lease-grace", "500ms"]);
    let client = connect(server.addr).await;

    // Submitters that keep going until the server dies under them: singles and batches.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut submitters = Vec::new();
    for worker in 0..6 {
        let mut client = client.clone();
        let acknowledged = acknowledged.clone();
        let target_url = target.url("");
        submitters.push(tokio::spawn(async move {
            for n in 0.. {
                let spec = |i: usize| {
                    let mut spec = get(format!("{target_url}/k/{worker}-{n}-{i}?delay_ms=20"));
                    spec.timeout = Some(ms(1000));
                    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 50);
                    spec.max_attempts = Some(10);
                    spec
                };
                let ids = if worker % 2 == 0 {
                    match client
                        .submit_job(proto::SubmitJobRequest { job: Some(spec(0)) })
                        .await
                    {
                        Ok(r) => vec![r.into_inner().id],
                        Err(_) => return,
                    }
                } else {
                    match client
                        .submit_jobs(proto::SubmitJobsRequest {
                            jobs: (0..20).map(spec).collect(),
                        })
                        .await
                    {
                        Ok(r) => r.into_inner().results.into_iter().map(|r| r.id).collect(),
                        Err(_) => return,
                    }
                };
                acknowledged.lock().unwrap().extend(ids);
            }
        }));
    }
    // Kill mid-stream, while submits, calls and completions are all in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 3000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    for s in submitters {
        s.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 1000,
        "only {} jobs acknowledged before the kill",
        acknowledged.len()
    );

    let restarted = Process::start(&db, &["--lease-grace", "500ms"]);
    let mut client = connect(restarted.addr).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = acknowledged.clone();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} acknowledged jobs never succeeded, e.g. {}",
            pending.len(),
            pending[0]
        );
        let mut still = Vec::new();
        for id in pending {
            match client
                .get_job(proto::GetJobRequest { id: id.clone() })
                .await
            {
                Ok(job) if job.get_ref().status == JobStatus::Succeeded as i32 => {}
                Ok(_) => still.push(id),
                Err(e) => panic!("acknowledged job {id} is gone after kill -9: {e}"),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let total = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .total_size;
    assert!(total as usize >= acknowledged.len());
    eprintln!(
        "{} acknowledged before kill -9, all succeeded after restart; {} stored",
        acknowledged.len(),
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_the_process_died_runs_again_after_its_lease() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--lease-grace", "300ms"]);
    let mut client = connect(server.addr).await;
    let mut spec = get(target.url("/rescue?delay_ms=700"));
    spec.timeout = Some(ms(1000));
    let id = submit(&mut client, spec).await;
    assert!(target.wait_for(1, Duration::from_secs(10)).await);
    server.kill9();

    let restarted = Process::start(&db, &["--lease-grace", "300ms"]);
    let mut client = connect(restarted.addr).await;
    let job = wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(job.attempt, 2);
    let seen = target.received_on("/rescue");
    assert_eq!(seen.len(), 2, "run once more, not more");
    let attempts = result(&mut client, &id).await.attempts;
    // The lease counts from the claim, which the attempt's start records; the
    // target's clock would add the time between claim and call, which a loaded
    // machine stretches.
    let started = |n: usize| {
        let t = attempts[n].start_time.as_ref().expect("start time");
        t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
    };
    assert!(
        started(1) - started(0) >= 1300,
        "not before the lease (1 s + 300 ms) ran out: {} ms",
        started(1) - started(0)
    );
    assert_eq!(
        attempts[0].error_class,
        proto::ErrorClass::Interrupted as i32
    );
    assert_eq!(attempts[1].response.as_ref().unwrap().status_code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_calls_finish_requeues_the_rest_and_exits_0() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--shutdown-grace", "1s"]);
    let mut client = connect(server.addr).await;
    let mut quick = get(target.url("/quick?delay_ms=400"));
    quick.timeout = Some(ms(10_000));
    let mut long = get(target.url("/long?delay_ms=8000"));
    long.timeout = Some(ms(10_000));
    let quick = submit(&mut client, quick).await;
    let long = submit(&mut client, long).await;
    assert!(target.wait_for(2, Duration::from_secs(10)).await);
    let mut later = get(target.url("/later"));
    later.schedule_time = Some(prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    });
    let later = submit(&mut client, later).await;

    let stopping = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "it waited {:?}, past the 1 s grace",
        stopping.elapsed()
    );

    let store = Store::connect(&db.url).await.unwrap();
    let quick = store.job("default", &quick).await.unwrap().unwrap();
    assert_eq!(
        quick.status, "succeeded",
        "a call that ends within the grace is finished and written"
    );
    let long = store.job("default", &long).await.unwrap().unwrap();
    assert_eq!(
        long.status, "queued",
        "a call still running at the end of the grace goes back to the queue"
    );
    assert_eq!(long.attempt, 0, "the interrupted attempt does not count");
    let later = store.job("default", &later).await.unwrap().unwrap();
    assert_eq!(later.status, "queued");
}

#[test]
fn bad_configuration_stops_the_start_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/x.db?mode=rwc", dir.path().display());
    let cases = [
        ("JOBQUEUE_CONCURRENCY", "0"),
        ("JOBQUEUE_CONCURRENCY", "lots"),
        ("JOBQUEUE_POLL_INTERVAL", "0s"),
        ("JOBQUEUE_DEFAULT_TIMEOUT", "soon"),
        ("JOBQUEUE_RESULT_MAX_BYTES", "-1"),
        ("JOBQUEUE_DB_URL", "mysql://localhost/x"),
        ("JOBQUEUE_DB_URL", "sqlite:///proc/no/such/dir/x.db"),
        ("JOBQUEUE_LISTEN_ADDR", "nowhere"),
        ("JOBQUEUE_QUEUE_CONCURRENCY", "0"),
        ("JOBQUEUE_CREATE_QUEUES_ON_USE", "maybe"),
        ("JOBQUEUE_METRICS_ADDR", "everywhere"),
        // Not bindable on this machine.
        ("JOBQUEUE_METRICS_ADDR", "192.0.2.1:9090"),
        ("JOBQUEUE_DB_TIMEOUT", "0s"),
        ("JOBQUEUE_SHUTDOWN_DELAY", "later"),
        ("JOBQUEUE_LOG_FORMAT", "xml"),
        ("JOBQUEUE_LOG", "nonsense=="),
        // Nobody listens on port 1: refused, said at once, the password masked.
        (
            "JOBQUEUE_DB_URL",
            "postgres://jq:s3cret-pw@127.0.0.1:1/jobs",
        ),
        // A file SQLite cannot create, even as root: the path is named.
        (
            "JOBQUEUE_DB_URL",
            "sqlite:///proc/jobqueue-test.db?mode=rwc",
        ),
    ];
    for (var, value) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
            .arg("serve")
            .env("JOBQUEUE_LISTEN_ADDR", "127.0.0.1:0")
            .env("JOBQUEUE_DB_URL", &db)
            .env("JOBQUEUE_LOG", "off")
            .env(var, value)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Within a few seconds: a database that cannot be reached is not waited on.
        let deadline = Instant::now() + Duration::from_secs(8);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{var}={value} was accepted, or took too long to refuse");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(var),
            "{var}={value}: the first line names the variable: {stderr}"
        );
        assert!(!stderr.contains("s3cret-pw"), "a password shown: {stderr}");
        if value.starts_with("postgres://") {
            assert!(
                first.contains("jq:***@127.0.0.1:1") && first.contains("refused"),
                "the masked URL and the cause: {first}"
            );
        }
        if value.contains("jobqueue-test.db") {
            assert!(
                first.contains("/proc/jobqueue-test.db"),
                "the path: {first}"
            );
        }
        let lines = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .count();
        assert_eq!(lines, 1, "{var}={value}: one line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_watches_with_a_cursor_to_resume_from() {
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--shutdown-grace", "1s"]);
    let mut client = connect(server.addr).await;
    let mut events = client
        .watch_jobs(proto::WatchJobsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.sigterm();
    let ended = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the watch ended when the service stopped");
    let status = ended.expect_err("ended with a status, not silently");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("resume from cursor"),
        "{}",
        status.message()
    );
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

/// Waits until `jobs` jobs of the default queue are SUCCEEDED, as `ListJobs`
/// counts them.
async fn wait_succeeded(client: &mut Client, jobs: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done = client
            .list_jobs(proto::ListJobsRequest {
                statuses: vec![JobStatus::Succeeded as i32],
                queue: "default".into(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .total_size;
        if done as usize == jobs {
            return;
        }
        assert!(Instant::now() < deadline, "{done} of {jobs} succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times the target received each path.
fn deliveries(target: &Target) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in target.received() {
        *counts.entry(r.path().to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_and_worker_processes_share_one_database_through_a_kill_9() {
    const JOBS: usize = 2000;
    const WORKER_SLOTS: usize = 64;
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let api = Process::start(&db, &["--role", "api"]);
    let mut client = connect(api.addr).await;
    let specs: Vec<_> = (0..JOBS)
        .map(|i| {
            let mut spec = get(target.url(&format!("/j/{i}?delay_ms=20")));
            spec.timeout = Some(ms(1000));
            spec
        })
        .collect();
    let ids = submit_all(&mut client, specs).await;
    // The API process runs nothing itself.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(target.count(), 0, "the api role ran a job");

    let worker_args = [
        "--role",
        "worker",
        "--concurrency",
        "64",
        "--lease-grace",
        "500ms",
    ];
    let mut worker = Process::start(&db, &worker_args);
    // The worker serves no API, only health.
    let mut on_worker = JobServiceClientOf::connect(format!("http://{}", worker.addr))
        .await
        .unwrap();
    let refused = on_worker
        .get_job(proto::GetJobRequest { id: ids[0].clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // Watched through the API process: it sees what the worker does.
    let mut watching = client.clone();
    let mut events = watching
        .watch_jobs(proto::WatchJobsRequest {
            ids: vec![ids[JOBS - 1].clone()],
            snapshot: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    assert!(target.wait_for(JOBS / 4, Duration::from_secs(60)).await);
    worker.kill9();
    let second = Process::start(&db, &worker_args);

    wait_succeeded(&mut client, JOBS, Duration::from_secs(120)).await;
    // Every job reached the target; only calls in flight at the kill came twice.
    let counts = deliveries(&target);
    assert_eq!(counts.len(), JOBS);
    let twice = counts.values().filter(|n| **n == 2).count();
    eprintln!("{twice} of {JOBS} jobs were delivered twice (in flight at the kill)");
    assert!(counts.values().all(|n| *n <= 2), "a job came three times");
    assert!(
        twice <= WORKER_SLOTS,
        "{twice} jobs came twice; at most {WORKER_SLOTS} were in flight"
    );
    // The watcher on the API process saw the last job finish.
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the watch ends")
        .unwrap()
    {
        last = Some(event.status);
    }
    assert_eq!(last, Some(JobStatus::Succeeded as i32));
    // Both roles drain and exit 0 on SIGTERM once their clients are gone.
    drop((events, watching, client, on_worker));
    let mut second = second;
    second.sigterm();
    assert!(second.wait_exit(Duration::from_secs(30)).success());
    let mut api = api;
    api.sigterm();
    assert!(api.wait_exit(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgresql_run_20000_jobs_and_a_per_second_cron_through_a_kill_9() {
    if !std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres") {
        eprintln!(
            "SKIPPED: replicas share a database on PostgreSQL only (JOBQUEUE_TEST_DB=postgres runs this)"
        );
        return;
    }
    const JOBS: usize = 20_000;
    const SLOTS: usize = 64;
    const PULSES: usize = 9;
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let args = ["--concurrency", "64", "--lease-grace", "500ms"];
    let mut replicas: Vec<Process> = (0..3).map(|_| Process::start(&db, &args)).collect();
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(connect(replica.addr).await);
    }
    // A schedule firing every second, in a queue of its own so its runs do not wait
    // behind the 20,000 jobs. A call cut off by the kill comes back once its lease
    // (1 s + 500 ms) runs out.
    let mut pulse = get_in("pulse", target.url("/pulse"));
    pulse.timeout = Some(ms(1000));
    pulse.backoff = backoff(proto::BackoffStrategy::Fixed, 100);
    schedules(replicas[0].addr)
        .await
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "pulse".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(Timetable::Cron("* * * * * *".into())),
                job: Some(pulse),
                ..Default::default()
            }),
        })
        .await
        .expect("schedule created");

    // Submitted through all three, in turns.
    let mut ids = Vec::with_capacity(JOBS);
    for (n, chunk) in (0..JOBS).collect::<Vec<_>>().chunks(1000).enumerate() {
        let specs = chunk
            .iter()
            .map(|i| {
                let mut spec = get(target.url(&format!("/r/{i}?delay_ms=5")));
                spec.timeout = Some(ms(1000));
                spec
            })
            .collect();
        ids.extend(submit_all(&mut clients[n % 3], specs).await);
    }
    assert_eq!(ids.len(), JOBS);
    assert!(target.wait_for(JOBS / 4, Duration::from_secs(120)).await);
    replicas[1].kill9();

    let mut client = clients[0].clone();
    wait_succeeded(&mut client, JOBS, Duration::from_secs(240)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.received_on("/pulse").len() < PULSES {
        assert!(Instant::now() < deadline, "the schedule stopped firing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut through_third = schedules(replicas[2].addr).await;
    through_third
        .pause_schedule(proto::PauseScheduleRequest { id: "pulse".into() })
        .await
        .expect("paused");

    // Every job reached the target; only those in flight on the killed replica twice.
    let counts = deliveries(&target);
    let jobs: Vec<usize> = counts
        .iter()
        .filter(|(path, _)| path.starts_with("/r/"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(jobs.len(), JOBS, "every job reached the target");
    assert!(jobs.iter().all(|n| *n <= 2), "a job came three times");
    let twice = jobs.iter().filter(|n| **n == 2).count();
    eprintln!("{twice} of {JOBS} jobs were delivered twice (in flight on the killed replica)");
    assert!(
        twice <= SLOTS,
        "{twice} jobs came twice; the killed replica had at most {SLOTS} in flight"
    );

    // The schedule fired once per second across the three, none twice, none missed,
    // and every run's job succeeds, the rescued ones included.
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = all_runs(&mut through_third, "pulse").await;
        if runs.iter().all(|r| r.status == JobStatus::Succeeded as i32) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "runs never all succeeded: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut fired: Vec<i64> = runs
        .iter()
        .map(|r| millis(r.fire_time.as_ref().unwrap()))
        .collect();
    fired.sort();
    assert!(
        fired.len() >= PULSES,
        "only {} runs: {fired:?}",
        fired.len()
    );
    assert!(fired.iter().all(|t| t % 1000 == 0), "{fired:?}");
    assert!(
        fired.windows(2).all(|w| w[1] - w[0] == 1000),
        "once per second, none twice, none missed: {fired:?}"
    );
    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in target.received_on("/pulse") {
        *sent
            .entry(r.header("idempotency-key").unwrap_or("").to_string())
            .or_default() += 1;
    }
    let expected: HashSet<String> = runs
        .iter()
        .map(|r| run_key("pulse", r.fire_time.as_ref().unwrap()))
        .collect();
    assert_eq!(sent.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(
        sent.values().all(|n| *n <= 2),
        "a run came three times: {sent:?}"
    );
    let runs_twice = sent.values().filter(|n| **n == 2).count();
    eprintln!("{runs_twice} of {} runs were delivered twice", runs.len());
    assert!(runs_twice <= 2, "{runs_twice} runs came twice: {sent:?}");

    drop((clients, client, through_third));
    for (n, mut replica) in replicas.into_iter().enumerate() {
        if n != 1 {
            replica.sigterm();
            assert!(replica.wait_exit(Duration::from_secs(30)).success());
        }
    }
}

/// The first log line that contains `text`, from `jobqueue serve` started with `args`
/// (its stderr is a pipe, as under a container runtime).
fn log_line_with(args: &[&str], text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/x.db?mode=rwc", dir.path().display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(["serve", "--db-url", &db])
        .args(args)
        .env("JOBQUEUE_LISTEN_ADDR", "127.0.0.1:0")
        .env("JOBQUEUE_LOG", "info")
        .env_remove("JOBQUEUE_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let line = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains(text))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn the_log_is_json_lines_for_collectors_and_plain_text_on_request() {
    // Not a terminal: one JSON object a line.
    let line = log_line_with(&[], "serving");
    let json: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(json["level"], "INFO", "{line}");
    assert_eq!(json["fields"]["message"], "serving", "{line}");
    // Text when asked, without terminal colour codes in a pipe.
    let line = log_line_with(&["--log-format", "text"], "serving");
    assert!(line.contains("INFO") && line.contains("serving"), "{line}");
    assert!(!line.contains('\u{1b}'), "no escape codes: {line:?}");
}

#[test]
fn a_listen_address_may_name_a_host() {
    let line = log_line_with(&["--listen-addr", "localhost:0"], "serving");
    assert!(line.contains("127.0.0.1:"), "localhost resolves: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tells_of_a_job_that_failed_for_good_and_never_of_a_password() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    // On PostgreSQL (trust auth takes any password) the URL carries one.
    let url = db
        .url
        .replace("postgres://postgres@", "postgres://postgres:s3cret-pw@");
    let mut server = Process::start_on(&url, &["--log-format", "json"]);
    let mut client = connect(server.addr).await;
    let mut spec = get(target.url("/gone?status=404"));
    spec.max_attempts = Some(3);
    let id = submit(&mut client, spec).await;
    wait_status(&mut client, &id, JobStatus::Failed, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(line) = server.log_lines("job failed for good").pop() {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line for the failed job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(json["fields"]["job"], id.as_str(), "{line}");
    assert_eq!(json["fields"]["status_code"], "Some(404)", "{line}");
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(20)).success());
    let all = server.log.lock().unwrap().join("\n");
    assert!(!all.contains("s3cret-pw"), "a password in the log:\n{all}");
}
