//! What a failed database call says about the database: whether the request was at
//! fault (a constraint, a bad row) or the database could not take any write (its disk
//! is full, it is unreachable, its I/O fails). The writer answers, retries and holds
//! work by this, and the API maps it to a gRPC status.

use sea_orm::{DbErr, RuntimeErr};

use super::{StoreError, sqlx};

/// Why the database took no write, when the request itself was not at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The disk under the database is full.
    DiskFull,
    /// The database cannot be reached or fails to do I/O.
    Unavailable,
}

impl Fault {
    /// As metric labels and logs name it.
    pub fn label(self) -> &'static str {
        match self {
            Fault::DiskFull => "disk_full",
            Fault::Unavailable => "unavailable",
        }
    }
}

/// SQLite primary result codes (the low byte of an extended code) that mean the
/// database, not the statement, failed. <https://www.sqlite.org/rescode.html>
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;

impl StoreError {
    /// The database's own failure behind this error; `None` when the request or a
    /// stored row is at fault.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Db(e) => db_fault(e),
            StoreError::Connect(e) | StoreError::Open { source: e, .. } => sqlx_fault(e),
            StoreError::Folder { .. } => Some(Fault::Unavailable),
            StoreError::TimedOut(_) => Some(Fault::Unavailable),
            StoreError::CommitUnknown(_) => Some(Fault::Unavailable),
            StoreError::Corrupt(_) => None,
        }
    }

    /// Whether a commit was sent and its outcome never came back: the change may or
    /// may not be stored.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::CommitUnknown(_))
    }
}

fn db_fault(error: &DbErr) -> Option<Fault> {
    match error {
        // The pool found no connection in time, or was closed.
        DbErr::ConnectionAcquire(_) => Some(Fault::Unavailable),
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => match runtime {
            RuntimeErr::SqlxError(e) => sqlx_fault(e),
            // SeaORM's own complaint about a statement or a value.
            _ => None,
        },
        _ => None,
    }
}

fn sqlx_fault(error: &sqlx::Error) -> Option<Fault> {
    match error {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        {
            Some(pg) => postgres_fault(pg.code()),
            None => db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .and_then(sqlite_fault),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Fault::Unavailable),
        _ => None,
    }
}

fn sqlite_fault(extended: i64) -> Option<Fault> {
    match extended & 0xff {
        SQLITE_FULL => Some(Fault::DiskFull),
        SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_READONLY | SQLITE_IOERR
        | SQLITE_CANTOPEN | SQLITE_PROTOCOL => Some(Fault::Unavailable),
        _ => None,
    }
}

/// By SQLSTATE class. <https://www.postgresql.org/docs/current/errcodes-appendix.html>
fn postgres_fault(code: &str) -> Option<Fault> {
    match code {
        "53100" => Some(Fault::DiskFull),
        // Connection exceptions; insufficient resources; the server shutting down or
        // starting; a read-only standby after a failover; an I/O error.
        _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
            Some(Fault::Unavailable)
        }
        "25006" | "58030" => Some(Fault::Unavailable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_by_their_primary_byte() {
        assert_eq!(sqlite_fault(13), Some(Fault::DiskFull));
        // SQLITE_IOERR_WRITE and SQLITE_IOERR_FSYNC are extended codes of IOERR.
        assert_eq!(sqlite_fault(778), Some(Fault::Unavailable));
        assert_eq!(sqlite_fault(1034), Some(Fault::Unavailable));
        assert_eq!(sqlite_fault(5), Some(Fault::Unavailable));
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_TRIGGER, SQLITE_ERROR: the request.
        assert_eq!(sqlite_fault(2067), None);
        assert_eq!(sqlite_fault(1811), None);
        assert_eq!(sqlite_fault(1), None);
    }

    #[test]
    fn postgres_codes_by_class() {
        assert_eq!(postgres_fault("53100"), Some(Fault::DiskFull));
        assert_eq!(postgres_fault("08006"), Some(Fault::Unavailable));
        assert_eq!(postgres_fault("57P01"), Some(Fault::Unavailable));
        assert_eq!(postgres_fault("53300"), Some(Fault::Unavailable));
        assert_eq!(postgres_fault("23505"), None);
        assert_eq!(postgres_fault("P0001"), None);
        assert_eq!(postgres_fault("40001"), None);
    }

    #[test]
    fn waiting_too_long_and_lost_commits_are_outages() {
        let lost = StoreError::CommitUnknown(Box::new(StoreError::TimedOut(
            std::time::Duration::from_secs(1),
        )));
        assert_eq!(lost.fault(), Some(Fault::Unavailable));
        assert!(lost.outcome_unknown());
        assert!(!StoreError::Corrupt("x".into()).outcome_unknown());
        assert_eq!(StoreError::Corrupt("x".into()).fault(), None);
    }
}
