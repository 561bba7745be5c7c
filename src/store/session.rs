//! The writer's connection, and the one rule that keeps its answers true: after any
//! failure the connection is thrown away and the next transaction starts on a new one.
//!
//! Why not roll back and go on: a database can end a transaction underneath its
//! client. SQLite rolls the whole transaction back by itself on SQLITE_FULL,
//! SQLITE_IOERR and a few others; the driver, not knowing, then fails its own
//! ROLLBACK and keeps counting a transaction that no longer exists, so its next
//! BEGIN becomes a SAVEPOINT and its next COMMIT a RELEASE that commits nothing. A
//! PostgreSQL connection can drop in the middle of a statement. A fresh connection
//! has no such history: whatever the old one held is rolled back when it closes.

use std::time::Duration;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, TransactionTrait};

use super::{Fault, Store, StoreError};

/// Longest the old connection may take to close before it is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The writer's connection: opened when first needed, replaced after any failure.
pub struct WriteSession {
    store: Store,
    conn: Option<DatabaseConnection>,
    /// Set while a COMMIT is on its way: if the turn is cut off now, its outcome is
    /// unknown.
    committing: bool,
}

impl WriteSession {
    pub fn new(store: Store) -> WriteSession {
        WriteSession {
            store,
            conn: None,
            committing: false,
        }
    }

    /// Opens a transaction, connecting first when there is no connection. On SQLite
    /// it takes the write lock at once (`BEGIN IMMEDIATE`): another process writing
    /// to the same file (an API process beside a worker) then makes it wait its
    /// turn, where a transaction that read first and wrote later would fail outright
    /// when the other wrote in between.
    pub async fn begin(&mut self) -> Result<DatabaseTransaction, StoreError> {
        let conn = match &self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.store.open_writer().await?),
        };
        Ok(match self.store.backend() {
            DbBackend::Sqlite => {
                conn.begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?
            }
            _ => conn.begin().await?,
        })
    }

    /// Commits `txn`. A commit that failed for want of the database (a connection
    /// lost, an I/O error) may have landed all the same: that error says so
    /// ([`StoreError::outcome_unknown`]). A full disk or a refused constraint means it
    /// did not.
    pub async fn commit(&mut self, txn: DatabaseTransaction) -> Result<(), StoreError> {
        self.committing = true;
        let result = txn.commit().await;
        self.committing = false;
        result.map_err(|error| {
            let error = StoreError::from(error);
            match error.fault() {
                Some(Fault::Unavailable) => StoreError::CommitUnknown(Box::new(error)),
                _ => error,
            }
        })
    }

    /// Whether a commit was under way when the work around it was cut off.
    pub fn was_committing(&self) -> bool {
        self.committing
    }

    /// Throws the connection away after a failure: it closes, which rolls back
    /// whatever it still held, and the next [`begin`](Self::begin) opens a new one.
    pub async fn discard(&mut self) {
        self.committing = false;
        if let Some(conn) = self.conn.take() {
            // A connection whose peer vanished may never finish closing.
            let _ = tokio::time::timeout(CLOSE_WAIT, conn.close()).await;
        }
    }

    /// The database, as errors name it.
    pub fn database(&self) -> &str {
        self.store.name()
    }
}
