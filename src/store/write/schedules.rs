//! Schedules as rows: created, changed, removed, and advanced as they fire.

use std::collections::HashSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, Value,
};

use super::backend;
use crate::store::{StoreError, placeholders, schedules, sql};

/// Stores a new schedule; false when one by that id exists.
pub async fn create_schedule(
    txn: &DatabaseTransaction,
    schedule: schedules::Model,
) -> Result<bool, StoreError> {
    let inserted = schedules::Entity::insert(schedules::ActiveModel::from(schedule))
        .on_conflict(
            OnConflict::column(schedules::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}

pub async fn schedule(
    txn: &DatabaseTransaction,
    id: &str,
) -> Result<Option<schedules::Model>, StoreError> {
    Ok(schedules::Entity::find_by_id(id.to_string())
        .one(txn)
        .await?)
}

/// Reads a schedule to change it, holding its row to the commit (on PostgreSQL a
/// replica firing it is waited for, so neither overwrites the other).
pub async fn lock_schedule(
    txn: &DatabaseTransaction,
    id: &str,
) -> Result<Option<schedules::Model>, StoreError> {
    if backend(txn) != DbBackend::Postgres {
        return schedule(txn, id).await;
    }
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "SELECT * FROM schedules WHERE id = ? FOR UPDATE",
            vec![id.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(schedules::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// Writes back every column of a schedule read in this transaction.
pub async fn save_schedule(
    txn: &DatabaseTransaction,
    schedule: schedules::Model,
) -> Result<schedules::Model, StoreError> {
    let mut active = schedules::ActiveModel::from(schedule);
    for column in <schedules::Column as sea_orm::Iterable>::iter() {
        if !matches!(column, schedules::Column::Id) {
            active.reset(column);
        }
    }
    Ok(active.update(txn).await?)
}

/// Removes a schedule; false when there is none by that id. Its jobs stay.
pub async fn delete_schedule(txn: &DatabaseTransaction, id: &str) -> Result<bool, StoreError> {
    Ok(schedules::Entity::delete_by_id(id.to_string())
        .exec(txn)
        .await?
        .rows_affected
        == 1)
}

/// The earliest time a schedule is due, to know when to look again.
pub async fn earliest_fire(txn: &DatabaseTransaction) -> Result<Option<i64>, StoreError> {
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "SELECT MIN(next_fire_at) AS due FROM schedules WHERE next_fire_at IS NOT NULL",
            vec![],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "due"))
        .transpose()?
        .flatten())
}

/// Up to `limit` schedules due at `now`, earliest first, held to the commit. On
/// PostgreSQL a schedule another replica holds is skipped: that replica is firing
/// it, and the row's next due time moves on when it commits, so each due time
/// fires once. (On SQLite the write transaction holds the whole file.)
pub async fn lock_due_schedules(
    txn: &DatabaseTransaction,
    now: i64,
    limit: usize,
) -> Result<Vec<schedules::Model>, StoreError> {
    let lock = match backend(txn) {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let text = format!(
        "SELECT * FROM schedules WHERE next_fire_at <= ? ORDER BY next_fire_at LIMIT ?{lock}"
    );
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            &text,
            vec![now.into(), (limit as i64).into()],
        ))
        .await?;
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        due.push(schedules::Model::from_query_result(&row, "")?);
    }
    Ok(due)
}

/// Records runs of a schedule: `runs` more of them (and `skipped` due times
/// without one), the latest for `last_fire`, and where its timetable goes next.
pub async fn advance_schedule(
    txn: &DatabaseTransaction,
    id: &str,
    next: Option<i64>,
    runs: usize,
    skipped: usize,
    last_fire: Option<i64>,
) -> Result<(), StoreError> {
    txn.execute_raw(sql(
        backend(txn),
        "UPDATE schedules SET next_fire_at = ?, run_count = run_count + ?, \
         skipped_count = skipped_count + ?, last_fire_at = COALESCE(?, last_fire_at) \
         WHERE id = ?",
        vec![
            next.into(),
            (runs as i64).into(),
            (skipped as i64).into(),
            last_fire.into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Which of these schedules have a run queued or running.
pub async fn with_unfinished_runs(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut busy = HashSet::new();
    if ids.is_empty() {
        return Ok(busy);
    }
    let text = format!(
        "SELECT DISTINCT schedule_id FROM jobs WHERE schedule_id IN ({}) \
         AND status IN ('queued', 'running')",
        placeholders(ids.len())
    );
    let values = ids.iter().map(|id| Value::from(*id)).collect();
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        busy.insert(row.try_get::<String>("", "schedule_id")?);
    }
    Ok(busy)
}
