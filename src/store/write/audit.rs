//! The audit log's rows: entries inserted with the changes they record, and
//! removed once older than the retention.

use sea_orm::{ConnectionTrait, DatabaseTransaction, Value};

use super::{SMALL_ROWS_PER_STATEMENT, backend, value_rows};
use crate::store::{StoreError, audit_entries, sql};

/// Inserts entries, in one statement per chunk.
pub async fn insert_audit_entries(
    txn: &DatabaseTransaction,
    rows: Vec<audit_entries::Model>,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 9;
    for chunk in rows.chunks(SMALL_ROWS_PER_STATEMENT / COLUMNS) {
        let text = format!(
            "INSERT INTO audit_entries (id, at, namespace, key_id, peer, action, object, \
             outcome, detail) VALUES {}",
            value_rows(COLUMNS, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for e in chunk {
            values.extend([
                Value::from(e.id.as_str()),
                Value::from(e.at),
                Value::from(e.namespace.as_str()),
                Value::from(e.key_id.clone()),
                Value::from(e.peer.clone()),
                Value::from(e.action.as_str()),
                Value::from(e.object.as_str()),
                Value::from(e.outcome.as_str()),
                Value::from(e.detail.clone()),
            ]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// Entries of one millisecond still sort as they were made.
static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());

/// The id of an entry written at `at` (ms): `a` and a ULID of that time, after
/// every id this process made before within the same millisecond.
pub fn audit_entry_id(at: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    let id = ids
        .generate_from_datetime(at)
        .unwrap_or_else(|_| ulid::Ulid::from_datetime(at));
    audit_id(id)
}

fn audit_id(ulid: ulid::Ulid) -> String {
    format!("a{}", ulid.to_string().to_lowercase())
}

/// Removes up to `limit` entries written before `before` (ms); how many went.
/// Ids start with their time, so the primary key finds them.
pub async fn prune_audit(
    txn: &DatabaseTransaction,
    before: i64,
    limit: u64,
) -> Result<u64, StoreError> {
    let cutoff = audit_id(ulid::Ulid::from_parts(before.max(0) as u64, 0));
    let removed = txn
        .execute_raw(sql(
            backend(txn),
            "DELETE FROM audit_entries WHERE id IN \
             (SELECT id FROM audit_entries WHERE id < ? ORDER BY id LIMIT ?)",
            vec![cutoff.into(), (limit as i64).into()],
        ))
        .await?
        .rows_affected();
    Ok(removed)
}
