//! `--mode side-by-side`: jobqueue and the bare prototype of its pipeline
//! (`../shared/limit`, built on its own), run alternately on the same machine in one
//! invocation, so that the ratio between them holds whatever the machine's speed
//! that day. Each round runs, in turn, jobqueue's batch run, the prototype's batch
//! run, jobqueue's unary run and the prototype's unary run, each on a fresh database
//! and a fresh server process. The prototype runs tuned (`--sql json
//! --await-running false`), with the same batch shape and in-flight counts.
//!
//! Figures per side: jobs per second from the first submit until every job has
//! finished, the server's CPU time per job and its peak RSS. The prototype's CPU and
//! RSS cover its whole process (from start until its harness finished), jobqueue's
//! the run itself; the difference is the prototype's start-up, a few milliseconds.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::process::Command;

use super::batch::run_batch;
use super::common::Bench;
use super::unary::run_unary;
use crate::Args;
use crate::proc_stats::{read_cpu_ticks, read_peak_rss_kb};
use crate::report::{ModeResult, json_string};
use crate::server::{ScratchDir, ServerProc, start_server};

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    jobs_per_sec: f64,
    cpu_us_per_job: Option<f64>,
    peak_rss_mib: Option<f64>,
}

/// The two shapes measured: batch calls, then single submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Batch,
    Unary,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Batch => "batch",
            Shape::Unary => "unary",
        }
    }
}

/// Every round's figures, per shape and side.
#[derive(Default)]
struct Rounds {
    jobqueue: [Vec<Figures>; 2],
    prototype: [Vec<Figures>; 2],
}

/// Runs the rounds and returns the report's section (table, ratios, JSON lines).
pub(crate) async fn run_side_by_side(args: &Args) -> anyhow::Result<String> {
    let limit = args
        .limit
        .as_deref()
        .context("--mode side-by-side needs --limit PATH, the prototype's built jqlimit binary")?;
    ensure!(
        args.spawn_server.is_some(),
        "--mode side-by-side needs --spawn-server: both sides run as processes of their own"
    );
    ensure!(
        limit.is_file(),
        "--limit {}: no such file (build ../shared/limit first; its README says how)",
        limit.display()
    );
    let mut rounds = Rounds::default();
    for round in 1..=args.rounds {
        for shape in [Shape::Batch, Shape::Unary] {
            let ours = run_jobqueue(args, shape).await?;
            let theirs = run_prototype(args, limit, shape).await?;
            eprintln!(
                "side-by-side: round {round} {}: jobqueue {:.0} jobs/s, prototype {:.0} jobs/s",
                shape.name(),
                ours.jobs_per_sec,
                theirs.jobs_per_sec
            );
            rounds.jobqueue[shape as usize].push(ours);
            rounds.prototype[shape as usize].push(theirs);
        }
    }
    Ok(report(args, &rounds))
}

fn jobs_of(args: &Args, shape: Shape) -> usize {
    match shape {
        Shape::Batch => args.jobs,
        Shape::Unary => args.unary_jobs,
    }
}

async fn run_jobqueue(args: &Args, shape: Shape) -> anyhow::Result<Figures> {
    let scratch = ScratchDir::create()?;
    let mut server = start_server(args, Some(&scratch), None).await?;
    let outcome = async {
        let bench = Bench::new(args, &server).await?;
        let jobs = jobs_of(args, shape);
        match shape {
            Shape::Batch => {
                run_batch(&bench, "batch", jobs, args.batch_size, args.batch_in_flight).await
            }
            Shape::Unary => run_unary(&bench, "unary", jobs, args.in_flight).await,
        }
    }
    .await;
    let stopped = server.stop().await;
    drop(scratch);
    let result = outcome?;
    stopped?;
    figures_of(&result)
}

fn figures_of(result: &ModeResult) -> anyhow::Result<Figures> {
    ensure!(
        result.submit_errors == 0,
        "jobqueue {}: {} submit(s) failed; first: {}",
        result.mode,
        result.submit_errors,
        result.first_error.as_deref().unwrap_or("?")
    );
    Ok(Figures {
        jobs_per_sec: result
            .jobs_per_sec()
            .with_context(|| format!("jobqueue {}: no throughput", result.mode))?,
        cpu_us_per_job: result.server_cpu_us_per_job(),
        peak_rss_mib: result.peak_rss_mib(),
    })
}

/// Starts the prototype's server on a free loopback port with a fresh database,
/// runs its harness against it and reads the harness's JSON line.
async fn run_prototype(args: &Args, limit: &Path, shape: Shape) -> anyhow::Result<Figures> {
    let scratch = ScratchDir::create()?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let db = scratch.path().join("jobs.db");
    let mut server = Command::new(limit)
        .args([
            "server",
            "--addr",
            &addr,
            "--sql",
            "json",
            "--await-running",
            "false",
        ])
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} server", limit.display()))?;
    let pid = server.id().context("the prototype's server has no pid")?;
    let (batch, in_flight) = match shape {
        Shape::Batch => (args.batch_size, args.batch_in_flight),
        Shape::Unary => (1, args.in_flight),
    };
    // The harness connects, retrying until the server listens.
    let harness = Command::new(limit)
        .args(["harness", "--label", shape.name()])
        .args(["--addr", &format!("http://{addr}")])
        .args(["--n", &jobs_of(args, shape).to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--inflight", &in_flight.to_string()])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(args.timeout_secs), harness)
        .await
        .context("the prototype's harness did not finish in time")?
        .context("running the prototype's harness")?;
    // Read before the server stops: it exits by itself shortly after the harness.
    let cpu_ticks = read_cpu_ticks(&format!("/proc/{pid}"));
    let peak_rss_kb = read_peak_rss_kb(ServerProc::Pid(pid));
    let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
    let _ = server.start_kill();
    drop(scratch);
    if !output.status.success() {
        bail!("the prototype's harness failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the prototype's harness printed no JSON line")?;
    let parsed: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("the prototype's harness line does not parse: {line}"))?;
    let jobs_per_sec = parsed["jobs_per_s"]
        .as_f64()
        .with_context(|| format!("no jobs_per_s in {line}"))?;
    let jobs = jobs_of(args, shape) as f64;
    let ticks = crate::proc_stats::clock_ticks_per_sec() as f64;
    Ok(Figures {
        jobs_per_sec,
        cpu_us_per_job: cpu_ticks.ok().map(|t| t as f64 / ticks * 1e6 / jobs),
        peak_rss_mib: peak_rss_kb.ok().map(|kb| kb as f64 / 1024.0),
    })
}

/// A loopback port free now (the prototype takes its address as a flag).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Median and range of the values present.
fn spread(values: impl Iterator<Item = Option<f64>>) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

fn fmt_spread(s: Option<(f64, f64, f64)>) -> String {
    s.map_or("-".into(), |(m, lo, hi)| {
        format!("{m:.0} ({lo:.0}-{hi:.0})")
    })
}

fn report(args: &Args, rounds: &Rounds) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "side-by-side: {} alternating rounds; batch {} jobs ({} per call, {} in flight), unary \
         {} jobs ({} in flight); prototype tuned (--sql json --await-running false). Medians \
         (min-max).",
        args.rounds,
        args.jobs,
        args.batch_size,
        args.batch_in_flight,
        args.unary_jobs,
        args.in_flight
    );
    let _ = writeln!(
        out,
        "{:<7} {:<10} {:>24} {:>18} {:>16}",
        "shape", "side", "jobs/s", "CPU us/job", "peak RSS MiB"
    );
    let mut json = Vec::new();
    for shape in [Shape::Batch, Shape::Unary] {
        let i = shape as usize;
        let sides = [
            ("jobqueue", &rounds.jobqueue[i]),
            ("prototype", &rounds.prototype[i]),
        ];
        for (side, runs) in sides {
            let _ = writeln!(
                out,
                "{:<7} {:<10} {:>24} {:>18} {:>16}",
                shape.name(),
                side,
                fmt_spread(spread(runs.iter().map(|f| Some(f.jobs_per_sec)))),
                fmt_spread(spread(runs.iter().map(|f| f.cpu_us_per_job))),
                fmt_spread(spread(runs.iter().map(|f| f.peak_rss_mib))),
            );
        }
        // Per round, jobqueue over the prototype run beside it.
        let ratios: Vec<Option<f64>> = rounds.jobqueue[i]
            .iter()
            .zip(&rounds.prototype[i])
            .map(|(ours, theirs)| Some(ours.jobs_per_sec / theirs.jobs_per_sec))
            .collect();
        let ratio = spread(ratios.iter().copied());
        if let Some((m, lo, hi)) = ratio {
            let _ = writeln!(
                out,
                "{:<7} {:<10} {:>24}",
                shape.name(),
                "ratio",
                format!("{m:.2} ({lo:.2}-{hi:.2})")
            );
        }
        let list = |v: &[Figures], f: fn(&Figures) -> Option<f64>| {
            let items: Vec<String> = v
                .iter()
                .map(|x| f(x).map_or("null".into(), |n| format!("{n:.1}")))
                .collect();
            format!("[{}]", items.join(","))
        };
        json.push(format!(
            "{{\"mode\":\"side-by-side\",\"shape\":{},\"rounds\":{},\"jobqueue_jobs_per_sec\":{},\
             \"prototype_jobs_per_sec\":{},\"ratio_median\":{},\"jobqueue_cpu_us_per_job\":{},\
             \"prototype_cpu_us_per_job\":{},\"jobqueue_peak_rss_mib\":{},\
             \"prototype_peak_rss_mib\":{}}}",
            json_string(shape.name()),
            args.rounds,
            list(&rounds.jobqueue[i], |f| Some(f.jobs_per_sec)),
            list(&rounds.prototype[i], |f| Some(f.jobs_per_sec)),
            ratio.map_or("null".into(), |(m, _, _)| format!("{m:.3}")),
            list(&rounds.jobqueue[i], |f| f.cpu_us_per_job),
            list(&rounds.prototype[i], |f| f.cpu_us_per_job),
            list(&rounds.jobqueue[i], |f| f.peak_rss_mib),
            list(&rounds.prototype[i], |f| f.peak_rss_mib),
        ));
    }
    out.push('\n');
    for line in json {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
