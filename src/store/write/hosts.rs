//! Destination hosts' state as rows (see `crate::job::hosts`): made on first
//! use, held to the commit while a claim or an ended call changes them, so every
//! process on one database keeps to the same limits; and jobs held back for
//! their host, queued again without an attempt spent.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Value};

use super::{backend, value_rows};
use crate::job::hosts::HostState;
use crate::store::job_tables::states;
use crate::store::{StoreError, placeholders, sql};

/// What a host's state is read from.
const HOST_COLUMNS: &str =
    "host, running, tokens, tokens_at, failures, open_until, probe, slow_until";

/// A bucket's tokens before its first refill: full, whatever its burst.
const FULL: f64 = 1e18;

/// The state of these hosts, made when missing. On PostgreSQL the rows are held
/// to the commit; with `skip_held`, a row another process holds is left out of
/// the answer (it is claiming for that host now) rather than waited for.
pub async fn lock_hosts(
    txn: &DatabaseTransaction,
    hosts: &[&str],
    now: i64,
    skip_held: bool,
) -> Result<Vec<HostState>, StoreError> {
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!(
        "INSERT INTO hosts (host, running, tokens, tokens_at, failures, updated_at) VALUES {} \
         ON CONFLICT (host) DO NOTHING",
        value_rows(6, hosts.len())
    );
    let values = hosts
        .iter()
        .flat_map(|host| {
            [
                Value::from(*host),
                0i64.into(),
                FULL.into(),
                now.into(),
                0i64.into(),
                now.into(),
            ]
        })
        .collect();
    txn.execute_raw(sql(backend(txn), &text, values)).await?;
    let lock = match (backend(txn), skip_held) {
        (DbBackend::Postgres, true) => " ORDER BY host FOR UPDATE SKIP LOCKED",
        (DbBackend::Postgres, false) => " ORDER BY host FOR UPDATE",
        _ => " ORDER BY host",
    };
    let text = format!(
        "SELECT {HOST_COLUMNS} FROM hosts WHERE host IN ({}){lock}",
        placeholders(hosts.len())
    );
    let values = hosts.iter().map(|h| Value::from(*h)).collect();
    let rows = txn.query_all_raw(sql(backend(txn), &text, values)).await?;
    rows.iter().map(host_state).collect()
}

/// The columns [`HOST_COLUMNS`] names, as a host's state.
fn host_state(row: &sea_orm::QueryResult) -> Result<HostState, StoreError> {
    Ok(HostState {
        host: row.try_get("", "host")?,
        running: row.try_get("", "running")?,
        tokens: row.try_get("", "tokens")?,
        tokens_at: row.try_get("", "tokens_at")?,
        failures: row.try_get("", "failures")?,
        open_until: row.try_get("", "open_until")?,
        probe: row.try_get("", "probe")?,
        slow_until: row.try_get("", "slow_until")?,
    })
}

/// Every host's state, for an operator.
pub async fn all_hosts(txn: &impl ConnectionTrait) -> Result<Vec<HostState>, StoreError> {
    let rows = txn
        .query_all_raw(sql(
            txn.get_database_backend(),
            &format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY host"),
            Vec::new(),
        ))
        .await?;
    rows.iter().map(host_state).collect()
}

/// Stores hosts' state, their rows held by this transaction.
pub async fn save_hosts(
    txn: &DatabaseTransaction,
    states: &[HostState],
    now: i64,
) -> Result<(), StoreError> {
    for s in states {
        txn.execute_raw(sql(
            backend(txn),
            "UPDATE hosts SET running = ?, tokens = ?, tokens_at = ?, failures = ?, \
             open_until = ?, probe = ?, slow_until = ?, updated_at = ? WHERE host = ?",
            vec![
                s.running.into(),
                s.tokens.min(FULL).into(),
                s.tokens_at.into(),
                s.failures.into(),
                s.open_until.into(),
                s.probe.clone().into(),
                s.slow_until.into(),
                now.into(),
                s.host.as_str().into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// An operator's reset: the host's circuit closed, its failures and the time it
/// asked for forgotten, and the jobs held for a host due now (those of other
/// hosts are held again at their claim). Whether the host was known.
pub async fn reset_host(
    txn: &impl ConnectionTrait,
    host: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let backend = txn.get_database_backend();
    let done = txn
        .execute_raw(sql(
            backend,
            "UPDATE hosts SET failures = 0, open_until = NULL, probe = NULL, slow_until = NULL, \
             updated_at = ? WHERE host = ?",
            vec![now.into(), host.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let due_now = format!(
        "UPDATE {} SET run_at = ? WHERE status = 'queued' AND run_at > ? \
         AND last_error_class IN ('circuit_open', 'host_limited')",
        states(backend)
    );
    txn.execute_raw(sql(backend, &due_now, vec![now.into(), now.into()]))
        .await?;
    Ok(true)
}

/// Every running job (every process's): its id and URL, to count calls in flight
/// by host and to find a probe that ended.
pub async fn running_calls(txn: &DatabaseTransaction) -> Result<Vec<(String, String)>, StoreError> {
    let rows = txn
        .query_all_raw(sql(
            backend(txn),
            "SELECT id, url FROM jobs WHERE status = 'running'",
            Vec::new(),
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "url")?)))
        .collect()
}

/// Forgets hosts with nothing to remember: no call in flight, a closed circuit,
/// no time asked for, untouched since `before`.
pub async fn prune_hosts(
    txn: &DatabaseTransaction,
    now: i64,
    before: i64,
) -> Result<u64, StoreError> {
    let done = txn
        .execute_raw(sql(
            backend(txn),
            "DELETE FROM hosts WHERE running = 0 AND open_until IS NULL AND failures = 0 \
             AND (slow_until IS NULL OR slow_until < ?) AND updated_at < ?",
            vec![now.into(), before.into()],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// Claimed jobs their host does not take now, queued again as if not claimed, due
/// at `until`, saying why: `(id, attempt, until, error class)`. The ids that were.
pub async fn hold_for_hosts(
    txn: &DatabaseTransaction,
    held: &[(String, i32, i64, &str)],
) -> Result<Vec<String>, StoreError> {
    let text = format!(
        "UPDATE {} SET status = 'queued', attempt = attempt - 1, run_at = ?, \
         lease_expires_at = NULL, last_error_class = ?, \
         started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END \
         WHERE id = ? AND status = 'running' AND attempt = ?",
        states(backend(txn))
    );
    let mut done = Vec::with_capacity(held.len());
    for (id, attempt, until, class) in held {
        let changed = txn
            .execute_raw(sql(
                backend(txn),
                &text,
                vec![
                    (*until).into(),
                    (*class).into(),
                    id.as_str().into(),
                    (*attempt).into(),
                ],
            ))
            .await?;
        if changed.rows_affected() > 0 {
            done.push(id.clone());
        }
    }
    Ok(done)
}
