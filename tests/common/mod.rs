//! What the black-box tests share: a real server on port 0 with a real SQLite file,
//! a client generated from `proto/`, and helpers that wait on the server's answers.
#![allow(dead_code, unused_imports)]

use std::time::{Duration, Instant};

pub mod chains;
pub mod db;
mod echo;
pub mod keys;
mod process;
pub mod readme;
pub use echo::EchoTarget;
pub use process::Process;

use jobqueue::config::Config;
use jobqueue::proto::job_service_client::JobServiceClient;
use jobqueue::proto::{self, JobSpec};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use testkit::Target;

pub type Client = JobServiceClient<Channel>;

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub client: Client,
    pub db: std::sync::Arc<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), jobqueue::server::ServerError>>>,
}

/// Where one test's data lives: a fresh SQLite file, or with
/// `JOBQUEUE_TEST_DB=postgres` a fresh database on the PostgreSQL server at
/// 127.0.0.1:5432 (`.ci/run` runs the suite both ways).
pub struct TestDb {
    pub url: String,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = if std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres") {
            use jobqueue::store::sqlx::Connection;
            let name = format!("jq_test_{}", ulid::Ulid::new().to_string().to_lowercase());
            let admin = "postgres://postgres@127.0.0.1:5432/postgres";
            let mut conn = jobqueue::store::sqlx::PgConnection::connect(admin)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (JOBQUEUE_TEST_DB=postgres)");
            // The name is ours: a fixed prefix and a ULID.
            let create = jobqueue::store::sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
            jobqueue::store::sqlx::raw_sql(create)
                .execute(&mut conn)
                .await
                .expect("create the test database");
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        } else {
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("jobqueue.db").display()
            )
        };
        TestDb { url, _dir: dir }
    }
}

/// Settings for tests: short intervals so maintenance shows within a test.
pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::with_db_url(db_url);
    config.poll_interval = Duration::from_millis(200);
    config.maintenance_interval = Duration::from_millis(100);
    config.concurrency = 32;
    // The targets tests call are on loopback, which calls out may not reach
    // unless allowed: allowed here by name, never by turning the guard off.
    config.outbound_allow = LOOPBACK_TARGETS.parse_rules();
    config
}

/// A key tests seal secret headers with (JOBQUEUE_SECRET_KEYS).
pub const TEST_SECRET_KEYS: &str = "test=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn test_keyring() -> jobqueue::secret::Keyring {
    jobqueue::secret::Keyring::parse(TEST_SECRET_KEYS).expect("the test key")
}

/// What tests allow calls out to reach: the loopback targets they run.
pub const LOOPBACK_TARGETS: &str = "127.0.0.1,::1";

trait ParseRules {
    fn parse_rules(&self) -> jobqueue::outbound::address::RuleList;
}

impl ParseRules for str {
    fn parse_rules(&self) -> jobqueue::outbound::address::RuleList {
        jobqueue::outbound::address::RuleList::parse(self).expect("rules")
    }
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_on(std::sync::Arc::new(TestDb::new().await), tweak).await
    }

    /// A server on the database of another: a second process on the same data.
    pub async fn start_beside(other: &Server, tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_on(other.db.clone(), tweak).await
    }

    async fn start_on(db: std::sync::Arc<TestDb>, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jobqueue::server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let client = connect(addr).await;
        Server {
            addr,
            client,
            db,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped with an error");
        }
    }
}

/// A client of the server at `addr`, once its health check says it serves jobs: a
/// bound port alone says nothing about the store being open.
pub async fn connect(addr: std::net::SocketAddr) -> Client {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = match tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("address")
            .connect()
            .await
        {
            Ok(channel) => {
                let check = HealthCheckRequest {
                    service: "jobqueue.v1.JobService".into(),
                };
                match HealthClient::new(channel.clone()).check(check).await {
                    Ok(answer) if answer.get_ref().status == ServingStatus::Serving as i32 => {
                        return JobServiceClient::new(channel);
                    }
                    other => format!("{other:?}"),
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            panic!("server at {addr} never served: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET of `url` with every other field at its default.
pub fn get(url: impl Into<String>) -> JobSpec {
    JobSpec {
        request: Some(proto::HttpRequest {
            method: "GET".into(),
            url: url.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn ms(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn backoff(strategy: proto::BackoffStrategy, base_ms: u64) -> Option<proto::Backoff> {
    Some(proto::Backoff {
        strategy: strategy as i32,
        base_delay: Some(ms(base_ms)),
        max_delay: None,
    })
}

pub async fn submit(client: &mut Client, spec: JobSpec) -> String {
    client
        .submit_job(proto::SubmitJobRequest { job: Some(spec) })
        .await
        .expect("submit accepted")
        .into_inner()
        .id
}

pub async fn get_job(client: &mut Client, id: &str) -> proto::Job {
    client
        .get_job(proto::GetJobRequest { id: id.into() })
        .await
        .expect("job readable")
        .into_inner()
}

pub async fn result(client: &mut Client, id: &str) -> proto::JobResult {
    client
        .get_job_result(proto::GetJobResultRequest { id: id.into() })
        .await
        .expect("result readable")
        .into_inner()
}

/// Reads the job until `done` holds for it; panics with the last state after `within`.
pub async fn wait_job(
    client: &mut Client,
    id: &str,
    within: Duration,
    done: impl Fn(&proto::Job) -> bool,
) -> proto::Job {
    let deadline = Instant::now() + within;
    loop {
        let job = get_job(client, id).await;
        if done(&job) {
            return job;
        }
        if Instant::now() > deadline {
            panic!("job {id} did not reach the expected state within {within:?}; last: {job:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_status(
    client: &mut Client,
    id: &str,
    status: proto::JobStatus,
    within: Duration,
) -> proto::Job {
    wait_job(client, id, within, |j| j.status == status as i32).await
}

pub fn status_of(job: &proto::Job) -> proto::JobStatus {
    proto::JobStatus::try_from(job.status).expect("known status")
}

/// The field paths a `google.rpc.BadRequest` in the status names.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Whether an outside test tool can run. Missing locally, the test says why and is
/// skipped; with `CI=true`, missing is a failure.
pub fn tool_available(check: &mut std::process::Command, what: &str) -> bool {
    let ok = check
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "{what} is missing and CI=true: .ci/run installs it");
        eprintln!("SKIPPED: {what} is not installed here (.ci/run installs it)");
    }
    ok
}

pub type Queues = jobqueue::proto::queue_service_client::QueueServiceClient<Channel>;

/// A queue client of the server at `addr` (which already serves).
pub async fn queues(addr: std::net::SocketAddr) -> Queues {
    Queues::connect(format!("http://{addr}"))
        .await
        .expect("queue service reachable")
}

/// A GET of `url` in `queue`.
pub fn get_in(queue: &str, url: impl Into<String>) -> JobSpec {
    JobSpec {
        queue: queue.into(),
        ..get(url)
    }
}

/// Submits many jobs in one call; their ids in order.
pub async fn submit_all(client: &mut Client, specs: Vec<JobSpec>) -> Vec<String> {
    let mut ids = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(1000) {
        let answer = client
            .submit_jobs(proto::SubmitJobsRequest {
                jobs: chunk.to_vec(),
            })
            .await
            .expect("batch accepted")
            .into_inner();
        ids.extend(answer.results.into_iter().map(|r| r.id));
    }
    ids
}

/// A queue as GetQueue reads it, its state in `stats`.
pub async fn queue_state(queues: &mut Queues, name: &str) -> proto::Queue {
    queues
        .get_queue(proto::GetQueueRequest { name: name.into() })
        .await
        .expect("queue readable")
        .into_inner()
}

/// A loopback port nobody listens on right now.
/// A loopback port free now, for a server the test starts to bind. Picked below
/// the system's ephemeral range, which it hands out itself (to every `bind(0)` and
/// outgoing connection of the suite running beside): a port taken from that range
/// was sometimes handed to someone else before the server bound it.
pub fn free_port() -> std::net::SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    for _ in 0..200 {
        let port = fastrand::u16(10_000..low.max(10_001));
        if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return probe.local_addr().unwrap();
        }
    }
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// One sample of a Prometheus text page, by its name and labels.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// This process's metrics page from a server started with `metrics_addr`.
pub async fn metrics_page(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics served")
        .text()
        .await
        .expect("metrics page")
}

pub type Schedules = jobqueue::proto::schedule_service_client::ScheduleServiceClient<Channel>;

/// A schedule client of the server at `addr` (which already serves).
pub async fn schedules(addr: std::net::SocketAddr) -> Schedules {
    Schedules::connect(format!("http://{addr}"))
        .await
        .expect("schedule service reachable")
}

impl Server {
    /// A server on the database a stopped server left: the same service, restarted.
    pub async fn restart(db: std::sync::Arc<TestDb>, tweak: impl FnOnce(&mut Config)) -> Server {
        Self::start_on(db, tweak).await
    }
}

/// Every run `ListScheduleRuns` lists for `schedule_id` (empty: all schedules),
/// page by page, newest first.
pub async fn all_runs(schedules: &mut Schedules, schedule_id: &str) -> Vec<proto::ScheduleRun> {
    let mut runs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = schedules
            .list_schedule_runs(proto::ListScheduleRunsRequest {
                schedule_id: schedule_id.into(),
                page_size: 100,
                page_token,
            })
            .await
            .expect("runs listed")
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            return runs;
        }
        page_token = page.next_page_token;
    }
}

/// Milliseconds since the Unix epoch of a protobuf timestamp.
pub fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// The protobuf timestamp `ms` milliseconds after the Unix epoch.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The `Idempotency-Key` a run of `schedule_id` due at `fire_time` is sent with:
/// `<schedule id>/<RFC 3339 in UTC>`, a fraction only when not a whole second.
pub fn run_key(schedule_id: &str, fire_time: &prost_types::Timestamp) -> String {
    let at = chrono::DateTime::from_timestamp(fire_time.seconds, fire_time.nanos as u32)
        .expect("a representable time");
    format!(
        "{schedule_id}/{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}

/// Every job stored, listed page by page.
pub async fn all_jobs(client: &mut Client) -> Vec<proto::Job> {
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_jobs(proto::ListJobsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("jobs listed")
            .into_inner();
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            return jobs;
        }
        page_token = page.next_page_token;
    }
}

/// What `grpc.health.v1` answers for `service` at `addr`, on a new connection;
/// `None` when nothing answers.
pub async fn health_status(
    addr: std::net::SocketAddr,
    service: &str,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    tonic_health::pb::health_check_response::ServingStatus::try_from(answer.into_inner().status)
        .ok()
}
