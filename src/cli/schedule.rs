//! `jobqueue schedule ...`: schedules, their timetables and runs.

use super::args::{Output, ScheduleCommand};
use super::connect::Clients;
use super::fail::Failure;
use super::{json, render};
use crate::proto::{self, schedule::Timetable};

pub async fn run(
    clients: &mut Clients,
    command: ScheduleCommand,
    output: Output,
) -> Result<u8, Failure> {
    let schedules = &mut clients.schedules;
    let schedule = match command {
        ScheduleCommand::List => {
            let page = schedules
                .list_schedules(proto::ListSchedulesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if output == Output::Json {
                json::print("jobqueue.v1.ListSchedulesResponse", &page);
            } else {
                let rows: Vec<Vec<String>> = page
                    .schedules
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            state(s.state),
                            timetable(s),
                            render::when(s.next_run_times.first()),
                            s.run_count.to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    render::table(&["ID", "STATE", "TIMETABLE", "NEXT RUN", "RUNS"], &rows)
                );
            }
            return Ok(0);
        }
        ScheduleCommand::Get { id } => {
            schedules
                .get_schedule(proto::GetScheduleRequest { id })
                .await?
        }
        ScheduleCommand::Create { id, file } => {
            let schedule = json::from_file("jobqueue.v1.Schedule", &file, "--file")?;
            schedules
                .create_schedule(proto::CreateScheduleRequest {
                    schedule_id: id.unwrap_or_default(),
                    schedule: Some(schedule),
                })
                .await?
        }
        ScheduleCommand::Pause { id } => {
            schedules
                .pause_schedule(proto::PauseScheduleRequest { id })
                .await?
        }
        ScheduleCommand::Resume { id } => {
            schedules
                .resume_schedule(proto::ResumeScheduleRequest { id })
                .await?
        }
        ScheduleCommand::Trigger { id } => {
            let run = schedules
                .trigger_schedule(proto::TriggerScheduleRequest { id: id.clone() })
                .await?
                .into_inner();
            match output {
                Output::Json => json::print("jobqueue.v1.ScheduleRun", &run),
                Output::Human if run.chain_id.is_empty() => {
                    println!("{id} fired: job {}", run.job_id)
                }
                Output::Human => println!("{id} fired: chain {}", run.chain_id),
            }
            return Ok(0);
        }
        ScheduleCommand::Delete { id } => {
            schedules
                .delete_schedule(proto::DeleteScheduleRequest { id: id.clone() })
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::json!({"id": id, "deleted": true})),
                Output::Human => println!("{id} deleted"),
            }
            return Ok(0);
        }
    }
    .into_inner();
    show(&schedule, output);
    Ok(0)
}

fn state(state: i32) -> String {
    proto::ScheduleState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SCHEDULE_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

/// `cron 0 9 * * MON (Europe/Paris)`, `every 5m`, `once at ...`.
fn timetable(s: &proto::Schedule) -> String {
    match &s.timetable {
        Some(Timetable::Cron(cron)) if s.time_zone.is_empty() => format!("cron {cron}"),
        Some(Timetable::Cron(cron)) => format!("cron {cron} ({})", s.time_zone),
        Some(Timetable::Interval(every)) => format!("every {}", render::duration(Some(every))),
        Some(Timetable::OnceTime(at)) => format!("once at {}", render::when(Some(at))),
        None => "-".into(),
    }
}

fn show(s: &proto::Schedule, output: Output) {
    if output == Output::Json {
        json::print("jobqueue.v1.Schedule", s);
        return;
    }
    let mut pairs = vec![
        ("id", s.id.clone()),
        ("state", state(s.state)),
        ("timetable", timetable(s)),
        (
            "runs",
            format!("{} ({} skipped)", s.run_count, s.skipped_run_count),
        ),
        ("last run", render::when(s.last_run_time.as_ref())),
    ];
    if !s.description.is_empty() {
        pairs.insert(1, ("description", s.description.clone()));
    }
    for next in &s.next_run_times {
        pairs.push(("next run", render::when(Some(next))));
    }
    println!("{}", render::fields(&pairs));
    for run in &s.recent_runs {
        println!(
            "  run {}  {}  {}",
            render::when(run.fire_time.as_ref()),
            if run.chain_id.is_empty() {
                &run.job_id
            } else {
                &run.chain_id
            },
            render::status(run.status),
        );
    }
}
