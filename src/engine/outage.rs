//! How the writer lives through a database that takes no writes: a full disk, a
//! database that is gone, a commit whose answer was lost.
//!
//! - Requests are answered with what happened ([`Unwritten`]), never OK: OK is sent
//!   only after the commit it depends on succeeded.
//! - Outcomes of calls that finished meanwhile are held here and written by the first
//!   turn that commits, before that turn's lease rescue could run them again. A claim
//!   commits only in a turn that also writes every held outcome, so no new call starts
//!   while any is held: at most one outcome per call that was in flight when the
//!   database failed, `JOBQUEUE_CONCURRENCY` in all, each with its response capped at
//!   `JOBQUEUE_RESULT_MAX_BYTES`. Nothing past that can arrive.
//! - While writes fail, the writer tries again every [`RETRY_EVERY`]; requests that
//!   arrive between tries are answered at once with the last failure rather than made
//!   to wait for a database that is not there.
//! - An episode is logged once when it starts (and when its kind changes) and once
//!   when writes have worked for [`EPISODE_QUIET`], and shows in the metrics while
//!   it lasts.

use std::time::Duration;

use tokio::time::Instant;

use super::executor::Completion;
use crate::metrics::Metrics;
use crate::store::{Fault, StoreError};

/// How often writes are tried again while the database takes none.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How long writes must go without failing before an episode is over. A full disk
/// still takes small writes (a cancel, a queue change) while it refuses large ones;
/// without this, every such write would end an episode and the next refusal begin one.
pub const EPISODE_QUIET: Duration = Duration::from_secs(5);

/// Why a write was not answered OK.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unwritten {
    #[error(
        "database {database}: the disk is full; nothing was written. Writes resume by \
         themselves once space is freed"
    )]
    DiskFull { database: String },
    #[error("database {database} is unavailable ({reason}); nothing was written")]
    Unavailable { database: String, reason: String },
    #[error(
        "database {database}: {reason}; the change may or may not be stored. A retry \
         with the same idempotency key is safe"
    )]
    Unknown { database: String, reason: String },
}

struct Episode {
    fault: Fault,
    since: Instant,
    /// Writes refused since it began.
    refused: u64,
    /// What the last failed try said.
    reason: String,
    /// Whether the last try failed: requests are then refused until `retry_at`.
    failing: bool,
    /// When to try again.
    retry_at: Instant,
    last_failure: Instant,
}

pub(crate) struct Outage {
    database: String,
    episode: Option<Episode>,
    held: Vec<Completion>,
    metrics: Metrics,
}

impl Outage {
    pub fn new(database: &str, metrics: Metrics) -> Outage {
        Outage {
            database: database.to_string(),
            episode: None,
            held: Vec::new(),
            metrics,
        }
    }

    /// The answer for `n` requests that arrive between tries while writes fail;
    /// `None` when it is time to try.
    pub fn refusing(&mut self, n: usize, now: Instant) -> Option<Unwritten> {
        let episode = self
            .episode
            .as_mut()
            .filter(|e| e.failing && now < e.retry_at)?;
        episode.refused += n as u64;
        self.metrics.refused_writes(episode.fault, n as u64);
        Some(unwritten(&self.database, episode.fault, &episode.reason))
    }

    /// A try failed with `error` (a fault of the database's, not the request's):
    /// the answer for the requests it carried, `n` of them.
    pub fn failed(&mut self, error: &StoreError, n: usize, now: Instant) -> Unwritten {
        let fault = error.fault().unwrap_or(Fault::Unavailable);
        // What requests refused later, between tries, are told: the cause, not "the
        // outcome is unknown", which holds only for the requests of this try.
        let reason = match error {
            StoreError::CommitUnknown(cause) => cause.to_string(),
            other => other.to_string(),
        };
        match &mut self.episode {
            Some(episode) if episode.fault == fault => {
                episode.refused += n as u64;
                episode.reason = reason.clone();
                episode.failing = true;
                episode.retry_at = now + RETRY_EVERY;
                episode.last_failure = now;
            }
            _ => {
                match fault {
                    Fault::DiskFull => tracing::error!(
                        database = %self.database, %error,
                        "the disk is full: writes are refused with RESOURCE_EXHAUSTED until space is freed; reads go on"
                    ),
                    Fault::Unavailable => tracing::error!(
                        database = %self.database, %error,
                        "the database takes no writes: they are refused with UNAVAILABLE until it answers again"
                    ),
                }
                self.episode = Some(Episode {
                    fault,
                    since: now,
                    refused: n as u64,
                    reason: reason.clone(),
                    failing: true,
                    retry_at: now + RETRY_EVERY,
                    last_failure: now,
                });
            }
        }
        self.metrics.store_refusing(Some(fault));
        self.metrics.refused_writes(fault, n as u64);
        if error.outcome_unknown() {
            Unwritten::Unknown {
                database: self.database.clone(),
                reason: error.to_string(),
            }
        } else {
            unwritten(&self.database, fault, &reason)
        }
    }

    /// A turn committed. The episode, if any, is over once writes have gone
    /// [`EPISODE_QUIET`] without failing.
    pub fn recovered(&mut self, now: Instant) {
        let Some(episode) = self.episode.as_mut() else {
            return;
        };
        episode.failing = false;
        if now.duration_since(episode.last_failure) < EPISODE_QUIET {
            return;
        }
        if let Some(episode) = self.episode.take() {
            tracing::warn!(
                database = %self.database,
                fault = episode.fault.label(),
                lasted_ms = episode.since.elapsed().as_millis() as u64,
                refused = episode.refused,
                "writes work again"
            );
            self.metrics.store_refusing(None);
        }
    }

    /// When the writer should wake to try again, if it holds work for the database.
    pub fn retry_at(&self) -> Option<Instant> {
        let episode = self.episode.as_ref().filter(|e| e.failing)?;
        (!self.held.is_empty()).then_some(episode.retry_at)
    }

    /// Keeps outcomes the database did not take, to write with the next turn.
    pub fn hold(&mut self, outcomes: Vec<Completion>) {
        self.held = outcomes;
        self.metrics.held_outcomes(self.held.len());
    }

    /// The outcomes held, for a turn to write; [`hold`](Self::hold) them again if it
    /// fails.
    pub fn take_held(&mut self) -> Vec<Completion> {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.metrics.held_outcomes(0);
        }
        held
    }

    pub fn holding(&self) -> usize {
        self.held.len()
    }
}

fn unwritten(database: &str, fault: Fault, reason: &str) -> Unwritten {
    match fault {
        Fault::DiskFull => Unwritten::DiskFull {
            database: database.to_string(),
        },
        Fault::Unavailable => Unwritten::Unavailable {
            database: database.to_string(),
            reason: reason.to_string(),
        },
    }
}
