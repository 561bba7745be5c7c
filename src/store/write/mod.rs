//! Every write, as set-based statements inside the writer's transaction: one
//! statement per kind of change, however many jobs it touches. Each state change is
//! guarded by the state it expects, so a cancel or a rescue that landed first is never
//! overwritten.

//!
//! One module per concern: `jobs`, `claims`, `queues`, `namespaces` (their limits),
//! `schedules`, `contracts`, `chains`, `keys`, `audit`,
//! and `replicas` (what processes sharing PostgreSQL tell each other).

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend};

use super::placeholders;

mod audit;
mod chains;
mod claims;
mod contracts;
mod hosts;
mod jobs;
mod keys;
mod namespaces;
mod outcomes;
mod queues;
mod replicas;
mod schedules;

pub use audit::*;
pub use chains::*;
pub use claims::*;
pub use contracts::*;
pub use hosts::*;
pub use jobs::*;
pub use keys::*;
pub use namespaces::*;
pub use outcomes::*;
pub use queues::*;
pub use replicas::*;
pub use schedules::*;

/// Rows per multi-row statement: SQLite allows 32,766 bound values, PostgreSQL 65,535.
const JOB_ROWS_PER_STATEMENT: usize = 500;
const SMALL_ROWS_PER_STATEMENT: usize = 2000;

/// `(?, ?), (?, ?)`: `rows` rows of `columns` placeholders, for a multi-row VALUES.
fn value_rows(columns: usize, rows: usize) -> String {
    vec![format!("({})", placeholders(columns)); rows].join(", ")
}

fn backend(txn: &DatabaseTransaction) -> DbBackend {
    txn.get_database_backend()
}
