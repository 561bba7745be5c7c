//! Contracts and templates: a new version appended, a version deactivated.

use sea_orm::ColumnTrait;
use sea_orm::{
    ActiveModelTrait, ActiveValue, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
};

use crate::store::{StoreError, contracts, templates};

/// The latest version of a contract, held to the commit (the writer is the only
/// one that appends, so the next version is this one's plus one).
pub async fn latest_contract(
    txn: &DatabaseTransaction,
    name: &str,
) -> Result<Option<contracts::Model>, StoreError> {
    Ok(contracts::Entity::find()
        .filter(contracts::Column::Name.eq(name))
        .order_by_desc(contracts::Column::Version)
        .one(txn)
        .await?)
}

pub async fn insert_contract(
    txn: &DatabaseTransaction,
    contract: contracts::Model,
) -> Result<contracts::Model, StoreError> {
    Ok(contracts::ActiveModel::from(contract).insert(txn).await?)
}

/// Deactivates one version at `now`; None when there is no such version, the
/// version as it stands when it was not active.
pub async fn deactivate_contract(
    txn: &DatabaseTransaction,
    name: &str,
    version: i32,
    now: i64,
) -> Result<Option<Result<contracts::Model, contracts::Model>>, StoreError> {
    let Some(found) = contracts::Entity::find_by_id((name.to_string(), version))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    if !found.active {
        return Ok(Some(Err(found)));
    }
    let mut active = contracts::ActiveModel::from(found);
    active.active = ActiveValue::Set(false);
    active.deactivated_at = ActiveValue::Set(Some(now));
    Ok(Some(Ok(active.update(txn).await?)))
}

/// The latest version of a template, held to the commit.
pub async fn latest_template(
    txn: &DatabaseTransaction,
    name: &str,
) -> Result<Option<templates::Model>, StoreError> {
    Ok(templates::Entity::find()
        .filter(templates::Column::Name.eq(name))
        .order_by_desc(templates::Column::Version)
        .one(txn)
        .await?)
}

pub async fn insert_template(
    txn: &DatabaseTransaction,
    template: templates::Model,
) -> Result<templates::Model, StoreError> {
    Ok(templates::ActiveModel::from(template).insert(txn).await?)
}

/// Deactivates one version of a template at `now`; as [`deactivate_contract`].
pub async fn deactivate_template(
    txn: &DatabaseTransaction,
    name: &str,
    version: i32,
    now: i64,
) -> Result<Option<Result<templates::Model, templates::Model>>, StoreError> {
    let Some(found) = templates::Entity::find_by_id((name.to_string(), version))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    if !found.active {
        return Ok(Some(Err(found)));
    }
    let mut active = templates::ActiveModel::from(found);
    active.active = ActiveValue::Set(false);
    active.deactivated_at = ActiveValue::Set(Some(now));
    Ok(Some(Ok(active.update(txn).await?)))
}
