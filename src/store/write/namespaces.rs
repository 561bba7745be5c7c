//! Namespaces' limits as rows: the jobs a namespace stores, the calls it has in
//! flight, and its rate limiter's bucket, held to the commit while a claim spends
//! from it (see `crate::namespace::Limits`).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Value};

use super::{backend, value_rows};
use crate::store::{StoreError, placeholders, sql};

/// How many jobs `namespace` stores, finished ones included.
pub async fn count_jobs(txn: &DatabaseTransaction, namespace: &str) -> Result<u64, StoreError> {
    let row = txn
        .query_one_raw(sql(
            backend(txn),
            "SELECT COUNT(*) AS n FROM jobs WHERE namespace = ?",
            vec![namespace.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64>("", "n")?.max(0) as u64,
        None => 0,
    })
}

/// Calls in flight per namespace, across every process, for these namespaces.
pub async fn running_by_namespace(
    txn: &DatabaseTransaction,
    names: &[&str],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut running = HashMap::new();
    if names.is_empty() {
        return Ok(running);
    }
    let text = format!(
        "SELECT namespace, COUNT(*) AS running FROM jobs WHERE status = 'running' \
         AND namespace IN ({}) GROUP BY namespace",
        placeholders(names.len())
    );
    let values = names.iter().map(|n| Value::from(*n)).collect();
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        running.insert(
            row.try_get::<String>("", "namespace")?,
            row.try_get::<i64>("", "running")?,
        );
    }
    Ok(running)
}

/// The buckets of these namespaces (`(name, tokens it starts with)`), made when
/// missing and, on PostgreSQL, held to the commit so replicas claiming for one
/// namespace take turns: `(name, tokens, at)`. A bucket another replica holds is
/// skipped (it is claiming for that namespace now), so it is missing from the
/// answer.
pub async fn lock_namespaces(
    txn: &DatabaseTransaction,
    names: &[(&str, f64)],
    now: i64,
) -> Result<Vec<(String, f64, i64)>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!(
        "INSERT INTO namespace_buckets (namespace, tokens, tokens_at) VALUES {} \
         ON CONFLICT (namespace) DO NOTHING",
        value_rows(3, names.len())
    );
    let values = names
        .iter()
        .flat_map(|(name, full)| [Value::from(*name), Value::from(*full), Value::from(now)])
        .collect();
    txn.execute_raw(sql(backend(txn), &text, values)).await?;
    let lock = match backend(txn) {
        DbBackend::Postgres => " ORDER BY namespace FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let text = format!(
        "SELECT namespace, tokens, tokens_at FROM namespace_buckets WHERE namespace IN ({}){lock}",
        placeholders(names.len())
    );
    let values = names.iter().map(|(n, _)| Value::from(*n)).collect();
    let mut locked = Vec::with_capacity(names.len());
    for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
        locked.push((
            row.try_get::<String>("", "namespace")?,
            row.try_get::<f64>("", "tokens")?,
            row.try_get::<i64>("", "tokens_at")?,
        ));
    }
    Ok(locked)
}

/// Stores namespaces' buckets after a claim: `(namespace, tokens, at)`.
pub async fn save_namespace_buckets(
    txn: &DatabaseTransaction,
    buckets: &[(String, f64, i64)],
) -> Result<(), StoreError> {
    super::claims::save_token_buckets(
        txn,
        "UPDATE namespace_buckets SET tokens = ?, tokens_at = ? WHERE namespace = ?",
        buckets,
    )
    .await
}
