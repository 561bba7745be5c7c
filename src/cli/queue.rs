//! `jobqueue queue ...`: queues, their settings and their jobs by status.

use super::args::{Output, QueueCommand, QueueSettings};
use super::connect::Clients;
use super::fail::Failure;
use super::{json, render};
use crate::proto;

pub async fn run(
    clients: &mut Clients,
    command: QueueCommand,
    output: Output,
) -> Result<u8, Failure> {
    let queues = &mut clients.queues;
    let queue = match command {
        QueueCommand::List => {
            let page = queues
                .list_queues(proto::ListQueuesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if output == Output::Json {
                json::print("jobqueue.v1.ListQueuesResponse", &page);
            } else {
                let rows: Vec<Vec<String>> = page.queues.iter().map(row).collect();
                println!(
                    "{}",
                    render::table(
                        &[
                            "NAME",
                            "STATE",
                            "WAITING",
                            "SCHEDULED",
                            "RUNNING",
                            "SUCCEEDED",
                            "FAILED",
                            "CANCELED",
                            "RATE/S"
                        ],
                        &rows
                    )
                );
            }
            return Ok(0);
        }
        QueueCommand::Get { name } => queues.get_queue(proto::GetQueueRequest { name }).await?,
        QueueCommand::Create(settings) => {
            let (queue, _) = settings_of(settings);
            queues
                .create_queue(proto::CreateQueueRequest { queue: Some(queue) })
                .await?
        }
        QueueCommand::Update(settings) => {
            let (queue, paths) = settings_of(settings);
            if paths.is_empty() {
                return Err(Failure::usage(
                    "update: nothing to change (--max-concurrency, --rate, --burst)",
                ));
            }
            queues
                .update_queue(proto::UpdateQueueRequest {
                    queue: Some(queue),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await?
        }
        QueueCommand::Pause { name } => {
            queues
                .pause_queue(proto::PauseQueueRequest { name })
                .await?
        }
        QueueCommand::Resume { name } => {
            queues
                .resume_queue(proto::ResumeQueueRequest { name })
                .await?
        }
        QueueCommand::Purge { name } => {
            let purged = queues
                .purge_queue(proto::PurgeQueueRequest { name: name.clone() })
                .await?
                .into_inner();
            match output {
                Output::Json => json::print("jobqueue.v1.PurgeQueueResponse", &purged),
                Output::Human => println!("{name}: {} queued jobs canceled", purged.canceled),
            }
            return Ok(0);
        }
    }
    .into_inner();
    show(&queue, output);
    Ok(0)
}

/// The queue the flags describe, and the update mask paths they name.
fn settings_of(settings: QueueSettings) -> (proto::Queue, Vec<String>) {
    let mut paths = Vec::new();
    if settings.max_concurrency.is_some() {
        paths.push("max_concurrency".to_string());
    }
    if settings.rate.is_some() {
        paths.push("rate_limit".to_string());
    }
    let queue = proto::Queue {
        name: settings.name,
        max_concurrency: settings.max_concurrency,
        rate_limit: settings.rate.map(|per_second| proto::RateLimit {
            per_second,
            burst: settings.burst,
        }),
        ..Default::default()
    };
    (queue, paths)
}

fn row(q: &proto::Queue) -> Vec<String> {
    let stats = q.stats.unwrap_or_default();
    vec![
        q.name.clone(),
        if q.paused { "paused" } else { "active" }.into(),
        stats.waiting.to_string(),
        stats.scheduled.to_string(),
        stats.running.to_string(),
        stats.succeeded.to_string(),
        stats.failed.to_string(),
        stats.canceled.to_string(),
        format!("{:.1}", stats.dispatch_rate_per_second),
    ]
}

fn show(q: &proto::Queue, output: Output) {
    if output == Output::Json {
        json::print("jobqueue.v1.Queue", q);
        return;
    }
    let mut pairs = vec![
        ("name", q.name.clone()),
        ("state", if q.paused { "paused" } else { "active" }.into()),
        (
            "max concurrency",
            q.max_concurrency.map_or("-".into(), |n| n.to_string()),
        ),
        (
            "rate limit",
            q.rate_limit.as_ref().map_or("-".into(), |r| {
                format!("{}/s, burst {}", r.per_second, r.burst.unwrap_or(1))
            }),
        ),
        ("created", render::when(q.create_time.as_ref())),
        ("updated", render::when(q.update_time.as_ref())),
    ];
    if let Some(s) = &q.stats {
        pairs.extend([
            (
                "jobs",
                format!(
                    "{} waiting, {} scheduled, {} running, {} succeeded, {} failed, {} canceled",
                    s.waiting, s.scheduled, s.running, s.succeeded, s.failed, s.canceled
                ),
            ),
            (
                "oldest waiting",
                render::duration(s.oldest_waiting_age.as_ref()),
            ),
            (
                "started",
                format!(
                    "{} in the last minute ({:.1}/s)",
                    s.dispatched_last_minute, s.dispatch_rate_per_second
                ),
            ),
        ]);
    }
    println!("{}", render::fields(&pairs));
}
