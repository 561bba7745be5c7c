//! A chain's steps as a graph: who waits for whom, checked before anything is
//! stored, and which steps run as the others end.
//!
//! A step runs after the steps it depends on; when it names none it depends on the
//! step before it, so a plain list is a pipeline (the first step depends on
//! nothing). Steps that do not depend on each other run side by side, and a step
//! with several parents waits for all of them.
//!
//! The rule for what runs, once every parent of a step has ended:
//! - `on_success` (the default): the step runs when every parent succeeded;
//! - `on_failure`: it runs when at least one parent failed (a compensation or an
//!   alert, which can read the failure);
//! - `always`: it runs whatever its parents' outcomes.
//!
//! Otherwise it is skipped. A skipped parent is not a success, so a step waiting
//! on the success of a skipped parent is skipped too: a failure skips everything
//! below it that needed it to succeed, and nothing else. A parent skipped because
//! of a failure above it passes that failure on: an `on_failure` step at the end
//! of a pipeline runs whichever step of the pipeline failed. A parent skipped for
//! any other reason (an `on_failure` step when nothing failed) passes nothing on.
//! `always` runs in every case.

use std::collections::{BTreeMap, BTreeSet};

/// Most steps in one chain.
pub const MAX_STEPS: usize = 100;

/// When a step runs, given its parents' outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunIf {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

/// A step as the graph sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// None: the step before it (none for the first).
    pub depends_on: Option<Vec<String>>,
    pub run_if: RunIf,
}

/// How a step ended, or where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl State {
    fn ended(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Skipped)
    }
}

/// What is wrong with a chain's steps: which step, which field, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub field: String,
    pub message: String,
}

/// A checked graph: each step's parents, and the steps in an order where every
/// parent comes before its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub order: Vec<String>,
    pub parents: BTreeMap<String, Vec<String>>,
    pub run_if: BTreeMap<String, RunIf>,
}

/// Checks the steps: ids present, valid and unique, dependencies on steps that
/// exist, no cycles, at most [`MAX_STEPS`]. Every problem found is reported.
pub fn build(nodes: &[Node]) -> Result<Graph, Vec<GraphError>> {
    let mut errors = Vec::new();
    if nodes.is_empty() {
        errors.push(GraphError {
            field: "steps".into(),
            message: "at least one step".into(),
        });
    }
    if nodes.len() > MAX_STEPS {
        errors.push(GraphError {
            field: "steps".into(),
            message: format!("at most {MAX_STEPS} steps, got {}", nodes.len()),
        });
    }
    let mut seen = BTreeSet::new();
    // A step refused for its id is not checked further: its dependencies would
    // only repeat the same mistake.
    let mut refused = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        if !valid_id(&node.id) {
            refused.insert(i);
            errors.push(GraphError {
                field: format!("steps[{i}].id"),
                message: "1 to 63 of a-z, 0-9, _ and -, starting with a letter".into(),
            });
        } else if !seen.insert(node.id.as_str()) {
            refused.insert(i);
            errors.push(GraphError {
                field: format!("steps[{i}].id"),
                message: format!("{} is the id of an earlier step", node.id),
            });
        }
    }
    let mut parents = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let named = match &node.depends_on {
            Some(named) => named.clone(),
            None if i == 0 => Vec::new(),
            None => vec![nodes[i - 1].id.clone()],
        };
        for (j, parent) in named.iter().enumerate() {
            if refused.contains(&i) {
                break;
            }
            if !seen.contains(parent.as_str()) {
                errors.push(GraphError {
                    field: format!("steps[{i}].depends_on[{j}]"),
                    message: format!("{parent} is not a step of this chain"),
                });
            } else if *parent == node.id {
                errors.push(GraphError {
                    field: format!("steps[{i}].depends_on[{j}]"),
                    message: "a step cannot depend on itself".into(),
                });
            }
        }
        let mut unique = named;
        unique.sort();
        unique.dedup();
        parents.insert(node.id.clone(), unique);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Kahn's order; what is left over lies on a cycle.
    let mut order = Vec::with_capacity(nodes.len());
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while order.len() < nodes.len() {
        let ready: Vec<&str> = nodes
            .iter()
            .map(|n| n.id.as_str())
            .filter(|id| !done.contains(id))
            .filter(|id| parents[*id].iter().all(|p| done.contains(p.as_str())))
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&str> = nodes
                .iter()
                .map(|n| n.id.as_str())
                .filter(|id| !done.contains(id))
                .collect();
            return Err(vec![GraphError {
                field: "steps".into(),
                message: format!("the dependencies of {} form a cycle", cycle.join(", ")),
            }]);
        }
        for id in ready {
            done.insert(id);
            order.push(id.to_string());
        }
    }
    Ok(Graph {
        order,
        parents,
        run_if: nodes.iter().map(|n| (n.id.clone(), n.run_if)).collect(),
    })
}

fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

impl Graph {
    /// Whether `ancestor` comes before `step` through its dependencies: only an
    /// ancestor's output can be referred to.
    pub fn is_ancestor(&self, ancestor: &str, step: &str) -> bool {
        let mut stack: Vec<&str> = self
            .parents
            .get(step)
            .map_or(Vec::new(), |p| p.iter().map(String::as_str).collect());
        let mut seen = BTreeSet::new();
        while let Some(at) = stack.pop() {
            if at == ancestor {
                return true;
            }
            if seen.insert(at) {
                stack.extend(self.parents[at].iter().map(String::as_str));
            }
        }
        false
    }

    /// What happens next given where every step stands: the steps to start now,
    /// and the steps to mark skipped now (their children are decided on the next
    /// call, as a skip counts for them like any end).
    pub fn next(&self, states: &BTreeMap<String, State>) -> Decision {
        let mut decision = Decision::default();
        for id in &self.order {
            if states.get(id) != Some(&State::Waiting) {
                continue;
            }
            let parents: Vec<State> = self.parents[id]
                .iter()
                .map(|p| states.get(p).copied().unwrap_or(State::Waiting))
                .collect();
            if !parents.iter().all(|s| s.ended()) {
                continue;
            }
            let runs = match self.run_if[id] {
                RunIf::OnSuccess => parents.iter().all(|s| *s == State::Succeeded),
                RunIf::OnFailure => self.parents[id].iter().any(|p| self.failed_from(p, states)),
                RunIf::Always => true,
            };
            if runs {
                decision.start.push(id.clone());
            } else {
                decision.skip.push(id.clone());
            }
        }
        decision
    }
}

impl Graph {
    /// Whether `step` failed, or was skipped because a failure above it did.
    fn failed_from(&self, step: &str, states: &BTreeMap<String, State>) -> bool {
        match states.get(step) {
            Some(State::Failed) => true,
            // Skipped: it passes on a failure only if one came from above (a
            // skipped on_failure step saw none).
            Some(State::Skipped) => self.parents[step]
                .iter()
                .any(|p| self.failed_from(p, states)),
            _ => false,
        }
    }
}

/// The steps to start and to skip, in the graph's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub start: Vec<String>,
    pub skip: Vec<String>,
}
