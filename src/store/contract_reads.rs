//! Reading the registries: contracts and templates, each a set of versions by
//! name, read the same way.

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{Store, StoreError, contracts, templates};

/// The columns a registry's versions are found by.
struct Versioned<E: EntityTrait> {
    name: E::Column,
    version: E::Column,
    active: E::Column,
}

impl<E: EntityTrait> Versioned<E> {
    /// A version, or (None) the latest; only active ones when `active_only`.
    async fn one(
        &self,
        reader: &DatabaseConnection,
        name: &str,
        version: Option<i32>,
        active_only: bool,
    ) -> Result<Option<E::Model>, StoreError> {
        let mut query = E::find().filter(self.name.eq(name));
        if let Some(version) = version {
            query = query.filter(self.version.eq(version));
        }
        if active_only {
            query = query.filter(self.active.eq(true));
        }
        Ok(query.order_by_desc(self.version).one(reader).await?)
    }

    /// Up to `limit` versions after `(name, version)`, by name then version;
    /// only `only`'s versions when given.
    async fn page(
        &self,
        reader: &DatabaseConnection,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<E::Model>, StoreError> {
        let mut query = E::find();
        if let Some(name) = only {
            query = query.filter(self.name.eq(name));
        }
        if let Some((name, version)) = after {
            query = query.filter(
                Condition::any().add(self.name.gt(name)).add(
                    Condition::all()
                        .add(self.name.eq(name))
                        .add(self.version.gt(version)),
                ),
            );
        }
        Ok(query
            .order_by_asc(self.name)
            .order_by_asc(self.version)
            .limit(limit)
            .all(reader)
            .await?)
    }
}

const CONTRACTS: Versioned<contracts::Entity> = Versioned {
    name: contracts::Column::Name,
    version: contracts::Column::Version,
    active: contracts::Column::Active,
};

const TEMPLATES: Versioned<templates::Entity> = Versioned {
    name: templates::Column::Name,
    version: templates::Column::Version,
    active: templates::Column::Active,
};

impl Store {
    /// A version of a contract, or its latest when `version` is None.
    pub async fn contract(
        &self,
        name: &str,
        version: Option<i32>,
    ) -> Result<Option<contracts::Model>, StoreError> {
        CONTRACTS.one(&self.reader, name, version, false).await
    }

    /// The latest active version of a contract.
    pub async fn latest_active_contract(
        &self,
        name: &str,
    ) -> Result<Option<contracts::Model>, StoreError> {
        CONTRACTS.one(&self.reader, name, None, true).await
    }

    /// Up to `limit` contracts after `(name, version)`, by name then version; only
    /// `only`'s versions when given.
    pub async fn list_contracts(
        &self,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<contracts::Model>, StoreError> {
        CONTRACTS.page(&self.reader, only, after, limit).await
    }

    /// A version of a template, or its latest when `version` is None.
    pub async fn template(
        &self,
        name: &str,
        version: Option<i32>,
    ) -> Result<Option<templates::Model>, StoreError> {
        TEMPLATES.one(&self.reader, name, version, false).await
    }

    /// The latest active version of a template.
    pub async fn latest_active_template(
        &self,
        name: &str,
    ) -> Result<Option<templates::Model>, StoreError> {
        TEMPLATES.one(&self.reader, name, None, true).await
    }

    /// As [`Store::list_contracts`], for templates.
    pub async fn list_templates(
        &self,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<templates::Model>, StoreError> {
        TEMPLATES.page(&self.reader, only, after, limit).await
    }
}
