//! What every SQLite connection of ours is set up with, beyond its connect options.

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
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is this connection's open handle, locked for the duration of
        // the call; SQLITE_DBCONFIG_ENABLE_QPSG takes an int (1: on) and a pointer
        // to an int for the setting it leaves, which may be null.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                db,
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as std::ffi::c_int,
                std::ptr::null_mut::<std::ffi::c_int>(),
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            return Err(sqlx::Error::Configuration(
                format!("SQLite refused SQLITE_DBCONFIG_ENABLE_QPSG (result code {rc})").into(),
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// The setting read back from a pooled connection: 1 when on.
    async fn qpsg(pool: &sqlx::SqlitePool) -> std::ffi::c_int {
        let mut conn = pool.acquire().await.unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let mut on: std::ffi::c_int = -1;
        // SAFETY: as in `plan_once`; -1 leaves the setting as it is and reports it.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::ffi::c_int,
                &mut on as *mut std::ffi::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        on
    }

    #[tokio::test]
    async fn connections_keep_their_plans() {
        let options = SqliteConnectOptions::new().in_memory(true);
        let plain = SqlitePoolOptions::new()
            .connect_with(options.clone())
            .await
            .unwrap();
        assert_eq!(qpsg(&plain).await, 0, "off unless asked for");
        let ours = SqlitePoolOptions::new()
            .after_connect(plan_once)
            .connect_with(options)
            .await
            .unwrap();
        assert_eq!(qpsg(&ours).await, 1);
    }
}
