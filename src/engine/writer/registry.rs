//! The registries of contracts and templates in the writer: a new version
//! appended after the one its caller checked it against, a version deactivated.

use super::*;
use crate::engine::{ContractChange, TemplateChange};
use crate::store::templates;

/// A deactivation's outcome as the store reports it, as the caller's answer.
fn deactivated<T>(
    found: Option<Result<T, T>>,
    kind: &'static str,
    name: &str,
    version: i32,
) -> Result<T, EngineError> {
    match found {
        Some(Ok(deactivated)) => Ok(deactivated),
        Some(Err(_)) => Err(EngineError::VersionInactive {
            kind,
            name: name.to_string(),
            version,
        }),
        None => Err(EngineError::VersionNotFound {
            kind,
            name: name.to_string(),
            version,
        }),
    }
}

/// The next version after `latest`, or the refusal when it is not the one the
/// caller checked against.
fn next_version(
    latest: Option<i32>,
    after: Option<i32>,
    kind: &'static str,
    name: &str,
) -> Result<i32, EngineError> {
    if latest != after {
        return Err(EngineError::VersionMoved {
            kind,
            name: name.to_string(),
            latest: latest.unwrap_or(0),
        });
    }
    Ok(latest.unwrap_or(0) + 1)
}

impl Writer {
    /// Applies a change to the registry of contracts; the refusal when it does not
    /// apply.
    pub(super) async fn change_contract(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        change: &ContractChange,
    ) -> Result<Result<contracts::Model, EngineError>, StoreError> {
        match change {
            ContractChange::Create { contract, after } => {
                let latest = write::latest_contract(txn, &contract.name).await?;
                let version = match next_version(
                    latest.map(|c| c.version),
                    *after,
                    "contract",
                    &contract.name,
                ) {
                    Ok(version) => version,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let mut new = contracts::Model::clone(contract);
                new.version = version;
                new.active = true;
                new.created_at = now;
                new.deactivated_at = None;
                Ok(Ok(write::insert_contract(txn, new).await?))
            }
            ContractChange::Deactivate { name, version } => Ok(deactivated(
                write::deactivate_contract(txn, name, *version, now).await?,
                "contract",
                name,
                *version,
            )),
        }
    }

    /// Applies a change to the registry of templates; the refusal when it does not
    /// apply.
    pub(super) async fn change_template(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
        change: &TemplateChange,
    ) -> Result<Result<templates::Model, EngineError>, StoreError> {
        match change {
            TemplateChange::Create { template, after } => {
                let latest = write::latest_template(txn, &template.name).await?;
                let version = match next_version(
                    latest.map(|t| t.version),
                    *after,
                    "template",
                    &template.name,
                ) {
                    Ok(version) => version,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let mut new = templates::Model::clone(template);
                new.version = version;
                new.active = true;
                new.created_at = now;
                new.deactivated_at = None;
                Ok(Ok(write::insert_template(txn, new).await?))
            }
            TemplateChange::Deactivate { name, version } => Ok(deactivated(
                write::deactivate_template(txn, name, *version, now).await?,
                "template",
                name,
                *version,
            )),
        }
    }
}
