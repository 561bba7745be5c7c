//! Schedules' runs across clock changes, seen without waiting for the date: the
//! service runs with its wall clock set just before a transition
//! (`JOBQUEUE_CLOCK_START`). A cron second that the clocks skip runs once, at the
//! first instant after the gap; one they repeat runs only at its first occurrence.
//! One process, one clock: the cases run one after another in this binary of its own.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::*;
use jobqueue::proto::{self, JobSpec, RunTrigger};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .unwrap()
        .timestamp_millis()
}

/// Starts a server whose clock reads `clock`, makes a schedule firing at second 30
/// of every minute in `zone`, waits `wait`, and returns its timetable runs' due times
/// and its next run time.
async fn runs_from(clock: i64, zone: &str, wait: Duration, until_runs: usize) -> (Vec<i64>, i64) {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.clock_start = Some(clock)).await;
    let mut schedules = schedules(server.addr).await;
    let job = JobSpec {
        request: Some(proto::HttpRequest {
            method: "GET".into(),
            url: target.url("/tick"),
            ..Default::default()
        }),
        ..Default::default()
    };
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "tick".into(),
            schedule: Some(proto::Schedule {
                time_zone: zone.into(),
                timetable: Some(proto::schedule::Timetable::Cron("30 * * * * *".into())),
                job: Some(job),
                ..Default::default()
            }),
        })
        .await
        .expect("schedule created");
    let deadline = Instant::now() + wait;
    let runs = loop {
        let runs: Vec<i64> = all_runs(&mut schedules, "tick")
            .await
            .iter()
            .filter(|r| r.trigger == RunTrigger::Timetable as i32)
            .filter_map(|r| r.fire_time.as_ref().map(millis))
            .collect();
        if runs.len() >= until_runs || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let schedule = schedules
        .get_schedule(proto::GetScheduleRequest { id: "tick".into() })
        .await
        .expect("schedule read")
        .into_inner();
    let next = schedule
        .next_run_times
        .first()
        .map(millis)
        .expect("a next run");
    server.stop().await;
    let mut runs = runs;
    runs.sort();
    (runs, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_follow_the_wall_clock_rule_across_transitions() {
    // New York, 10 March 2030 at 07:00 UTC: 02:00 EST becomes 03:00 EDT. The skipped
    // seconds 02:00:30 ... 02:59:30 run once, at 07:00:00; then 03:00:30 EDT.
    let (runs, next) = runs_from(
        at(2030, 3, 10, 6, 59, 57),
        "America/New_York",
        Duration::from_secs(15),
        1,
    )
    .await;
    assert_eq!(runs, [at(2030, 3, 10, 7, 0, 0)], "the gap's run");
    assert_eq!(next, at(2030, 3, 10, 7, 0, 30));

    // 3 November 2030 at 06:00 UTC: 02:00 EDT becomes 01:00 EST. 01:00:30 EST
    // (06:00:30 UTC) is a repeat of 01:00:30 EDT: it does not run; 02:00:30 EST does.
    let (runs, next) = runs_from(
        at(2030, 11, 3, 6, 0, 25),
        "America/New_York",
        Duration::from_secs(10),
        1,
    )
    .await;
    assert_eq!(runs, Vec::<i64>::new(), "no run in the repeated hour");
    assert_eq!(next, at(2030, 11, 3, 7, 0, 30));

    // Lord Howe, 6 October 2030 at 15:30 UTC: 02:00 +10:30 becomes 02:30 +11, a
    // 30-minute gap; its seconds run once at 15:30:00, then 02:30:30 +11.
    let (runs, next) = runs_from(
        at(2030, 10, 5, 15, 29, 57),
        "Australia/Lord_Howe",
        Duration::from_secs(15),
        1,
    )
    .await;
    assert_eq!(runs, [at(2030, 10, 5, 15, 30, 0)], "the gap's run");
    assert_eq!(next, at(2030, 10, 5, 15, 30, 30));
}
