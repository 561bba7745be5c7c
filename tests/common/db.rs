//! The test database read and written as an operator (or an attacker with the
//! file) would: its raw bytes, and statements run around the service.

/// Every byte the database keeps, as one buffer: the SQLite file and its WAL, or
/// the text of every row of every table on PostgreSQL.
pub async fn database_bytes(url: &str) -> Vec<u8> {
    use jobqueue::store::sqlx::{self, Connection, Row};
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap();
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(mut file) = std::fs::read(format!("{path}{suffix}")) {
                bytes.append(&mut file);
            }
        }
        assert!(bytes.len() > 4096, "the database file was read");
        return bytes;
    }
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "jobs"), "{tables:?}");
    let mut bytes = Vec::new();
    for table in tables {
        // Names from the catalogue, quoted.
        let query = sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{table}\" t"));
        for row in sqlx::query(query).fetch_all(&mut conn).await.unwrap() {
            let text: String = row.get(0);
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    bytes
}

/// Runs one statement on the test database, SQLite or PostgreSQL.
pub async fn execute(url: &str, statement: String) {
    use jobqueue::store::sqlx::{self, Connection};
    let statement = sqlx::AssertSqlSafe(statement);
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
    }
}

/// The `headers` column of the row `id` of `table`.
pub async fn stored_headers(url: &str, table: &str, id: &str) -> String {
    stored_column(
        url,
        &format!("SELECT headers FROM {table} WHERE id = '{id}'"),
    )
    .await
}

/// The one text value `query` selects.
pub async fn stored_column(url: &str, query: &str) -> String {
    use jobqueue::store::sqlx::{self, Connection};
    let query = sqlx::AssertSqlSafe(query.to_string());
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}
