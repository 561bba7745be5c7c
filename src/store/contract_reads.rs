//! Reading the registries: contracts and templates, each a set of versions by
//! name within a namespace, read the same way. Names are taken as the namespace
//! knows them.

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{Store, StoreError, contracts, templates};
use crate::namespace::qualify;

/// The columns a registry's versions are found by.
struct Versioned<E: EntityTrait> {
    namespace: E::Column,
    name: E::Column,
    version: E::Column,
    active: E::Column,
}

impl<E: EntityTrait> Versioned<E> {
    /// A version of `name` of `namespace`, or (None) the latest; only active
    /// ones when `active_only`.
    async fn one(
        &self,
        reader: &DatabaseConnection,
        (namespace, name): (&str, &str),
        version: Option<i32>,
        active_only: bool,
    ) -> Result<Option<E::Model>, StoreError> {
        let mut query = E::find()
            .filter(self.namespace.eq(namespace))
            .filter(self.name.eq(qualify(namespace, name)));
        if let Some(version) = version {
            query = query.filter(self.version.eq(version));
        }
        if active_only {
            query = query.filter(self.active.eq(true));
        }
        Ok(query.order_by_desc(self.version).one(reader).await?)
    }

    /// Up to `limit` versions of `namespace` after `(name, version)`, by name
    /// then version; only `only`'s versions when given.
    async fn page(
        &self,
        reader: &DatabaseConnection,
        namespace: &str,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<E::Model>, StoreError> {
        let mut query = E::find().filter(self.namespace.eq(namespace));
        if let Some(name) = only {
            query = query.filter(self.name.eq(qualify(namespace, name)));
        }
        if let Some((name, version)) = after {
            let name = qualify(namespace, name);
            let name = name.as_str();
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
    namespace: contracts::Column::Namespace,
    name: contracts::Column::Name,
    version: contracts::Column::Version,
    active: contracts::Column::Active,
};

const TEMPLATES: Versioned<templates::Entity> = Versioned {
    namespace: templates::Column::Namespace,
    name: templates::Column::Name,
    version: templates::Column::Version,
    active: templates::Column::Active,
};

impl Store {
    /// A version of a contract, or its latest when `version` is None.
    pub async fn contract(
        &self,
        namespace: &str,
        name: &str,
        version: Option<i32>,
    ) -> Result<Option<contracts::Model>, StoreError> {
        CONTRACTS
            .one(&self.reader, (namespace, name), version, false)
            .await
    }

    /// The latest active version of a contract.
    pub async fn latest_active_contract(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<contracts::Model>, StoreError> {
        CONTRACTS
            .one(&self.reader, (namespace, name), None, true)
            .await
    }

    /// Up to `limit` contracts after `(name, version)`, by name then version; only
    /// `only`'s versions when given.
    pub async fn list_contracts(
        &self,
        namespace: &str,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<contracts::Model>, StoreError> {
        CONTRACTS
            .page(&self.reader, namespace, only, after, limit)
            .await
    }

    /// A version of a template, or its latest when `version` is None.
    pub async fn template(
        &self,
        namespace: &str,
        name: &str,
        version: Option<i32>,
    ) -> Result<Option<templates::Model>, StoreError> {
        TEMPLATES
            .one(&self.reader, (namespace, name), version, false)
            .await
    }

    /// The latest active version of a template.
    pub async fn latest_active_template(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<templates::Model>, StoreError> {
        TEMPLATES
            .one(&self.reader, (namespace, name), None, true)
            .await
    }

    /// As [`Store::list_contracts`], for templates.
    pub async fn list_templates(
        &self,
        namespace: &str,
        only: Option<&str>,
        after: Option<(&str, i32)>,
        limit: u64,
    ) -> Result<Vec<templates::Model>, StoreError> {
        TEMPLATES
            .page(&self.reader, namespace, only, after, limit)
            .await
    }
}
