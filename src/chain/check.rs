//! A chain checked as a whole before anything is stored: every reference names
//! a step its consumer depends on, and (with the contracts the steps keep) each
//! wire's fit, from [`super::wiring`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::definition::Definition;
use super::graph::Graph;
use super::reference::{Source, references_in};
use super::wiring::{Promises, Wire, check_template};
use crate::contract::compat::Resolve;

/// The schemas a chain's contracts give, by step.
pub struct Schemas<'a> {
    /// What the chain's input promises (its input contract's input schema).
    pub input: Option<&'a Value>,
    /// What each step's body takes, by step id.
    pub inputs: BTreeMap<String, &'a Value>,
    /// What each step's response body promises, by step id.
    pub outputs: BTreeMap<String, &'a Value>,
    /// Step ids in the order submitted, for `tasks[N]`.
    pub order: Vec<String>,
    pub registry: &'a dyn Resolve,
}

impl Promises for Schemas<'_> {
    fn schema_of(&self, source: &Source) -> Option<Value> {
        match source {
            Source::Input => self.input.cloned(),
            Source::Body(id) => self.outputs.get(id).map(|s| (*s).clone()),
            Source::BodyAt(i) => self
                .order
                .get(*i)
                .and_then(|id| self.outputs.get(id))
                .map(|s| (*s).clone()),
            Source::Status(_) | Source::Header(..) => None,
        }
    }
}

/// One wire: the consuming step (by position), the field it stands in, and the
/// verdict.
#[derive(Debug, Clone)]
pub struct StepWire {
    pub step: usize,
    pub field: String,
    pub wire: Wire,
}

/// Every reference of every step, checked against the schemas.
pub fn wires(definition: &Definition, schemas: &Schemas) -> Vec<StepWire> {
    // Outside a JSON body a reference must name a scalar, whole or not.
    let scalar = json!({"type": ["string", "number", "boolean"]});
    let mut found = Vec::new();
    for (i, step) in definition.steps.iter().enumerate() {
        for (field, value) in step.wired_fields() {
            // A template's input, and an inline step's JSON body, are what the
            // step's contract takes; anywhere else a reference names a scalar.
            let whole =
                (field == "request.body" && !value.is_string()) || field == "template.input";
            let contract = if whole {
                schemas.inputs.get(&step.id).copied()
            } else {
                Some(&scalar)
            };
            for wire in check_template(&value, contract, schemas, schemas.registry) {
                found.push(StepWire {
                    step: i,
                    field: field.clone(),
                    wire,
                });
            }
        }
    }
    found
}

/// References that name no step, or a step their consumer does not depend on
/// (directly or through others): each as (step position, field, message).
pub fn unreachable(definition: &Definition, graph: &Graph) -> Vec<(usize, String, String)> {
    let mut problems = Vec::new();
    for (i, step) in definition.steps.iter().enumerate() {
        for (field, value) in step.wired_fields() {
            let Ok(references) = references_in(&value) else {
                continue;
            };
            for reference in references {
                let named = match &reference.source {
                    Source::Input => continue,
                    Source::BodyAt(n) => match definition.steps.get(*n) {
                        Some(s) => s.id.clone(),
                        None => {
                            problems.push((
                                i,
                                field.clone(),
                                format!(
                                    "{{{{ {reference} }}}}: the chain has {} steps; tasks count from 0",
                                    definition.steps.len()
                                ),
                            ));
                            continue;
                        }
                    },
                    _ => reference.step().unwrap_or_default().to_string(),
                };
                if definition.step(&named).is_none() {
                    problems.push((
                        i,
                        field.clone(),
                        format!("{{{{ {reference} }}}}: {named} is not a step of this chain"),
                    ));
                } else if !graph.is_ancestor(&named, &step.id) {
                    problems.push((
                        i,
                        field.clone(),
                        format!(
                            "{{{{ {reference} }}}}: step {} does not depend on {named}, so {named}'s output may not exist when it starts; add {named} to its depends_on",
                            step.id
                        ),
                    ));
                }
            }
        }
    }
    problems
}
