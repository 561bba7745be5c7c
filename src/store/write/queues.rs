//! Queues as rows: their settings and pause switch, and purging their waiting jobs.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, Value,
};

use super::{backend, tags_of, value_rows};
use crate::engine::QueueFields;
use crate::job::Status;
use crate::store::job_tables::{states, update_returning};
use crate::store::log::Event;
use crate::store::{StoreError, queues, sql};

/// The stored queues among `names`.
pub async fn queues_named(
    txn: &DatabaseTransaction,
    names: &[&str],
) -> Result<Vec<queues::Model>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(queues::Entity::find()
        .filter(queues::Column::Name.is_in(names.iter().copied()))
        .all(txn)
        .await?)
}

/// Every queue, in name order: what a claim plans with.
pub async fn all_queues(txn: &DatabaseTransaction) -> Result<Vec<queues::Model>, StoreError> {
    Ok(queues::Entity::find()
        .order_by_asc(queues::Column::Name)
        .all(txn)
        .await?)
}

/// Adds queues that do not exist yet, with no limits; existing ones stay as they are.
pub async fn create_queues_if_missing(
    txn: &DatabaseTransaction,
    names: &[&str],
    now: i64,
) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let text = format!(
        "INSERT INTO queues (name, namespace, paused, tokens, tokens_at, created_at, updated_at) \
         VALUES {} ON CONFLICT (name) DO NOTHING",
        value_rows(7, names.len())
    );
    let mut values = Vec::with_capacity(names.len() * 7);
    for name in names {
        values.extend([
            Value::from(*name),
            // Each name is stored qualified: it says whose queue it is.
            crate::namespace::of(name).into(),
            false.into(),
            0f64.into(),
            now.into(),
            now.into(),
            now.into(),
        ]);
    }
    txn.execute_raw(sql(backend(txn), &text, values)).await?;
    Ok(())
}

/// Stores a new queue; false when one by that name exists.
pub async fn create_queue(
    txn: &DatabaseTransaction,
    queue: queues::Model,
) -> Result<bool, StoreError> {
    let inserted = queues::Entity::insert(queues::ActiveModel::from(queue))
        .on_conflict(
            OnConflict::column(queues::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}

fn set_if<V: Into<Value>>(yes: bool, value: V) -> sea_orm::ActiveValue<V> {
    if yes {
        sea_orm::ActiveValue::Set(value)
    } else {
        sea_orm::ActiveValue::NotSet
    }
}

/// Replaces the settings of a queue that `fields` names (never its pause switch);
/// the stored queue, or `None` when there is none by that name.
pub async fn update_queue(
    txn: &DatabaseTransaction,
    queue: &queues::Model,
    fields: QueueFields,
) -> Result<Option<queues::Model>, StoreError> {
    use sea_orm::ActiveValue::{NotSet, Set};
    let Some(stored) = queues::Entity::find_by_id(queue.name.clone())
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let rate = fields.rate_limit
        && (stored.rate_burst != queue.rate_burst
            || stored.rate_per_second != queue.rate_per_second);
    let active = queues::ActiveModel {
        name: Set(queue.name.clone()),
        namespace: NotSet,
        follow_redirects: set_if(fields.follow_redirects, queue.follow_redirects),
        signing: set_if(fields.signing, queue.signing.clone()),
        destinations: set_if(fields.destinations, queue.destinations.clone()),
        paused: NotSet,
        max_concurrency: set_if(fields.max_concurrency, queue.max_concurrency),
        rate_per_second: set_if(fields.rate_limit, queue.rate_per_second),
        rate_burst: set_if(fields.rate_limit, queue.rate_burst),
        // A new rate limit starts with a full bucket of its own size.
        tokens: set_if(rate, f64::from(queue.rate_burst.unwrap_or(1))),
        tokens_at: set_if(rate, queue.updated_at),
        default_timeout_ms: set_if(fields.timeout, queue.default_timeout_ms),
        default_max_attempts: set_if(fields.max_attempts, queue.default_max_attempts),
        default_backoff_strategy: set_if(fields.backoff, queue.default_backoff_strategy.clone()),
        default_backoff_base_ms: set_if(fields.backoff, queue.default_backoff_base_ms),
        default_backoff_max_ms: set_if(fields.backoff, queue.default_backoff_max_ms),
        default_ttl_ms: set_if(fields.ttl, queue.default_ttl_ms),
        created_at: NotSet,
        updated_at: Set(queue.updated_at),
    };
    Ok(Some(active.update(txn).await?))
}

/// Pauses (or resumes) a queue that is not already so; `None` when it is, or when
/// there is no such queue.
pub async fn set_paused(
    txn: &DatabaseTransaction,
    name: &str,
    paused: bool,
    now: i64,
) -> Result<Option<queues::Model>, StoreError> {
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "UPDATE queues SET paused = ?, updated_at = ? WHERE name = ? AND paused = ? RETURNING *",
            vec![paused.into(), now.into(), name.into(), (!paused).into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(queues::Model::from_query_result(&row, "")?),
        None => None,
    })
}

/// Cancels every queued job of a queue; returns the changes to log.
pub async fn purge(
    txn: &DatabaseTransaction,
    queue: &str,
    now: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            &update_returning(
                backend(txn),
                &format!(
                    "UPDATE {} SET status = 'canceled', finished_at = ?, expires_at = ? + ttl_ms \
                     WHERE queue = ? AND status = 'queued'",
                    states(backend(txn))
                ),
                &[
                    "id",
                    "attempt",
                    "tags",
                    "last_status_code",
                    "last_error_class",
                    "schedule_id",
                ],
            ),
            vec![now.into(), now.into(), queue.into()],
        ))
        .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        changes.push(Event {
            seq: 0,
            job_id: row.try_get("", "id")?,
            status: Status::Canceled,
            attempt: row.try_get("", "attempt")?,
            at: now,
            queue: queue.to_string(),
            tags: tags_of(&row.try_get::<String>("", "tags")?),
            status_code: row.try_get("", "last_status_code")?,
            error_class: row.try_get("", "last_error_class")?,
            next_attempt_at: None,
            schedule_id: row.try_get("", "schedule_id")?,
        });
    }
    Ok(changes)
}
