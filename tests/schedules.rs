//! Schedules through the real server: interval, cron (with seconds, in a time zone)
//! and one-shot timetables, pause, resume, trigger, update, delete, lists, the jobs
//! and watches of a schedule, queue defaults, restarts, catch-up, two processes, and
//! every refusal.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike, Utc};
use common::*;
use futures::StreamExt;
use jobqueue::now_ms;
use jobqueue::proto::schedule::Timetable;
use jobqueue::proto::{self, JobEventKind, JobSpec, JobStatus, RunTrigger, ScheduleState};
use tonic::Code;

const SOON: Duration = Duration::from_secs(10);
const HOUR_MS: i64 = 3_600_000;

fn every(interval_ms: u64, job: JobSpec) -> proto::Schedule {
    proto::Schedule {
        timetable: Some(Timetable::Interval(ms(interval_ms))),
        job: Some(job),
        ..Default::default()
    }
}

fn cron(expression: &str, job: JobSpec) -> proto::Schedule {
    proto::Schedule {
        timetable: Some(Timetable::Cron(expression.into())),
        job: Some(job),
        ..Default::default()
    }
}

/// An hourly schedule that starts in an hour: it never fires within a test.
fn idle(url: &str) -> proto::Schedule {
    proto::Schedule {
        start_time: Some(timestamp(whole_second_after(HOUR_MS))),
        ..every(HOUR_MS as u64, get(url))
    }
}

/// The first whole second at least `ahead_ms` from now, in ms since the epoch.
fn whole_second_after(ahead_ms: i64) -> i64 {
    (now_ms() + ahead_ms + 999) / 1000 * 1000
}

fn times(ts: &[prost_types::Timestamp]) -> Vec<i64> {
    ts.iter().map(millis).collect()
}

fn gaps(times: &[i64]) -> Vec<i64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn fire_time(run: &proto::ScheduleRun) -> i64 {
    millis(run.fire_time.as_ref().expect("a fire time"))
}

/// The fire times of the runs the timetable made, oldest first.
fn timetable_fire_times(runs: &[proto::ScheduleRun]) -> Vec<i64> {
    let mut times: Vec<i64> = runs
        .iter()
        .filter(|r| r.trigger == RunTrigger::Timetable as i32)
        .map(fire_time)
        .collect();
    times.sort();
    times
}

/// The `Idempotency-Key` of every request the target received, in arrival order.
fn keys(target: &Target) -> Vec<String> {
    target
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or("").to_string())
        .collect()
}

async fn create(schedules: &mut Schedules, id: &str, schedule: proto::Schedule) -> proto::Schedule {
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: id.into(),
            schedule: Some(schedule),
        })
        .await
        .expect("schedule created")
        .into_inner()
}

async fn read(schedules: &mut Schedules, id: &str) -> proto::Schedule {
    schedules
        .get_schedule(proto::GetScheduleRequest { id: id.into() })
        .await
        .expect("schedule readable")
        .into_inner()
}

async fn read_err(schedules: &mut Schedules, id: &str) -> tonic::Status {
    schedules
        .get_schedule(proto::GetScheduleRequest { id: id.into() })
        .await
        .unwrap_err()
}

async fn pause(schedules: &mut Schedules, id: &str) -> Result<proto::Schedule, tonic::Status> {
    schedules
        .pause_schedule(proto::PauseScheduleRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

async fn resume(schedules: &mut Schedules, id: &str) -> Result<proto::Schedule, tonic::Status> {
    schedules
        .resume_schedule(proto::ResumeScheduleRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

async fn trigger(schedules: &mut Schedules, id: &str) -> Result<proto::ScheduleRun, tonic::Status> {
    schedules
        .trigger_schedule(proto::TriggerScheduleRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

async fn update(
    schedules: &mut Schedules,
    schedule: Option<proto::Schedule>,
    paths: &[&str],
) -> Result<proto::Schedule, tonic::Status> {
    schedules
        .update_schedule(proto::UpdateScheduleRequest {
            schedule,
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .map(|r| r.into_inner())
}

fn finished(status: i32) -> bool {
    [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled]
        .iter()
        .any(|s| *s as i32 == status)
}

/// Waits until every listed run of `schedule_id` has a finished job; its runs then.
async fn settled_runs(schedules: &mut Schedules, schedule_id: &str) -> Vec<proto::ScheduleRun> {
    let deadline = Instant::now() + SOON;
    loop {
        let runs = all_runs(schedules, schedule_id).await;
        if runs.iter().all(|r| finished(r.status)) {
            return runs;
        }
        assert!(Instant::now() < deadline, "runs never finished: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the schedule until `done` holds for it.
async fn wait_schedule(
    schedules: &mut Schedules,
    id: &str,
    done: impl Fn(&proto::Schedule) -> bool,
) -> proto::Schedule {
    let deadline = Instant::now() + SOON;
    loop {
        let schedule = read(schedules, id).await;
        if done(&schedule) {
            return schedule;
        }
        assert!(
            Instant::now() < deadline,
            "schedule {id} never reached the expected state: {schedule:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the target received `n` requests on `path`.
async fn wait_received_on(target: &Target, path: &str, n: usize) {
    let deadline = Instant::now() + SOON;
    while target.received_on(path).len() < n {
        assert!(
            Instant::now() < deadline,
            "{path} received {} of {n}",
            target.received_on(path).len()
        );
        target
            .wait_for(target.count() + 1, Duration::from_millis(100))
            .await;
    }
}

/// Every job `ListJobs` lists for `schedule_id`, newest first.
async fn jobs_of(client: &mut Client, schedule_id: &str) -> Vec<proto::Job> {
    let page = client
        .list_jobs(proto::ListJobsRequest {
            schedule_id: schedule_id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("jobs listed")
        .into_inner();
    page.jobs
}

/// Waits until `schedule_id` has submitted a job that `pick` accepts.
async fn wait_job_of(
    client: &mut Client,
    schedule_id: &str,
    pick: impl Fn(&proto::Job) -> bool,
) -> proto::Job {
    let deadline = Instant::now() + SOON;
    loop {
        if let Some(job) = jobs_of(client, schedule_id).await.into_iter().find(&pick) {
            return job;
        }
        assert!(Instant::now() < deadline, "no such job of {schedule_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn job_ids(runs: &[proto::ScheduleRun]) -> Vec<String> {
    runs.iter().map(|r| r.job_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_schedule_submits_a_job_for_each_due_time_with_its_key() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    let start = whole_second_after(1000);
    let created = create(
        &mut schedules,
        "ticks",
        proto::Schedule {
            start_time: Some(timestamp(start)),
            ..every(1000, get(target.url("/tick")))
        },
    )
    .await;
    assert_eq!(created.id, "ticks");
    assert_eq!(created.state, ScheduleState::Active as i32);
    assert_eq!(created.run_count, 0);
    assert_eq!(
        times(&created.next_run_times),
        (0..5).map(|k| start + k * 1000).collect::<Vec<_>>()
    );

    assert!(target.wait_for(3, SOON).await);
    // Due a second apart, they arrive in order, each with its due time in its key.
    let expected: Vec<String> = (0..3)
        .map(|k| run_key("ticks", &timestamp(start + k * 1000)))
        .collect();
    assert_eq!(keys(&target)[..3], expected);
    let first = chrono::DateTime::from_timestamp_millis(start).unwrap();
    assert_eq!(
        expected[0],
        format!("ticks/{}", first.format("%Y-%m-%dT%H:%M:%SZ")),
        "a whole second has no fraction"
    );

    // Each run is a job of the schedule, in its queue, due at its due time.
    let mut jobs = jobs_of(&mut client, "ticks").await;
    jobs.sort_by_key(|j| millis(j.schedule_time.as_ref().unwrap()));
    assert!(jobs.len() >= 3, "{jobs:#?}");
    let due: Vec<i64> = jobs
        .iter()
        .map(|j| millis(j.schedule_time.as_ref().unwrap()))
        .collect();
    assert_eq!(due[..3], [start, start + 1000, start + 2000]);
    assert!(gaps(&due).iter().all(|g| *g == 1000), "{due:?}");
    for job in &jobs {
        assert_eq!(job.schedule_id, "ticks");
        assert_eq!(job.queue, "default");
        assert_eq!(job.request.as_ref().unwrap().url, target.url("/tick"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_schedule_reports_next_run_times_run_count_and_recent_runs() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let start = whole_second_after(1000);
    create(
        &mut schedules,
        "report",
        proto::Schedule {
            start_time: Some(timestamp(start)),
            ..every(1000, get(target.url("/report")))
        },
    )
    .await;
    assert!(target.wait_for(1, SOON).await);
    let early = read(&mut schedules, "report").await;
    assert!(early.run_count >= 1, "{early:#?}");

    assert!(target.wait_for(3, SOON).await);
    let active = read(&mut schedules, "report").await;
    assert_eq!(active.state, ScheduleState::Active as i32);
    assert!(active.run_count > early.run_count, "the count grows");
    let next = times(&active.next_run_times);
    assert_eq!(next.len(), 5, "{active:#?}");
    assert_eq!(gaps(&next), [1000; 4]);
    assert!(next.iter().all(|t| (t - start) % 1000 == 0), "{next:?}");
    let last = millis(active.last_run_time.as_ref().expect("a last run time"));
    assert!(next[0] > last, "next {next:?} after the last run {last}");

    // Paused with more than five runs, the schedule holds still to be compared.
    assert!(target.wait_for(6, SOON).await);
    pause(&mut schedules, "report").await.unwrap();
    let runs = settled_runs(&mut schedules, "report").await;
    let got = read(&mut schedules, "report").await;
    assert_eq!(got.run_count as usize, runs.len());
    assert!(runs.len() >= 6);
    assert_eq!(got.recent_runs, runs[..5], "the latest five, newest first");
    assert_eq!(got.last_run_time, runs[0].fire_time);
    assert!(got.next_run_times.is_empty(), "none while paused");
    let recent: Vec<i64> = got.recent_runs.iter().map(fire_time).collect();
    assert_eq!(gaps(&recent), [-1000; 4], "{recent:?}");
    for run in &got.recent_runs {
        assert_eq!(run.schedule_id, "report");
        assert_eq!(run.trigger, RunTrigger::Timetable as i32);
        assert_eq!(run.status, JobStatus::Succeeded as i32);
        assert_eq!((run.attempt, run.status_code), (1, 200));
        let job = get_job(&mut server.client.clone(), &run.job_id).await;
        assert_eq!(job.schedule_id, "report");
        assert_eq!(job.schedule_time, run.fire_time);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_with_seconds_fires_on_even_seconds_only() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let created = create(
        &mut schedules,
        "even",
        cron("*/2 * * * * *", get(target.url("/even"))),
    )
    .await;
    let next = times(&created.next_run_times);
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t % 2000 == 0), "{next:?}");
    assert_eq!(gaps(&next), [2000; 4]);

    assert!(target.wait_for(3, SOON).await);
    pause(&mut schedules, "even").await.unwrap();
    let runs = settled_runs(&mut schedules, "even").await;
    let fired = timetable_fire_times(&runs);
    assert!(fired.len() >= 3);
    assert!(fired.iter().all(|t| t % 2000 == 0), "{fired:?}");
    assert!(gaps(&fired).iter().all(|g| *g == 2000), "{fired:?}");
    let mut sent = keys(&target);
    sent.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|r| run_key("even", r.fire_time.as_ref().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(sent, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_cron_in_a_time_zone_follows_local_time_across_daylight_saving() {
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let ny = chrono_tz::America::New_York;
    let in_new_york = |schedule: &proto::Schedule| -> Vec<(u32, u32, u32, u32)> {
        times(&schedule.next_run_times)
            .into_iter()
            .map(|t| {
                let local = chrono::DateTime::from_timestamp_millis(t)
                    .unwrap()
                    .with_timezone(&ny);
                use chrono::Datelike;
                (local.month(), local.day(), local.hour(), local.minute())
            })
            .collect()
    };
    let at = |month: u32, day: u32, hour: u32, minute: u32| {
        ny.with_ymd_and_hms(2030, month, day, hour, minute, 0)
            .single()
            .unwrap()
            .timestamp_millis()
    };
    let zoned = |expression: &str, start: chrono::DateTime<Utc>| proto::Schedule {
        time_zone: "America/New_York".into(),
        start_time: Some(timestamp(start.timestamp_millis())),
        ..cron(expression, get("http://127.0.0.1:9/never"))
    };

    // New York moves from EST (UTC-5) to EDT (UTC-4) on 10 March 2030.
    let march = Utc.with_ymd_and_hms(2030, 3, 8, 0, 0, 0).unwrap();
    let nine = create(&mut schedules, "nine", zoned("0 9 * * *", march)).await;
    assert_eq!(
        times(&nine.next_run_times),
        (8..=12).map(|day| at(3, day, 9, 0)).collect::<Vec<_>>()
    );
    let utc_hours: Vec<u32> = times(&nine.next_run_times)
        .into_iter()
        .map(|t| chrono::DateTime::from_timestamp_millis(t).unwrap().hour())
        .collect();
    assert_eq!(utc_hours, [14, 14, 13, 13, 13]);

    // 02:30 does not exist on 10 March: that day's run comes at the first instant
    // after the gap, 03:00 EDT (07:00 UTC), once.
    let gap = create(&mut schedules, "gap", zoned("30 2 * * *", march)).await;
    let after_gap = Utc.with_ymd_and_hms(2030, 3, 10, 7, 0, 0).unwrap();
    assert_eq!(
        times(&gap.next_run_times),
        [
            at(3, 8, 2, 30),
            at(3, 9, 2, 30),
            after_gap.timestamp_millis(),
            at(3, 11, 2, 30),
            at(3, 12, 2, 30)
        ]
    );

    // 01:30 happens twice on 3 November 2030: it fires once that day.
    let november = Utc.with_ymd_and_hms(2030, 11, 2, 0, 0, 0).unwrap();
    let twice = create(&mut schedules, "twice", zoned("30 1 * * *", november)).await;
    assert_eq!(
        in_new_york(&twice),
        (2..=6).map(|day| (11, day, 1, 30)).collect::<Vec<_>>()
    );
    let third = millis(&twice.next_run_times[1]);
    let both = ny.with_ymd_and_hms(2030, 11, 3, 1, 30, 0);
    assert!(
        [both.earliest(), both.latest()]
            .iter()
            .any(|t| t.unwrap().timestamp_millis() == third),
        "one of the two 01:30s: {third}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hourly_and_sub_hourly_crons_run_once_per_wall_time_across_transitions() {
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let utc = |month, day, hour, minute| {
        Utc.with_ymd_and_hms(2030, month, day, hour, minute, 0)
            .unwrap()
            .timestamp_millis()
    };
    let zoned = |zone: &str, expression: &str, start: i64| proto::Schedule {
        time_zone: zone.into(),
        start_time: Some(timestamp(start)),
        ..cron(expression, get("http://127.0.0.1:9/never"))
    };
    let cases = [
        // New York, 10 March 2030, 02:00 EST becomes 03:00 EDT: 02:30 does not exist
        // and runs once at the first instant after the gap (07:00 UTC).
        (
            "ny-spring-half-past",
            zoned("America/New_York", "30 * * * *", utc(3, 10, 6, 0)),
            vec![
                utc(3, 10, 6, 30),
                utc(3, 10, 7, 0),
                utc(3, 10, 7, 30),
                utc(3, 10, 8, 30),
                utc(3, 10, 9, 30),
            ],
        ),
        // Every 20 minutes: 02:00, 02:20 and 02:40 come together with 03:00.
        (
            "ny-spring-twenty",
            zoned("America/New_York", "*/20 * * * *", utc(3, 10, 6, 30)),
            vec![
                utc(3, 10, 6, 40),
                utc(3, 10, 7, 0),
                utc(3, 10, 7, 20),
                utc(3, 10, 7, 40),
                utc(3, 10, 8, 0),
            ],
        ),
        // 3 November 2030, 02:00 EDT becomes 01:00 EST: the repeated hour runs once,
        // at its first occurrence; hourly stays hourly.
        (
            "ny-autumn-hourly",
            zoned("America/New_York", "0 * * * *", utc(11, 3, 4, 30)),
            vec![
                utc(11, 3, 5, 0),
                utc(11, 3, 7, 0),
                utc(11, 3, 8, 0),
                utc(11, 3, 9, 0),
                utc(11, 3, 10, 0),
            ],
        ),
        (
            "ny-autumn-twenty",
            zoned("America/New_York", "*/20 * * * *", utc(11, 3, 5, 10)),
            vec![
                utc(11, 3, 5, 20),
                utc(11, 3, 5, 40),
                utc(11, 3, 7, 0),
                utc(11, 3, 7, 20),
                utc(11, 3, 7, 40),
            ],
        ),
        // Lord Howe moves 30 minutes. 6 October 2030, 02:00 +10:30 becomes 02:30 +11:
        // 02:00 and 02:20 run once, at 15:30 UTC.
        (
            "lord-howe-spring",
            zoned("Australia/Lord_Howe", "*/20 * * * *", utc(10, 5, 15, 0)),
            vec![
                utc(10, 5, 15, 10),
                utc(10, 5, 15, 30),
                utc(10, 5, 15, 40),
                utc(10, 5, 16, 0),
                utc(10, 5, 16, 20),
            ],
        ),
        // 7 April 2030, 02:00 +11 becomes 01:30 +10:30: 01:40 runs once.
        (
            "lord-howe-autumn",
            zoned("Australia/Lord_Howe", "*/20 * * * *", utc(4, 6, 14, 10)),
            vec![
                utc(4, 6, 14, 20),
                utc(4, 6, 14, 40),
                utc(4, 6, 15, 30),
                utc(4, 6, 15, 50),
                utc(4, 6, 16, 10),
            ],
        ),
    ];
    for (id, schedule, expected) in cases {
        let created = create(&mut schedules, id, schedule).await;
        assert_eq!(times(&created.next_run_times), expected, "{id} as created");
        assert_eq!(
            times(&read(&mut schedules, id).await.next_run_times),
            expected,
            "{id} read back"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_one_shot_fires_once_then_is_completed() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    let at = now_ms() + 1500;
    let created = create(
        &mut schedules,
        "once",
        proto::Schedule {
            timetable: Some(Timetable::OnceTime(timestamp(at))),
            job: Some(get(target.url("/once"))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(times(&created.next_run_times), [at]);

    assert!(target.wait_for(1, SOON).await);
    assert_eq!(keys(&target), [run_key("once", &timestamp(at))]);
    let done = wait_schedule(&mut schedules, "once", |s| {
        s.state == ScheduleState::Completed as i32
    })
    .await;
    assert!(done.next_run_times.is_empty());
    assert_eq!(done.run_count, 1);
    assert_eq!(done.last_run_time, Some(timestamp(at)));
    // Time is the subject: nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(target.count(), 1);
    let runs = all_runs(&mut schedules, "once").await;
    assert_eq!(runs.len(), 1);
    let job = get_job(&mut client, &runs[0].job_id).await;
    assert_eq!(job.schedule_time, Some(timestamp(at)));
    // A completed schedule is neither paused nor resumed.
    let err = pause(&mut schedules, "once").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = resume(&mut schedules, "once").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_due_at_once_fires_in_its_create_and_shows_that_run() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    // An interval with no start time is due when it is made.
    let created = create(
        &mut schedules,
        "now",
        every(HOUR_MS as u64, get(target.url("/now"))),
    )
    .await;
    assert_eq!(created.run_count, 1, "{created:#?}");
    assert_eq!(created.recent_runs.len(), 1, "{created:#?}");
    assert_eq!(
        created.last_run_time,
        Some(created.recent_runs[0].fire_time.unwrap())
    );
    assert!(target.wait_for(1, SOON).await);
    // One due later has no runs yet, and shows none.
    let later = create(&mut schedules, "later", idle(&target.url("/later"))).await;
    assert_eq!((later.run_count, later.recent_runs.len()), (0, 0));
    server.stop().await;
}

/// More schedules due in the same instant than one turn of the writer fires: the
/// rest fire in the turns after, each once, none lost and none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_schedules_due_at_once_than_a_turn_fires_each_fire_once() {
    const COUNT: usize = 1_200;
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let at = whole_second_after(5_000);
    let url = target.url("/many");
    let client = schedules(server.addr).await;
    let created: Vec<String> = futures::stream::iter(0..COUNT)
        .map(|n| {
            let (url, mut schedules) = (url.clone(), client.clone());
            async move {
                let id = format!("many-{n:04}");
                let once = proto::Schedule {
                    timetable: Some(Timetable::OnceTime(timestamp(at))),
                    job: Some(get(url)),
                    ..Default::default()
                };
                create(&mut schedules, &id, once).await;
                id
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        now_ms() < at,
        "the creates took past the due time; the test proves nothing"
    );

    assert!(
        target.wait_for(COUNT, Duration::from_secs(30)).await,
        "{} of {COUNT} called",
        target.count()
    );
    let expected: HashSet<String> = created
        .iter()
        .map(|id| run_key(id, &timestamp(at)))
        .collect();
    let got: HashSet<String> = keys(&target).into_iter().collect();
    assert_eq!(got, expected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(target.count(), COUNT, "no run made twice");
    let mut schedules = schedules(server.addr).await;
    for id in ["many-0000", "many-0599", "many-1199"] {
        let s = read(&mut schedules, id).await;
        assert_eq!(s.state, ScheduleState::Completed as i32, "{s:#?}");
        assert_eq!(
            (s.run_count, s.last_run_time),
            (1, Some(timestamp(at))),
            "{s:#?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_fires_again_only_after_resume_and_makes_up_nothing() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    create(
        &mut schedules,
        "lull",
        every(1000, get(target.url("/lull"))),
    )
    .await;
    assert!(target.wait_for(1, SOON).await);

    let paused = pause(&mut schedules, "lull").await.unwrap();
    let paused_at = now_ms();
    assert_eq!(paused.state, ScheduleState::Paused as i32);
    assert!(paused.next_run_times.is_empty());
    let before = paused.run_count as usize;
    // What was submitted before the pause still runs; then nothing, over 2.5 intervals.
    assert!(target.wait_for(before, SOON).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(target.count(), before);
    assert_eq!(all_runs(&mut schedules, "lull").await.len(), before);
    let still = read(&mut schedules, "lull").await;
    assert_eq!(still.state, ScheduleState::Paused as i32);
    assert_eq!(still.run_count as usize, before);
    let err = pause(&mut schedules, "lull").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let resumed_at = now_ms();
    let resumed = resume(&mut schedules, "lull").await.unwrap();
    assert_eq!(resumed.state, ScheduleState::Active as i32);
    let next = times(&resumed.next_run_times);
    assert_eq!(next.len(), 5);
    assert!(next[0] >= resumed_at, "{next:?} from {resumed_at} on");
    assert!(target.wait_for(before + 1, SOON).await);
    let runs = all_runs(&mut schedules, "lull").await;
    for t in timetable_fire_times(&runs) {
        assert!(
            t <= paused_at || t >= resumed_at,
            "{t} was due while paused ({paused_at}..{resumed_at})"
        );
    }
    let err = resume(&mut schedules, "lull").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn trigger_submits_the_job_now_even_when_paused_and_leaves_the_timetable() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    let created = create(&mut schedules, "manual", idle(&target.url("/manual"))).await;

    let asked = now_ms();
    let first = trigger(&mut schedules, "manual").await.unwrap();
    assert_eq!(first.schedule_id, "manual");
    assert_eq!(first.trigger, RunTrigger::Manual as i32);
    let fired = fire_time(&first);
    assert!(
        (asked..=now_ms()).contains(&fired),
        "{fired} is when it was asked"
    );
    let job = wait_status(&mut client, &first.job_id, JobStatus::Succeeded, SOON).await;
    assert_eq!(job.schedule_id, "manual");
    // A triggered run has no due time: its key names its job instead.
    assert_eq!(keys(&target), [format!("manual/manual/{}", first.job_id)]);
    let after = read(&mut schedules, "manual").await;
    assert_eq!(after.next_run_times, created.next_run_times);
    assert_eq!(after.state, ScheduleState::Active as i32);
    assert_eq!(after.run_count, 1);

    pause(&mut schedules, "manual").await.unwrap();
    let second = trigger(&mut schedules, "manual").await.unwrap();
    assert_eq!(second.trigger, RunTrigger::Manual as i32);
    wait_status(&mut client, &second.job_id, JobStatus::Succeeded, SOON).await;
    assert_eq!(target.count(), 2);
    let after = read(&mut schedules, "manual").await;
    assert_eq!(after.state, ScheduleState::Paused as i32);
    assert_eq!(after.run_count, 2);
    assert_eq!(
        job_ids(&after.recent_runs),
        [second.job_id.clone(), first.job_id.clone()]
    );
    assert!(
        after
            .recent_runs
            .iter()
            .all(|r| r.trigger == RunTrigger::Manual as i32)
    );
    // Resumed, the timetable is where it was.
    let resumed = resume(&mut schedules, "manual").await.unwrap();
    assert_eq!(resumed.next_run_times, created.next_run_times);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_replaces_only_what_its_mask_names() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    create(
        &mut schedules,
        "changing",
        proto::Schedule {
            description: "export".into(),
            ..every(1000, get(target.url("/old")))
        },
    )
    .await;
    wait_received_on(&target, "/old", 1).await;

    // Only the job: the timetable and the description stay.
    let changed = update(
        &mut schedules,
        Some(proto::Schedule {
            id: "changing".into(),
            description: "not this".into(),
            ..every(5000, get(target.url("/new")))
        }),
        &["job"],
    )
    .await
    .unwrap();
    assert_eq!(
        changed.job.unwrap().request.unwrap().url,
        target.url("/new")
    );
    assert_eq!(changed.description, "export");
    assert_eq!(changed.timetable, Some(Timetable::Interval(ms(1000))));
    assert_eq!(gaps(&times(&changed.next_run_times)), [1000; 4]);
    wait_received_on(&target, "/new", 2).await;
    // Every run due after the update calls the new URL.
    let jobs = jobs_of(&mut client, "changing").await;
    let due_of = |path: &str| -> Vec<i64> {
        jobs.iter()
            .filter(|j| j.request.as_ref().unwrap().url == target.url(path))
            .map(|j| millis(j.schedule_time.as_ref().unwrap()))
            .collect()
    };
    let (old, new) = (due_of("/old"), due_of("/new"));
    assert!(!old.is_empty() && !new.is_empty(), "{jobs:#?}");
    assert_eq!(old.len() + new.len(), jobs.len());
    assert!(
        old.iter().max() < new.iter().min(),
        "old {old:?} then new {new:?}"
    );

    // Only the interval: the job stays.
    let changed = update(
        &mut schedules,
        Some(proto::Schedule {
            id: "changing".into(),
            ..every(3000, get(target.url("/not-this")))
        }),
        &["interval"],
    )
    .await
    .unwrap();
    assert_eq!(changed.timetable, Some(Timetable::Interval(ms(3000))));
    assert_eq!(
        changed.job.unwrap().request.unwrap().url,
        target.url("/new")
    );
    assert_eq!(changed.description, "export");
    assert_eq!(changed.state, ScheduleState::Active as i32);
    assert_eq!(gaps(&times(&changed.next_run_times)), [3000; 4]);

    // No mask: what the request sets changes, the rest stays (AIP-134).
    let described = update(
        &mut schedules,
        Some(proto::Schedule {
            id: "changing".into(),
            description: "nightly export".into(),
            ..Default::default()
        }),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(described.description, "nightly export");
    assert_eq!(described.timetable, Some(Timetable::Interval(ms(3000))));
    assert_eq!(
        described.job.unwrap().request.unwrap().url,
        target.url("/new")
    );
    // `*` alone: everything as the request has it.
    let replaced = update(
        &mut schedules,
        Some(proto::Schedule {
            id: "changing".into(),
            ..every(4000, get(target.url("/all")))
        }),
        &["*"],
    )
    .await
    .unwrap();
    assert_eq!(replaced.description, "");
    assert_eq!(replaced.timetable, Some(Timetable::Interval(ms(4000))));
    assert_eq!(
        replaced.job.unwrap().request.unwrap().url,
        target.url("/all")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_update_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let start = whole_second_after(HOUR_MS);
    create(
        &mut schedules,
        "steady",
        proto::Schedule {
            description: "kept".into(),
            end_time: Some(timestamp(start + 10 * HOUR_MS)),
            catchup_window: Some(ms(30_000)),
            ..idle("http://127.0.0.1:9/steady")
        },
    )
    .await;
    let before = read(&mut schedules, "steady").await;
    let valid = || proto::Schedule {
        id: "steady".into(),
        description: "changed".into(),
        ..every(2000, get("http://127.0.0.1:9/changed"))
    };
    let cases: Vec<(Option<proto::Schedule>, Vec<&str>, &str)> = vec![
        (Some(valid()), vec!["state"], "update_mask.paths[0]"),
        (
            Some(valid()),
            vec!["description", "run_count"],
            "update_mask.paths[1]",
        ),
        (
            Some(proto::Schedule {
                timetable: Some(Timetable::Interval(ms(500))),
                ..valid()
            }),
            vec!["interval"],
            "schedule.interval",
        ),
        (
            Some(proto::Schedule {
                timetable: Some(Timetable::Cron("every day".into())),
                ..valid()
            }),
            vec!["cron"],
            "schedule.cron",
        ),
        (
            Some(proto::Schedule {
                job: Some(get("ftp://127.0.0.1/x")),
                ..valid()
            }),
            vec!["description", "job"],
            "schedule.job.request.url",
        ),
        (
            Some(proto::Schedule {
                job: Some(JobSpec {
                    idempotency_key: "mine".into(),
                    ..get("http://127.0.0.1:9/x")
                }),
                ..valid()
            }),
            vec!["job"],
            "schedule.job.idempotency_key",
        ),
        (
            Some(proto::Schedule {
                end_time: Some(timestamp(start - 1000)),
                ..valid()
            }),
            vec!["end_time"],
            "schedule.end_time",
        ),
        (
            Some(proto::Schedule {
                time_zone: "Mars/Olympus".into(),
                ..valid()
            }),
            vec!["time_zone"],
            "schedule.time_zone",
        ),
        (None, vec!["description"], "schedule"),
    ];
    for (schedule, paths, field) in cases {
        let err = update(&mut schedules, schedule, &paths).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{paths:?}: {err:?}");
        assert_eq!(bad_fields(&err), [field], "{paths:?}: {}", err.message());
        assert_eq!(
            read(&mut schedules, "steady").await,
            before,
            "{paths:?} changed nothing"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_schedule_stops_and_its_jobs_and_runs_stay() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    create(
        &mut schedules,
        "gone",
        every(1000, get(target.url("/gone"))),
    )
    .await;
    assert!(target.wait_for(2, SOON).await);

    schedules
        .delete_schedule(proto::DeleteScheduleRequest { id: "gone".into() })
        .await
        .unwrap();
    let err = read_err(&mut schedules, "gone").await;
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = schedules
        .delete_schedule(proto::DeleteScheduleRequest { id: "gone".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let jobs = jobs_of(&mut client, "gone").await;
    assert!(jobs.len() >= 2);
    for job in &jobs {
        wait_status(&mut client, &job.id, JobStatus::Succeeded, SOON).await;
    }
    // Time is the subject: nothing more fires.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(target.count(), jobs.len());
    let kept = jobs_of(&mut client, "gone").await;
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(kept.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ids);
    assert!(kept.iter().all(|j| j.schedule_id == "gone"));
    // Its runs are still listed, by its id and among all.
    let runs = all_runs(&mut schedules, "gone").await;
    let mut listed = job_ids(&runs);
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(all_runs(&mut schedules, "").await, runs);
    server.stop().await;
}

#[tokio::test]
async fn schedules_are_listed_by_id_in_pages() {
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    for id in ["e", "c", "a", "d", "b"] {
        create(&mut schedules, id, idle("http://127.0.0.1:9/x")).await;
    }
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = schedules
            .list_schedules(proto::ListSchedulesRequest {
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        for schedule in &page.schedules {
            assert_eq!(schedule.next_run_times.len(), 5, "{schedule:#?}");
            assert!(schedule.recent_runs.is_empty());
        }
        pages.push(
            page.schedules
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);

    let err = schedules
        .list_schedules(proto::ListSchedulesRequest {
            page_size: 2,
            page_token: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["page_token"]);
    let err = schedules
        .list_schedules(proto::ListSchedulesRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["page_size"]);
    server.stop().await;
}

#[tokio::test]
async fn runs_are_listed_newest_first_for_one_schedule_or_all() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    create(&mut schedules, "left", idle(&target.url("/left"))).await;
    create(&mut schedules, "right", idle(&target.url("/right"))).await;
    let mut fired = Vec::new();
    for id in ["left", "right", "left", "right", "left"] {
        // Newest first is by fire time: one millisecond apart at least.
        let since = now_ms();
        while now_ms() == since {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        fired.push(trigger(&mut schedules, id).await.unwrap());
    }
    fired.reverse();
    let _ = settled_runs(&mut schedules, "").await;

    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = schedules
            .list_schedule_runs(proto::ListScheduleRunsRequest {
                schedule_id: String::new(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(job_ids(&page.runs));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let ids = job_ids(&fired);
    assert_eq!(
        pages,
        [ids[0..2].to_vec(), ids[2..4].to_vec(), ids[4..].to_vec()]
    );
    let left = all_runs(&mut schedules, "left").await;
    assert_eq!(
        job_ids(&left),
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    for (run, asked) in left.iter().zip(fired.iter().step_by(2)) {
        assert_eq!(run.schedule_id, "left");
        assert_eq!(run.fire_time, asked.fire_time);
        assert_eq!(run.trigger, RunTrigger::Manual as i32);
        assert_eq!(run.status, JobStatus::Succeeded as i32);
        assert_eq!((run.attempt, run.status_code), (1, 200));
        assert!(run.start_time.is_some() && run.finish_time.is_some());
    }
    let err = schedules
        .list_schedule_runs(proto::ListScheduleRunsRequest {
            schedule_id: "left".into(),
            page_size: 2,
            page_token: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["page_token"]);
    let err = schedules
        .list_schedule_runs(proto::ListScheduleRunsRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["page_size"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_s_jobs_are_listed_and_watched_by_its_id() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    // Watched before it exists.
    let mut events = client
        .clone()
        .watch_jobs(proto::WatchJobsRequest {
            schedule_id: "watched".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    create(
        &mut schedules,
        "watched",
        every(1000, get(target.url("/w"))),
    )
    .await;
    create(&mut schedules, "other", every(1000, get(target.url("/o")))).await;
    let plain = submit(&mut client, get(target.url("/plain"))).await;

    let mut changes: HashMap<String, Vec<JobStatus>> = HashMap::new();
    while changes
        .values()
        .filter(|c| c.last() == Some(&JobStatus::Succeeded))
        .count()
        < 2
    {
        let event = tokio::time::timeout(SOON, events.message())
            .await
            .expect("an event within 10 s")
            .expect("the stream did not fail")
            .expect("the stream goes on");
        if event.kind == JobEventKind::Heartbeat as i32 {
            continue;
        }
        assert_eq!(event.kind, JobEventKind::Change as i32);
        assert_eq!(event.schedule_id, "watched", "{event:?}");
        changes
            .entry(event.job_id)
            .or_default()
            .push(JobStatus::try_from(event.status).unwrap());
    }
    drop(events);
    pause(&mut schedules, "watched").await.unwrap();
    pause(&mut schedules, "other").await.unwrap();
    let runs = settled_runs(&mut schedules, "watched").await;
    wait_status(&mut client, &plain, JobStatus::Succeeded, SOON).await;

    // Listed: exactly the schedule's jobs.
    let jobs = jobs_of(&mut client, "watched").await;
    assert!(jobs.iter().all(|j| j.schedule_id == "watched"));
    let listed: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(listed, job_ids(&runs).into_iter().collect::<HashSet<_>>());
    let others: HashSet<String> = jobs_of(&mut client, "other")
        .await
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(!others.is_empty());
    assert!(listed.is_disjoint(&others));
    assert!(!listed.contains(&plain));
    // Watched: only its jobs, each change in order.
    for (id, statuses) in &changes {
        assert!(listed.contains(id), "{id} is not a job of the schedule");
        if statuses.last() == Some(&JobStatus::Succeeded) {
            assert_eq!(
                statuses,
                &[JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
                "job {id}"
            );
        }
    }
    // A schedule id that could name no schedule is refused, naming the field.
    let bad = client
        .watch_jobs(proto::WatchJobsRequest {
            schedule_id: "Not An Id".into(),
            ..Default::default()
        })
        .await
        .expect_err("a bad schedule id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&bad), ["schedule_id"]);
    let bad = client
        .list_jobs(proto::ListJobsRequest {
            schedule_id: "Not An Id".into(),
            ..Default::default()
        })
        .await
        .expect_err("a bad schedule id");
    assert_eq!(bad_fields(&bad), ["schedule_id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_go_to_the_schedule_s_queue_and_take_its_defaults_at_each_run() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut schedules = schedules(server.addr).await;
    let mut queues = queues(server.addr).await;
    let defaults = |max_attempts: i32| proto::Queue {
        name: "reports".into(),
        job_defaults: Some(proto::JobDefaults {
            max_attempts: Some(max_attempts),
            ..Default::default()
        }),
        ..Default::default()
    };
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(defaults(5)),
        })
        .await
        .unwrap();
    create(
        &mut schedules,
        "defaulted",
        every(1000, get_in("reports", target.url("/defaulted"))),
    )
    .await;
    let mut own = get_in("reports", target.url("/own"));
    own.max_attempts = Some(2);
    create(&mut schedules, "own", every(1000, own)).await;

    let job = wait_job_of(&mut client, "defaulted", |_| true).await;
    assert_eq!((job.queue.as_str(), job.max_attempts), ("reports", 5));
    let job = wait_job_of(&mut client, "own", |_| true).await;
    assert_eq!((job.queue.as_str(), job.max_attempts), ("reports", 2));

    // The queue's defaults as they are at each run, not at creation.
    queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(defaults(7)),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["job_defaults.max_attempts".into()],
            }),
        })
        .await
        .unwrap();
    let since = now_ms();
    let later = |j: &proto::Job| millis(j.create_time.as_ref().unwrap()) > since;
    let job = wait_job_of(&mut client, "defaulted", later).await;
    assert_eq!((job.queue.as_str(), job.max_attempts), ("reports", 7));
    let job = wait_job_of(&mut client, "own", later).await;
    assert_eq!((job.queue.as_str(), job.max_attempts), ("reports", 2));
    pause(&mut schedules, "defaulted").await.unwrap();
    pause(&mut schedules, "own").await.unwrap();
    let in_queue = client
        .list_jobs(proto::ListJobsRequest {
            queue: "reports".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let scheduled =
        jobs_of(&mut client, "defaulted").await.len() + jobs_of(&mut client, "own").await.len();
    assert_eq!(in_queue.total_size as usize, scheduled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_survives_a_restart_and_fires_each_due_time_once() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules_before = schedules(server.addr).await;
    create(
        &mut schedules_before,
        "durable",
        every(1000, get(target.url("/durable"))),
    )
    .await;
    assert!(target.wait_for(2, SOON).await);
    let db = server.db.clone();
    server.stop().await;

    let server = Server::restart(db, |_| {}).await;
    let mut schedules = schedules(server.addr).await;
    let seen = target.count();
    assert!(target.wait_for(seen + 3, SOON).await);
    let paused = pause(&mut schedules, "durable").await.unwrap();
    let runs = all_runs(&mut schedules, "durable").await;
    assert_eq!(runs.len(), paused.run_count as usize);
    let fired = timetable_fire_times(&runs);
    assert!(fired.len() >= 5);
    assert!(
        gaps(&fired).iter().all(|g| *g == 1000),
        "every due time once, none skipped: {fired:?}"
    );
    server.stop().await;
}

/// Runs an interval-1s schedule with `catchup_window`, stops the server for 3.5 s
/// and starts it again on the same database; the fire times then, and the times
/// the server stopped and started again.
async fn fire_times_across_downtime(
    catchup_window: Option<prost_types::Duration>,
) -> (Vec<i64>, i64, i64) {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules_before = schedules(server.addr).await;
    create(
        &mut schedules_before,
        "late",
        proto::Schedule {
            catchup_window,
            ..every(1000, get(target.url("/late")))
        },
    )
    .await;
    assert!(target.wait_for(2, SOON).await);
    let db = server.db.clone();
    server.stop().await;
    let stopped = now_ms();
    // Time is the subject: three and a half intervals without a server.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let restarted = now_ms();
    let server = Server::restart(db, |_| {}).await;
    let mut schedules = schedules(server.addr).await;
    wait_schedule(&mut schedules, "late", |s| {
        s.last_run_time
            .as_ref()
            .is_some_and(|t| millis(t) > restarted + 1000)
    })
    .await;
    pause(&mut schedules, "late").await.unwrap();
    let fired = timetable_fire_times(&all_runs(&mut schedules, "late").await);
    server.stop().await;
    (fired, stopped, restarted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_times_missed_beyond_the_catchup_window_fold_into_one_run() {
    let (fired, stopped, restarted) = fire_times_across_downtime(Some(ms(0))).await;
    let gaps = gaps(&fired);
    let long: Vec<&i64> = gaps.iter().filter(|g| **g != 1000).collect();
    assert_eq!(long.len(), 1, "one gap, for the downtime: {fired:?}");
    assert!(
        *long[0] >= 3000 && *long[0] % 1000 == 0,
        "the missed due times made one run: {fired:?}"
    );
    let inside: Vec<&i64> = fired
        .iter()
        .filter(|t| **t > stopped && **t < restarted)
        .collect();
    assert!(inside.len() <= 1, "{inside:?} were due while down");
    // The one run is for the latest due time missed.
    let folded = fired[gaps.iter().position(|g| *g != 1000).unwrap() + 1];
    assert!(
        folded > restarted - 1000,
        "{folded} is the latest due time before {restarted}: {fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_times_missed_within_the_catchup_window_each_fire_late() {
    let (fired, stopped, restarted) = fire_times_across_downtime(None).await;
    assert!(
        gaps(&fired).iter().all(|g| *g == 1000),
        "every due time fired: {fired:?}"
    );
    assert!(fired[0] < stopped && *fired.last().unwrap() > restarted);
    let inside = fired
        .iter()
        .filter(|t| **t > stopped && **t < restarted)
        .count();
    assert!(inside >= 3, "{inside} due while down: {fired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_fire_each_due_time_once() {
    let target = Target::start().await.unwrap();
    let first = Server::start().await;
    let second = Server::start_beside(&first, |_| {}).await;
    let mut through_first = schedules(first.addr).await;
    let mut through_second = schedules(second.addr).await;
    create(
        &mut through_first,
        "shared",
        every(1000, get(target.url("/shared"))),
    )
    .await;
    assert!(target.wait_for(5, SOON).await);
    pause(&mut through_second, "shared").await.unwrap();
    let runs = settled_runs(&mut through_first, "shared").await;
    let fired = timetable_fire_times(&runs);
    assert!(fired.len() >= 5);
    assert!(
        gaps(&fired).iter().all(|g| *g == 1000),
        "once per due time: {fired:?}"
    );
    let mut sent = keys(&target);
    sent.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|r| run_key("shared", r.fire_time.as_ref().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(sent, expected, "each key sent once");
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_field_and_create_nothing() {
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    let url = "http://127.0.0.1:9/x";
    let valid = || every(1000, get(url));
    let start = whole_second_after(HOUR_MS);
    let job = |f: &dyn Fn(&mut JobSpec)| {
        let mut spec = get(url);
        f(&mut spec);
        proto::Schedule {
            job: Some(spec),
            ..valid()
        }
    };
    let negative = prost_types::Duration {
        seconds: -1,
        nanos: 0,
    };
    let cases: Vec<(&str, Option<proto::Schedule>, &str)> = vec![
        ("bad", None, "schedule"),
        (
            "bad",
            Some(proto::Schedule {
                timetable: None,
                ..valid()
            }),
            "schedule.timetable",
        ),
        ("bad", Some(cron("not a cron", get(url))), "schedule.cron"),
        ("bad", Some(cron("0 0 30 2 *", get(url))), "schedule.cron"),
        // A year field is not part of the contract.
        (
            "bad",
            Some(cron("0 0 12 * * * 2030", get(url))),
            "schedule.cron",
        ),
        ("bad", Some(every(500, get(url))), "schedule.interval"),
        ("bad", Some(every(0, get(url))), "schedule.interval"),
        (
            "bad",
            Some(proto::Schedule {
                time_zone: "Mars/Olympus".into(),
                ..cron("0 9 * * *", get(url))
            }),
            "schedule.time_zone",
        ),
        (
            "bad",
            Some(proto::Schedule {
                start_time: Some(timestamp(start)),
                end_time: Some(timestamp(start - 1000)),
                ..valid()
            }),
            "schedule.end_time",
        ),
        (
            "bad",
            Some(proto::Schedule {
                catchup_window: Some(negative),
                ..valid()
            }),
            "schedule.catchup_window",
        ),
        (
            "bad",
            Some(proto::Schedule {
                catchup_window: Some(ms(7 * 24 * HOUR_MS as u64 + 1000)),
                ..valid()
            }),
            "schedule.catchup_window",
        ),
        (
            "bad",
            Some(proto::Schedule {
                job: None,
                ..valid()
            }),
            "schedule.job",
        ),
        (
            "bad",
            Some(job(&|s| s.schedule_time = Some(timestamp(start)))),
            "schedule.job.schedule_time",
        ),
        (
            "bad",
            Some(job(&|s| s.idempotency_key = "mine".into())),
            "schedule.job.idempotency_key",
        ),
        (
            "bad",
            Some(job(&|s| {
                s.request.as_mut().unwrap().url = "ftp://h/x".into()
            })),
            "schedule.job.request.url",
        ),
        ("Bad Id!", Some(valid()), "schedule_id"),
    ];
    for (id, schedule, field) in cases {
        let err = schedules
            .create_schedule(proto::CreateScheduleRequest {
                schedule_id: id.into(),
                schedule,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(bad_fields(&err), [field], "{field}: {}", err.message());
    }
    let err = read_err(&mut schedules, "bad").await;
    assert_eq!(err.code(), Code::NotFound, "nothing was created");
    let listed = schedules
        .list_schedules(proto::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.schedules.is_empty(), "{listed:#?}");

    // A taken id.
    create(&mut schedules, "taken", idle(url)).await;
    let err = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "taken".into(),
            schedule: Some(valid()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let taken = read(&mut schedules, "taken").await;
    assert_eq!(
        taken.timetable,
        Some(Timetable::Interval(ms(HOUR_MS as u64))),
        "the first one stays"
    );

    // Unknown schedules.
    let ghost = "ghost";
    let err = read_err(&mut schedules, ghost).await;
    assert_eq!(err.code(), Code::NotFound, "get: {err:?}");
    let err = pause(&mut schedules, ghost).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "pause: {err:?}");
    let err = resume(&mut schedules, ghost).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "resume: {err:?}");
    let err = trigger(&mut schedules, ghost).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "trigger: {err:?}");
    let err = schedules
        .delete_schedule(proto::DeleteScheduleRequest { id: ghost.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "delete: {err:?}");
    let err = update(
        &mut schedules,
        Some(proto::Schedule {
            id: ghost.into(),
            ..valid()
        }),
        &["description"],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "update: {err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overlap_skip_a_due_time_passes_while_a_run_is_unfinished() {
    // One target per schedule, so each one's calls in flight are counted apart.
    let skipping = Target::start().await.unwrap();
    let allowing = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut schedules = schedules(server.addr).await;
    // Every call takes 2.5 s; both schedules are due every second.
    let slow = |target: &Target| get(target.url("/slow?delay_ms=2500"));
    let created = create(
        &mut schedules,
        "skip",
        proto::Schedule {
            overlap_policy: proto::OverlapPolicy::Skip as i32,
            ..every(1000, slow(&skipping))
        },
    )
    .await;
    assert_eq!(created.overlap_policy, proto::OverlapPolicy::Skip as i32);
    let allowed = create(&mut schedules, "allow", every(1000, slow(&allowing))).await;
    assert_eq!(allowed.overlap_policy, proto::OverlapPolicy::Allow as i32);

    // Time is the subject: let six due times pass.
    tokio::time::sleep(Duration::from_millis(6200)).await;
    let paused = pause(&mut schedules, "skip").await.unwrap();
    pause(&mut schedules, "allow").await.unwrap();

    // Never two of its calls at once; the due times that came meanwhile are counted.
    assert_eq!(skipping.max_in_flight(), 1);
    assert!(
        allowing.max_in_flight() >= 2,
        "{}",
        allowing.max_in_flight()
    );
    let runs = all_runs(&mut schedules, "skip").await;
    let fired = timetable_fire_times(&runs);
    assert!(
        gaps(&fired).iter().all(|gap| *gap >= 3000),
        "a run waits out the one before: {fired:?}"
    );
    assert!(paused.skipped_run_count >= 2, "{paused:?}");
    assert_eq!(paused.run_count as usize, fired.len());
    // Each due time so far either ran or was skipped, none both.
    let anchor = millis(created.create_time.as_ref().unwrap());
    let last = millis(paused.last_run_time.as_ref().unwrap());
    let due_times = (paused.run_count + paused.skipped_run_count) as i64;
    assert!(
        (((last - anchor) / 1000 + 1)..=7).contains(&due_times),
        "{due_times} due times from {anchor} to {last}"
    );
    // Runs are its only jobs; the allowing schedule ran one per due time.
    let allowing_runs = timetable_fire_times(&all_runs(&mut schedules, "allow").await);
    assert!(gaps(&allowing_runs).iter().all(|gap| *gap == 1000));
    assert!(allowing_runs.len() > fired.len());

    // A bad policy is refused by name.
    let bad = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "bad".into(),
            schedule: Some(proto::Schedule {
                overlap_policy: 7,
                ..every(1000, slow(&skipping))
            }),
        })
        .await
        .expect_err("an unknown policy");
    assert_eq!(bad_fields(&bad), ["schedule.overlap_policy"]);
    server.stop().await;
}
