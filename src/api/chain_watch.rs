//! `WatchChain`: a chain as it stands, then each move of its steps, then the
//! chain as it ended. It rides on the job change feed: a change to one of the
//! chain's jobs (or a quiet second) reads the chain again and sends what moved.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use super::chains::chain_view;
use crate::engine::Engine;
use crate::engine::events::{Start, WatchFilter, Watched};
use crate::proto;

/// Longest a watch goes without reading its chain again.
const QUIET: Duration = Duration::from_secs(1);
/// Items waiting for a slow watcher before the watch waits for it.
const BUFFERED: usize = 64;

pub type ChainEvents = mpsc::Receiver<Result<proto::ChainEvent, Status>>;

/// Starts following chain `id` of `namespace`; NOT_FOUND when there is none.
pub async fn watch(engine: Engine, namespace: String, id: String) -> Result<ChainEvents, Status> {
    // Subscribed before the first read, so no move falls between the two.
    let every_job = WatchFilter {
        namespace: namespace.clone(),
        ..WatchFilter::default()
    };
    let mut changes = engine.watch(every_job, Start::Now, QUIET).await?;
    let first = read(&engine, &namespace, &id).await?;
    let (tx, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(async move {
        let mut last = first;
        let ended = is_ended(&last);
        let snapshot = proto::ChainEvent {
            kind: if ended {
                proto::ChainEventKind::Ended
            } else {
                proto::ChainEventKind::Snapshot
            } as i32,
            status: last.status,
            step: None,
            chain: Some(last.clone()),
        };
        if tx.send(Ok(snapshot)).await.is_err() || ended {
            return;
        }
        let mut read_at = tokio::time::Instant::now();
        loop {
            let wake = tokio::select! {
                item = changes.recv() => match item {
                    Some(Ok(Watched::Change(e))) => jobs_of(&last).contains(e.job_id.as_str()),
                    Some(Ok(_)) => false,
                    Some(Err(error)) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                    // The service is stopping.
                    None => return,
                },
                _ = tokio::time::sleep_until(read_at + QUIET) => true,
                _ = tx.closed() => return,
            };
            if !wake && read_at.elapsed() < QUIET {
                continue;
            }
            read_at = tokio::time::Instant::now();
            let now = match read(&engine, &namespace, &id).await {
                Ok(chain) => chain,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            for event in moves(&last, &now) {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            last = now;
            if is_ended(&last) {
                let _ = tx
                    .send(Ok(proto::ChainEvent {
                        kind: proto::ChainEventKind::Ended as i32,
                        status: last.status,
                        step: None,
                        chain: Some(last),
                    }))
                    .await;
                return;
            }
        }
    });
    Ok(rx)
}

async fn read(engine: &Engine, namespace: &str, id: &str) -> Result<proto::Chain, Status> {
    match engine.store().chain(namespace, id).await? {
        Some(read) => Ok(chain_view(read)),
        None => Err(Status::not_found(format!("chain {id} not found"))),
    }
}

fn is_ended(chain: &proto::Chain) -> bool {
    chain.status != proto::ChainStatus::Running as i32
}

/// The ids of the chain's jobs.
fn jobs_of(chain: &proto::Chain) -> HashSet<&str> {
    chain
        .steps
        .iter()
        .filter(|s| !s.job_id.is_empty())
        .map(|s| s.job_id.as_str())
        .collect()
}

/// A STEP event for each step whose status (or job) moved between two reads.
fn moves(before: &proto::Chain, after: &proto::Chain) -> Vec<proto::ChainEvent> {
    after
        .steps
        .iter()
        .filter(|step| {
            before
                .steps
                .iter()
                .find(|s| s.id == step.id)
                .is_none_or(|s| s.status != step.status || s.job_id != step.job_id)
        })
        .map(|step| proto::ChainEvent {
            kind: proto::ChainEventKind::Step as i32,
            status: after.status,
            step: Some(step.clone()),
            chain: None,
        })
        .collect()
}
