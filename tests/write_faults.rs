//! OK means stored, on every path of the writer: a property test that makes the
//! database fail at chosen points (a failing statement, a transaction the database
//! rolls back by itself, a failing COMMIT) inside random groups of concurrent write
//! requests, and checks against the database itself that every request answered OK
//! is stored and every request answered with an error is not, then again after a
//! restart.
//!
//! The failures are the database's own: triggers installed in the test database,
//! fired by markers in a job's URL or a queue's name. SQLite's `RAISE(ROLLBACK)`
//! ends the whole transaction underneath the writer, as SQLITE_FULL and SQLITE_IOERR
//! do; a deferred foreign key fails the COMMIT and leaves the transaction open.

mod common;

use std::collections::HashSet;
use std::sync::Mutex;

use common::*;
use jobqueue::proto::{self, JobSpec};
use jobqueue::store::sqlx;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// Where a request makes the database fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    /// A statement fails; the transaction goes on (SQLite) or is aborted (PostgreSQL).
    FailStatement,
    /// The database rolls the whole transaction back by itself.
    FailRollback,
    /// COMMIT fails.
    FailCommit,
    /// Stores fine; a later cancel of it is rolled back by the database.
    CancelRollback,
}

impl Marker {
    fn path(self) -> &'static str {
        match self {
            Marker::None => "ok",
            Marker::FailStatement => "fail-statement",
            Marker::FailRollback => "fail-rollback",
            Marker::FailCommit => "fail-commit",
            Marker::CancelRollback => "cancel-rollback",
        }
    }

    fn stores(self) -> bool {
        matches!(self, Marker::None | Marker::CancelRollback)
    }
}

#[derive(Debug, Clone)]
enum Request {
    Submit {
        jobs: Vec<Marker>,
        batch: bool,
    },
    /// Cancels the job this picks among those stored and not yet canceled.
    Cancel {
        pick: usize,
    },
    CreateQueue {
        fails: bool,
    },
}

fn marker() -> impl Strategy<Value = Marker> {
    prop_oneof![
        6 => Just(Marker::None),
        1 => Just(Marker::FailStatement),
        1 => Just(Marker::FailRollback),
        1 => Just(Marker::FailCommit),
        2 => Just(Marker::CancelRollback),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        5 => (prop::collection::vec(marker(), 1..5), any::<bool>())
            .prop_map(|(jobs, batch)| Request::Submit { batch: batch || jobs.len() > 1, jobs }),
        2 => any::<usize>().prop_map(|pick| Request::Cancel { pick }),
        1 => prop::bool::weighted(0.3).prop_map(|fails| Request::CreateQueue { fails }),
    ]
}

/// A direct connection to the test database, to see what is really stored.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn open(url: &str) -> Db {
        if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqlitePool::connect(url).await.expect("open SQLite"))
        } else {
            Db::Postgres(sqlx::PgPool::connect(url).await.expect("open PostgreSQL"))
        }
    }

    async fn exec(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_string());
        match self {
            Db::Sqlite(pool) => drop(sqlx::raw_sql(statement).execute(pool).await.expect("exec")),
            Db::Postgres(pool) => drop(sqlx::raw_sql(statement).execute(pool).await.expect("exec")),
        }
    }

    /// The status stored for the job with this URL, if any.
    async fn status_of_url(&self, url: &str) -> Option<String> {
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar("SELECT status FROM jobs WHERE url = ?")
                .bind(url)
                .fetch_optional(pool)
                .await
                .expect("read job"),
            Db::Postgres(pool) => sqlx::query_scalar("SELECT status FROM jobs WHERE url = $1")
                .bind(url)
                .fetch_optional(pool)
                .await
                .expect("read job"),
        }
    }

    async fn queue_exists(&self, name: &str) -> bool {
        let n: i64 = match self {
            Db::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM queues WHERE name = ?")
                .bind(name)
                .fetch_one(pool)
                .await
                .expect("read queue"),
            Db::Postgres(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM queues WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
                .expect("read queue"),
        };
        n > 0
    }

    async fn job_count(&self) -> i64 {
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
                .fetch_one(pool)
                .await
                .expect("count"),
            Db::Postgres(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
                .fetch_one(pool)
                .await
                .expect("count"),
        }
    }

    /// Triggers that make the database fail where the markers say.
    async fn install_faults(&self) {
        match self {
            Db::Sqlite(_) => {
                self.exec(
                    "CREATE TABLE fault_parent (id INTEGER PRIMARY KEY);
                     CREATE TABLE fault_probe (parent INTEGER REFERENCES fault_parent(id)
                         DEFERRABLE INITIALLY DEFERRED);
                     CREATE TRIGGER fault_statement BEFORE INSERT ON jobs
                         WHEN NEW.url LIKE '%/fail-statement/%'
                         BEGIN SELECT RAISE(ABORT, 'injected: a failing statement'); END;
                     CREATE TRIGGER fault_rollback BEFORE INSERT ON jobs
                         WHEN NEW.url LIKE '%/fail-rollback/%'
                         BEGIN SELECT RAISE(ROLLBACK, 'injected: rolled back by the database'); END;
                     CREATE TRIGGER fault_commit AFTER INSERT ON jobs
                         WHEN NEW.url LIKE '%/fail-commit/%'
                         BEGIN INSERT INTO fault_probe VALUES (1); END;
                     CREATE TRIGGER fault_cancel BEFORE UPDATE OF status ON jobs
                         WHEN NEW.status = 'canceled' AND NEW.url LIKE '%/cancel-rollback/%'
                         BEGIN SELECT RAISE(ROLLBACK, 'injected: cancel rolled back'); END;
                     CREATE TRIGGER fault_queue BEFORE INSERT ON queues
                         WHEN NEW.name LIKE 'rollback-%'
                         BEGIN SELECT RAISE(ROLLBACK, 'injected: queue rolled back'); END;",
                )
                .await
            }
            // There `jobs` is a view: the request is inserted into job_definitions,
            // the status changes in job_states.
            Db::Postgres(_) => {
                self.exec(
                    "CREATE FUNCTION fault_raise() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN RAISE EXCEPTION 'injected: %', TG_NAME; END $$;
                     CREATE FUNCTION fault_cancel() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN
                             IF EXISTS (SELECT 1 FROM job_definitions WHERE id = NEW.id
                                        AND url LIKE '%/cancel-rollback/%') THEN
                                 RAISE EXCEPTION 'injected: %', TG_NAME;
                             END IF;
                             RETURN NEW;
                         END $$;
                     CREATE TRIGGER fault_statement BEFORE INSERT ON job_definitions FOR EACH ROW
                         WHEN (NEW.url LIKE '%/fail-statement/%' OR NEW.url LIKE '%/fail-rollback/%')
                         EXECUTE FUNCTION fault_raise();
                     CREATE CONSTRAINT TRIGGER fault_commit AFTER INSERT ON job_definitions
                         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                         WHEN (NEW.url LIKE '%/fail-commit/%') EXECUTE FUNCTION fault_raise();
                     CREATE TRIGGER fault_cancel BEFORE UPDATE OF status ON job_states FOR EACH ROW
                         WHEN (NEW.status = 'canceled') EXECUTE FUNCTION fault_cancel();
                     CREATE TRIGGER fault_queue BEFORE INSERT ON queues FOR EACH ROW
                         WHEN (NEW.name LIKE 'rollback-%') EXECUTE FUNCTION fault_raise();",
                )
                .await
            }
        }
    }
}

/// What the test knows was acknowledged, to check again after a restart.
#[derive(Default)]
struct Acknowledged {
    /// URL of every stored job, and whether it was canceled.
    jobs: Vec<(String, Marker, bool)>,
    queues: Vec<String>,
}

/// One job spec due in an hour (so it stays queued), its URL unique and marked.
fn spec(marker: Marker, n: u64) -> JobSpec {
    let mut spec = get(format!("http://127.0.0.1:9/{}/{n}", marker.path()));
    spec.schedule_time = Some(timestamp(jobqueue::now_ms() + 3_600_000));
    spec
}

async fn run_case(
    server: &Server,
    db: &Db,
    requests: Vec<Request>,
    seen: &Mutex<Acknowledged>,
    serial: &std::sync::atomic::AtomicU64,
) -> Result<(), TestCaseError> {
    use std::sync::atomic::Ordering;
    // Cancels pick among stored jobs that no request of this case touches.
    let cancelable: Vec<(usize, String, Marker)> = {
        let seen = seen.lock().unwrap();
        seen.jobs
            .iter()
            .enumerate()
            .filter(|(_, (_, _, canceled))| !canceled)
            .map(|(i, (url, marker, _))| (i, url.clone(), *marker))
            .collect()
    };
    let mut picked = HashSet::new();
    let mut calls = Vec::new();
    for request in requests {
        let mut client = server.client.clone();
        let mut queues = queues(server.addr).await;
        let n = serial.fetch_add(100, Ordering::SeqCst);
        match request {
            Request::Submit { jobs, batch } => {
                let specs: Vec<JobSpec> = jobs
                    .iter()
                    .enumerate()
                    .map(|(i, m)| spec(*m, n + i as u64))
                    .collect();
                calls.push(tokio::spawn(async move {
                    let answer = if batch {
                        client
                            .submit_jobs(proto::SubmitJobsRequest {
                                jobs: specs.clone(),
                            })
                            .await
                            .map(|_| ())
                    } else {
                        client
                            .submit_job(proto::SubmitJobRequest {
                                job: Some(specs[0].clone()),
                            })
                            .await
                            .map(|_| ())
                    };
                    (
                        Request::Submit { jobs, batch },
                        specs,
                        String::new(),
                        answer,
                    )
                }));
            }
            Request::Cancel { pick } => {
                if cancelable.is_empty() {
                    continue;
                }
                let (index, url, _) = cancelable[pick % cancelable.len()].clone();
                if !picked.insert(index) {
                    continue;
                }
                let Some(id) = job_id_by_url(&mut client, &url).await else {
                    return Err(TestCaseError::fail(format!("stored job {url} not listed")));
                };
                calls.push(tokio::spawn(async move {
                    let answer = client
                        .cancel_job(proto::CancelJobRequest { id })
                        .await
                        .map(|_| ());
                    (
                        Request::Cancel { pick: index },
                        Vec::new(),
                        String::new(),
                        answer,
                    )
                }));
            }
            Request::CreateQueue { fails } => {
                let name = format!("{}-{n}", if fails { "rollback" } else { "lane" });
                calls.push(tokio::spawn(async move {
                    let answer = queues
                        .create_queue(proto::CreateQueueRequest {
                            queue: Some(proto::Queue {
                                name: name.clone(),
                                ..Default::default()
                            }),
                        })
                        .await
                        .map(|_| ());
                    (Request::CreateQueue { fails }, Vec::new(), name, answer)
                }));
            }
        }
    }
    for call in calls {
        let (request, specs, name, answer) = call.await.expect("call task");
        match request {
            Request::Submit { jobs, .. } => {
                let should_store = jobs.iter().all(|m| m.stores());
                prop_assert_eq!(
                    answer.is_ok(),
                    should_store,
                    "submit of {:?} answered {:?}",
                    jobs,
                    answer
                );
                for (spec, marker) in specs.iter().zip(&jobs) {
                    let url = &spec.request.as_ref().expect("request").url;
                    let stored = db.status_of_url(url).await;
                    prop_assert_eq!(
                        stored.is_some(),
                        answer.is_ok(),
                        "job {} of a submit answered {:?}: stored {:?}",
                        url,
                        answer,
                        stored
                    );
                    if answer.is_ok() {
                        seen.lock()
                            .unwrap()
                            .jobs
                            .push((url.clone(), *marker, false));
                    }
                }
            }
            Request::Cancel { pick: index } => {
                let (url, marker) = {
                    let seen = seen.lock().unwrap();
                    (seen.jobs[index].0.clone(), seen.jobs[index].1)
                };
                let should_cancel = marker != Marker::CancelRollback;
                prop_assert_eq!(
                    answer.is_ok(),
                    should_cancel,
                    "cancel of {} answered {:?}",
                    url,
                    answer
                );
                let stored = db.status_of_url(&url).await;
                let expected = if answer.is_ok() { "canceled" } else { "queued" };
                prop_assert_eq!(
                    stored.as_deref(),
                    Some(expected),
                    "job {} after a cancel answered {:?}",
                    url,
                    answer
                );
                if answer.is_ok() {
                    seen.lock().unwrap().jobs[index].2 = true;
                }
            }
            Request::CreateQueue { fails } => {
                prop_assert_eq!(
                    answer.is_ok(),
                    !fails,
                    "create queue {} answered {:?}",
                    name,
                    answer
                );
                prop_assert_eq!(
                    db.queue_exists(&name).await,
                    answer.is_ok(),
                    "queue {} after create answered {:?}",
                    name,
                    answer
                );
                if answer.is_ok() {
                    seen.lock().unwrap().queues.push(name);
                }
            }
        }
    }
    Ok(())
}

/// The id of the one job with this URL, found through the API.
async fn job_id_by_url(client: &mut Client, url: &str) -> Option<String> {
    all_jobs(client)
        .await
        .into_iter()
        .find(|j| j.request.as_ref().is_some_and(|r| r.url == url))
        .map(|j| j.id)
}

/// Checks every acknowledged change against the database.
async fn check_all(db: &Db, seen: &Acknowledged) {
    for (url, _, canceled) in &seen.jobs {
        let expected = if *canceled { "canceled" } else { "queued" };
        assert_eq!(
            db.status_of_url(url).await.as_deref(),
            Some(expected),
            "acknowledged job {url}"
        );
    }
    for name in &seen.queues {
        assert!(db.queue_exists(name).await, "acknowledged queue {name}");
    }
    assert_eq!(
        db.job_count().await,
        seen.jobs.len() as i64,
        "jobs stored are exactly those acknowledged"
    );
}

#[test]
fn every_ok_is_stored_and_every_error_is_not_whatever_the_database_does() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(Server::start());
    let db = runtime.block_on(Db::open(&server.db.url));
    runtime.block_on(db.install_faults());
    let seen = Mutex::new(Acknowledged::default());
    let serial = std::sync::atomic::AtomicU64::new(0);

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(request(), 1..12), |requests| {
        runtime.block_on(run_case(&server, &db, requests, &seen, &serial))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.jobs.len() > 20,
        "the cases stored too few jobs to mean much: {}",
        seen.jobs.len()
    );

    // The same after a restart: acknowledged means durable, not only visible.
    runtime.block_on(async {
        check_all(&db, &seen).await;
        let dbref = server.db.clone();
        server.stop().await;
        let server = Server::restart(dbref, |_| {}).await;
        check_all(&db, &seen).await;
        // And the writer still writes.
        let mut client = server.client.clone();
        let id = submit(&mut client, spec(Marker::None, u64::MAX / 2)).await;
        assert_eq!(get_job(&mut client, &id).await.id, id);
        server.stop().await;
    });
}
