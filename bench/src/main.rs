//! Load generator for jobqueue.
//!
//! Submits GET jobs aimed at a loopback HTTP target that runs in this process, and
//! measures, per mode:
//!
//! - end-to-end throughput: from the first submit sent until every job of the run is
//!   SUCCEEDED (the target has seen all of them and `ListJobs` counts them all);
//! - submit latency: per RPC (per job for `unary`/`idle`, per batch call for `batch`);
//! - dispatch latency: from the client receiving a job's acknowledgment to the target
//!   receiving that job's request (for a batch, the batch's acknowledgment applies to
//!   all of its jobs);
//! - the server's peak RSS (VmHWM);
//! - the server's CPU time (user + system, all threads) per job, which shows how far
//!   the server scales when several processes compete for the same cores, and this
//!   process's own CPU time per job.
//!
//! `--mode watch` measures `WatchJobs` streams under a paced load instead: many
//! watchers each on a tag of its own plus a few watching every job, opened before the
//! first submit; per change, the delivery latency (received minus the change's time),
//! and per watcher the changes lost, repeated or out of cursor order; throughput,
//! peak RSS and CPU per job with the watchers and, first, without any.
//!
//! The server runs in this process by default, is spawned as a child process with
//! `--spawn-server PATH` (the mode to use for RSS and CPU figures: only the server
//! is measured), or is an already running one with `--server ADDR`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use jobqueue::proto::job_service_client::JobServiceClient;
use jobqueue::proto::{self, JobSpec, JobStatus};
use testkit::Target;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tonic::transport::{Channel, Endpoint};

type Client = JobServiceClient<Channel>;

/// Refused above this: the target keeps every request it sees in memory.
const MAX_JOBS: usize = 1_000_000;
/// What `SubmitJobs` accepts in one call.
const MAX_BATCH: usize = 1000;
/// How often completion is polled once the target has seen every job.
const COMPLETION_POLL: Duration = Duration::from_millis(10);
/// `--mode watch` submits once per tick, as many jobs as the offered rate has made due.
const PACE_TICK: Duration = Duration::from_millis(10);
/// Paced `SubmitJobs` calls in flight at most. The pacer waits for a free slot beyond
/// this (and says how often it did): the achieved rate then falls below the offered one.
const PACED_CALLS_IN_FLIGHT: usize = 64;
/// Watch streams per HTTP/2 connection. Servers may cap concurrent streams per
/// connection (hyper's own default is 200; tonic 0.14 sends no limit unless told;
/// HTTP/2 recommends allowing at least 100), and streams past the cap would wait for
/// others to end: each group of this many watchers gets a connection of its own.
const WATCHERS_PER_CHANNEL: usize = 100;

#[derive(Debug, Parser)]
#[command(
    name = "jobqueue-bench",
    about = "Load generator for jobqueue: throughput, submit and dispatch latency, peak RSS, \
             CPU time per job"
)]
struct Args {
    /// What to run; `both` runs unary, batch and idle in turn; `watch` measures
    /// `WatchJobs` streams under a paced load (not part of `both`).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,

    /// Jobs per throughput run (unary and batch each submit this many).
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,

    /// Unary `SubmitJob` calls in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,

    /// Jobs per `SubmitJobs` call.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,

    /// `SubmitJobs` calls in flight at once.
    #[arg(long, default_value_t = 4)]
    batch_in_flight: usize,

    /// Jobs in the idle-queue dispatch measurement, submitted one at a time.
    #[arg(long, default_value_t = 200)]
    idle_jobs: usize,

    /// The server's `--concurrency` (in-process and spawned servers only; the server's own default).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,

    /// Target an already running server at this loopback address instead.
    #[arg(long, conflicts_with = "spawn_server")]
    server: Option<SocketAddr>,

    /// With `--server`: the server's pid, to read its peak RSS and CPU time from /proc.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,

    /// Spawn this jobqueue binary as the server (recommended for RSS figures).
    #[arg(long)]
    spawn_server: Option<PathBuf>,

    /// Longest wait, in seconds, for one run's jobs to finish.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,

    /// `--mode watch`: watchers each watching a tag of its own; every job carries one
    /// of these tags (round-robin).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,

    /// `--mode watch`: watchers with `all: true`, each seeing every job.
    #[arg(long, default_value_t = 10)]
    watch_all: usize,

    /// `--mode watch`: jobs per second offered, in `SubmitJobs` calls every 10 ms.
    #[arg(long, default_value_t = 5000)]
    rate: u64,

    /// `--mode watch`: how long, in seconds, watchers may still take once every job
    /// is SUCCEEDED; then they are stopped and what they have not received counts as
    /// lost.
    #[arg(long, default_value_t = 30)]
    watch_grace_secs: u64,

    /// Named queues the jobs are spread over, round-robin (`bench-00`, `bench-01`,
    /// ...); 1 puts every job in `default`.
    #[arg(long, default_value_t = 1)]
    queues: usize,

    /// `--mode watch`: milliseconds to wait between the last watch stream opening
    /// and the first submit.
    #[arg(long, default_value_t = 0)]
    watch_settle_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Unary,
    Batch,
    Idle,
    Both,
    Watch,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line (with its causes) rather than a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    validate(&args)?;
    QUEUES.get_or_init(|| args.queues);
    println!("command: {}", command_line());

    let scratch = match args.server {
        Some(_) => None,
        None => Some(ScratchDir::create()?),
    };
    let mut server = start_server(&args, scratch.as_ref()).await?;
    let outcome = run_benchmarks(&args, &server).await;
    let stopped = server.stop().await;
    // The database lives in the scratch directory: remove it only once the server is gone.
    drop(scratch);

    let report = outcome?;
    stopped?;
    print_report(&report, &server.json_fields);
    Ok(())
}

fn validate(args: &Args) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_JOBS).contains(&args.jobs),
        "--jobs must be from 1 to {MAX_JOBS}"
    );
    ensure!(
        (1..=MAX_JOBS).contains(&args.idle_jobs),
        "--idle-jobs must be from 1 to {MAX_JOBS}"
    );
    ensure!(
        (1..=MAX_BATCH).contains(&args.batch_size),
        "--batch-size must be from 1 to {MAX_BATCH}"
    );
    ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
    ensure!(
        (1..=1000).contains(&args.queues),
        "--queues must be from 1 to 1000"
    );
    ensure!(
        args.batch_in_flight >= 1,
        "--batch-in-flight must be at least 1"
    );
    ensure!(
        (1..=100_000).contains(&args.concurrency),
        "--concurrency must be from 1 to 100000"
    );
    ensure!(args.timeout_secs >= 1, "--timeout-secs must be at least 1");
    ensure!(
        (1..=1_000_000).contains(&args.rate),
        "--rate must be from 1 to 1000000 jobs per second"
    );
    ensure!(
        args.watchers <= 100_000,
        "--watchers must be at most 100000"
    );
    ensure!(args.watch_all <= 1000, "--watch-all must be at most 1000");
    if let Some(addr) = args.server {
        ensure!(
            addr.ip().is_loopback(),
            "--server must be a loopback address: the benchmark only runs on 127.0.0.1"
        );
    }
    Ok(())
}

/// The arguments this process was started with, quoted where a shell would need it.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------

/// A fresh directory for the database, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("jobqueue-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating scratch directory {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn db_url(&self) -> String {
        format!("sqlite://{}/jobqueue.db?mode=rwc", self.0.display())
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {error}", self.0.display());
        }
    }
}

enum ServerKind {
    /// `jobqueue::server::run` on this process's runtime.
    InProcess {
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), jobqueue::server::ServerError>>,
    },
    /// A child process running `jobqueue serve`.
    Spawned {
        child: tokio::process::Child,
        pid: u32,
        log: PathBuf,
    },
    /// Started by someone else; its pid, when given, is only read from.
    External { pid: Option<u32> },
}

struct Server {
    addr: SocketAddr,
    kind: ServerKind,
    description: String,
    /// How the server ran, as JSON fields added to every mode's line.
    json_fields: Vec<(&'static str, String)>,
}

/// Where the server's /proc figures (peak RSS, CPU time) are read from.
#[derive(Debug, Clone, Copy)]
enum ServerProc {
    /// The server shares this process: its figures include the load generator.
    OwnProcess,
    Pid(u32),
    Unknown,
}

impl ServerProc {
    /// Whose resources a server figure covers.
    fn scope(self) -> &'static str {
        match self {
            ServerProc::OwnProcess => "bench+server",
            _ => "server",
        }
    }
}

impl Server {
    fn server_proc(&self) -> ServerProc {
        match &self.kind {
            ServerKind::InProcess { .. } => ServerProc::OwnProcess,
            ServerKind::Spawned { pid, .. } => ServerProc::Pid(*pid),
            ServerKind::External { pid: Some(pid) } => ServerProc::Pid(*pid),
            ServerKind::External { pid: None } => ServerProc::Unknown,
        }
    }

    /// Stops a server this benchmark started and waits until it has.
    async fn stop(&mut self) -> anyhow::Result<()> {
        match &mut self.kind {
            ServerKind::InProcess { stop, task } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                (&mut *task)
                    .await
                    .context("the in-process server task panicked")?
                    .context("the in-process server stopped with an error")?;
            }
            ServerKind::Spawned { child, pid, log } => {
                let signalled = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .context("running kill -TERM")?;
                ensure!(signalled.success(), "kill -TERM {pid} failed");
                // The server drains within its shutdown grace (30s by default).
                let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await
                {
                    Ok(status) => status.context("waiting for the server")?,
                    Err(_) => {
                        child.kill().await.context("killing the server")?;
                        bail!("the server did not stop within 60s of SIGTERM; killed it");
                    }
                };
                if !status.success() {
                    bail!(
                        "the server exited with {status}; its log ends with:\n{}",
                        log_tail(log)
                    );
                }
            }
            ServerKind::External { .. } => {}
        }
        Ok(())
    }
}

async fn start_server(args: &Args, scratch: Option<&ScratchDir>) -> anyhow::Result<Server> {
    if let Some(addr) = args.server {
        if let Some(pid) = args.server_pid {
            read_peak_rss_kb(ServerProc::Pid(pid))
                .with_context(|| format!("--server-pid {pid}: cannot read its memory use"))?;
            read_cpu_ticks(&format!("/proc/{pid}"))
                .with_context(|| format!("--server-pid {pid}: cannot read its CPU time"))?;
        }
        return Ok(Server {
            addr,
            kind: ServerKind::External {
                pid: args.server_pid,
            },
            description: format!("external at {addr} (its own settings apply)"),
            json_fields: vec![("server", json_string("external"))],
        });
    }
    let scratch = scratch.context("no scratch directory for the database")?;
    match &args.spawn_server {
        Some(binary) => spawn_server(binary, args.concurrency, scratch).await,
        None => start_in_process(args.concurrency, scratch).await,
    }
}

async fn start_in_process(concurrency: usize, scratch: &ScratchDir) -> anyhow::Result<Server> {
    let mut config = jobqueue::config::Config::with_db_url(scratch.db_url());
    config.concurrency = concurrency;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the server's listener")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(jobqueue::server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        addr,
        kind: ServerKind::InProcess {
            stop: Some(stop),
            task,
        },
        description: format!("in-process at {addr}, concurrency {concurrency}"),
        json_fields: vec![
            ("server", json_string("in-process")),
            ("concurrency", concurrency.to_string()),
        ],
    })
}

async fn spawn_server(
    binary: &Path,
    concurrency: usize,
    scratch: &ScratchDir,
) -> anyhow::Result<Server> {
    let log = scratch.path().join("server.log");
    let log_file = std::fs::File::create(&log).context("creating the server log")?;
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--db-url"])
        .arg(scratch.db_url())
        .args(["--concurrency", &concurrency.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let pid = child.id().context("the spawned server has no pid")?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let mut lines = BufReader::new(stdout).lines();

    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("jobqueue listening on ") {
                return Ok(Some(addr.trim().to_string()));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let addr = match announced {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!(
            "the server exited before listening; its log ends with:\n{}",
            log_tail(&log)
        ),
        Ok(Err(error)) => bail!("reading the server's stdout: {error}"),
        Err(_) => bail!("the server did not announce its address within 30s"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("the server announced an address that does not parse: {addr}"))?;
    // Keep reading so a later line can never block the server on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    Ok(Server {
        addr,
        kind: ServerKind::Spawned { child, pid, log },
        description: format!(
            "spawned {} (pid {pid}) at {addr}, concurrency {concurrency}",
            binary.display()
        ),
        json_fields: vec![
            ("server", json_string("spawned")),
            ("concurrency", concurrency.to_string()),
        ],
    })
}

/// The last lines of a server log, for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match JobServiceClient::connect(format!("http://{addr}")).await {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() > deadline => {
                bail!("the server at {addr} never answered: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

// ---------------------------------------------------------------------------------
// Peak RSS and CPU time from /proc
// ---------------------------------------------------------------------------------

fn proc_dir(subject: ServerProc) -> Option<String> {
    match subject {
        ServerProc::OwnProcess => Some("/proc/self".into()),
        ServerProc::Pid(pid) => Some(format!("/proc/{pid}")),
        ServerProc::Unknown => None,
    }
}

/// VmHWM, in kB: the most resident memory since the process started or since the
/// peak was last reset.
fn read_peak_rss_kb(subject: ServerProc) -> anyhow::Result<u64> {
    let dir = proc_dir(subject).context("no process to read")?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .with_context(|| format!("{dir}/status has no VmHWM"))?;
    let kb = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("VmHWM in {dir}/status does not parse: {line}"))?;
    Ok(kb)
}

/// Resets VmHWM to the current RSS so each mode reports its own peak. Best effort:
/// false when the kernel or permissions refuse it.
fn reset_peak_rss(subject: ServerProc) -> bool {
    proc_dir(subject)
        .map(|dir| std::fs::write(format!("{dir}/clear_refs"), "5").is_ok())
        .unwrap_or(false)
}

#[derive(Debug, Clone)]
struct PeakRss {
    kb: Option<u64>,
    /// Whose memory: "server", or "bench+server" when they share the process.
    scope: &'static str,
    /// "mode" when the peak was reset at the mode's start, else "process start".
    since: &'static str,
}

fn measure_peak_rss(subject: ServerProc, was_reset: bool) -> PeakRss {
    let kb = match subject {
        ServerProc::Unknown => None,
        _ => match read_peak_rss_kb(subject) {
            Ok(kb) => Some(kb),
            Err(error) => {
                eprintln!("warning: peak RSS unknown: {error:#}");
                None
            }
        },
    };
    PeakRss {
        kb,
        scope: subject.scope(),
        since: if was_reset { "mode" } else { "process start" },
    }
}

/// Clock ticks per second, the unit of the CPU times in /proc/PID/stat. Asked of
/// `getconf` once; 100, Linux's usual value, when that fails.
fn clock_ticks_per_sec() -> u64 {
    const FALLBACK: u64 = 100;
    let asked = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .stderr(Stdio::null())
        .output();
    let parsed = match &asked {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ticks| *ticks > 0),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        eprintln!("warning: `getconf CLK_TCK` gave no answer; assuming {FALLBACK} ticks/s");
        FALLBACK
    })
}

/// utime + stime from `{dir}/stat`, in clock ticks: the CPU time of every thread of
/// the process, ended ones included.
fn read_cpu_ticks(dir: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("reading {dir}/stat"))?;
    // Field 2, the command name, is in parentheses and may itself hold spaces or
    // parentheses: count fields from the last ')', after which field 3 comes.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{dir}/stat has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> anyhow::Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("{dir}/stat has no field {number}"))?;
        text.parse()
            .with_context(|| format!("field {number} of {dir}/stat does not parse: {text}"))
    };
    Ok(field(14)? + field(15)?)
}

/// CPU ticks used so far, taken at a mode's start and end.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    /// None when the server's pid is unknown or its stat could not be read.
    server: Option<u64>,
    /// This process; None when the server shares it (`server` covers it then).
    bench: Option<u64>,
}

fn read_cpu_ticks_or_warn(dir: &str, whose: &str) -> Option<u64> {
    match read_cpu_ticks(dir) {
        Ok(ticks) => Some(ticks),
        Err(error) => {
            eprintln!("warning: {whose} CPU time unknown: {error:#}");
            None
        }
    }
}

fn cpu_snapshot(subject: ServerProc) -> CpuSnapshot {
    let server = proc_dir(subject).and_then(|dir| read_cpu_ticks_or_warn(&dir, "server"));
    let bench = match subject {
        ServerProc::OwnProcess => None,
        _ => read_cpu_ticks_or_warn("/proc/self", "bench"),
    };
    CpuSnapshot { server, bench }
}

/// CPU time (user + system, all threads) spent during one mode.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    /// Whose CPU time `server_s` is (see `ServerProc::scope`).
    subject: ServerProc,
    server_s: Option<f64>,
    /// This process (the load generator and the HTTP target); None when the server
    /// shares it.
    bench_s: Option<f64>,
}

fn measure_cpu(subject: ServerProc, ticks_per_sec: u64, start: CpuSnapshot) -> CpuUse {
    let end = cpu_snapshot(subject);
    let seconds = |start: Option<u64>, end: Option<u64>| {
        Some(end?.saturating_sub(start?) as f64 / ticks_per_sec as f64)
    };
    CpuUse {
        subject,
        server_s: seconds(start.server, end.server),
        bench_s: seconds(start.bench, end.bench),
    }
}

// ---------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------

/// What one mode measured.
struct ModeResult {
    mode: &'static str,
    /// How the load was offered, in words.
    shape: String,
    /// Jobs the server accepted.
    submitted: usize,
    submit_errors: usize,
    first_error: Option<String>,
    /// What one submit latency sample covers.
    submit_unit: String,
    submit_ms: Vec<f64>,
    /// Signed: negative when the target saw a job before its acknowledgment arrived.
    dispatch_ms: Vec<f64>,
    /// From the submit call being sent to the target receiving the job: an upper
    /// bound on dispatch that never goes negative.
    send_to_target_ms: Vec<f64>,
    /// Requests the target received more than once.
    repeats: usize,
    /// From the first submit sent to the last acknowledgment received.
    submit_phase: Duration,
    /// From the first submit sent until every job is SUCCEEDED; none for idle.
    end_to_end: Option<Duration>,
    peak_rss: PeakRss,
    cpu: CpuUse,
    /// Fields the mode adds to its JSON line.
    extra_json: Vec<(&'static str, String)>,
}

/// Everything a run needs to know about its environment.
struct Bench {
    client: Client,
    /// Where the server listens, for connections of their own (watchers).
    addr: SocketAddr,
    server_proc: ServerProc,
    /// The unit of /proc CPU times.
    clock_ticks_per_sec: u64,
    timeout: Duration,
    /// Distinguishes this invocation's tags from earlier runs on the same server.
    run_id: String,
}

/// The first job number of the next run: numbers stay unique across modes.
static NEXT_JOB_NUMBER: AtomicUsize = AtomicUsize::new(0);

fn reserve_job_numbers(count: usize) -> usize {
    NEXT_JOB_NUMBER.fetch_add(count, Ordering::Relaxed)
}

/// What the runs measured, for the report.
struct Report {
    results: Vec<ModeResult>,
    /// Printed after the main table and its notes, before the JSON lines.
    sections: Vec<String>,
}

async fn run_benchmarks(args: &Args, server: &Server) -> anyhow::Result<Report> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("server: {}", server.description);
    println!("machine: {cores} cores; everything on 127.0.0.1");
    if args.server.is_some() {
        println!("note: --concurrency is ignored with --server");
    }
    if matches!(server.kind, ServerKind::InProcess { .. }) {
        println!(
            "note: in-process server; its peak RSS and CPU time include the load generator \
             (use --spawn-server for server-only figures)"
        );
    }
    println!();

    let client = connect(server.addr).await?;
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let bench = Bench {
        client,
        addr: server.addr,
        server_proc: server.server_proc(),
        clock_ticks_per_sec: clock_ticks_per_sec(),
        timeout: Duration::from_secs(args.timeout_secs),
        run_id,
    };

    let mut results = Vec::new();
    if matches!(args.mode, Mode::Unary | Mode::Both) {
        results.push(run_unary(&bench, args.jobs, args.in_flight).await?);
    }
    if matches!(args.mode, Mode::Batch | Mode::Both) {
        results.push(run_batch(&bench, args.jobs, args.batch_size, args.batch_in_flight).await?);
    }
    if matches!(args.mode, Mode::Idle | Mode::Both) {
        results.push(run_idle(&bench, args.idle_jobs).await?);
    }
    let mut sections = Vec::new();
    if args.mode == Mode::Watch {
        let (runs, section) = run_watch(&bench, args).await?;
        results.extend(runs);
        sections.push(section);
    }
    Ok(Report { results, sections })
}

/// A GET of the target's `/b/{n}`, tagged with the run's tag.
/// How many queues jobs are spread over (`--queues`), set once at start.
static QUEUES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The queue of job `n`: empty (`default`) with one queue.
fn queue_of(n: usize) -> String {
    match QUEUES.get().copied().unwrap_or(1) {
        0 | 1 => String::new(),
        queues => format!("bench-{:02}", n % queues),
    }
}

fn job_spec(url_prefix: &str, n: usize, tag: &str) -> JobSpec {
    JobSpec {
        queue: queue_of(n),
        request: Some(proto::HttpRequest {
            method: "GET".into(),
            url: format!("{url_prefix}{n}"),
            ..Default::default()
        }),
        tags: vec![tag.to_string()],
        ..Default::default()
    }
}

/// One accepted job: its index within the run, when the call carrying it was sent and
/// when that call's acknowledgment arrived.
#[derive(Clone, Copy)]
struct Ack {
    index: usize,
    sent: Instant,
    acked: Instant,
}

/// What one submitting task saw.
#[derive(Default)]
struct SubmitLog {
    acks: Vec<Ack>,
    submit_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

impl SubmitLog {
    fn failed(&mut self, error: &tonic::Status) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    fn merge(&mut self, other: SubmitLog) {
        self.acks.extend(other.acks);
        self.submit_ms.extend(other.submit_ms);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One run's fixed facts: its target, tag and job numbers.
struct RunSetup {
    target: Target,
    url_prefix: String,
    tag: String,
    first_number: usize,
    rss_was_reset: bool,
    cpu_at_start: CpuSnapshot,
}

/// The tag every job of one mode's run carries, to count them by.
fn run_tag(bench: &Bench, mode: &str) -> String {
    format!("bench-{mode}-{}", bench.run_id)
}

async fn set_up_run(bench: &Bench, mode: &str, jobs: usize) -> anyhow::Result<RunSetup> {
    // A fresh target per run: its count starts at zero and its record of requests is
    // freed with it.
    let target = Target::start().await.context("starting the HTTP target")?;
    let url_prefix = target.url("/b/");
    let rss_was_reset = reset_peak_rss(bench.server_proc);
    Ok(RunSetup {
        target,
        url_prefix,
        tag: run_tag(bench, mode),
        first_number: reserve_job_numbers(jobs),
        rss_was_reset,
        // Last, so setting up the target is not counted.
        cpu_at_start: cpu_snapshot(bench.server_proc),
    })
}

async fn run_unary(bench: &Bench, jobs: usize, in_flight: usize) -> anyhow::Result<ModeResult> {
    eprintln!("unary: submitting {jobs} jobs, {in_flight} SubmitJob calls in flight");
    let setup = set_up_run(bench, "unary", jobs).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.min(jobs))
        .map(|_| {
            let mut client = bench.client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            let first_number = setup.first_number;
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= jobs {
                        break;
                    }
                    let job = job_spec(&url_prefix, first_number + index, &tag);
                    let sent = Instant::now();
                    match client
                        .submit_job(proto::SubmitJobRequest { job: Some(job) })
                        .await
                    {
                        Ok(_) => {
                            let ack = Instant::now();
                            log.acks.push(Ack {
                                index,
                                sent,
                                acked: ack,
                            });
                            log.submit_ms.push(ms(ack - sent));
                        }
                        Err(error) => log.failed(&error),
                    }
                }
                log
            })
        })
        .collect();
    let log = join_logs(workers).await?;
    let submit_phase = started.elapsed();
    finish_run(
        bench,
        setup,
        "unary",
        format!("{in_flight} in flight"),
        "per job".into(),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await
}

async fn run_batch(
    bench: &Bench,
    jobs: usize,
    batch_size: usize,
    batch_in_flight: usize,
) -> anyhow::Result<ModeResult> {
    eprintln!(
        "batch: submitting {jobs} jobs, {batch_size} per SubmitJobs call, \
         {batch_in_flight} calls in flight"
    );
    let setup = set_up_run(bench, "batch", jobs).await?;
    let batches = jobs.div_ceil(batch_size);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..batch_in_flight.min(batches))
        .map(|_| {
            let mut client = bench.client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            let first_number = setup.first_number;
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                loop {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch >= batches {
                        break;
                    }
                    let indexes = batch * batch_size..((batch + 1) * batch_size).min(jobs);
                    let request = proto::SubmitJobsRequest {
                        jobs: indexes
                            .clone()
                            .map(|i| job_spec(&url_prefix, first_number + i, &tag))
                            .collect(),
                    };
                    let sent = Instant::now();
                    match client.submit_jobs(request).await {
                        Ok(response) => {
                            let ack = Instant::now();
                            let answered = response.into_inner().results.len();
                            if answered != indexes.len() {
                                log.failed(&tonic::Status::internal(format!(
                                    "SubmitJobs answered {answered} results for {} jobs",
                                    indexes.len()
                                )));
                            }
                            log.acks.extend(indexes.map(|index| Ack {
                                index,
                                sent,
                                acked: ack,
                            }));
                            log.submit_ms.push(ms(ack - sent));
                        }
                        Err(error) => log.failed(&error),
                    }
                }
                log
            })
        })
        .collect();
    let log = join_logs(workers).await?;
    let submit_phase = started.elapsed();
    finish_run(
        bench,
        setup,
        "batch",
        format!("{batch_size}/call, {batch_in_flight} in flight"),
        format!("per call of {batch_size} jobs"),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await
}

async fn join_logs(workers: Vec<tokio::task::JoinHandle<SubmitLog>>) -> anyhow::Result<SubmitLog> {
    let mut merged = SubmitLog::default();
    for log in futures::future::join_all(workers).await {
        merged.merge(log.context("a submitting task panicked")?);
    }
    Ok(merged)
}

/// Waits until every accepted job has succeeded, then works out the latencies.
#[allow(clippy::too_many_arguments)]
async fn finish_run(
    bench: &Bench,
    setup: RunSetup,
    mode: &'static str,
    shape: String,
    submit_unit: String,
    jobs: usize,
    log: SubmitLog,
    started: Instant,
    submit_phase: Duration,
) -> anyhow::Result<ModeResult> {
    let submitted = log.acks.len();
    if let Some(error) = &log.first_error {
        eprintln!(
            "{mode}: {} submit call(s) failed; first: {error}",
            log.errors
        );
    }
    ensure!(submitted > 0, "{mode}: the server accepted no jobs");
    eprintln!(
        "{mode}: {submitted} accepted in {:.2}s; waiting for them to finish",
        submit_phase.as_secs_f64()
    );
    let finished = wait_until_succeeded(bench, &setup, mode, submitted, started).await?;
    // Before working out latencies, which is the bench's own bookkeeping, not load.
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);

    let dispatch = dispatch_latencies(&setup, jobs, &log.acks);
    Ok(ModeResult {
        mode,
        shape,
        submitted,
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit,
        submit_ms: log.submit_ms,
        dispatch_ms: dispatch.from_ack_ms,
        send_to_target_ms: dispatch.from_send_ms,
        repeats: dispatch.repeats,
        submit_phase,
        end_to_end: Some(finished - started),
        peak_rss,
        cpu,
        extra_json: Vec::new(),
    })
}

/// The moment every one of `submitted` jobs is SUCCEEDED: first the target must have
/// seen them all, then `ListJobs` must count them all (completions are written after
/// the call returns).
async fn wait_until_succeeded(
    bench: &Bench,
    setup: &RunSetup,
    mode: &str,
    submitted: usize,
    started: Instant,
) -> anyhow::Result<Instant> {
    let deadline = started + bench.timeout;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if !setup.target.wait_for(submitted, remaining).await {
        bail!(
            "{mode}: stalled: after {}s the target has seen {} of {submitted} requests; {}",
            bench.timeout.as_secs(),
            setup.target.count(),
            status_counts(bench, &setup.tag).await
        );
    }
    let mut client = bench.client.clone();
    loop {
        let succeeded = count_jobs(&mut client, &setup.tag, JobStatus::Succeeded).await?;
        let now = Instant::now();
        if succeeded >= submitted {
            return Ok(now);
        }
        if now > deadline {
            bail!(
                "{mode}: stalled: the target saw every request, but after {}s only \
                 {succeeded} of {submitted} jobs are SUCCEEDED; {}",
                bench.timeout.as_secs(),
                status_counts(bench, &setup.tag).await
            );
        }
        tokio::time::sleep(COMPLETION_POLL).await;
    }
}

/// How many of the run's jobs are in `status`, read from `ListJobs`' `total_size`.
async fn count_jobs(client: &mut Client, tag: &str, status: JobStatus) -> anyhow::Result<usize> {
    let page = client
        .list_jobs(proto::ListJobsRequest {
            page_size: 1,
            statuses: vec![status as i32],
            tags: vec![tag.to_string()],
            ..Default::default()
        })
        .await
        .context("ListJobs")?
        .into_inner();
    Ok(usize::try_from(page.total_size).unwrap_or(0))
}

/// The run's jobs per status, in words, for a stall report.
async fn status_counts(bench: &Bench, tag: &str) -> String {
    let mut client = bench.client.clone();
    let mut words = Vec::new();
    for status in [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ] {
        let count = match count_jobs(&mut client, tag, status).await {
            Ok(n) => n.to_string(),
            Err(error) => format!("? ({error:#})"),
        };
        words.push(format!("{} {count}", status.as_str_name()));
    }
    format!("jobs by status: {}", words.join(", "))
}

struct Dispatch {
    /// Per job: its request's first arrival at the target minus its acknowledgment.
    from_ack_ms: Vec<f64>,
    /// Per job: the same arrival minus the moment its submit call was sent.
    from_send_ms: Vec<f64>,
    /// Requests that arrived more than once (a job run again).
    repeats: usize,
}

fn dispatch_latencies(setup: &RunSetup, jobs: usize, acks: &[Ack]) -> Dispatch {
    let mut first_arrival: Vec<Option<Instant>> = vec![None; jobs];
    let mut repeats = 0;
    for request in setup.target.received() {
        let Some(index) = request
            .path()
            .strip_prefix("/b/")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(setup.first_number))
            .filter(|index| *index < jobs)
        else {
            continue;
        };
        match &mut first_arrival[index] {
            Some(at) => {
                repeats += 1;
                *at = (*at).min(request.at);
            }
            slot @ None => *slot = Some(request.at),
        }
    }
    let mut dispatch = Dispatch {
        from_ack_ms: Vec::with_capacity(acks.len()),
        from_send_ms: Vec::with_capacity(acks.len()),
        repeats,
    };
    for ack in acks {
        if let Some(arrival) = first_arrival[ack.index] {
            dispatch.from_ack_ms.push(signed_ms(&ack.acked, &arrival));
            dispatch.from_send_ms.push(signed_ms(&ack.sent, &arrival));
        }
    }
    dispatch
}

/// The idle-queue figure: one job at a time, each submitted only once the previous
/// one has reached the target and been recorded as SUCCEEDED, so every submit meets
/// a queue with nothing else to do.
async fn run_idle(bench: &Bench, jobs: usize) -> anyhow::Result<ModeResult> {
    eprintln!("idle: submitting {jobs} jobs one at a time");
    let setup = set_up_run(bench, "idle", jobs).await?;
    let mut client = bench.client.clone();
    let mut log = SubmitLog::default();
    let started = Instant::now();
    for index in 0..jobs {
        let job = job_spec(&setup.url_prefix, setup.first_number + index, &setup.tag);
        let sent = Instant::now();
        let id = match client
            .submit_job(proto::SubmitJobRequest { job: Some(job) })
            .await
        {
            Ok(response) => {
                let ack = Instant::now();
                log.acks.push(Ack {
                    index,
                    sent,
                    acked: ack,
                });
                log.submit_ms.push(ms(ack - sent));
                response.into_inner().id
            }
            Err(error) => {
                log.failed(&error);
                continue;
            }
        };
        if !setup.target.wait_for(log.acks.len(), bench.timeout).await {
            bail!(
                "idle: stalled: job {id} did not reach the target within {}s",
                bench.timeout.as_secs()
            );
        }
        wait_job_succeeded(&mut client, &id, bench.timeout).await?;
    }
    let submit_phase = started.elapsed();
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    if let Some(error) = &log.first_error {
        eprintln!("idle: {} submit call(s) failed; first: {error}", log.errors);
    }
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);
    let dispatch = dispatch_latencies(&setup, jobs, &log.acks);
    Ok(ModeResult {
        mode: "idle",
        shape: "1 at a time".into(),
        submitted: log.acks.len(),
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit: "per job".into(),
        submit_ms: log.submit_ms,
        dispatch_ms: dispatch.from_ack_ms,
        send_to_target_ms: dispatch.from_send_ms,
        repeats: dispatch.repeats,
        submit_phase,
        end_to_end: None,
        peak_rss,
        cpu,
        extra_json: Vec::new(),
    })
}

async fn wait_job_succeeded(client: &mut Client, id: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let job = client
            .get_job(proto::GetJobRequest { id: id.into() })
            .await
            .with_context(|| format!("GetJob {id}"))?
            .into_inner();
        match JobStatus::try_from(job.status) {
            Ok(JobStatus::Succeeded) => return Ok(()),
            Ok(JobStatus::Failed | JobStatus::Canceled) => bail!(
                "job {id} ended {} (last status code {})",
                job.status().as_str_name(),
                job.last_status_code
            ),
            _ if Instant::now() > deadline => {
                bail!("job {id} was not SUCCEEDED within {}s", within.as_secs())
            }
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

// ---------------------------------------------------------------------------------
// The watch mode
// ---------------------------------------------------------------------------------

/// The per-watcher tags of a paced run: job `i` carries `{prefix}{i % count}`, none
/// when `count` is 0.
struct Tagging {
    prefix: String,
    count: usize,
}

impl Tagging {
    fn tag_of(&self, index: usize) -> Option<String> {
        (self.count > 0).then(|| format!("{}{}", self.prefix, index % self.count))
    }

    /// How many of `jobs` jobs carry tag number `tag`.
    fn planned(&self, jobs: usize, tag: usize) -> usize {
        jobs / self.count + usize::from(tag < jobs % self.count)
    }
}

/// A paced run as it went, beside its `ModeResult`.
struct Paced {
    /// The first submit sent.
    started: Instant,
    /// Accepted jobs per per-watcher tag (empty without tags).
    accepted_per_tag: Vec<usize>,
    /// The snapshots the run's CPU time is counted from.
    cpu_at_start: CpuSnapshot,
    rss_was_reset: bool,
}

/// Offers `jobs` jobs at `rate` per second: every `PACE_TICK` one `SubmitJobs` call
/// (several when catching up) of the jobs the rate has made due since the first one,
/// each call on a task of its own so a slow answer never holds the pace up. Then
/// waits until every job is SUCCEEDED, as the other modes do.
async fn run_paced(
    bench: &Bench,
    mode: &'static str,
    jobs: usize,
    rate: u64,
    tagging: &Tagging,
) -> anyhow::Result<(ModeResult, Paced)> {
    let per_tick = ((rate as f64 * PACE_TICK.as_secs_f64()).ceil() as usize).clamp(1, MAX_BATCH);
    eprintln!(
        "{mode}: offering {jobs} jobs at {rate}/s, {per_tick} per SubmitJobs call every {}ms",
        PACE_TICK.as_millis()
    );
    let setup = set_up_run(bench, mode, jobs).await?;
    let cpu_at_start = setup.cpu_at_start;
    let rss_was_reset = setup.rss_was_reset;
    let slots = Arc::new(Semaphore::new(PACED_CALLS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(PACE_TICK);
    // The jobs due are worked out from the time elapsed, so a late tick only makes
    // the next call larger: the offered rate stays what was asked.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut calls = Vec::new();
    let mut slot_waits = 0usize;
    let mut next = 0usize;
    let mut origin: Option<Instant> = None;
    while next < jobs {
        ticker.tick().await;
        let now = Instant::now();
        let origin = *origin.get_or_insert(now);
        let elapsed = now.duration_since(origin).as_secs_f64();
        let due = ((elapsed * rate as f64) as usize)
            .saturating_add(per_tick)
            .min(jobs);
        while next < due {
            let indexes = next..due.min(next + MAX_BATCH);
            next = indexes.end;
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    slot_waits += 1;
                    slots
                        .clone()
                        .acquire_owned()
                        .await
                        .context("the pacer's semaphore closed")?
                }
            };
            let request = proto::SubmitJobsRequest {
                jobs: indexes
                    .clone()
                    .map(|i| {
                        let mut job =
                            job_spec(&setup.url_prefix, setup.first_number + i, &setup.tag);
                        job.tags.extend(tagging.tag_of(i));
                        job
                    })
                    .collect(),
            };
            let mut client = bench.client.clone();
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                let answer = client.submit_jobs(request).await;
                let acked = Instant::now();
                drop(permit);
                let mut log = SubmitLog::default();
                match answer {
                    Ok(response) => {
                        let answered = response.into_inner().results.len();
                        if answered != indexes.len() {
                            log.failed(&tonic::Status::internal(format!(
                                "SubmitJobs answered {answered} results for {} jobs",
                                indexes.len()
                            )));
                        }
                        log.acks
                            .extend(indexes.map(|index| Ack { index, sent, acked }));
                        log.submit_ms.push(ms(acked - sent));
                    }
                    Err(error) => log.failed(&error),
                }
                log
            }));
        }
    }
    let started = origin.context("no job was offered")?;
    let send_phase = started.elapsed();
    let call_count = calls.len();
    let log = join_logs(calls).await?;
    let submit_phase = started.elapsed();
    let mut accepted_per_tag = vec![0usize; tagging.count];
    if tagging.count > 0 {
        for ack in &log.acks {
            accepted_per_tag[ack.index % tagging.count] += 1;
        }
    }
    // The pace the bench managed: the last call went out one tick's worth of jobs
    // ahead of the schedule.
    let sent_per_sec = jobs as f64 / (send_phase + PACE_TICK).as_secs_f64();
    let mut result = finish_run(
        bench,
        setup,
        mode,
        format!("{rate}/s, {per_tick}/call/{}ms", PACE_TICK.as_millis()),
        format!("per call of {per_tick} jobs (more when catching up)"),
        jobs,
        log,
        started,
        submit_phase,
    )
    .await?;
    result.extra_json = vec![
        ("offered_per_sec", rate.to_string()),
        ("sent_per_sec", format!("{sent_per_sec:.0}")),
        ("submit_calls", call_count.to_string()),
        ("submit_calls_waited_for_slot", slot_waits.to_string()),
    ];
    if slot_waits > 0 {
        eprintln!(
            "{mode}: {slot_waits} of {call_count} calls waited for one of the \
             {PACED_CALLS_IN_FLIGHT} slots: the server could not keep up with the offered rate"
        );
    }
    Ok((
        result,
        Paced {
            started,
            accepted_per_tag,
            cpu_at_start,
            rss_was_reset,
        },
    ))
}

/// What one watcher received.
#[derive(Default)]
struct WatchTally {
    /// Per job (its ULID as a number): the statuses received, one bit each.
    seen: HashMap<u128, u8>,
    /// Per CHANGE event of the run's jobs: received minus the change's time, in ms.
    latencies_ms: Vec<f32>,
    /// Distinct (job, status) changes received of the three expected statuses.
    received: usize,
    /// Distinct jobs whose SUCCEEDED change arrived.
    succeeded: usize,
    /// A (job, status) change received again.
    duplicates: usize,
    /// A CHANGE whose cursor is not above the previous item's (a HEARTBEAT's cursor
    /// may equal it).
    out_of_order: usize,
    /// A status received after a later status of the same job.
    status_order: usize,
    /// Items that should never come: snapshots, other statuses, unreadable ids,
    /// cursors or times.
    unexpected: usize,
    /// Changes of jobs outside the run (on `all` watchers, from anyone else).
    foreign: usize,
    heartbeats: usize,
    last_cursor: Option<i64>,
    /// Why the stream ended before the watcher had all its jobs' SUCCEEDED changes.
    ended: Option<String>,
    /// When the last of its jobs' SUCCEEDED changes arrived.
    done_at: Option<Instant>,
    /// The highest delivery latency per second since the watchers opened, in ms.
    worst_per_second: Vec<f32>,
}

impl WatchTally {
    fn record(
        &mut self,
        event: proto::JobEvent,
        received: SystemTime,
        opened: SystemTime,
        run_tag: &str,
    ) {
        let cursor = event.cursor.parse::<i64>().ok();
        match proto::JobEventKind::try_from(event.kind) {
            Ok(proto::JobEventKind::Change) => {}
            Ok(proto::JobEventKind::Heartbeat) => {
                self.heartbeats += 1;
                match cursor {
                    Some(cursor) => self.follow_cursor(cursor, false),
                    None => self.unexpected += 1,
                }
                return;
            }
            _ => {
                self.unexpected += 1;
                return;
            }
        }
        match cursor {
            Some(cursor) => self.follow_cursor(cursor, true),
            None => self.unexpected += 1,
        }
        if !event.tags.iter().any(|tag| tag == run_tag) {
            self.foreign += 1;
            return;
        }
        match event.time.as_ref().and_then(|t| delivery_ms(t, received)) {
            Some(latency) => {
                let latency = latency as f32;
                self.latencies_ms.push(latency);
                let second = received
                    .duration_since(opened)
                    .map_or(0, |d| d.as_secs() as usize);
                if self.worst_per_second.len() <= second {
                    self.worst_per_second.resize(second + 1, f32::NEG_INFINITY);
                }
                let worst = &mut self.worst_per_second[second];
                *worst = worst.max(latency);
            }
            None => self.unexpected += 1,
        }
        let bit: u8 = match JobStatus::try_from(event.status) {
            Ok(JobStatus::Queued) => 1,
            Ok(JobStatus::Running) => 2,
            Ok(JobStatus::Succeeded) => 4,
            _ => {
                self.unexpected += 1;
                return;
            }
        };
        let Some(job) = job_key(&event.job_id) else {
            self.unexpected += 1;
            return;
        };
        let seen = self.seen.entry(job).or_insert(0);
        if *seen & bit != 0 {
            self.duplicates += 1;
            return;
        }
        // Any bit above this status's: a later status came first.
        if *seen & !(bit | (bit - 1)) != 0 {
            self.status_order += 1;
        }
        *seen |= bit;
        self.received += 1;
        if bit == 4 {
            self.succeeded += 1;
        }
    }

    /// A change must come after every item before it; a heartbeat may repeat the
    /// newest cursor.
    fn follow_cursor(&mut self, cursor: i64, change: bool) {
        if let Some(last) = self.last_cursor {
            if cursor < last || (change && cursor == last) {
                self.out_of_order += 1;
            }
            self.last_cursor = Some(last.max(cursor));
        } else {
            self.last_cursor = Some(cursor);
        }
    }
}

/// `received` minus `made`, in milliseconds (negative if the clocks disagree).
fn delivery_ms(made: &prost_types::Timestamp, received: SystemTime) -> Option<f64> {
    let received = received.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    let made = i128::from(made.seconds) * 1_000_000_000 + i128::from(made.nanos);
    Some((received - made) as f64 / 1e6)
}

/// A job id's ULID (`j_` and 26 Crockford base32 digits) as a number: a compact key.
fn job_key(id: &str) -> Option<u128> {
    let ulid = id.strip_prefix("j_")?;
    if ulid.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, c) in ulid.bytes().enumerate() {
        let c = c.to_ascii_uppercase();
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'H' => c - b'A' + 10,
            b'J' | b'K' => c - b'J' + 18,
            b'M' | b'N' => c - b'M' + 20,
            b'P'..=b'T' => c - b'P' + 22,
            b'V'..=b'Z' => c - b'V' + 27,
            _ => return None,
        };
        // 26 digits are 130 bits; a ULID's first digit uses only 3 of its 5.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | u128::from(digit);
    }
    Some(value)
}

/// Reads one watch stream until `planned` jobs have had their SUCCEEDED change, the
/// stream ends, or the bench says stop.
async fn follow_stream(
    mut stream: tonic::Streaming<proto::JobEvent>,
    planned: usize,
    run_tag: Arc<str>,
    opened: SystemTime,
    mut stop: watch::Receiver<bool>,
) -> WatchTally {
    let mut tally = WatchTally::default();
    while tally.succeeded < planned {
        let item = tokio::select! {
            item = stream.message() => item,
            _ = stop.wait_for(|stop| *stop) => {
                tally.ended = Some("still open when the bench stopped waiting".into());
                break;
            }
        };
        let received = SystemTime::now();
        match item {
            Ok(Some(event)) => tally.record(event, received, opened, &run_tag),
            Ok(None) => {
                tally.ended = Some("the server ended the stream".into());
                break;
            }
            Err(status) => {
                tally.ended = Some(format!("the stream failed: {status}"));
                break;
            }
        }
    }
    if tally.succeeded >= planned {
        tally.done_at = Some(Instant::now());
    }
    tally
}

/// One class of watchers (per-tag or `all`), summed.
#[derive(Default)]
struct WatchClass {
    watchers: usize,
    /// Watchers that received every one of their jobs' SUCCEEDED changes.
    completed: usize,
    /// Changes that should have arrived: 3 per accepted job per watcher.
    expected: usize,
    received: usize,
    lost: usize,
    duplicates: usize,
    out_of_order: usize,
    status_order: usize,
    unexpected: usize,
    foreign: usize,
    heartbeats: usize,
    /// Watchers whose stream ended early, and the first reason.
    ended_early: usize,
    first_end: Option<String>,
    /// Sorted.
    latencies_ms: Vec<f32>,
    last_done: Option<Instant>,
    /// The highest delivery latency per second since the watchers opened, in ms.
    worst_per_second: Vec<f32>,
}

impl WatchClass {
    fn add(&mut self, tally: WatchTally, accepted_jobs: usize) {
        let expected = 3 * accepted_jobs;
        self.watchers += 1;
        self.completed += usize::from(tally.done_at.is_some());
        self.expected += expected;
        self.received += tally.received;
        self.lost += expected.saturating_sub(tally.received);
        self.duplicates += tally.duplicates;
        self.out_of_order += tally.out_of_order;
        self.status_order += tally.status_order;
        self.unexpected += tally.unexpected;
        self.foreign += tally.foreign;
        self.heartbeats += tally.heartbeats;
        if let Some(reason) = tally.ended {
            self.ended_early += 1;
            self.first_end.get_or_insert(reason);
        }
        self.latencies_ms.extend(tally.latencies_ms);
        self.last_done = self.last_done.max(tally.done_at);
        if self.worst_per_second.len() < tally.worst_per_second.len() {
            self.worst_per_second
                .resize(tally.worst_per_second.len(), f32::NEG_INFINITY);
        }
        for (worst, seen) in self.worst_per_second.iter_mut().zip(tally.worst_per_second) {
            *worst = worst.max(seen);
        }
    }

    fn finish(&mut self) {
        self.latencies_ms.sort_by(f32::total_cmp);
    }

    fn latency(&self, p: f64) -> Option<f64> {
        sorted_percentile(&self.latencies_ms, p)
    }

    fn max_latency(&self) -> Option<f64> {
        self.latencies_ms.last().map(|v| f64::from(*v))
    }

    fn json_fields(&self, prefix: &'static str) -> Vec<(&'static str, String)> {
        let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.2}"));
        let name = |field: &'static str| -> &'static str {
            match (prefix, field) {
                ("tag", "watchers") => "tag_watchers",
                ("tag", "completed") => "tag_watchers_completed",
                ("tag", "expected") => "tag_events_expected",
                ("tag", "received") => "tag_events_received",
                ("tag", "lost") => "tag_events_lost",
                ("tag", "duplicates") => "tag_duplicates",
                ("tag", "out_of_order") => "tag_out_of_order",
                ("tag", "status_order") => "tag_status_order_violations",
                ("tag", "unexpected") => "tag_unexpected_items",
                ("tag", "ended_early") => "tag_streams_ended_early",
                ("tag", "p50") => "tag_delivery_p50_ms",
                ("tag", "p99") => "tag_delivery_p99_ms",
                ("tag", "max") => "tag_delivery_max_ms",
                (_, "watchers") => "all_watchers",
                (_, "completed") => "all_watchers_completed",
                (_, "expected") => "all_events_expected",
                (_, "received") => "all_events_received",
                (_, "lost") => "all_events_lost",
                (_, "duplicates") => "all_duplicates",
                (_, "out_of_order") => "all_out_of_order",
                (_, "status_order") => "all_status_order_violations",
                (_, "unexpected") => "all_unexpected_items",
                (_, "ended_early") => "all_streams_ended_early",
                (_, "p50") => "all_delivery_p50_ms",
                (_, "p99") => "all_delivery_p99_ms",
                _ => "all_delivery_max_ms",
            }
        };
        vec![
            (name("watchers"), self.watchers.to_string()),
            (name("completed"), self.completed.to_string()),
            (name("expected"), self.expected.to_string()),
            (name("received"), self.received.to_string()),
            (name("lost"), self.lost.to_string()),
            (name("duplicates"), self.duplicates.to_string()),
            (name("out_of_order"), self.out_of_order.to_string()),
            (name("status_order"), self.status_order.to_string()),
            (name("unexpected"), self.unexpected.to_string()),
            (name("ended_early"), self.ended_early.to_string()),
            (name("p50"), num(self.latency(50.0))),
            (name("p99"), num(self.latency(99.0))),
            (name("max"), num(self.max_latency())),
        ]
    }
}

/// Nearest-rank percentile of sorted samples.
fn sorted_percentile(sorted: &[f32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}

/// Opens `tag_watchers` watches on `{prefix}{i}` and `all_watchers` with `all: true`,
/// spread over connections of their own, and returns once every stream's headers
/// have arrived: the server has subscribed them all.
async fn open_watches(
    bench: &Bench,
    prefix: &str,
    tag_watchers: usize,
    all_watchers: usize,
) -> anyhow::Result<(Vec<tonic::Streaming<proto::JobEvent>>, usize)> {
    let total = tag_watchers + all_watchers;
    let connections = total.div_ceil(WATCHERS_PER_CHANNEL);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(format!("http://{}", bench.addr))
            .context("the server's address as a URI")?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting for the watchers")?;
        channels.push(channel);
    }
    // Round-robin, so the busy `all` watchers land on different connections.
    let opens = (0..total).map(|k| {
        let mut client = JobServiceClient::new(channels[k % connections].clone());
        let request = if k < tag_watchers {
            proto::WatchJobsRequest {
                tags: vec![format!("{prefix}{k}")],
                ..Default::default()
            }
        } else {
            proto::WatchJobsRequest {
                all: true,
                ..Default::default()
            }
        };
        async move {
            client
                .watch_jobs(request)
                .await
                .map(tonic::Response::into_inner)
                .with_context(|| format!("opening watch {k}"))
        }
    });
    let streams = futures::future::try_join_all(opens).await?;
    Ok((streams, connections))
}

/// `--mode watch`: the paced load without watchers, then with them.
async fn run_watch(bench: &Bench, args: &Args) -> anyhow::Result<(Vec<ModeResult>, String)> {
    let jobs = args.jobs;
    let (tag_watchers, all_watchers) = (args.watchers, args.watch_all);

    // The same jobs, tags included, with nobody watching.
    let base_tagging = Tagging {
        prefix: format!("w-{}-base-", bench.run_id),
        count: tag_watchers,
    };
    let (mut base, _) = run_paced(bench, "nowatch", jobs, args.rate, &base_tagging).await?;
    base.extra_json
        .extend([("watchers", "0".into()), ("watch_all", "0".into())]);

    let tagging = Tagging {
        prefix: format!("w-{}-", bench.run_id),
        count: tag_watchers,
    };
    eprintln!("watch: opening {tag_watchers} tag watchers and {all_watchers} all-job watchers");
    let opening = Instant::now();
    let (streams, connections) =
        open_watches(bench, &tagging.prefix, tag_watchers, all_watchers).await?;
    let open_time = opening.elapsed();
    eprintln!(
        "watch: {} streams open on {connections} connections in {:.2}s",
        streams.len(),
        open_time.as_secs_f64()
    );
    let run_tag: Arc<str> = run_tag(bench, "watch").into();
    let opened = SystemTime::now();
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, stream)| {
            let planned = if k < tag_watchers {
                tagging.planned(jobs, k)
            } else {
                jobs
            };
            tokio::spawn(follow_stream(
                stream,
                planned,
                run_tag.clone(),
                opened,
                stopped.clone(),
            ))
        })
        .collect();

    if args.watch_settle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.watch_settle_ms)).await;
    }
    let (mut watched, paced) = run_paced(bench, "watch", jobs, args.rate, &tagging).await?;
    let all_succeeded = paced.started + watched.end_to_end.unwrap_or_default();
    let grace = Duration::from_secs(args.watch_grace_secs);
    eprintln!(
        "watch: every job SUCCEEDED; waiting up to {}s for the watchers",
        grace.as_secs()
    );
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    let tallies = tokio::select! {
        tallies = &mut all_done => tallies,
        _ = tokio::time::sleep(grace) => {
            let _ = stop.send(true);
            all_done.await
        }
    };
    // The watch run's server figures run until the last watcher was done (or given up
    // on), so they include delivering every change.
    watched.cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        paced.cpu_at_start,
    );
    watched.peak_rss = measure_peak_rss(bench.server_proc, paced.rss_was_reset);

    let accepted = watched.submitted;
    let mut tag_class = WatchClass::default();
    let mut all_class = WatchClass::default();
    for (k, tally) in tallies.into_iter().enumerate() {
        let tally = tally.context("a watcher task panicked")?;
        if k < tag_watchers {
            tag_class.add(tally, paced.accepted_per_tag[k]);
        } else {
            all_class.add(tally, accepted);
        }
    }
    tag_class.finish();
    all_class.finish();
    let last_done = tag_class.last_done.max(all_class.last_done);
    let every_watcher_done =
        tag_class.completed + all_class.completed == tag_watchers + all_watchers;
    let watchers_done_s = last_done
        .filter(|_| every_watcher_done)
        .map(|at| at.duration_since(paced.started).as_secs_f64());

    let base_rate = base.jobs_per_sec();
    let watch_rate = watched.jobs_per_sec();
    let ratio = match (base_rate, watch_rate) {
        (Some(base), Some(watch)) if base > 0.0 => Some(watch / base),
        _ => None,
    };
    let offered = args.rate as f64;
    // End to end includes draining the last jobs, so a run that kept up lands a
    // little under the offered rate.
    let rate_limited = base_rate.is_some_and(|r| r >= 0.95 * offered)
        && watch_rate.is_some_and(|r| r >= 0.95 * offered);
    let within_10 = ratio.map(|r| r >= 0.9);

    let mut extra = vec![
        ("watchers", tag_watchers.to_string()),
        ("watch_all", all_watchers.to_string()),
        ("watch_connections", connections.to_string()),
        ("watch_open_s", format!("{:.3}", open_time.as_secs_f64())),
        ("watch_settle_ms", args.watch_settle_ms.to_string()),
    ];
    extra.extend(tag_class.json_fields("tag"));
    extra.extend(all_class.json_fields("all"));
    extra.extend([
        (
            "watchers_done_s",
            watchers_done_s.map_or("null".into(), |s| format!("{s:.3}")),
        ),
        (
            "jobs_per_sec_ratio_to_nowatch",
            ratio.map_or("null".into(), |r| format!("{r:.3}")),
        ),
        ("offered_rate_is_limit", rate_limited.to_string()),
        (
            "within_10_percent_of_nowatch",
            within_10.map_or("null".into(), |w| w.to_string()),
        ),
    ]);
    watched.extra_json.extend(extra);

    let mut out = String::new();
    let per_tag = if tag_watchers > 0 {
        format!("{} jobs each", jobs.div_ceil(tag_watchers))
    } else {
        "none".into()
    };
    let _ = writeln!(
        out,
        "watch: {tag_watchers} tag watchers (a tag each, {per_tag}) and {all_watchers} \
         all-job watchers on {connections} connections, opened in {:.2}s, all open \
         (stream headers received) {}ms before the first submit.",
        open_time.as_secs_f64(),
        args.watch_settle_ms
    );
    let _ = writeln!(
        out,
        "{:<8} {:>8} {:>9} {:>10} {:>10} {:>7} {:>6} {:>12} {:>32}",
        "watchers",
        "count",
        "complete",
        "expected",
        "received",
        "lost",
        "dups",
        "out-of-order",
        "delivery p50 / p99 / max ms"
    );
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9} {:>10} {:>10} {:>7} {:>6} {:>12} {:>32}",
            name,
            class.watchers,
            class.completed,
            class.expected,
            class.received,
            class.lost,
            class.duplicates,
            class.out_of_order,
            format!(
                "{} / {} / {}",
                fmt_ms(class.latency(50.0)),
                fmt_ms(class.latency(99.0)),
                fmt_ms(class.max_latency())
            ),
        );
    }
    let _ = writeln!(
        out,
        "expected: QUEUED, RUNNING and SUCCEEDED of each accepted job, per watcher that \
         should see it; lost = expected - received (per watcher, summed); dups = the same \
         job and status again; out-of-order = a change whose cursor is not above the \
         stream's previous one."
    );
    let _ = writeln!(
        out,
        "delivery = the watcher receiving a CHANGE (this process's clock) - the change's \
         `time` (the server's clock, same machine; whole milliseconds, stamped in the \
         writer's turn before the commit)."
    );
    match watchers_done_s {
        Some(done) => {
            let _ = writeln!(
                out,
                "every watcher had all its changes {done:.3}s after the first submit; \
                 ListJobs counted every job SUCCEEDED at {:.3}s.",
                all_succeeded.duration_since(paced.started).as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "warning: {} of {} watchers did not receive all their jobs' SUCCEEDED \
                 changes within {}s of every job being SUCCEEDED.",
                tag_watchers + all_watchers - tag_class.completed - all_class.completed,
                tag_watchers + all_watchers,
                grace.as_secs()
            );
        }
    }
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        if class.status_order + class.unexpected + class.foreign > 0 {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} status(es) after a later status of the same \
                 job, {} unexpected item(s) (snapshots, other statuses, unreadable fields), \
                 {} change(s) of jobs outside the run.",
                class.status_order, class.unexpected, class.foreign
            );
        }
        if let Some(reason) = &class.first_end {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} stream(s) ended early; first: {reason}",
                class.ended_early
            );
        }
        if class.lost + class.duplicates + class.out_of_order > 0 {
            let _ = writeln!(
                out,
                "warning: {name} watchers: {} lost, {} duplicate, {} out-of-order change(s).",
                class.lost, class.duplicates, class.out_of_order
            );
        }
    }
    for (name, class) in [("tag", &tag_class), ("all", &all_class)] {
        if class.worst_per_second.is_empty() {
            continue;
        }
        let worst: Vec<String> = class
            .worst_per_second
            .iter()
            .map(|ms| {
                if ms.is_finite() {
                    format!("{ms:.0}")
                } else {
                    "-".into()
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{name} watchers: worst delivery (ms) in each second since the watchers opened: {}",
            worst.join(" ")
        );
    }
    let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.0}"));
    let _ = writeln!(
        out,
        "throughput: without watchers {} jobs/s, with watchers {} jobs/s; ratio {} \
         (offered {} jobs/s; the bench sent {} and {} jobs/s).",
        rate(base_rate),
        rate(watch_rate),
        ratio.map_or("-".into(), |r| format!("{r:.3}")),
        args.rate,
        base.extra_json
            .iter()
            .find(|(name, _)| *name == "sent_per_sec")
            .map_or("-", |(_, v)| v.as_str()),
        watched
            .extra_json
            .iter()
            .find(|(name, _)| *name == "sent_per_sec")
            .map_or("-", |(_, v)| v.as_str()),
    );
    let verdict = match within_10 {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    if rate_limited {
        let _ = writeln!(
            out,
            "both runs reached the offered rate: it is the limit, not the server. With \
             watchers the achieved rate is within 10% of without: {verdict}."
        );
    } else {
        let _ = writeln!(
            out,
            "at least one run fell short of the offered rate (the server was the limit \
             there). With watchers within 10% of without: {verdict}."
        );
    }
    let _ = writeln!(
        out,
        "watch: server CPU and peak RSS run until the last watcher was done; the bench's \
         own CPU includes decoding every watcher's stream."
    );
    Ok((vec![base, watched], out))
}

// ---------------------------------------------------------------------------------
// Numbers and the report
// ---------------------------------------------------------------------------------

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: &Instant, to: &Instant) -> f64 {
    match to.checked_duration_since(*from) {
        Some(after) => ms(after),
        None => -ms(from.duration_since(*to)),
    }
}

/// Nearest-rank percentile of unsorted samples; `None` when there are none.
fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl ModeResult {
    fn jobs_per_sec(&self) -> Option<f64> {
        self.end_to_end
            .map(|d| self.submitted as f64 / d.as_secs_f64())
    }

    /// None for idle, whose submit phase is mostly waiting on purpose.
    fn accept_per_sec(&self) -> Option<f64> {
        self.end_to_end
            .map(|_| self.submitted as f64 / self.submit_phase.as_secs_f64())
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        self.peak_rss.kb.map(|kb| kb as f64 / 1024.0)
    }

    /// `seconds` spread over the accepted jobs, in microseconds.
    fn us_per_job(&self, seconds: Option<f64>) -> Option<f64> {
        match (seconds, self.submitted) {
            (Some(seconds), jobs) if jobs > 0 => Some(seconds * 1e6 / jobs as f64),
            _ => None,
        }
    }

    fn server_cpu_us_per_job(&self) -> Option<f64> {
        self.us_per_job(self.cpu.server_s)
    }

    fn bench_cpu_us_per_job(&self) -> Option<f64> {
        self.us_per_job(self.cpu.bench_s)
    }

    fn dispatched_before_ack(&self) -> usize {
        self.dispatch_ms.iter().filter(|ms| **ms < 0.0).count()
    }
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.2}"))
}

fn fmt_us(value: Option<f64>) -> String {
    value.map_or("unknown".into(), |v| format!("{v:.1}"))
}

fn print_report(report: &Report, server_fields: &[(&'static str, String)]) {
    let results = &report.results;
    println!();
    println!(
        "{:<7} {:>7} {:<22} {:>10} {:>12} {:>19} {:>21} {:>14} {:>17}",
        "mode",
        "jobs",
        "load",
        "jobs/s",
        "accepted/s",
        "submit p50/p99 ms",
        "dispatch p50/p99 ms",
        "peak RSS MiB",
        "server CPU us/job"
    );
    for r in results {
        let rss = r
            .peak_rss_mib()
            .map_or("unknown".into(), |mib| format!("{mib:.1}"));
        let cpu = fmt_us(r.server_cpu_us_per_job());
        println!(
            "{:<7} {:>7} {:<22} {:>10} {:>12} {:>19} {:>21} {:>14} {:>17}",
            r.mode,
            r.submitted,
            r.shape,
            r.jobs_per_sec().map_or("-".into(), |v| format!("{v:.0}")),
            r.accept_per_sec().map_or("-".into(), |v| format!("{v:.0}")),
            format!(
                "{} / {}",
                fmt_ms(percentile(&r.submit_ms, 50.0)),
                fmt_ms(percentile(&r.submit_ms, 99.0))
            ),
            format!(
                "{} / {}",
                fmt_ms(percentile(&r.dispatch_ms, 50.0)),
                fmt_ms(percentile(&r.dispatch_ms, 99.0))
            ),
            rss,
            cpu,
        );
    }
    println!();
    println!("jobs/s: first submit sent until every job is SUCCEEDED (none for idle).");
    println!("accepted/s: first submit sent until the last acknowledgment arrived.");
    println!(
        "server CPU us/job: user + system time of all the server's threads over the mode \
         (first submit until all SUCCEEDED), per job; includes answering the bench's \
         completion polls (ListJobs every {}ms; GetJob every 1ms for idle).",
        COMPLETION_POLL.as_millis()
    );
    for r in results {
        println!(
            "{}: submit latency is {}; dispatch = ack received -> target received \
             (submit sent -> target received: p50/p99 {} / {} ms); peak RSS of {} since {}.",
            r.mode,
            r.submit_unit,
            fmt_ms(percentile(&r.send_to_target_ms, 50.0)),
            fmt_ms(percentile(&r.send_to_target_ms, 99.0)),
            r.peak_rss.scope,
            r.peak_rss.since
        );
        let server_cpu = r
            .cpu
            .server_s
            .map_or("unknown".into(), |s| format!("{s:.2} s in all"));
        let bench_cpu = match r.cpu.subject {
            // The bench's time is already in the server's figure.
            ServerProc::OwnProcess => String::new(),
            _ => format!(
                "; bench (with its HTTP target) {} us/job",
                fmt_us(r.bench_cpu_us_per_job())
            ),
        };
        println!(
            "{}: CPU time of {}: {server_cpu}{bench_cpu}.",
            r.mode,
            r.cpu.subject.scope(),
        );
        let early = r.dispatched_before_ack();
        if early > 0 {
            println!(
                "{}: {early} job(s) reached the target before their ack reached the client \
                 (negative dispatch).",
                r.mode
            );
        }
        if r.repeats > 0 {
            println!(
                "{}: warning: {} request(s) reached the target more than once.",
                r.mode, r.repeats
            );
        }
        if let Some(error) = &r.first_error {
            println!(
                "{}: warning: {} submit call(s) failed; first: {error}",
                r.mode, r.submit_errors
            );
        }
    }
    for section in &report.sections {
        println!();
        print!("{section}");
    }
    println!();
    for r in results {
        println!("{}", json_line(r, server_fields));
    }
}

/// One JSON object per mode, on one line, for quoting.
fn json_line(r: &ModeResult, server_fields: &[(&'static str, String)]) -> String {
    let num = |v: Option<f64>, digits: usize| v.map_or("null".into(), |v| format!("{v:.digits$}"));
    let mut out = String::from("{");
    let mut fields: Vec<(&str, String)> = vec![
        ("mode", json_string(r.mode)),
        ("jobs", r.submitted.to_string()),
        ("load", json_string(&r.shape)),
        ("submit_errors", r.submit_errors.to_string()),
        ("jobs_per_sec", num(r.jobs_per_sec(), 0)),
        (
            "end_to_end_s",
            num(r.end_to_end.map(|d| d.as_secs_f64()), 3),
        ),
        ("accepted_per_sec", num(r.accept_per_sec(), 0)),
        ("submit_latency_unit", json_string(&r.submit_unit)),
        ("submit_p50_ms", num(percentile(&r.submit_ms, 50.0), 3)),
        ("submit_p99_ms", num(percentile(&r.submit_ms, 99.0), 3)),
        ("dispatch_p50_ms", num(percentile(&r.dispatch_ms, 50.0), 3)),
        ("dispatch_p99_ms", num(percentile(&r.dispatch_ms, 99.0), 3)),
        (
            "send_to_target_p50_ms",
            num(percentile(&r.send_to_target_ms, 50.0), 3),
        ),
        (
            "send_to_target_p99_ms",
            num(percentile(&r.send_to_target_ms, 99.0), 3),
        ),
        ("dispatch_before_ack", r.dispatched_before_ack().to_string()),
        ("repeated_requests", r.repeats.to_string()),
        ("peak_rss_mib", num(r.peak_rss_mib(), 1)),
        ("peak_rss_scope", json_string(r.peak_rss.scope)),
        ("peak_rss_since", json_string(r.peak_rss.since)),
        ("server_cpu_us_per_job", num(r.server_cpu_us_per_job(), 1)),
        ("server_cpu_s", num(r.cpu.server_s, 3)),
        ("server_cpu_scope", json_string(r.cpu.subject.scope())),
        ("bench_cpu_us_per_job", num(r.bench_cpu_us_per_job(), 1)),
        ("bench_cpu_s", num(r.cpu.bench_s, 3)),
    ];
    fields.extend(r.extra_json.iter().cloned());
    fields.extend(server_fields.iter().cloned());
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{value}");
    }
    out.push('}');
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
