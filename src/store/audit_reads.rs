//! Reading the audit log: a namespace's entries, newest first, filtered.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError, audit_entries};

/// Which entries to read; every filter set must match.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub namespace: String,
    /// At or after, in ms.
    pub from: Option<i64>,
    /// Before, in ms.
    pub until: Option<i64>,
    pub key_id: Option<String>,
    pub action: Option<String>,
    pub object: Option<String>,
}

impl Store {
    /// Up to `limit` entries matching `filter` before `before` (an id), newest
    /// first.
    pub async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<audit_entries::Model>, StoreError> {
        use audit_entries::Column as C;
        let mut query = audit_entries::Entity::find().filter(C::Namespace.eq(&filter.namespace));
        if let Some(from) = filter.from {
            query = query.filter(C::At.gte(from));
        }
        if let Some(until) = filter.until {
            query = query.filter(C::At.lt(until));
        }
        if let Some(key) = &filter.key_id {
            query = query.filter(C::KeyId.eq(key));
        }
        if let Some(action) = &filter.action {
            query = query.filter(C::Action.eq(action));
        }
        if let Some(object) = &filter.object {
            query = query.filter(C::Object.eq(object));
        }
        if let Some(before) = before {
            query = query.filter(C::Id.lt(before));
        }
        Ok(query
            .order_by_desc(C::Id)
            .limit(limit)
            .all(&self.reader)
            .await?)
    }
}
