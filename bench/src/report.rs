//! What one mode measured, the numbers worked out from it, and the report printed at
//! the end: a table, notes, each mode's extra sections and one JSON line per mode.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::modes::common::COMPLETION_POLL;
use crate::proc_stats::{CpuUse, PeakRss, THREAD_KINDS};
use crate::server::ServerProc;

/// What one mode measured.
pub(crate) struct ModeResult {
    pub(crate) mode: &'static str,
    /// How the load was offered, in words.
    pub(crate) shape: String,
    /// Jobs the server accepted.
    pub(crate) submitted: usize,
    pub(crate) submit_errors: usize,
    pub(crate) first_error: Option<String>,
    /// What one submit latency sample covers.
    pub(crate) submit_unit: String,
    pub(crate) submit_ms: Vec<f64>,
    /// Signed: negative when the target saw a job before its acknowledgment arrived.
    pub(crate) dispatch_ms: Vec<f64>,
    /// From the submit call being sent to the target receiving the job: an upper
    /// bound on dispatch that never goes negative.
    pub(crate) send_to_target_ms: Vec<f64>,
    /// Requests the target received more than once.
    pub(crate) repeats: usize,
    /// From the first submit sent to the last acknowledgment received.
    pub(crate) submit_phase: Duration,
    /// From the first submit sent until every job is SUCCEEDED; none for idle.
    pub(crate) end_to_end: Option<Duration>,
    pub(crate) peak_rss: PeakRss,
    pub(crate) cpu: CpuUse,
    /// Fields the mode adds to its JSON line.
    pub(crate) extra_json: Vec<(&'static str, String)>,
}

/// What the runs measured, for the report.
pub(crate) struct Report {
    pub(crate) results: Vec<ModeResult>,
    /// Printed after the main table and its notes, before the JSON lines.
    pub(crate) sections: Vec<String>,
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `to - from` in milliseconds, negative when `to` came first.
pub(crate) fn signed_ms(from: &Instant, to: &Instant) -> f64 {
    match to.checked_duration_since(*from) {
        Some(after) => ms(after),
        None => -ms(from.duration_since(*to)),
    }
}

/// Nearest-rank percentile of unsorted samples; `None` when there are none.
pub(crate) fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl ModeResult {
    pub(crate) fn jobs_per_sec(&self) -> Option<f64> {
        self.end_to_end
            .map(|d| self.submitted as f64 / d.as_secs_f64())
    }

    /// None for idle, whose submit phase is mostly waiting on purpose.
    fn accept_per_sec(&self) -> Option<f64> {
        self.end_to_end
            .map(|_| self.submitted as f64 / self.submit_phase.as_secs_f64())
    }

    pub(crate) fn peak_rss_mib(&self) -> Option<f64> {
        self.peak_rss.kb.map(|kb| kb as f64 / 1024.0)
    }

    /// `seconds` spread over the accepted jobs, in microseconds.
    fn us_per_job(&self, seconds: Option<f64>) -> Option<f64> {
        match (seconds, self.submitted) {
            (Some(seconds), jobs) if jobs > 0 => Some(seconds * 1e6 / jobs as f64),
            _ => None,
        }
    }

    pub(crate) fn server_cpu_us_per_job(&self) -> Option<f64> {
        self.us_per_job(self.cpu.server_s)
    }

    /// The server's CPU per job by kind of thread, in [`THREAD_KINDS`] order.
    fn thread_us_per_job(&self) -> Option<[Option<f64>; 4]> {
        let threads = self.cpu.threads_s?;
        Some(threads.map(|seconds| self.us_per_job(Some(seconds))))
    }

    fn bench_cpu_us_per_job(&self) -> Option<f64> {
        self.us_per_job(self.cpu.bench_s)
    }

    fn dispatched_before_ack(&self) -> usize {
        self.dispatch_ms.iter().filter(|ms| **ms < 0.0).count()
    }
}

pub(crate) fn fmt_ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.2}"))
}

fn fmt_us(value: Option<f64>) -> String {
    value.map_or("unknown".into(), |v| format!("{v:.1}"))
}

pub(crate) fn print_report(report: &Report, server_fields: &[(&'static str, String)]) {
    let results = &report.results;
    println!();
    println!(
        "{:<13} {:>7} {:<22} {:>10} {:>12} {:>19} {:>21} {:>14} {:>17}",
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
            "{:<13} {:>7} {:<22} {:>10} {:>12} {:>19} {:>21} {:>14} {:>17}",
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
        if let Some(threads) = r.thread_us_per_job() {
            let by_kind: Vec<String> = THREAD_KINDS
                .iter()
                .zip(threads)
                .map(|((kind, _), us)| format!("{kind} {}", fmt_us(us)))
                .collect();
            println!(
                "{}: CPU time of the server's threads, us/job: {}.",
                r.mode,
                by_kind.join(", ")
            );
        }
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
    if let Some(threads) = r.thread_us_per_job() {
        for ((_, field), us) in THREAD_KINDS.iter().zip(threads) {
            fields.push((field, num(us, 1)));
        }
    }
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

pub(crate) fn json_string(s: &str) -> String {
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
