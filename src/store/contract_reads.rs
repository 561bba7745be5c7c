//! Reading contracts.

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError, contracts};

impl Store {
    /// A version of a contract, or its latest when `version` is None.
    pub async fn contract(
        &self,
        name: &str,
        version: Option<i32>,
    ) -> Result<Option<contracts::Model>, StoreError> {
        let mut query = contracts::Entity::find().filter(contracts::Column::Name.eq(name));
        if let Some(version) = version {
            query = query.filter(contracts::Column::Version.eq(version));
        }
        Ok(query
            .order_by_desc(contracts::Column::Version)
            .one(&self.reader)
            .await?)
    }

    /// The latest active version of a contract.
    pub async fn latest_active_contract(
        &self,
        name: &str,
    ) -> Result<Option<contracts::Model>, StoreError> {
        Ok(contracts::Entity::find()
            .filter(contracts::Column::Name.eq(name))
            .filter(contracts::Column::Active.eq(true))
            .order_by_desc(contracts::Column::Version)
            .one(&self.reader)
            .await?)
    }

    /// Up to `limit` contracts after `(name, version)`, by name then version; only
    /// `only`'s versions when given.
    pub async fn list_contracts(
        &self,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<contracts::Model>, StoreError> {
        let mut query = contracts::Entity::find();
        if let Some(name) = only {
            query = query.filter(contracts::Column::Name.eq(name));
        }
        if let Some((name, version)) = after {
            query = query.filter(
                Condition::any().add(contracts::Column::Name.gt(name)).add(
                    Condition::all()
                        .add(contracts::Column::Name.eq(name))
                        .add(contracts::Column::Version.gt(version)),
                ),
            );
        }
        Ok(query
            .order_by_asc(contracts::Column::Name)
            .order_by_asc(contracts::Column::Version)
            .limit(limit)
            .all(&self.reader)
            .await?)
    }
}
