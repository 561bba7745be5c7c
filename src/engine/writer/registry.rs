//! The registry of contracts in the writer: a new version appended after the one its caller
//! checked it against, a version deactivated.

use super::*;
use crate::engine::ContractChange;

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
                let latest_version = latest.as_ref().map(|c| c.version);
                if latest_version != *after {
                    return Ok(Err(EngineError::ContractMoved {
                        name: contract.name.clone(),
                        latest: latest_version.unwrap_or(0),
                    }));
                }
                let mut new = contracts::Model::clone(contract);
                new.version = latest_version.unwrap_or(0) + 1;
                new.active = true;
                new.created_at = now;
                new.deactivated_at = None;
                Ok(Ok(write::insert_contract(txn, new).await?))
            }
            ContractChange::Deactivate { name, version } => Ok(
                match write::deactivate_contract(txn, name, *version, now).await? {
                    Some(Ok(deactivated)) => Ok(deactivated),
                    Some(Err(_)) => Err(EngineError::ContractInactive {
                        name: name.clone(),
                        version: *version,
                    }),
                    None => Err(EngineError::ContractNotFound {
                        name: name.clone(),
                        version: *version,
                    }),
                },
            ),
        }
    }
}
