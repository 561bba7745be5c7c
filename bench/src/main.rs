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
//! `--mode backlog` measures fresh work beside a large backlog: `--backlog` jobs wait
//! in a paused queue while the batch and unary runs go on in the default queue; then
//! the queue is resumed and its drain measured; last the server is left idle for
//! `--idle-after-drain` seconds, holding the drained jobs and their events, and its
//! CPU measured.
//!
//! `--mode schedules` measures schedules: how fast `CreateSchedule` goes, and how late
//! `--schedules` cron schedules, all due at the same minute, call the target.
//!
//! `--mode side-by-side` alternates jobqueue's batch and unary runs with the bare
//! prototype of its pipeline (`--limit`, the `jqlimit` binary built from
//! `../shared/limit`), `--rounds` times, and prints both and their ratio.
//!
//! `--mode target` runs only the loopback HTTP target, on `--listen`, until SIGTERM:
//! the same target for another system to call (`bench/pg_side_by_side.sh`).
//!
//! The server runs in this process by default, is spawned as a child process with
//! `--spawn-server PATH` (the mode to use for RSS and CPU figures: only the server
//! is measured), or is an already running one with `--server ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::ensure;
use clap::{Parser, ValueEnum};

mod modes;
mod otlp;
mod proc_stats;
mod report;
mod server;

use modes::backlog::run_backlog;
use modes::batch::run_batch;
use modes::common::{Bench, POST_BYTES, QUEUES};
use modes::idle::run_idle;
use modes::schedules::run_schedules;
use modes::side_by_side::run_side_by_side;
use modes::target::run_target;
use modes::unary::run_unary;
use modes::watch::run_watch;
use report::{Report, print_report};
use server::{Scraper, ScratchDir, Server, ServerKind, start_server};

/// Refused above this: the target keeps every request it sees in memory.
const MAX_JOBS: usize = 1_000_000;
/// Refused above this: a run creates this many schedules, then deletes them.
const MAX_SCHEDULES: usize = 100_000;
/// What `SubmitJobs` accepts in one call.
const MAX_BATCH: usize = 1000;

#[derive(Debug, Parser)]
#[command(
    name = "jobqueue-bench",
    about = "Load generator for jobqueue: throughput, submit and dispatch latency, peak RSS, \
             CPU time per job"
)]
struct Args {
    /// What to run; `both` runs unary, batch and idle in turn; `watch` measures
    /// `WatchJobs` streams under a paced load, `backlog` batch and unary beside a
    /// paused backlog and then its drain, `schedules` cron schedules all due at the
    /// same minute, `side-by-side` jobqueue alternating with the prototype, `target`
    /// only the HTTP target for another system (none of these five is part of
    /// `both`).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,

    /// Jobs per throughput run (unary and batch each submit this many; chains
    /// submits this many chains).
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,

    /// Unary `SubmitJob` calls in flight at once (and `SubmitChain` calls for
    /// `--mode chains`).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,

    /// `--mode chains`: every step keeps a contract, so its body is checked
    /// against the input schema before the call and the output schema after.
    #[arg(long)]
    chain_contracts: bool,

    /// Starts the spawned server with a keys file and presents its key on every
    /// call, to weigh the key check against a server that runs open.
    #[arg(long)]
    api_key: bool,

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

    /// `--mode backlog`: jobs left waiting in the paused queue `bench-backlog` while
    /// the batch and unary runs go on; then the queue is resumed and they drain.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: usize,
    /// `--mode backlog`: seconds the server is left idle after the drain, its CPU
    /// measured while it keeps every drained job's events (0 skips it).
    #[arg(long, default_value_t = 30)]
    idle_after_drain: u64,

    /// Scrape the server's metrics every this many milliseconds while the modes
    /// run, as a Prometheus server would (0: no metrics endpoint, no scraper); the
    /// cost of metrics is the difference between runs with and without.
    #[arg(long, default_value_t = 0)]
    scrape_every_ms: u64,

    /// With `--spawn-server`: export traces to an OTLP receiver in this process,
    /// sampling this share of traces (0 to 1); unset exports nothing. The cost of
    /// tracing is the difference between runs with and without.
    #[arg(long)]
    trace_sample_ratio: Option<f64>,

    /// `--mode schedules`: cron schedules (`* * * * *`, UTC) created, each calling a
    /// path of its own; they are deleted at the end.
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,

    /// `--mode side-by-side`: the prototype's `jqlimit` binary (built from
    /// `../shared/limit`, see its README).
    #[arg(long)]
    limit: Option<PathBuf>,

    /// `--mode side-by-side`: alternating rounds, each a batch and a unary run of
    /// both sides.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// `--mode side-by-side`: jobs per unary run (`--jobs` is the batch run's).
    #[arg(long, default_value_t = 20_000)]
    unary_jobs: usize,

    /// The database the in-process or spawned server uses instead of a scratch
    /// SQLite file: a fresh one, e.g. `postgres://postgres@127.0.0.1:5432/bench`
    /// (the caller creates and drops it; `bench/pg_side_by_side.sh` does).
    #[arg(long)]
    db_url: Option<String>,

    /// Each job is a POST of a JSON body of this many bytes instead of a GET.
    #[arg(long, default_value_t = 0)]
    post_bytes: usize,

    /// `--mode target`: the loopback address to serve on (port 0: one the system
    /// picks; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Unary,
    Batch,
    Idle,
    Both,
    Watch,
    Backlog,
    Schedules,
    SideBySide,
    /// Three-step chains; per-job figures are per step.
    Chains,
    /// Only the loopback HTTP target, until SIGTERM, for another system to call.
    Target,
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
    POST_BYTES.get_or_init(|| args.post_bytes);
    if let Some(url) = &args.db_url {
        server::DB_URL.get_or_init(|| url.clone());
    }
    println!("command: {}", command_line());
    if args.mode == Mode::SideBySide {
        print!("{}", run_side_by_side(&args).await?);
        return Ok(());
    }
    if args.mode == Mode::Target {
        return run_target(args.listen).await;
    }

    let scratch = match args.server {
        Some(_) => None,
        None => Some(ScratchDir::create()?),
    };
    let receiver = match args.trace_sample_ratio {
        Some(_) => Some(otlp::Receiver::start().await?),
        None => None,
    };
    let mut server = start_server(&args, scratch.as_ref(), receiver.as_ref().map(|r| r.1)).await?;
    let scraper = server
        .metrics_addr
        .map(|addr| Scraper::start(addr, Duration::from_millis(args.scrape_every_ms)));
    let outcome = run_benchmarks(&args, &server).await;
    if let (Some((receiver, _)), Some(ratio)) = (&receiver, args.trace_sample_ratio) {
        // The exporter sends every 100 ms; let its last batch arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "traces: sampled at {ratio}, {} spans received so far",
            receiver.spans()
        );
    }
    if let Some(scraper) = scraper {
        println!(
            "metrics: scraped every {} ms, {} scrapes answered",
            args.scrape_every_ms,
            scraper.scrapes()
        );
    }
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
        (1..=MAX_JOBS).contains(&args.backlog),
        "--backlog must be from 1 to {MAX_JOBS}"
    );
    ensure!(
        (1..=MAX_SCHEDULES).contains(&args.schedules),
        "--schedules must be from 1 to {MAX_SCHEDULES}"
    );
    ensure!(
        (1..=MAX_JOBS).contains(&args.unary_jobs),
        "--unary-jobs must be from 1 to {MAX_JOBS}"
    );
    ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be from 1 to 100"
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
    if let Some(ratio) = args.trace_sample_ratio {
        ensure!(
            (0.0..=1.0).contains(&ratio),
            "--trace-sample-ratio must be from 0 to 1"
        );
        ensure!(
            args.spawn_server.is_some(),
            "--trace-sample-ratio needs --spawn-server (tracing is set up by the process)"
        );
    }
    ensure!(
        args.listen.ip().is_loopback(),
        "--listen must be a loopback address: the benchmark only runs on 127.0.0.1"
    );
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

    let bench = Bench::new(args, server).await?;

    let mut results = Vec::new();
    if matches!(args.mode, Mode::Unary | Mode::Both) {
        results.push(run_unary(&bench, "unary", args.jobs, args.in_flight).await?);
    }
    if matches!(args.mode, Mode::Batch | Mode::Both) {
        results.push(
            run_batch(
                &bench,
                "batch",
                args.jobs,
                args.batch_size,
                args.batch_in_flight,
            )
            .await?,
        );
    }
    if matches!(args.mode, Mode::Idle | Mode::Both) {
        results.push(run_idle(&bench, args.idle_jobs).await?);
    }
    let mut sections = Vec::new();
    if args.mode == Mode::Chains {
        results.push(
            modes::chains::run_chains(&bench, args.jobs, args.in_flight, args.chain_contracts)
                .await?,
        );
    }
    if args.mode == Mode::Watch {
        let (runs, section) = run_watch(&bench, args).await?;
        results.extend(runs);
        sections.push(section);
    }
    if args.mode == Mode::Backlog {
        let (runs, section) = run_backlog(&bench, args).await?;
        results.extend(runs);
        sections.push(section);
    }
    if args.mode == Mode::Schedules {
        let (run, section) = run_schedules(&bench, args.schedules).await?;
        results.push(run);
        sections.push(section);
    }
    Ok(Report { results, sections })
}
