//! Whether a step's references fit, decided before anything runs: each reference
//! must name a property its producer's output contract guarantees (declared and
//! required, all the way down), and what it names must fit the consumer's input
//! contract at the place the reference stands. One answer per wire: yes, no or
//! cannot tell, with the pointers into both schemas.

use serde_json::{Value, json};

use super::reference::{Piece, Reference, Segment, Source, pieces};
use crate::contract::compat::{Finding, Resolve, Verdict, fits};

/// One reference of a step, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// Where the reference stands in the consumer's input, as a JSON pointer.
    pub at: String,
    /// The reference, as written.
    pub reference: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

/// What a reference's source promises: the schema of a step's body (its output
/// contract), of the chain's input, or None when nothing is promised.
pub trait Promises {
    fn schema_of(&self, source: &Source) -> Option<Value>;
}

/// The schema a path names inside `schema`, each step of it guaranteed: a
/// property declared and required, an index within an array's `items` (and,
/// for a fixed index, at least that many items). Otherwise the finding that says
/// where the guarantee stops.
pub fn promised_at(schema: &Value, path: &[Segment]) -> Result<Value, Finding> {
    promised_with_pointer(schema, path).map(|(schema, _)| schema)
}

/// [`promised_at`], with the JSON pointer of the schema found.
fn promised_with_pointer(schema: &Value, path: &[Segment]) -> Result<(Value, String), Finding> {
    let mut at = schema;
    let mut pointer = String::new();
    for segment in path {
        let stop = |expected: String, found: &str, pointer: &str| Finding {
            verdict: Verdict::No,
            producer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer.to_string()
            },
            consumer: String::new(),
            expected,
            found: found.to_string(),
        };
        let object = at.as_object();
        match segment {
            Segment::Name(name) => {
                let declared = object
                    .and_then(|o| o.get("properties"))
                    .and_then(|p| p.get(name));
                let required = object
                    .and_then(|o| o.get("required"))
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(name)));
                let Some(declared) = declared else {
                    return Err(stop(
                        format!("property {name:?} declared"),
                        "a schema that does not declare it",
                        &pointer,
                    ));
                };
                if !required {
                    return Err(stop(
                        format!("property {name:?} required"),
                        "a property that may be missing",
                        &pointer,
                    ));
                }
                pointer.push_str(&format!(
                    "/properties/{}",
                    name.replace('~', "~0").replace('/', "~1")
                ));
                at = declared;
            }
            Segment::Index(i) => {
                let items = object.and_then(|o| o.get("items"));
                let Some(items) = items.filter(|i| !i.is_array()) else {
                    return Err(stop(
                        "an array whose items are declared".into(),
                        "a schema without items",
                        &pointer,
                    ));
                };
                let min = object
                    .and_then(|o| o.get("minItems"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if (*i as u64) >= min {
                    return Err(stop(
                        format!("at least {} item(s)", i + 1),
                        &format!("an array of {min} item(s) or more"),
                        &pointer,
                    ));
                }
                pointer.push_str("/items");
                at = items;
            }
        }
    }
    Ok((at.clone(), pointer))
}

/// What a place inside a consumer's input schema takes: the schema at a JSON
/// pointer of the input (`/customer/id`), following `properties` and `items`;
/// anything (`true`) where the schema says nothing.
pub fn expected_at(schema: &Value, place: &[String]) -> Value {
    expected_with_pointer(schema, place).0
}

/// [`expected_at`], with the JSON pointer of the schema found.
fn expected_with_pointer(schema: &Value, place: &[String]) -> (Value, String) {
    let mut at = schema;
    let mut pointer = String::new();
    for part in place {
        let (next, step) = match part.parse::<usize>() {
            Ok(_) => (
                at.get("items").filter(|i| !i.is_array()),
                "/items".to_string(),
            ),
            Err(_) => (
                at.get("properties").and_then(|p| p.get(part)),
                format!("/properties/{}", part.replace('~', "~0").replace('/', "~1")),
            ),
        };
        match next {
            Some(next) => {
                at = next;
                pointer.push_str(&step);
            }
            None => {
                // Undeclared: what additionalProperties says, else anything.
                return match at.get("additionalProperties") {
                    Some(more) if !part.chars().all(|c| c.is_ascii_digit()) => {
                        (more.clone(), format!("{pointer}/additionalProperties"))
                    }
                    _ => (Value::Bool(true), pointer),
                };
            }
        }
    }
    (at.clone(), pointer)
}

/// `base` followed by `inner` (a pointer relative to the schema at `base`).
fn joined(base: &str, inner: &str) -> String {
    match (base, inner) {
        ("", "" | "/") => "/".into(),
        (base, "" | "/") => base.into(),
        (base, inner) => format!("{base}{inner}"),
    }
}

/// The schema of what a reference reads, and its pointer in the producer's.
fn produced(reference: &Reference, promises: &dyn Promises) -> Result<(Value, String), Finding> {
    match &reference.source {
        Source::Status(_) => Ok((
            json!({"type": "integer", "minimum": 100, "maximum": 599}),
            String::new(),
        )),
        Source::Header(..) => Ok((json!({"type": "string"}), String::new())),
        source => match promises.schema_of(source) {
            Some(schema) => promised_with_pointer(&schema, &reference.path),
            None => Err(Finding {
                verdict: Verdict::CannotTell,
                producer: "/".into(),
                consumer: String::new(),
                expected: "a schema its source promises, to check against".into(),
                found: "a producer that promises no schema".into(),
            }),
        },
    }
}

/// Checks every reference in a consumer's JSON input template against the
/// consumer's input contract (None: it takes anything) and what its producers
/// promise. A string that is one whole reference is checked as the value it
/// names; a reference inside a longer string must name a string, a number or a
/// boolean.
pub fn check_template(
    template: &Value,
    input_contract: Option<&Value>,
    promises: &dyn Promises,
    registry: &dyn Resolve,
) -> Vec<Wire> {
    let mut wires = Vec::new();
    let anything = Value::Bool(true);
    walk(
        template,
        &mut Vec::new(),
        input_contract.unwrap_or(&anything),
        promises,
        registry,
        &mut wires,
    );
    wires
}

fn walk(
    template: &Value,
    place: &mut Vec<String>,
    contract: &Value,
    promises: &dyn Promises,
    registry: &dyn Resolve,
    wires: &mut Vec<Wire>,
) {
    match template {
        Value::String(text) => {
            let Ok(parts) = pieces(text) else { return };
            let whole = matches!(parts.as_slice(), [Piece::Ref(_)]);
            let at = format!("/{}", place.join("/"));
            for part in parts {
                let Piece::Ref(reference) = part else {
                    continue;
                };
                let (wanted, consumer_base) = if whole {
                    expected_with_pointer(contract, place)
                } else {
                    (
                        json!({"type": ["string", "number", "boolean"]}),
                        String::new(),
                    )
                };
                let findings: Vec<Finding> = match produced(&reference, promises) {
                    Ok((schema, producer_base)) => fits(&schema, &wanted, registry)
                        .findings
                        .into_iter()
                        .map(|mut f| {
                            f.producer = joined(&producer_base, &f.producer);
                            f.consumer = joined(&consumer_base, &f.consumer);
                            f
                        })
                        .collect(),
                    Err(mut finding) => {
                        finding.consumer = joined(&consumer_base, "");
                        vec![finding]
                    }
                };
                let verdict = findings
                    .iter()
                    .map(|f| f.verdict)
                    .max()
                    .unwrap_or(Verdict::Yes);
                wires.push(Wire {
                    at: at.clone(),
                    reference: reference.to_string(),
                    verdict,
                    findings,
                });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                place.push(i.to_string());
                walk(item, place, contract, promises, registry, wires);
                place.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                place.push(key.clone());
                walk(item, place, contract, promises, registry, wires);
                place.pop();
            }
        }
        _ => {}
    }
}
