//! The store: SeaORM entities and every query. Nothing outside this module writes SQL.
//!
//! Reads go through a pool of connections. Writes happen only inside the transactions
//! the engine's writer opens on its [`WriteSession`], through the functions in
//! [`write`]; the session is one connection, so there is exactly one writer per
//! database file, and it is replaced after any failure (see [`session`]). What a
//! failure says about the database is read by [`fault`]. The SQL here is the shared
//! dialect of SQLite (3.35 and later) and PostgreSQL; [`sql`] adapts placeholders to
//! the engine.

mod audit_reads;
mod chain_reads;
mod contract_reads;
mod depths;
pub mod entities;
pub mod fault;
mod host_reads;
pub(crate) mod job_tables;
mod key_reads;
pub mod log;
mod secret_rows;
pub mod session;
mod sqlite;
pub mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlxPostgresConnector, SqlxSqliteConnector, Statement,
    TransactionTrait, Value,
};

pub use audit_reads::AuditFilter;
pub use chain_reads::ChainRead;
pub use depths::{QueueDepth, ScheduleCounts};
pub use entities::{
    api_keys, attempts, audit_entries, chain_steps, chains, contracts, job_tags, jobs, queues,
    schedules, templates,
};
pub use fault::Fault;
pub use log::Event;
/// The driver underneath, for tools that must talk to a database directly.
pub use sea_orm::sqlx;
pub use secret_rows::SealedColumn;
pub use session::WriteSession;

use crate::job::Status;
use crate::namespace::qualify;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("database connection: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    /// The database could not be opened: where, and the driver's own reason.
    #[error("{database}: {source}")]
    Open {
        database: String,
        source: sqlx::Error,
    },
    #[error("stored row is not valid: {0}")]
    Corrupt(String),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// The commit was sent and its answer lost: it may or may not have landed.
    #[error("the commit's outcome is unknown: {0}")]
    CommitUnknown(Box<StoreError>),
}

/// The PostgreSQL advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6a71_6d69_6772; // "jqmigr"

/// How long a request waits on the database when the caller sets nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open a connection that writes.
enum Target {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    Postgres(sqlx::postgres::PgConnectOptions),
}

/// The database: a pool for reads, and what the writer needs to open its session.
#[derive(Clone)]
pub struct Store {
    pub(crate) reader: DatabaseConnection,
    target: Arc<Target>,
    backend: DbBackend,
    /// The database as logs and errors name it, without credentials.
    name: Arc<str>,
    /// Longest a connect or a pool checkout may take.
    timeout: Duration,
    /// On PostgreSQL, the URL, for a connection that listens for other replicas.
    postgres_url: Option<String>,
}

impl Store {
    /// Connects, creating the SQLite folder and file when needed, and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, DEFAULT_TIMEOUT).await
    }

    /// As [`Store::connect`], with connects and pool checkouts bounded by `timeout`
    /// (and SQLite's wait for a lock another process holds).
    pub async fn connect_with(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, timeout).await?
        } else {
            Self::connect_postgres(url, timeout).await?
        };
        use migration::MigratorTrait;
        let writer = store.open_writer().await?;
        let migrated = match &store.postgres_url {
            // Replicas often start together: one migrates while the others wait on
            // a session lock, then find nothing left to do.
            Some(url) => {
                use sqlx::Connection;
                let mut lock = sqlx::postgres::PgConnection::connect(url).await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut lock)
                    .await?;
                let migrated = migration::Migrator::up(&writer, None).await;
                // Closing the session releases the lock whatever happened.
                let _ = lock.close().await;
                migrated
            }
            None => migration::Migrator::up(&writer, None).await,
        };
        let _ = writer.close().await;
        migrated?;
        Ok(store)
    }

    async fn connect_sqlite(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged submit survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            // Another process's write lock (an API process beside a worker) is waited
            // for, within the time a request may wait.
            .busy_timeout(timeout)
            .statement_cache_capacity(1024)
            // Rows cross from SQLite's thread in this channel; a claim returns up to
            // the concurrency in rows, and a small channel makes the two threads take
            // turns row by row.
            .row_buffer_size(4096);
        let path = options.get_filename().to_path_buf();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let opened = |source| StoreError::Open {
            database: path.display().to_string(),
            source,
        };
        let reader = SqlitePoolOptions::new()
            .after_connect(sqlite::plan_once)
            .max_connections(8)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(timeout)
            .connect_with(options.clone())
            .await
            .map_err(opened)?;
        Ok(Store {
            reader: SqlxSqliteConnector::from_sqlx_sqlite_pool(reader),
            target: Arc::new(Target::Sqlite(options)),
            backend: DbBackend::Sqlite,
            name: format!("sqlite:{}", path.display()).into(),
            timeout,
            postgres_url: None,
        })
    }

    async fn connect_postgres(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        use sqlx::Connection;
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let options = PgConnectOptions::from_str(url)?;
        let name = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        // One connection first, on its own: a pool retries until its timeout and
        // then reports only that, hiding the cause (refused, unknown host, bad login).
        let opened = |source| StoreError::Open {
            database: name.clone(),
            source,
        };
        let first = tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::TimedOut(timeout))?
            .map_err(opened)?;
        let _ = first.close().await;
        let reader = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(timeout)
            .connect_with(options.clone())
            .await
            .map_err(opened)?;
        Ok(Store {
            reader: SqlxPostgresConnector::from_sqlx_postgres_pool(reader),
            target: Arc::new(Target::Postgres(options)),
            backend: DbBackend::Postgres,
            name: name.into(),
            timeout,
            postgres_url: Some(url.to_string()),
        })
    }

    /// One connection that writes, in a pool of its own so SeaORM can drive it. No
    /// ping before each use: the writer takes it once per turn, and a failing
    /// connection shows in the turn's own statements anyway.
    async fn open_writer(&self) -> Result<DatabaseConnection, StoreError> {
        fn pool<DB: sqlx::Database>(timeout: Duration) -> sqlx::pool::PoolOptions<DB> {
            sqlx::pool::PoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .test_before_acquire(false)
                // The session throws its connection away after any failure or cut-off
                // (see `session`), so a connection coming back is sound; testing it
                // cost a round trip to the database before every turn.
                .test_on_release(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(timeout)
        }
        Ok(match &*self.target {
            Target::Sqlite(options) => SqlxSqliteConnector::from_sqlx_sqlite_pool(
                pool(self.timeout)
                    .after_connect(sqlite::plan_once)
                    // A statement that changes many rows inside the transaction keeps a
                    // journal of its own, to undo just itself on error; past 64 KiB
                    // SQLite spills it to a temporary file, which the writer's batch
                    // statements did at every turn. The readers' large sorts stay on disk.
                    .connect_with(options.clone().pragma("temp_store", "memory"))
                    .await?,
            ),
            Target::Postgres(options) => SqlxPostgresConnector::from_sqlx_postgres_pool(
                pool(self.timeout).connect_with(options.clone()).await?,
            ),
        })
    }

    /// Whether the database answers a read, within the timeout. On SQLite a fresh
    /// connection opens the file (never creating it): connections already open keep
    /// working when the file or its folder is gone, which is exactly what this must see.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let ping = async {
            match &*self.target {
                Target::Sqlite(options) => {
                    use sqlx::Connection;
                    let options = options.clone().create_if_missing(false).read_only(true);
                    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
                    sqlx::query("SELECT COUNT(*) FROM sqlite_master")
                        .execute(&mut conn)
                        .await?;
                    conn.close().await?;
                }
                Target::Postgres(_) => {
                    self.reader.execute_unprepared("SELECT 1").await?;
                }
            }
            Ok::<(), StoreError>(())
        };
        tokio::time::timeout(self.timeout, ping)
            .await
            .unwrap_or(Err(StoreError::TimedOut(self.timeout)))
    }

    /// The database kind, for the start's log line.
    pub fn kind(&self) -> &'static str {
        match &*self.target {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    /// The database as logs and errors name it: `sqlite:PATH` or
    /// `postgres://HOST:PORT/DB`, never with credentials.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Longest a connect or a pool checkout may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for word from other processes on the same PostgreSQL database that they
    /// committed changes (see [`write::announce`]); calls `heard` for each, except
    /// this process's own (`me`), and with `None` after (re)connecting, when word may
    /// have been missed. Reconnects after errors; returns at `stop`.
    /// Does nothing on SQLite, where polling covers the rare second process.
    pub async fn listen(
        &self,
        me: &str,
        stop: tokio_util::sync::CancellationToken,
        heard: impl Fn(Option<write::Announcement>),
    ) {
        let Some(url) = &self.postgres_url else {
            return;
        };
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(url).await?;
                listener.listen(write::ANNOUNCE_CHANNEL).await?;
                // Anything missed while not listening is found by the next look.
                heard(None);
                loop {
                    let note = listener.recv().await?;
                    let announcement = write::Announcement::read(note.payload());
                    if announcement.from != me {
                        heard(Some(announcement));
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                result = listening => if let Err(error) = result {
                    tracing::warn!(%error, "listening for other replicas failed; retrying in 1s");
                },
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// The job `id` of `namespace`; `None` when there is none there.
    pub async fn job(&self, namespace: &str, id: &str) -> Result<Option<jobs::Model>, StoreError> {
        Ok(jobs::Entity::find_by_id(id.to_string())
            .filter(jobs::Column::Namespace.eq(namespace))
            .one(&self.reader)
            .await?)
    }

    /// A job's attempts, oldest first (of a job found in its namespace first).
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<attempts::Model>, StoreError> {
        Ok(attempts::Entity::find()
            .filter(attempts::Column::JobId.eq(job_id))
            .order_by_asc(attempts::Column::Number)
            .all(&self.reader)
            .await?)
    }

    /// A page of jobs matching `filter`, newest first, after the job `after` (ids sort
    /// by creation), and how many match in all.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<jobs::Model>, u64), StoreError> {
        let mut query = filtered(filter);
        let total = query.clone().count(&self.reader).await?;
        if let Some(after) = after {
            query = query.filter(jobs::Column::Id.lt(after));
        }
        let page = query
            .order_by_desc(jobs::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        Ok((page, total))
    }

    /// The jobs a watcher starts from, read in one transaction with the newest
    /// cursor, so the changes after that cursor are exactly those the snapshot does
    /// not show. With `ids`, those jobs of the filter's namespace; else up to
    /// `limit` jobs matching `filter` (one more when there are more, so the caller
    /// can refuse).
    pub async fn snapshot(
        &self,
        ids: &[String],
        filter: &JobFilter,
        limit: u64,
    ) -> Result<(i64, Vec<jobs::Model>), StoreError> {
        let txn = self.reader.begin().await?;
        let (_, head) = log::bounds(&txn).await?;
        let jobs = if ids.is_empty() {
            filtered(filter)
                .order_by_desc(jobs::Column::Id)
                .limit(limit + 1)
                .all(&txn)
                .await?
        } else {
            jobs::Entity::find()
                .filter(jobs::Column::Namespace.eq(filter.namespace.as_str()))
                .filter(jobs::Column::Id.is_in(ids.iter().map(String::as_str)))
                .all(&txn)
                .await?
        };
        txn.commit().await?;
        Ok((head, jobs))
    }

    /// The cursors the log can resume from: everything after `pruned_through`, up to
    /// `head`, the newest.
    pub async fn event_bounds(&self) -> Result<(i64, i64), StoreError> {
        log::bounds(&self.reader).await
    }

    /// Up to `limit` events after cursor `after` that `wanted` keeps, oldest first.
    pub async fn events_after(
        &self,
        after: i64,
        wanted: impl Fn(&Event) -> bool,
        limit: u64,
    ) -> Result<Vec<Event>, StoreError> {
        log::after(&self.reader, after, wanted, limit).await
    }

    /// The queue `name` of `namespace`.
    pub async fn queue(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<queues::Model>, StoreError> {
        Ok(queues::Entity::find_by_id(qualify(namespace, name))
            .filter(queues::Column::Namespace.eq(namespace))
            .one(&self.reader)
            .await?)
    }

    /// Up to `limit` queues of `namespace` after the one named `after`, in name
    /// order.
    pub async fn list_queues(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<queues::Model>, StoreError> {
        let mut query = queues::Entity::find().filter(queues::Column::Namespace.eq(namespace));
        if let Some(after) = after {
            query = query.filter(queues::Column::Name.gt(qualify(namespace, after)));
        }
        Ok(query
            .order_by_asc(queues::Column::Name)
            .limit(limit)
            .all(&self.reader)
            .await?)
    }

    /// What the queue `name` of `namespace` holds at `now`, and what it
    /// dispatched in the minute before.
    pub async fn queue_stats(
        &self,
        namespace: &str,
        name: &str,
        now: i64,
    ) -> Result<QueueStats, StoreError> {
        let name = &qualify(namespace, name);
        let txn = self.reader.begin().await?;
        let rows = txn
            .query_all_raw(sql(
                self.backend(),
                "SELECT status, COUNT(*) AS n, \
                 SUM(CASE WHEN run_at > ? THEN 1 ELSE 0 END) AS later, \
                 MIN(CASE WHEN run_at <= ? THEN run_at END) AS oldest \
                 FROM jobs WHERE queue = ? GROUP BY status",
                vec![now.into(), now.into(), name.into()],
            ))
            .await?;
        let mut stats = QueueStats::default();
        for row in rows {
            let status: String = row.try_get("", "status")?;
            let n: i64 = row.try_get("", "n")?;
            match Status::parse(&status) {
                Some(Status::Queued) => {
                    let later = row.try_get::<Option<i64>>("", "later")?.unwrap_or(0);
                    stats.scheduled = later;
                    stats.waiting = n - later;
                    stats.oldest_waiting_since = row.try_get("", "oldest")?;
                }
                Some(Status::Running) => stats.running = n,
                Some(Status::Succeeded) => stats.succeeded = n,
                Some(Status::Failed) => stats.failed = n,
                Some(Status::Canceled) => stats.canceled = n,
                None => return Err(StoreError::Corrupt(format!("job status {status}"))),
            }
        }
        let row = txn
            .query_one_raw(sql(
                self.backend(),
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) AS n FROM queue_dispatches \
                 WHERE queue = ? AND second > ?",
                vec![name.into(), ((now - 60_000) / 1000).into()],
            ))
            .await?;
        if let Some(row) = row {
            stats.dispatched_last_minute = row.try_get("", "n")?;
        }
        txn.commit().await?;
        Ok(stats)
    }

    /// The schedule `id` of `namespace`.
    pub async fn schedule(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<schedules::Model>, StoreError> {
        Ok(schedules::Entity::find_by_id(qualify(namespace, id))
            .filter(schedules::Column::Namespace.eq(namespace))
            .one(&self.reader)
            .await?)
    }

    /// Up to `limit` schedules of `namespace` after the one `after`, in id order.
    pub async fn list_schedules(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<schedules::Model>, StoreError> {
        let mut query =
            schedules::Entity::find().filter(schedules::Column::Namespace.eq(namespace));
        if let Some(after) = after {
            query = query.filter(schedules::Column::Id.gt(qualify(namespace, after)));
        }
        Ok(query
            .order_by_asc(schedules::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?)
    }

    /// Up to `limit` jobs that schedules of `namespace` submitted (this one's, or
    /// any one's when `None`), newest first, before job id `before`.
    pub async fn schedule_runs(
        &self,
        namespace: &str,
        schedule: Option<&str>,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        // Runs are jobs (`j_` and a ULID) or chains (`c_` and a ULID): each table
        // is read from where the page left off by the ULID's time, and the two
        // merged newest first.
        let before = before.map(|id| id.split_once('_').map_or(id, |(_, ulid)| ulid));
        let mut job_runs = jobs::Entity::find().filter(jobs::Column::Namespace.eq(namespace));
        let mut chain_runs = chains::Entity::find().filter(chains::Column::Namespace.eq(namespace));
        match schedule {
            Some(id) => {
                let id = qualify(namespace, id);
                job_runs = job_runs.filter(jobs::Column::ScheduleId.eq(id.as_str()));
                chain_runs = chain_runs.filter(chains::Column::ScheduleId.eq(id));
            }
            None => {
                job_runs = job_runs.filter(jobs::Column::ScheduleId.is_not_null());
                chain_runs = chain_runs.filter(chains::Column::ScheduleId.is_not_null());
            }
        };
        if let Some(before) = before {
            job_runs = job_runs.filter(jobs::Column::Id.lt(format!("j_{before}")));
            chain_runs = chain_runs.filter(chains::Column::Id.lt(format!("c_{before}")));
        }
        let job_runs = job_runs
            .order_by_desc(jobs::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        let chain_runs = chain_runs
            .order_by_desc(chains::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        let mut runs: Vec<ScheduleRun> = job_runs
            .into_iter()
            .map(|job| ScheduleRun::Job(Box::new(job)))
            .chain(
                chain_runs
                    .into_iter()
                    .map(|c| ScheduleRun::Chain(Box::new(c))),
            )
            .collect();
        runs.sort_by(|a, b| b.ulid().cmp(a.ulid()));
        runs.truncate(limit as usize);
        Ok(runs)
    }

    /// The earliest time a queued job is due, to know when to look again.
    pub async fn earliest_due(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .reader
            .query_one_raw(sql(
                self.backend(),
                &format!(
                    "SELECT MIN(run_at) AS due FROM {} WHERE status = 'queued'",
                    job_tables::states(self.backend())
                ),
                vec![],
            ))
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<Option<i64>>("", "due")?,
            None => None,
        })
    }
}

/// One run of a schedule: the job or the chain it submitted.
#[derive(Debug, Clone)]
pub enum ScheduleRun {
    Job(Box<jobs::Model>),
    Chain(Box<chains::Model>),
}

impl ScheduleRun {
    /// The job's or the chain's id.
    pub fn id(&self) -> &str {
        match self {
            ScheduleRun::Job(job) => &job.id,
            ScheduleRun::Chain(chain) => &chain.id,
        }
    }

    /// The ULID in the id, which orders runs by when they were made.
    fn ulid(&self) -> &str {
        let id = self.id();
        id.split_once('_').map_or(id, |(_, ulid)| ulid)
    }
}

/// A queue's jobs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Queued and due.
    pub waiting: i64,
    /// Queued, due later.
    pub scheduled: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
    /// When the longest-waiting due job became due.
    pub oldest_waiting_since: Option<i64>,
    /// Attempts started over the last minute.
    pub dispatched_last_minute: i64,
}

/// A database URL fit to show: its password, if any, masked.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The jobs matching `filter`, as a query to page, count or read.
fn filtered(filter: &JobFilter) -> sea_orm::Select<jobs::Entity> {
    let namespace = filter.namespace.as_str();
    let mut query = jobs::Entity::find().filter(jobs::Column::Namespace.eq(namespace));
    if !filter.statuses.is_empty() {
        query =
            query.filter(jobs::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(queue) = &filter.queue {
        query = query.filter(jobs::Column::Queue.eq(qualify(namespace, queue)));
    }
    if let Some(schedule) = &filter.schedule {
        query = query.filter(jobs::Column::ScheduleId.eq(qualify(namespace, schedule)));
    }
    for tag in &filter.tags {
        let tagged = Query::select()
            .column(job_tags::Column::JobId)
            .from(job_tags::Entity)
            .and_where(job_tags::Column::Tag.eq(tag.as_str()))
            .to_owned();
        query = query.filter(jobs::Column::Id.in_subquery(tagged));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(jobs::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(jobs::Column::CreatedAt.lt(before));
    }
    query
}

/// What `ListJobs` filters on: always one namespace (none matches nothing), then
/// names as that namespace knows them.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub namespace: String,
    pub statuses: Vec<Status>,
    pub tags: Vec<String>,
    pub queue: Option<String>,
    pub schedule: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

/// A statement in the shared dialect, written with `?` placeholders, adapted to the
/// engine (PostgreSQL numbers them).
pub(crate) fn sql(backend: DbBackend, text: &str, values: Vec<Value>) -> Statement {
    let text = match backend {
        DbBackend::Postgres => {
            let mut out = String::with_capacity(text.len() + 16);
            let mut n = 0;
            for c in text.chars() {
                if c == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => text.to_string(),
    };
    Statement::from_sql_and_values(backend, text, values)
}

/// `?, ?, ?` for `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}
