//! What every SQLite connection of ours is set up with, beyond its connect options.

use std::ffi::c_int;

use futures::future::BoxFuture;
use sea_orm::sqlx;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::SqliteConnection;

/// Turns on SQLite's query planner stability guarantee for a new connection, so that
/// each statement is planned once and its plan kept.
///
/// Without it, SQLite (3.47 on) plans a statement with `LIMIT ?` for the value bound
/// there (and one comparing `?` with a partial index's condition for that value),
/// and marks it to be compiled again whenever a value is bound to that parameter: in
/// effect, every run of such a statement was parsed and planned anew. SeaORM's
/// `one()`, every claim and every read of the event log are such statements; while
/// schedules were being created, recompiling took a fifth of the server's CPU. No
/// plan of ours depends on a bound value: the conditions partial indexes match are
/// written as literals.
pub fn plan_once<'c>(
    conn: &'c mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        qpsg(conn, 1).await?;
        Ok(())
    })
}

/// Sets the query planner stability guarantee on `conn` (1: on, 0: off, -1: leave it)
/// and returns the setting it leaves.
async fn qpsg(conn: &mut SqliteConnection, set: c_int) -> Result<c_int, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let mut now: c_int = -1;
    // SAFETY: the handle is this connection's open database, locked for the duration
    // of the call; SQLITE_DBCONFIG_ENABLE_QPSG takes an int and a pointer to an int
    // for the setting it leaves.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            set,
            &mut now as *mut c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(
            format!("SQLite refused SQLITE_DBCONFIG_ENABLE_QPSG (result code {rc})").into(),
        ));
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// The setting read back from a pooled connection: 1 when on.
    async fn setting(pool: &sqlx::SqlitePool) -> c_int {
        let mut conn = pool.acquire().await.unwrap();
        qpsg(&mut conn, -1).await.unwrap()
    }

    #[tokio::test]
    async fn connections_keep_their_plans() {
        let options = SqliteConnectOptions::new().in_memory(true);
        let plain = SqlitePoolOptions::new()
            .connect_with(options.clone())
            .await
            .unwrap();
        assert_eq!(setting(&plain).await, 0, "off unless asked for");
        let ours = SqlitePoolOptions::new()
            .after_connect(plan_once)
            .connect_with(options)
            .await
            .unwrap();
        assert_eq!(setting(&ours).await, 1);
    }
}
