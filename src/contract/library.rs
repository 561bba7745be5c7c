//! The registry of contracts as the rest of the service uses it: a version (or
//! the latest active one) read with every document its schemas refer to, and
//! compiled validators kept by name, version and part. Versions never change,
//! so what is read and compiled once stays right.
//!
//! Contracts are named here as stored (see `crate::namespace`): a name says
//! whose contract it is, and the documents a schema refers to are that
//! namespace's.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::registry::{self, ContractRef, Documents, Part};
use super::validate::Compiled;
use crate::namespace::{self, local};
use crate::store::{Store, StoreError, contracts};

/// Why a contract cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("contract {} version {version} not found", local(name))]
    NotFound { name: String, version: i32 },
    #[error("contract {} has no active version", local(name))]
    NoActive { name: String },
    #[error("a stored schema of {0} does not read back: {1}")]
    Stored(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One version of a contract, its schemas parsed, with every document they refer
/// to (their references' references too).
#[derive(Clone)]
pub struct Loaded {
    pub contract: contracts::Model,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub documents: Documents,
}

impl Loaded {
    pub fn schema(&self, part: Part) -> Option<&Value> {
        match part {
            Part::Input => self.input.as_ref(),
            Part::Output => self.output.as_ref(),
        }
    }
}

pub struct Library {
    store: Store,
    compiled: Compiled,
}

impl Library {
    pub fn new(store: Store) -> Arc<Library> {
        Arc::new(Library {
            store,
            compiled: Compiled::default(),
        })
    }

    /// A version of a contract, or (None) its latest active version.
    pub async fn load(&self, name: &str, version: Option<i32>) -> Result<Loaded, LibraryError> {
        let namespace = namespace::of(name);
        let found = match version {
            Some(v) => self.store.contract(namespace, local(name), Some(v)).await?,
            None => {
                self.store
                    .latest_active_contract(namespace, local(name))
                    .await?
            }
        };
        let Some(contract) = found else {
            return Err(match version {
                Some(version) => LibraryError::NotFound {
                    name: name.into(),
                    version,
                },
                None => LibraryError::NoActive { name: name.into() },
            });
        };
        let label = format!("{}/{}", local(&contract.name), contract.version);
        let parse = |text: &Option<String>| -> Result<Option<Value>, LibraryError> {
            text.as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| LibraryError::Stored(label.clone(), e.to_string()))
        };
        let input = parse(&contract.input_schema)?;
        let output = parse(&contract.output_schema)?;
        let mut documents = Documents::default();
        let mut seen = BTreeSet::new();
        let mut pending: Vec<Value> = input.iter().chain(output.iter()).cloned().collect();
        while let Some(schema) = pending.pop() {
            let references = registry::references(&schema)
                .map_err(|p| LibraryError::Stored(label.clone(), p.message))?;
            for reference in references {
                if !seen.insert(reference.uri()) {
                    continue;
                }
                let document = self.document(namespace, &reference).await?;
                pending.push(document.clone());
                documents.insert(&reference, document);
            }
        }
        Ok(Loaded {
            contract,
            input,
            output,
            documents,
        })
    }

    /// A document a schema of `namespace` refers to (by its name there).
    async fn document(
        &self,
        namespace: &str,
        reference: &ContractRef,
    ) -> Result<Value, LibraryError> {
        let found = self
            .store
            .contract(namespace, &reference.name, Some(reference.version))
            .await?
            .ok_or_else(|| LibraryError::NotFound {
                name: reference.name.clone(),
                version: reference.version,
            })?;
        let text = match reference.part {
            Part::Input => found.input_schema,
            Part::Output => found.output_schema,
        };
        let text = text.ok_or_else(|| {
            LibraryError::Stored(reference.uri(), "the contract has no such schema".into())
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LibraryError::Stored(reference.uri(), e.to_string()))
    }

    /// The compiled schema of one part of a contract version; None when the
    /// contract says nothing of that part.
    pub async fn validator(
        &self,
        name: &str,
        version: i32,
        part: Part,
    ) -> Result<Option<Arc<jsonschema::Validator>>, LibraryError> {
        let key = (name.to_string(), version, part);
        if let Some(validator) = self.compiled.kept(&key) {
            return Ok(Some(validator));
        }
        let loaded = self.load(name, Some(version)).await?;
        let Some(schema) = loaded.schema(part) else {
            return Ok(None);
        };
        self.compiled
            .get(&key, schema, &loaded.documents)
            .map(Some)
            .map_err(|p| LibraryError::Stored(label(local(name), version), p.message))
    }

    /// Where `value` breaks one part of a contract version, at most `limit`
    /// places; none when it fits or the contract says nothing of that part.
    /// Every check of a value against a contract, at submit or while a call
    /// runs, goes through here.
    pub async fn check(
        &self,
        name: &str,
        version: i32,
        part: Part,
        value: &serde_json::Value,
        limit: usize,
    ) -> Result<Vec<super::validate::Violation>, LibraryError> {
        Ok(match self.validator(name, version, part).await? {
            Some(validator) => super::validate::violations(&validator, value, limit),
            None => Vec::new(),
        })
    }

    /// Compiles (or finds) the validator of a loaded contract's part.
    pub fn compile(&self, loaded: &Loaded, part: Part) -> Option<Arc<jsonschema::Validator>> {
        let schema = loaded.schema(part)?;
        let key = (loaded.contract.name.clone(), loaded.contract.version, part);
        self.compiled.get(&key, schema, &loaded.documents).ok()
    }
}

/// `name/version`, as a job names the contract its output must fit.
pub fn label(name: &str, version: i32) -> String {
    format!("{name}/{version}")
}

/// The name and version of a [`label`].
pub fn parse_label(label: &str) -> Option<(&str, i32)> {
    let (name, version) = label.rsplit_once('/')?;
    Some((name, version.parse().ok()?))
}
