//! Reading API keys: one by id, for every call that presents it (no cache, so a
//! revocation through any process holds at once), or a namespace's page.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError, api_keys};

impl Store {
    pub async fn key(&self, id: &str) -> Result<Option<api_keys::Model>, StoreError> {
        Ok(api_keys::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await?)
    }

    /// Up to `limit` keys of `namespace` before `before` (an id), newest first.
    pub async fn list_keys(
        &self,
        namespace: &str,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<api_keys::Model>, StoreError> {
        let mut query = api_keys::Entity::find().filter(api_keys::Column::Namespace.eq(namespace));
        if let Some(before) = before {
            query = query.filter(api_keys::Column::Id.lt(before));
        }
        Ok(query
            .order_by_desc(api_keys::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?)
    }
}
