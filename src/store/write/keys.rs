//! API keys: new ones, the keys file's loaded at start, and revocations.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

use crate::store::{StoreError, api_keys};

/// Stores keys: new ones inserted; a key already stored (the keys file loaded
/// again) takes its namespace, scopes, hash, description and expiry from the
/// new row, and stays revoked if it was.
pub async fn save_keys(
    txn: &DatabaseTransaction,
    rows: Vec<api_keys::Model>,
) -> Result<(), StoreError> {
    use api_keys::Column as C;
    for row in rows {
        api_keys::Entity::insert(api_keys::ActiveModel::from(row))
            .on_conflict(
                OnConflict::column(C::Id)
                    .update_columns([
                        C::Namespace,
                        C::Scopes,
                        C::SecretHash,
                        C::Description,
                        C::ExpiresAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Revokes the key `id` of `namespace`; the key as it stands after, or `None`
/// when that namespace has no such key. Revoking twice keeps the first time.
pub async fn revoke_key(
    txn: &DatabaseTransaction,
    namespace: &str,
    id: &str,
    now: i64,
) -> Result<Option<api_keys::Model>, StoreError> {
    let Some(mut key) = api_keys::Entity::find_by_id(id.to_string())
        .filter(api_keys::Column::Namespace.eq(namespace))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    if key.revoked_at.is_none() {
        key.revoked_at = Some(now);
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, now.into())
            .filter(api_keys::Column::Id.eq(id))
            .exec(txn)
            .await?;
    }
    Ok(Some(key))
}
