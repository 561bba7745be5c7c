//! Schedules as rows: created, changed, removed, and advanced as they fire.

use std::collections::HashSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, Value,
};

use super::{SMALL_ROWS_PER_STATEMENT, backend, value_rows};
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

/// Runs recorded for one schedule in a turn: `runs` more of them (and `skipped` due
/// times without one), the latest for `last_fire`, and where its timetable goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub id: String,
    pub next: Option<i64>,
    pub runs: usize,
    pub skipped: usize,
    pub last_fire: Option<i64>,
}

/// Records the runs of many schedules, in one statement per 2,000 of them.
pub async fn advance_schedules(
    txn: &DatabaseTransaction,
    advances: &[Advance],
) -> Result<(), StoreError> {
    for chunk in advances.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "WITH v(vid, vnext, vruns, vskipped, vlast) AS (VALUES {}) \
             UPDATE schedules SET next_fire_at = v.vnext, run_count = run_count + v.vruns, \
             skipped_count = skipped_count + v.vskipped, \
             last_fire_at = COALESCE(v.vlast, last_fire_at) \
             FROM v WHERE schedules.id = v.vid",
            value_rows(5, chunk.len())
        );
        let mut values = Vec::with_capacity(chunk.len() * 5);
        for a in chunk {
            values.extend([
                Value::from(a.id.as_str()),
                a.next.into(),
                (a.runs as i64).into(),
                (a.skipped as i64).into(),
                a.last_fire.into(),
            ]);
        }
        txn.execute_raw(sql(backend(txn), &text, values)).await?;
    }
    Ok(())
}

/// Which of these schedules have a run unfinished: a job queued or running, or
/// a chain running.
pub async fn with_unfinished_runs(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut busy = HashSet::new();
    if ids.is_empty() {
        return Ok(busy);
    }
    let text = format!(
        "SELECT schedule_id FROM jobs WHERE schedule_id IN ({list}) \
         AND status IN ('queued', 'running') \
         UNION SELECT schedule_id FROM chains WHERE schedule_id IN ({list}) \
         AND status = 'running'",
        list = placeholders(ids.len())
    );
    let values = ids.iter().chain(ids).map(|id| Value::from(*id)).collect();
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        busy.insert(row.try_get::<String>("", "schedule_id")?);
    }
    Ok(busy)
}
