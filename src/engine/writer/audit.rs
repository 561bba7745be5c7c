//! The audit log's entries, written in the transaction of the changes they
//! record: one per change a call asked for (see `proto/jobqueue/v1/audit.proto`),
//! with how it ended. Changes the service makes on its own (outcomes, schedules
//! firing, the keys file at start) carry no actor and are not entries. Entries
//! older than the retention go, a pass at a time.

use super::*;
use crate::audit::Actor;
use crate::engine::{ContractChange, TemplateChange};
use crate::namespace::local;
use crate::store::audit_entries;

/// What was asked and of what, from the op; `None` for ops with no actor.
fn asked(op: &Op) -> Option<(&Arc<Actor>, &'static str, String)> {
    // Objects are named as the actor's namespace knows them.
    let named = |name: &str, version: i32| format!("{}/{version}", local(name));
    let bare = |name: &str| local(name).to_string();
    Some(match op {
        Op::Submit {
            jobs,
            actor: Some(a),
            ..
        } => (
            a,
            "job.submit",
            jobs.first().map(|(j, _)| j.id.clone()).unwrap_or_default(),
        ),
        Op::Cancel {
            id, actor: Some(a), ..
        } => (a, "job.cancel", id.clone()),
        Op::Retry {
            id, actor: Some(a), ..
        } => (a, "job.retry", id.clone()),
        Op::Delete {
            id, actor: Some(a), ..
        } => (a, "job.delete", id.clone()),
        Op::Queue {
            change,
            actor: Some(a),
            ..
        } => match change {
            QueueChange::Create(q) => (a, "queue.create", bare(&q.name)),
            QueueChange::Update(q, _) => (a, "queue.update", bare(&q.name)),
            QueueChange::Pause(name) => (a, "queue.pause", bare(name)),
            QueueChange::Resume(name) => (a, "queue.resume", bare(name)),
            QueueChange::Purge(name) => (a, "queue.purge", bare(name)),
        },
        Op::Schedule {
            change,
            actor: Some(a),
            ..
        } => match change {
            ScheduleChange::Create(s) => (a, "schedule.create", bare(&s.id)),
            ScheduleChange::Update(s, _) => (a, "schedule.update", bare(&s.id)),
            ScheduleChange::Pause(id) => (a, "schedule.pause", bare(id)),
            ScheduleChange::Resume(id) => (a, "schedule.resume", bare(id)),
            ScheduleChange::Trigger(id) => (a, "schedule.trigger", bare(id)),
            ScheduleChange::Delete(id) => (a, "schedule.delete", bare(id)),
        },
        Op::Contract {
            change,
            actor: Some(a),
            ..
        } => match change {
            // The version is the one the answer names.
            ContractChange::Create { contract, .. } => (a, "contract.create", bare(&contract.name)),
            ContractChange::Deactivate { name, version } => {
                (a, "contract.deactivate", named(name, *version))
            }
        },
        Op::Template {
            change,
            actor: Some(a),
            ..
        } => match change {
            TemplateChange::Create { template, .. } => (a, "template.create", bare(&template.name)),
            TemplateChange::Deactivate { name, version } => {
                (a, "template.deactivate", named(name, *version))
            }
        },
        Op::Chain {
            change,
            actor: Some(a),
            ..
        } => match change {
            // The id is the one the answer names (an idempotency key may name
            // a chain made before).
            ChainChange::Submit(new) => (a, "chain.submit", new.chain.id.clone()),
            ChainChange::Cancel { id, .. } => (a, "chain.cancel", id.clone()),
            ChainChange::Retry { id, .. } => (a, "chain.retry", id.clone()),
        },
        Op::Key {
            change,
            actor: Some(a),
            ..
        } => match change {
            KeyChange::Save(rows) => (
                a,
                "key.create",
                rows.first().map(|k| k.id.clone()).unwrap_or_default(),
            ),
            KeyChange::Revoke { id, .. } => (a, "key.revoke", id.clone()),
        },
        _ => return None,
    })
}

/// The entries of `requests`, answered `answers` (one each, in order).
pub(super) fn entries(requests: &[Op], answers: &[Answer], now: i64) -> Vec<audit_entries::Model> {
    requests
        .iter()
        .zip(answers)
        .filter_map(|(op, answer)| {
            let (actor, action, mut object) = asked(op)?;
            let (outcome, detail) = match answer {
                Answer::Refused(e) => (code_name(e.code()), Some(e.to_string())),
                Answer::Submitted(jobs) if jobs.len() > 1 => (
                    "OK".into(),
                    Some(format!(
                        "{} jobs, {} to {}",
                        jobs.len(),
                        jobs[0].id,
                        jobs[jobs.len() - 1].id
                    )),
                ),
                Answer::Submitted(jobs) => {
                    if let Some(job) = jobs.first() {
                        object = job.id.clone();
                    }
                    ("OK".into(), None)
                }
                Answer::Contract(c) => {
                    object = format!("{}/{}", local(&c.name), c.version);
                    ("OK".into(), None)
                }
                Answer::Template(t) => {
                    object = format!("{}/{}", local(&t.name), t.version);
                    ("OK".into(), None)
                }
                Answer::Chain(changed) => {
                    object = changed.chain.id.clone();
                    ("OK".into(), None)
                }
                Answer::Queue(QueueChanged::Purged(n)) => {
                    ("OK".into(), Some(format!("{n} jobs canceled")))
                }
                _ => ("OK".into(), None),
            };
            debug_assert!(
                crate::audit::ACTIONS.contains(&action),
                "{action} is missing from audit::ACTIONS"
            );
            Some(audit_entries::Model {
                id: write::audit_entry_id(now),
                at: now,
                namespace: actor.namespace.clone(),
                key_id: actor.key_id.clone(),
                peer: actor.peer.clone(),
                action: action.into(),
                object,
                outcome,
                detail,
            })
        })
        .collect()
}

/// A gRPC code as its canonical name: `NotFound` is `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let debug = format!("{code:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}
