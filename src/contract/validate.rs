//! Checking the values a call actually takes and returns against its contracts,
//! with the schemas compiled once and kept: compiling costs far more than
//! validating.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::registry::{self, Documents, Part, Problem};

/// Compiled schemas kept at most; past it the oldest half is dropped.
const KEPT: usize = 1024;

/// Where a value breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the value.
    pub instance_path: String,
    /// JSON pointer into the schema, to the keyword that refused it.
    pub schema_path: String,
    /// What was expected and what was found.
    pub message: String,
}

/// A contract's schema, by name, version and part.
pub type Key = (String, i32, Part);

/// The compiled schemas of contracts in use.
#[derive(Default)]
pub struct Compiled {
    kept: Mutex<Kept>,
}

/// Each compiled schema with the tick it was last used at.
#[derive(Default)]
struct Kept {
    clock: u64,
    by_key: HashMap<Key, (u64, Arc<jsonschema::Validator>)>,
}

impl Compiled {
    /// The compiled schema of `key`, when it is kept.
    pub fn kept(&self, key: &Key) -> Option<Arc<jsonschema::Validator>> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let Kept { clock, by_key } = &mut *kept;
        *clock += 1;
        let (used, validator) = by_key.get_mut(key)?;
        *used = *clock;
        Some(validator.clone())
    }

    /// The compiled schema of `key`, compiling `schema` (whose references
    /// `documents` resolves) the first time.
    pub fn get(
        &self,
        key: &Key,
        schema: &Value,
        documents: &Documents,
    ) -> Result<Arc<jsonschema::Validator>, Problem> {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let Kept { clock, by_key } = &mut *kept;
            *clock += 1;
            if let Some((used, validator)) = by_key.get_mut(key) {
                *used = *clock;
                return Ok(validator.clone());
            }
        }
        let validator = Arc::new(registry::compile(schema, documents)?);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let Kept { clock, by_key } = &mut *kept;
        if by_key.len() >= KEPT {
            // The least recently used half goes.
            let mut uses: Vec<u64> = by_key.values().map(|(used, _)| *used).collect();
            uses.sort_unstable();
            let cut = uses[uses.len() / 2];
            by_key.retain(|_, (used, _)| *used > cut);
        }
        by_key.insert(key.clone(), (*clock, validator.clone()));
        Ok(validator)
    }

    /// How many compiled schemas are kept.
    pub fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Up to `most` places where `value` breaks the schema; none when it fits.
pub fn violations(validator: &jsonschema::Validator, value: &Value, most: usize) -> Vec<Violation> {
    validator
        .iter_errors(value)
        .take(most)
        .map(|error| Violation {
            instance_path: pointer(error.instance_path().to_string()),
            schema_path: pointer(error.schema_path().to_string()),
            message: error.to_string(),
        })
        .collect()
}

fn pointer(path: String) -> String {
    if path.is_empty() { "/".into() } else { path }
}

/// A failure message for violations of one part of a contract: what broke which
/// schema, and each place with the keyword that refused it.
pub fn describe(
    what: &str,
    name: &str,
    version: i32,
    part: super::registry::Part,
    found: &[Violation],
) -> String {
    let part = match part {
        super::registry::Part::Input => "input",
        super::registry::Part::Output => "output",
    };
    let places: Vec<String> = found
        .iter()
        .map(|v| {
            let at = if v.instance_path.is_empty() {
                "/"
            } else {
                &v.instance_path
            };
            format!("at {at}: {} (schema {})", v.message, v.schema_path)
        })
        .collect();
    format!(
        "{what} breaks the {part} schema of contract {name} version {version}: {}",
        places.join("; ")
    )
}
