//! Schema documents as the registry of contracts takes them: valid draft-07, with
//! references only to their own parts and to other contracts' schemas
//! (`jobqueue:contract/<name>/<version>/input` or `/output`), and patterns a
//! linear-time engine can run. Nothing is ever fetched from the network or read
//! from disk.

use std::collections::HashMap;

use jsonschema::{PatternOptions, Retrieve, Uri};
use serde_json::Value;

/// The scheme and prefix of a reference to another contract's schema.
pub const CONTRACT_URI: &str = "jobqueue:contract/";

/// Which schema of a contract a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Input,
    Output,
}

/// A reference to another contract's schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContractRef {
    pub name: String,
    pub version: i32,
    pub part: Part,
}

impl ContractRef {
    pub fn uri(&self) -> String {
        let part = match self.part {
            Part::Input => "input",
            Part::Output => "output",
        };
        format!("{CONTRACT_URI}{}/{}/{part}", self.name, self.version)
    }
}

/// What is wrong with a schema document: where (a JSON pointer into it) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

/// The references of `schema` that leave it: each other contract it names.
/// A reference that names anything else is a problem.
pub fn references(schema: &Value) -> Result<Vec<ContractRef>, Problem> {
    let mut found = Vec::new();
    walk_refs(schema, &mut String::new(), &mut found)?;
    found.sort_by(|a: &ContractRef, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    found.dedup();
    Ok(found)
}

fn walk_refs(
    value: &Value,
    pointer: &mut String,
    found: &mut Vec<ContractRef>,
) -> Result<(), Problem> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let (uri, _fragment) = reference.split_once('#').unwrap_or((reference, ""));
                if !uri.is_empty() {
                    let at = format!("{pointer}/$ref");
                    found.push(parse_ref(uri).ok_or_else(|| Problem {
                        pointer: at,
                        message: format!(
                            "$ref {reference:?}: only this document's parts (#/...) and \
                             {CONTRACT_URI}<name>/<version>/input or /output may be referred to"
                        ),
                    })?);
                }
            }
            for (key, child) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk_refs(child, pointer, found)?;
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                walk_refs(child, pointer, found)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_ref(uri: &str) -> Option<ContractRef> {
    let rest = uri.strip_prefix(CONTRACT_URI)?;
    let mut parts = rest.split('/');
    let (name, version, part) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let version: i32 = version.parse().ok().filter(|v| *v > 0)?;
    let part = match part {
        "input" => Part::Input,
        "output" => Part::Output,
        _ => return None,
    };
    Some(ContractRef {
        name: name.to_string(),
        version,
        part,
    })
}

/// The documents a schema's references resolve to, by URI.
#[derive(Clone, Default)]
pub struct Documents(HashMap<String, Value>);

impl Documents {
    pub fn insert(&mut self, reference: &ContractRef, schema: Value) {
        self.0.insert(reference.uri(), schema);
    }

    pub fn extend(&mut self, other: Documents) {
        self.0.extend(other.0);
    }
}

impl super::compat::Resolve for Documents {
    fn document(&self, uri: &str) -> Option<&Value> {
        self.0.get(uri)
    }
}

impl Retrieve for Documents {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .get(uri.as_str())
            .cloned()
            .ok_or_else(|| format!("{uri} is not a contract's schema").into())
    }
}

/// Checks a schema against the draft-07 meta-schema and compiles it with its
/// references resolved from `documents` and its patterns on a linear-time engine.
pub fn check(schema: &Value, documents: &Documents) -> Result<jsonschema::Validator, Problem> {
    if let Err(error) = jsonschema::draft7::meta::validate(schema) {
        return Err(Problem {
            pointer: error.instance_path().to_string(),
            message: format!("not a draft-07 JSON Schema: {error}"),
        });
    }
    compile(schema, documents)
}

/// Compiles a schema already checked.
pub fn compile(schema: &Value, documents: &Documents) -> Result<jsonschema::Validator, Problem> {
    jsonschema::draft7::options()
        .with_pattern_options(PatternOptions::regex())
        .with_retriever(documents.clone())
        .build(schema)
        .map_err(|error| Problem {
            pointer: error.schema_path().to_string(),
            message: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_may_name_only_this_document_and_contracts() {
        let schema = json!({
            "definitions": {"id": {"type": "integer"}},
            "properties": {
                "id": {"$ref": "#/definitions/id"},
                "user": {"$ref": "jobqueue:contract/users/2/output#/properties/user"}
            }
        });
        let refs = references(&schema).unwrap();
        assert_eq!(
            refs,
            [ContractRef {
                name: "users".into(),
                version: 2,
                part: Part::Output
            }]
        );
        for bad in [
            "https://example.com/s.json",
            "file:///etc/passwd",
            "other.json",
            "jobqueue:contract/users/0/input",
            "jobqueue:contract/users/1/both",
        ] {
            let schema = json!({"properties": {"x": {"$ref": bad}}});
            let problem = references(&schema).unwrap_err();
            assert_eq!(problem.pointer, "/properties/x/$ref", "{bad}");
        }
    }

    #[test]
    fn patterns_run_on_a_linear_time_engine() {
        let documents = Documents::default();
        // Unicode classes work.
        let letters = check(
            &json!({"type": "string", "pattern": "^\\p{L}+$"}),
            &documents,
        )
        .unwrap();
        assert!(letters.is_valid(&json!("Zoë")));
        assert!(!letters.is_valid(&json!("Zoë1")));
        // A pattern that backtracks exponentially elsewhere runs in linear time.
        let nested = check(&json!({"type": "string", "pattern": "^(a+)+$"}), &documents).unwrap();
        let long = format!("{}!", "a".repeat(50_000));
        let started = std::time::Instant::now();
        assert!(!nested.is_valid(&json!(long)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Backreferences need backtracking: refused.
        assert!(
            check(
                &json!({"type": "string", "pattern": "^(a)\\1$"}),
                &documents
            )
            .is_err()
        );
    }

    #[test]
    fn documents_that_are_not_draft_07_schemas_are_refused_with_where() {
        let documents = Documents::default();
        let problem = check(&json!({"type": "integr"}), &documents).unwrap_err();
        assert_eq!(problem.pointer, "/type");
        let problem = check(
            &json!({"properties": {"a": {"minimum": "one"}}}),
            &documents,
        )
        .unwrap_err();
        assert_eq!(problem.pointer, "/properties/a/minimum");
    }
}
