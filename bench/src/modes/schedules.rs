//! `--mode schedules`: `--schedules` cron schedules, `* * * * *` in UTC, so that
//! every one is due at the start of each minute. Measures how fast `CreateSchedule`
//! goes, then, for the first whole minute after the last create, each schedule's
//! lateness: from that minute's start to the target receiving the call its run
//! made. A run's call is told from the others by its `Idempotency-Key`,
//! `<schedule id>/<due time>`; a run with no call within `--timeout-secs` of the due
//! time is missed, one with more than one call doubled.
//!
//! The schedules are deleted at the end, so that a server given with `--server` is
//! not left firing them every minute; the jobs they submitted stay.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use futures::StreamExt;
use jobqueue::job::schedule::run_key;
use jobqueue::proto::schedule::Timetable;
use jobqueue::proto::{self, schedule_service_client::ScheduleServiceClient};
use testkit::Target;

use super::common::{Ack, Bench, SubmitLog, channel, run_tag};
use crate::proc_stats::{cpu_snapshot, measure_cpu, measure_peak_rss, reset_peak_rss};
use crate::report::{ModeResult, fmt_ms, json_string, ms, percentile};

/// `CreateSchedule` (and `DeleteSchedule`) calls in flight at once.
const IN_FLIGHT: usize = 64;
/// How often the target's record is read while waiting for the runs.
const POLL: Duration = Duration::from_millis(200);
/// How long the bench still waits, once every schedule has fired, for a second call
/// of the same run.
const REPEAT_GRACE: Duration = Duration::from_secs(2);

/// `--mode schedules`: create, wait for the minute, tally the calls, delete.
pub(crate) async fn run_schedules(
    bench: &Bench,
    count: usize,
) -> anyhow::Result<(ModeResult, String)> {
    let target = Target::start().await.context("starting the HTTP target")?;
    let client = ScheduleServiceClient::new(channel(bench).await?);
    let prefix = format!("bench-{}-", bench.run_id);
    let rss_was_reset = reset_peak_rss(bench.server_proc);
    let cpu_at_start = cpu_snapshot(bench.server_proc);

    eprintln!(
        "schedules: creating {count} schedules (cron * * * * *, UTC), {IN_FLIGHT} \
         CreateSchedule calls in flight"
    );
    let tag = run_tag(bench, "schedules");
    let started = Instant::now();
    let log = each_schedule(0..count, |n| {
        let mut client = client.clone();
        let request = create_request(&prefix, n, &target, &tag);
        async move { client.create_schedule(request).await.map(|_| ()) }
    })
    .await;
    let create_phase = started.elapsed();
    if let Some(error) = &log.first_error {
        eprintln!(
            "schedules: {} CreateSchedule call(s) failed; first: {error}",
            log.errors
        );
    }
    let created = log.acks.len();
    ensure!(created > 0, "schedules: the server created no schedules");
    let creates_per_sec = created as f64 / create_phase.as_secs_f64();

    // Every schedule was created before now, so each is due at the next whole minute.
    let now = SystemTime::now();
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .context("the clock")?
        .as_millis();
    let due_ms = (now_ms / 60_000 + 1) * 60_000;
    let due = UNIX_EPOCH + Duration::from_millis(due_ms as u64);
    let due_in = due.duration_since(now).unwrap_or_default();
    let due_text = proto_time(due_ms);
    eprintln!(
        "schedules: {created} created in {:.2}s ({creates_per_sec:.0}/s); all due at \
         {due_text}, in {:.1}s",
        create_phase.as_secs_f64(),
        due_in.as_secs_f64()
    );
    let keys: HashMap<String, usize> = log
        .acks
        .iter()
        .map(|ack| {
            (
                run_key(&format!("{prefix}{}", ack.index), due_ms as i64),
                ack.index,
            )
        })
        .collect();

    let due_at = Instant::now() + due_in;
    let deadline = due_at + bench.timeout;
    tokio::time::sleep_until(due_at.into()).await;
    eprintln!(
        "schedules: due; waiting up to {}s for the calls",
        bench.timeout.as_secs()
    );
    loop {
        tokio::time::sleep(POLL).await;
        let fired = tally(&target, &keys, due).runs.len();
        if fired >= created {
            eprintln!("schedules: all {created} fired");
            tokio::time::sleep(REPEAT_GRACE).await;
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "schedules: {fired} of {created} fired within {}s",
                bench.timeout.as_secs()
            );
            break;
        }
    }
    // Before deleting, which is the bench's own cleaning up, not load.
    let cpu = measure_cpu(bench.server_proc, bench.clock_ticks_per_sec, cpu_at_start);
    let peak_rss = measure_peak_rss(bench.server_proc, rss_was_reset);

    eprintln!("schedules: deleting the {created} schedules");
    let deleted = each_schedule(log.acks.iter().map(|ack| ack.index), |n| {
        let mut client = client.clone();
        let id = format!("{prefix}{n}");
        async move {
            client
                .delete_schedule(proto::DeleteScheduleRequest { id })
                .await
                .map(|_| ())
        }
    })
    .await;
    if let Some(error) = &deleted.first_error {
        eprintln!(
            "schedules: warning: {} DeleteSchedule call(s) failed; first: {error}",
            deleted.errors
        );
    }

    // Read last, so that a second call arriving while deleting still counts.
    let tally = tally(&target, &keys, due);
    let timeout_ms = ms(bench.timeout);
    let mut lateness = Vec::with_capacity(created);
    let (mut doubled, mut repeats, mut too_late) = (0, 0, 0);
    for calls in tally.runs.values() {
        let first = calls.iter().copied().fold(f64::INFINITY, f64::min);
        if first > timeout_ms {
            too_late += 1;
            continue;
        }
        lateness.push(first);
        if calls.len() > 1 {
            doubled += 1;
            repeats += calls.len() - 1;
        }
    }
    let fired = lateness.len();
    let missed = created - fired;
    let p50 = percentile(&lateness, 50.0);
    let p99 = percentile(&lateness, 99.0);
    let max = lateness.iter().copied().reduce(f64::max);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "schedules: {created} of {count} created in {:.2}s ({creates_per_sec:.0} \
         CreateSchedule/s, {IN_FLIGHT} in flight); all due at {due_text}, {:.1}s after the \
         last create.",
        create_phase.as_secs_f64(),
        due_in.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "schedules: {fired} fired, {missed} missed (no call within {}s{}), {doubled} \
         doubled (more than one call for that minute); lateness (the minute's start -> \
         the target receiving the call) p50 / p99 / max {} / {} / {} ms.",
        bench.timeout.as_secs(),
        if too_late > 0 {
            format!("; {too_late} of them called later")
        } else {
            String::new()
        },
        fmt_ms(p50),
        fmt_ms(p99),
        fmt_ms(max)
    );
    let _ = writeln!(
        out,
        "schedules: {} call(s) for other minutes (while creating or deleting); {} of \
         {created} schedules deleted afterwards. Server CPU and peak RSS run from the \
         first create until the runs were tallied, before deleting; us/job is per \
         schedule.",
        tally.other_minutes,
        deleted.acks.len()
    );

    let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.3}"));
    let result = ModeResult {
        mode: "schedules",
        shape: format!("{IN_FLIGHT} creates in flight"),
        submitted: created,
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit: "per CreateSchedule call".into(),
        submit_ms: log.submit_ms,
        dispatch_ms: Vec::new(),
        send_to_target_ms: Vec::new(),
        repeats,
        submit_phase: create_phase,
        end_to_end: None,
        peak_rss,
        cpu,
        extra_json: vec![
            ("schedules", count.to_string()),
            ("created", created.to_string()),
            ("create_s", format!("{:.3}", create_phase.as_secs_f64())),
            ("creates_per_sec", format!("{creates_per_sec:.0}")),
            ("due_time", json_string(&due_text)),
            (
                "due_after_last_create_s",
                format!("{:.3}", due_in.as_secs_f64()),
            ),
            ("fired", fired.to_string()),
            ("missed", missed.to_string()),
            ("doubled", doubled.to_string()),
            ("lateness_p50_ms", num(p50)),
            ("lateness_p99_ms", num(p99)),
            ("lateness_max_ms", num(max)),
            ("calls_for_other_minutes", tally.other_minutes.to_string()),
            ("deleted", deleted.acks.len().to_string()),
            ("delete_errors", deleted.errors.to_string()),
        ],
    };
    Ok((result, out))
}

/// Schedule `n`: `{prefix}{n}`, every minute, a GET of the target's `/s/{n}`.
fn create_request(
    prefix: &str,
    n: usize,
    target: &Target,
    tag: &str,
) -> proto::CreateScheduleRequest {
    proto::CreateScheduleRequest {
        schedule_id: format!("{prefix}{n}"),
        schedule: Some(proto::Schedule {
            timetable: Some(Timetable::Cron("* * * * *".into())),
            job: Some(proto::JobSpec {
                request: Some(proto::HttpRequest {
                    method: "GET".into(),
                    url: target.url(&format!("/s/{n}")),
                    ..Default::default()
                }),
                tags: vec![tag.to_string()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Runs `call` for every schedule number of `numbers`, `IN_FLIGHT` at once. The log
/// holds an ack for each number it succeeded for and each call's latency.
async fn each_schedule<F, Fut>(numbers: impl Iterator<Item = usize>, call: F) -> SubmitLog
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    let mut answers = futures::stream::iter(numbers)
        .map(|n| {
            let pending = call(n);
            async move {
                // Taken when first polled, that is when the call is sent.
                let sent = Instant::now();
                (n, sent, pending.await, Instant::now())
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut log = SubmitLog::default();
    while let Some((index, sent, answer, acked)) = answers.next().await {
        match answer {
            Ok(()) => {
                log.acks.push(Ack { index, sent, acked });
                log.submit_ms.push(ms(acked - sent));
            }
            Err(error) => log.failed(&error),
        }
    }
    log
}

/// The calls the target received, sorted by run.
struct Tally {
    /// Per schedule number, the lateness in ms of each call of its run due at the
    /// minute.
    runs: HashMap<usize, Vec<f64>>,
    /// Calls of the schedules' runs due at other minutes.
    other_minutes: usize,
}

fn tally(target: &Target, keys: &HashMap<String, usize>, due: SystemTime) -> Tally {
    let mut tally = Tally {
        runs: HashMap::new(),
        other_minutes: 0,
    };
    for request in target.received() {
        match request
            .header("idempotency-key")
            .and_then(|key| keys.get(key))
        {
            Some(n) => tally
                .runs
                .entry(*n)
                .or_default()
                .push(signed_wall_ms(due, request.at_system)),
            None => tally.other_minutes += 1,
        }
    }
    tally
}

/// `to - from` in milliseconds on the wall clock, negative when `to` came first.
fn signed_wall_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => ms(after),
        Err(before) => -ms(before.duration()),
    }
}

/// A time in ms since the epoch as RFC 3339, e.g. `2025-01-01T12:00:00Z`.
fn proto_time(at_ms: u128) -> String {
    prost_types::Timestamp {
        seconds: (at_ms / 1000) as i64,
        nanos: ((at_ms % 1000) * 1_000_000) as i32,
    }
    .to_string()
}
