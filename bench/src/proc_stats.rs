//! Peak RSS and CPU time from /proc.

use std::process::Stdio;

use anyhow::Context;

use crate::server::ServerProc;

fn proc_dir(subject: ServerProc) -> Option<String> {
    match subject {
        ServerProc::OwnProcess => Some("/proc/self".into()),
        ServerProc::Pid(pid) => Some(format!("/proc/{pid}")),
        ServerProc::Unknown => None,
    }
}

/// VmHWM, in kB: the most resident memory since the process started or since the
/// peak was last reset.
pub(crate) fn read_peak_rss_kb(subject: ServerProc) -> anyhow::Result<u64> {
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
pub(crate) fn reset_peak_rss(subject: ServerProc) -> bool {
    proc_dir(subject)
        .map(|dir| std::fs::write(format!("{dir}/clear_refs"), "5").is_ok())
        .unwrap_or(false)
}

#[derive(Debug, Clone)]
pub(crate) struct PeakRss {
    pub(crate) kb: Option<u64>,
    /// Whose memory: "server", or "bench+server" when they share the process.
    pub(crate) scope: &'static str,
    /// "mode" when the peak was reset at the mode's start, else "process start".
    pub(crate) since: &'static str,
}

pub(crate) fn measure_peak_rss(subject: ServerProc, was_reset: bool) -> PeakRss {
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
pub(crate) fn clock_ticks_per_sec() -> u64 {
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
pub(crate) fn read_cpu_ticks(dir: &str) -> anyhow::Result<u64> {
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

/// The server's threads by what they do, as their names say: the writer thread,
/// SQLite's connection threads, the async runtime's workers, and the rest; each
/// with the field that carries its CPU per job in the report's JSON line.
pub(crate) const THREAD_KINDS: [(&str, &str); 4] = [
    ("writer", "writer_thread_us_per_job"),
    ("sqlite", "sqlite_threads_us_per_job"),
    ("tokio", "tokio_threads_us_per_job"),
    ("other", "other_threads_us_per_job"),
];

fn thread_kind(name: &str) -> usize {
    if name.starts_with("jobqueue-writer") {
        0
    } else if name.starts_with("sqlx-sqlite") {
        1
    } else if name.starts_with("tokio-r") {
        // "tokio-rt-worker", or "tokio-runtime-w" in older releases.
        2
    } else {
        3
    }
}

/// CPU ticks of the live threads of the process at `dir`, summed by
/// [`THREAD_KINDS`]. A thread that ended took its ticks with it, so this is read
/// at a mode's start and end while the server's long-lived threads run.
pub(crate) fn read_thread_ticks(dir: &str) -> anyhow::Result<[u64; 4]> {
    let mut by_kind = [0; 4];
    let tasks =
        std::fs::read_dir(format!("{dir}/task")).with_context(|| format!("listing {dir}/task"))?;
    for task in tasks {
        let task = task?.path();
        let task = task.to_string_lossy();
        // A thread may end between the listing and the read.
        let (Ok(name), Ok(ticks)) = (
            std::fs::read_to_string(format!("{task}/comm")),
            read_cpu_ticks(&task),
        ) else {
            continue;
        };
        by_kind[thread_kind(name.trim())] += ticks;
    }
    Ok(by_kind)
}

/// CPU ticks used so far, taken at a mode's start and end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    /// None when the server's pid is unknown or its stat could not be read.
    server: Option<u64>,
    /// The server's threads by kind; None as for `server`.
    threads: Option<[u64; 4]>,
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

pub(crate) fn cpu_snapshot(subject: ServerProc) -> CpuSnapshot {
    let server = proc_dir(subject).and_then(|dir| read_cpu_ticks_or_warn(&dir, "server"));
    let threads = proc_dir(subject).and_then(|dir| match read_thread_ticks(&dir) {
        Ok(ticks) => Some(ticks),
        Err(error) => {
            eprintln!("warning: server threads' CPU time unknown: {error:#}");
            None
        }
    });
    let bench = match subject {
        ServerProc::OwnProcess => None,
        _ => read_cpu_ticks_or_warn("/proc/self", "bench"),
    };
    CpuSnapshot {
        server,
        threads,
        bench,
    }
}

/// CPU time (user + system, all threads) spent during one mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUse {
    /// Whose CPU time `server_s` is (see `ServerProc::scope`).
    pub(crate) subject: ServerProc,
    pub(crate) server_s: Option<f64>,
    /// The server's threads by [`THREAD_KINDS`] (when the server runs in this
    /// process, `tokio` and `other` hold the bench's threads too).
    pub(crate) threads_s: Option<[f64; 4]>,
    /// This process (the load generator and the HTTP target); None when the server
    /// shares it.
    pub(crate) bench_s: Option<f64>,
}

pub(crate) fn measure_cpu(subject: ServerProc, ticks_per_sec: u64, start: CpuSnapshot) -> CpuUse {
    let end = cpu_snapshot(subject);
    let seconds = |start: Option<u64>, end: Option<u64>| {
        Some(end?.saturating_sub(start?) as f64 / ticks_per_sec as f64)
    };
    let threads_s = match (start.threads, end.threads) {
        (Some(start), Some(end)) => Some(std::array::from_fn(|kind| {
            end[kind].saturating_sub(start[kind]) as f64 / ticks_per_sec as f64
        })),
        _ => None,
    };
    CpuUse {
        subject,
        server_s: seconds(start.server, end.server),
        threads_s,
        bench_s: seconds(start.bench, end.bench),
    }
}
