//! The registries of contracts and templates: a new version appended, a version
//! deactivated. Both keep versions by name the same way.

use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::store::{StoreError, contracts, templates};

/// The columns a registry keeps its versions by.
struct Registry<E: EntityTrait> {
    name: E::Column,
    version: E::Column,
    active: E::Column,
    deactivated_at: E::Column,
}

impl<E> Registry<E>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Sync,
    E::ActiveModel: ActiveModelTrait<Entity = E> + ActiveModelBehavior + Send,
{
    /// The latest version of `name`, held to the commit (the writer is the only
    /// one that appends, so the next version is this one's plus one).
    async fn latest(
        &self,
        txn: &DatabaseTransaction,
        name: &str,
    ) -> Result<Option<E::Model>, StoreError> {
        Ok(E::find()
            .filter(self.name.eq(name))
            .order_by_desc(self.version)
            .one(txn)
            .await?)
    }

    async fn insert(
        &self,
        txn: &DatabaseTransaction,
        row: E::Model,
    ) -> Result<E::Model, StoreError> {
        Ok(row.into_active_model().insert(txn).await?)
    }

    /// Deactivates one version at `now`; None when there is no such version, the
    /// version as it stands when it was not active.
    async fn deactivate(
        &self,
        txn: &DatabaseTransaction,
        name: &str,
        version: i32,
        now: i64,
        is_active: impl Fn(&E::Model) -> bool,
    ) -> Result<Option<Result<E::Model, E::Model>>, StoreError> {
        let Some(found) = E::find()
            .filter(self.name.eq(name))
            .filter(self.version.eq(version))
            .one(txn)
            .await?
        else {
            return Ok(None);
        };
        if !is_active(&found) {
            return Ok(Some(Err(found)));
        }
        let mut row = found.into_active_model();
        row.set(self.active, false.into());
        row.set(self.deactivated_at, Some(now).into());
        Ok(Some(Ok(row.update(txn).await?)))
    }
}

const CONTRACTS: Registry<contracts::Entity> = Registry {
    name: contracts::Column::Name,
    version: contracts::Column::Version,
    active: contracts::Column::Active,
    deactivated_at: contracts::Column::DeactivatedAt,
};

const TEMPLATES: Registry<templates::Entity> = Registry {
    name: templates::Column::Name,
    version: templates::Column::Version,
    active: templates::Column::Active,
    deactivated_at: templates::Column::DeactivatedAt,
};

pub async fn latest_contract(
    txn: &DatabaseTransaction,
    name: &str,
) -> Result<Option<contracts::Model>, StoreError> {
    CONTRACTS.latest(txn, name).await
}

pub async fn insert_contract(
    txn: &DatabaseTransaction,
    contract: contracts::Model,
) -> Result<contracts::Model, StoreError> {
    CONTRACTS.insert(txn, contract).await
}

/// Deactivates one version of a contract at `now`; None when there is no such
/// version, the version as it stands when it was not active.
pub async fn deactivate_contract(
    txn: &DatabaseTransaction,
    name: &str,
    version: i32,
    now: i64,
) -> Result<Option<Result<contracts::Model, contracts::Model>>, StoreError> {
    CONTRACTS
        .deactivate(txn, name, version, now, |c| c.active)
        .await
}

pub async fn latest_template(
    txn: &DatabaseTransaction,
    name: &str,
) -> Result<Option<templates::Model>, StoreError> {
    TEMPLATES.latest(txn, name).await
}

pub async fn insert_template(
    txn: &DatabaseTransaction,
    template: templates::Model,
) -> Result<templates::Model, StoreError> {
    TEMPLATES.insert(txn, template).await
}

/// As [`deactivate_contract`], for templates.
pub async fn deactivate_template(
    txn: &DatabaseTransaction,
    name: &str,
    version: i32,
    now: i64,
) -> Result<Option<Result<templates::Model, templates::Model>>, StoreError> {
    TEMPLATES
        .deactivate(txn, name, version, now, |t| t.active)
        .await
}
