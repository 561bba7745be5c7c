//! Where a chain's steps stand, from what is stored about them. A step that
//! started is its job: the job names its chain and step, and the job's status is
//! the step's. A step that ended without a job to say so (skipped, failed before
//! its call could be made, ended by its chain's cancel) has a note, and a note
//! wins over a job. Nothing else is written as a chain moves on, so a step costs
//! about what a plain job costs; the chain's own row is written when it starts
//! and when it ends.
//!
//! A chain run again detaches the jobs of its failed and canceled steps (they
//! keep their chain, not their step) and drops its notes, so those steps wait
//! again while the ones that succeeded keep their jobs.

use std::collections::HashMap;

use crate::chain::graph::State;
use crate::store::chain_steps;

/// Where a step stands, as reads show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Waiting,
    /// Its job waits for its turn (or for its next attempt).
    Queued,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Canceled,
}

impl StepStatus {
    /// What the graph makes of it: a canceled step counts as failed.
    pub fn state(self) -> State {
        match self {
            StepStatus::Waiting => State::Waiting,
            StepStatus::Queued | StepStatus::Running => State::Running,
            StepStatus::Succeeded => State::Succeeded,
            StepStatus::Failed | StepStatus::Canceled => State::Failed,
            StepStatus::Skipped => State::Skipped,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Waiting => "waiting",
            StepStatus::Queued => "queued",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Canceled => "canceled",
        }
    }

    /// A stored job status, as its step's.
    fn of_job(status: &str) -> StepStatus {
        match status {
            "running" => StepStatus::Running,
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "canceled" => StepStatus::Canceled,
            _ => StepStatus::Queued,
        }
    }

    /// A note's status; notes record ends only (a `succeeded` one comes from
    /// before steps stood where their jobs stand, its job gone).
    fn of_note(status: &str) -> StepStatus {
        match status {
            "succeeded" => StepStatus::Succeeded,
            "skipped" => StepStatus::Skipped,
            "canceled" => StepStatus::Canceled,
            _ => StepStatus::Failed,
        }
    }
}

/// As much of a step's job as says where the step stands.
#[derive(Debug, Clone)]
pub struct StepJob {
    pub step_id: String,
    pub job_id: String,
    pub status: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub last_status_code: Option<i32>,
    pub last_error_class: Option<String>,
}

/// One step of a chain, where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: String,
    pub status: StepStatus,
    pub job_id: Option<String>,
    /// Why it was skipped, or why it failed or was canceled.
    pub reason: Option<String>,
    pub error_class: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// Why a step's job failed, from what its row keeps (a read with the job's
/// attempts at hand says it better: the last one's own message).
pub fn job_failure(status_code: Option<i32>, error_class: Option<&str>) -> String {
    match (error_class, status_code) {
        (Some(class), _) => format!("its call failed: {class}"),
        (None, Some(code)) => format!("its call answered status {code}"),
        (None, None) => "its call failed".into(),
    }
}

/// The steps of a chain in `order` (as submitted), from its step jobs and its
/// notes. Of two jobs of one step the newer counts.
pub fn steps(order: &[String], jobs: Vec<StepJob>, notes: Vec<chain_steps::Model>) -> Vec<Step> {
    let mut by_step: HashMap<String, StepJob> = HashMap::with_capacity(jobs.len());
    for job in jobs {
        match by_step.get(&job.step_id) {
            Some(known) if known.job_id > job.job_id => {}
            _ => {
                by_step.insert(job.step_id.clone(), job);
            }
        }
    }
    let mut notes: HashMap<String, chain_steps::Model> =
        notes.into_iter().map(|n| (n.step_id.clone(), n)).collect();
    order
        .iter()
        .map(|id| {
            if let Some(note) = notes.remove(id) {
                return Step {
                    id: id.clone(),
                    status: StepStatus::of_note(&note.status),
                    job_id: note.job_id,
                    reason: note.reason,
                    error_class: note.error_class,
                    started_at: note.started_at,
                    finished_at: note.finished_at,
                };
            }
            let Some(job) = by_step.remove(id) else {
                return Step {
                    id: id.clone(),
                    status: StepStatus::Waiting,
                    job_id: None,
                    reason: None,
                    error_class: None,
                    started_at: None,
                    finished_at: None,
                };
            };
            let status = StepStatus::of_job(&job.status);
            let (reason, error_class) = match status {
                StepStatus::Failed => (
                    Some(job_failure(
                        job.last_status_code,
                        job.last_error_class.as_deref(),
                    )),
                    job.last_error_class,
                ),
                StepStatus::Canceled => (Some("its job was canceled".into()), None),
                _ => (None, None),
            };
            Step {
                id: id.clone(),
                status,
                job_id: Some(job.job_id),
                reason,
                error_class,
                started_at: Some(job.created_at),
                finished_at: job.finished_at,
            }
        })
        .collect()
}

/// A note recording a step's end, for a chain to keep.
pub fn note(chain_id: &str, position: usize, step: &Step) -> chain_steps::Model {
    chain_steps::Model {
        chain_id: chain_id.to_string(),
        step_id: step.id.clone(),
        position: position as i32,
        status: step.status.as_str().into(),
        job_id: step.job_id.clone(),
        reason: step.reason.clone(),
        error_class: step.error_class.clone(),
        started_at: step.started_at,
        finished_at: step.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(step: &str, id: &str, status: &str) -> StepJob {
        StepJob {
            step_id: step.into(),
            job_id: id.into(),
            status: status.into(),
            created_at: 1,
            finished_at: None,
            last_status_code: Some(500),
            last_error_class: None,
        }
    }

    fn order() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn a_step_without_a_job_or_a_note_waits() {
        let steps = steps(&order(), vec![job("a", "01", "running")], vec![]);
        let got: Vec<_> = steps.iter().map(|s| s.status).collect();
        assert_eq!(
            got,
            [
                StepStatus::Running,
                StepStatus::Waiting,
                StepStatus::Waiting
            ]
        );
    }

    #[test]
    fn the_newer_job_of_a_step_counts_and_a_note_wins_over_both() {
        let skipped = chain_steps::Model {
            chain_id: "c".into(),
            step_id: "b".into(),
            position: 1,
            status: "skipped".into(),
            job_id: None,
            reason: Some("why".into()),
            error_class: None,
            started_at: None,
            finished_at: Some(2),
        };
        let steps = steps(
            &order(),
            vec![
                job("a", "02", "succeeded"),
                job("a", "01", "failed"),
                job("b", "03", "failed"),
            ],
            vec![skipped],
        );
        assert_eq!(steps[0].status, StepStatus::Succeeded);
        assert_eq!(steps[0].job_id.as_deref(), Some("02"));
        assert_eq!(steps[1].status, StepStatus::Skipped);
        assert_eq!(steps[1].reason.as_deref(), Some("why"));
        assert_eq!(steps[2].status, StepStatus::Waiting);
    }

    #[test]
    fn a_failed_job_says_why_from_its_row() {
        let steps = steps(&order(), vec![job("a", "01", "failed")], vec![]);
        assert_eq!(
            steps[0].reason.as_deref(),
            Some("its call answered status 500")
        );
        assert_eq!(steps[0].status.state(), State::Failed);
    }
}
