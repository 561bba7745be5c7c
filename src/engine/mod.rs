//! The engine moves jobs through their lives.
//!
//! - [`writer`]: the one task that writes. It takes submits, cancels, retries, deletes
//!   and attempt outcomes from a channel, applies everything that has arrived in one
//!   transaction (group commit), claims due jobs for free slots in that same
//!   transaction, and after the commit answers the callers and hands claimed jobs to
//!   executors. Maintenance (lease rescue, ttl removal) runs in its batches too.
//! - [`scheduler`]: due schedules, fired by the writer in its transactions: a run's
//!   job commits together with its schedule's move to the next due time.
//! - [`executor`]: runs one attempt and decides its outcome; it never touches the
//!   database, it sends the outcome back to the writer.

pub mod events;
pub mod executor;
pub mod hub;
pub mod outage;
pub mod scheduler;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::convert::Limits;
use crate::chain::definition::Definition;
use crate::config::Config;
use crate::contract::library::Library;
use crate::http::HttpClient;
use crate::job::Status;
use crate::metrics::Metrics;
use crate::namespace::local;
use crate::store::{
    ScheduleRun, Store, StoreError, api_keys, chains, contracts, jobs, queues, schedules, templates,
};

#[derive(Debug, thiserror::Error)]
/// Names in messages are as the caller's namespace knows them.
pub enum EngineError {
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {id} is {status}; {action} needs a job that is {expected}")]
    WrongState {
        id: String,
        status: &'static str,
        action: &'static str,
        expected: &'static str,
    },
    #[error("queue {} not found; create it with CreateQueue", local(.0))]
    QueueNotFound(String),
    #[error("queue {} already exists", local(.0))]
    QueueExists(String),
    #[error(
        "queue {} is {state}; {action} needs a queue that is {expected}",
        local(name)
    )]
    QueueState {
        name: String,
        state: &'static str,
        action: &'static str,
        expected: &'static str,
    },
    #[error("schedule {} not found", local(.0))]
    ScheduleNotFound(String),
    #[error("schedule {} already exists", local(.0))]
    ScheduleExists(String),
    #[error(
        "schedule {} is {state}; {action} needs a schedule that is {expected}",
        local(id)
    )]
    ScheduleState {
        id: String,
        state: &'static str,
        action: &'static str,
        expected: &'static str,
    },
    #[error("chain {0} not found")]
    ChainNotFound(String),
    #[error("key {0} not found")]
    KeyNotFound(String),
    /// A submit past the jobs its namespace may store.
    #[error(
        "namespace {namespace} stores {stored} jobs, its limit is {limit}: submit again once \
         some are deleted or expire"
    )]
    NamespaceFull {
        namespace: String,
        limit: u64,
        stored: u64,
    },
    #[error("chain {id} is {status}; {action} needs a chain that is {expected}")]
    ChainState {
        id: String,
        status: String,
        action: &'static str,
        expected: &'static str,
    },
    /// A version of a contract or a template (`kind`) that does not exist.
    #[error("{kind} {} version {version} not found", local(name))]
    VersionNotFound {
        kind: &'static str,
        name: String,
        version: i32,
    },
    #[error("{kind} {} version {version} is already inactive", local(name))]
    VersionInactive {
        kind: &'static str,
        name: String,
        version: i32,
    },
    /// Another version was created between the caller's check and its create.
    #[error(
        "{kind} {} got version {latest} meanwhile; check against it and create again",
        local(name)
    )]
    VersionMoved {
        kind: &'static str,
        name: String,
        latest: i32,
    },
    /// A change that reads well alone but not with what is stored.
    #[error("{field}: {expected}")]
    Invalid { field: String, expected: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database took no write, or cannot say whether it did.
    #[error(transparent)]
    Unwritten(#[from] outage::Unwritten),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("outbound HTTP client: {0}")]
    Client(String),
    #[error("starting the writer thread: {0}")]
    Writer(std::io::Error),
}

impl EngineError {
    /// The gRPC code a caller is answered with (the API adds details to some:
    /// the field of an invalid change, when to retry a full disk).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            EngineError::NotFound(_)
            | EngineError::QueueNotFound(_)
            | EngineError::ScheduleNotFound(_)
            | EngineError::ChainNotFound(_)
            | EngineError::KeyNotFound(_)
            | EngineError::VersionNotFound { .. } => Code::NotFound,
            EngineError::QueueExists(_) | EngineError::ScheduleExists(_) => Code::AlreadyExists,
            EngineError::WrongState { .. }
            | EngineError::QueueState { .. }
            | EngineError::ScheduleState { .. }
            | EngineError::ChainState { .. }
            | EngineError::VersionInactive { .. } => Code::FailedPrecondition,
            EngineError::VersionMoved { .. } => Code::Aborted,
            EngineError::Invalid { .. } => Code::InvalidArgument,
            EngineError::ShuttingDown => Code::Unavailable,
            EngineError::Unwritten(outage::Unwritten::DiskFull { .. })
            | EngineError::NamespaceFull { .. } => Code::ResourceExhausted,
            EngineError::Unwritten(_) => Code::Unavailable,
            EngineError::Store(_) | EngineError::Client(_) | EngineError::Writer(_) => {
                Code::Internal
            }
        }
    }
}

/// The answer to one submitted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    pub status: Status,
    /// The idempotency key named a job that already existed.
    pub existing: bool,
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// Which of a submitted job's settings the client left unset: its queue's defaults
/// fill them (the job holds the service's until then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unset {
    pub timeout: bool,
    pub max_attempts: bool,
    pub backoff: bool,
    pub ttl: bool,
}

/// A job to store, as the client sent it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job: jobs::Model,
    pub unset: Unset,
}

/// A change to a queue's settings or state.
#[derive(Debug, Clone)]
pub enum QueueChange {
    Create(queues::Model),
    /// Replaces the settings `fields` names with those of the given queue.
    Update(queues::Model, QueueFields),
    Pause(String),
    Resume(String),
    /// Cancels the queue's queued jobs.
    Purge(String),
}

/// Which of a queue's settings an update replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFields {
    pub max_concurrency: bool,
    pub follow_redirects: bool,
    pub signing: bool,
    pub destinations: bool,
    pub rate_limit: bool,
    pub timeout: bool,
    pub max_attempts: bool,
    pub backoff: bool,
    pub ttl: bool,
}

impl QueueFields {
    pub const ALL: QueueFields = QueueFields {
        max_concurrency: true,
        follow_redirects: true,
        signing: true,
        destinations: true,
        rate_limit: true,
        timeout: true,
        max_attempts: true,
        backoff: true,
        ttl: true,
    };
}

/// What a queue change answers.
#[derive(Debug, Clone)]
pub enum QueueChanged {
    Queue(Box<queues::Model>),
    Purged(u64),
}

/// A change to a schedule, or a run asked for by hand.
#[derive(Debug, Clone)]
pub enum ScheduleChange {
    /// Stores a new schedule; the writer sets its times and next due time.
    Create(Box<schedules::Model>),
    /// Replaces what `fields` names with the given schedule's values.
    Update(Box<schedules::Model>, ScheduleFields),
    Pause(String),
    Resume(String),
    Trigger(String),
    Delete(String),
}

/// Which parts of a schedule an update replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleFields {
    pub description: bool,
    /// The timing: cron, interval or once.
    pub timing: bool,
    pub time_zone: bool,
    pub start: bool,
    pub end: bool,
    pub catchup_window: bool,
    pub overlap: bool,
    pub job: bool,
}

impl ScheduleFields {
    pub const ALL: ScheduleFields = ScheduleFields {
        description: true,
        timing: true,
        time_zone: true,
        start: true,
        end: true,
        catchup_window: true,
        overlap: true,
        job: true,
    };
}

/// What a schedule change answers.
#[derive(Debug, Clone)]
pub enum ScheduleChanged {
    Schedule(Box<schedules::Model>),
    /// The job or chain a triggered run submitted.
    Run(Box<ScheduleRun>),
    Deleted,
}

/// A change to the registry of contracts.
#[derive(Debug, Clone)]
pub enum ContractChange {
    /// The next version of a contract, checked by the caller against `after`, the
    /// latest version when it checked (None: the name was new then).
    Create {
        contract: Box<contracts::Model>,
        after: Option<i32>,
    },
    Deactivate {
        name: String,
        version: i32,
    },
}

/// A chain to store and start, as checked by the caller.
#[derive(Debug, Clone)]
pub struct NewChain {
    pub chain: chains::Model,
    pub definition: Definition,
}

/// A change to a chain.
#[derive(Debug, Clone)]
pub enum ChainChange {
    Submit(Box<NewChain>),
    /// Cancels the chain `id` of `namespace` (a chain of another is not found).
    Cancel {
        namespace: String,
        id: String,
    },
    Retry {
        namespace: String,
        id: String,
    },
}

/// What a chain change answers: the chain as committed.
#[derive(Debug, Clone)]
pub struct ChainChanged {
    pub chain: chains::Model,
    /// A submit's idempotency key named a chain that already existed.
    pub existing: bool,
}

/// A change to the registry of templates.
#[derive(Debug, Clone)]
pub enum TemplateChange {
    /// The next version of a template; `after` is the latest version when the
    /// caller checked it (None: the name was new then).
    Create {
        template: Box<templates::Model>,
        after: Option<i32>,
    },
    Deactivate {
        name: String,
        version: i32,
    },
}

/// A change to the API keys.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// New keys, or the keys file's loaded again (a revoked one stays revoked).
    Save(Vec<api_keys::Model>),
    /// Revokes a key of a namespace.
    Revoke { namespace: String, id: String },
}

/// What the writer is asked to do.
pub(crate) enum Op {
    Submit {
        jobs: Vec<(Arc<jobs::Model>, Unset)>,
        reply: Reply<Vec<Submitted>>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Queue {
        change: QueueChange,
        reply: Reply<QueueChanged>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Schedule {
        change: ScheduleChange,
        reply: Reply<ScheduleChanged>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Contract {
        change: ContractChange,
        reply: Reply<contracts::Model>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Chain {
        change: ChainChange,
        reply: Reply<ChainChanged>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Template {
        change: TemplateChange,
        reply: Reply<templates::Model>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Key {
        change: KeyChange,
        reply: Reply<Vec<api_keys::Model>>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Cancel {
        /// The caller's: a job of another is not found.
        namespace: String,
        id: String,
        reply: Reply<jobs::Model>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Retry {
        /// The caller's: a job of another is not found.
        namespace: String,
        id: String,
        reply: Reply<jobs::Model>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Delete {
        /// The caller's: a job of another is not found.
        namespace: String,
        id: String,
        reply: Reply<()>,
        /// Who asked, for the audit log; none for the service's own work.
        actor: Option<Arc<crate::audit::Actor>>,
    },
    Complete(executor::Completion),
}

/// The settings the engine runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Calls in flight in this process, all queues together.
    pub concurrency: usize,
    /// Calls in flight in this process for one queue.
    pub queue_concurrency: usize,
    pub poll_interval: Duration,
    pub lease_grace: Duration,
    pub shutdown_grace: Duration,
    pub maintenance_interval: Duration,
    pub event_retention: Duration,
    /// How long audit log entries are kept.
    pub audit_retention: Duration,
    /// Whether a submit to a queue with no row creates it, or is refused.
    pub create_queues_on_use: bool,
    /// Whether this process claims and runs jobs (not in the `api` role).
    pub runs_jobs: bool,
    /// Longest a write request waits for the database before it is answered
    /// UNAVAILABLE. The writer gives each turn half of it: a request waits at most
    /// for the turn under way and then its own.
    pub db_timeout: Duration,
    /// What a call may carry: a chain step's call is checked against it once its
    /// references are resolved.
    pub call_limits: Limits,
    /// Largest response body a chain step passes on.
    pub step_output_max_bytes: usize,
    /// What each namespace may hold and run.
    pub namespace_limits: crate::namespace::Limits,
    /// How retries' backoff delays are spread.
    pub backoff_jitter: crate::job::Jitter,
    /// Each queue's destinations as last loaded, shared with the API.
    pub queue_destinations: crate::outbound::destinations::QueueDestinations,
    /// What each destination host allows, and its circuit breaker.
    pub host_limits: crate::job::hosts::HostLimits,
    pub host_breaker: Option<crate::job::hosts::Breaker>,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Settings {
            concurrency: config.concurrency,
            queue_concurrency: config.queue_concurrency,
            poll_interval: config.poll_interval,
            lease_grace: config.lease_grace,
            shutdown_grace: config.shutdown_grace,
            maintenance_interval: config.maintenance_interval,
            event_retention: config.event_retention,
            audit_retention: config.audit_retention,
            create_queues_on_use: config.create_queues_on_use,
            runs_jobs: config.role.runs_jobs(),
            db_timeout: config.db_timeout,
            call_limits: Limits::from(config),
            step_output_max_bytes: config.step_output_max_bytes,
            namespace_limits: config.namespace_limits.clone(),
            backoff_jitter: config.backoff_jitter,
            queue_destinations: Default::default(),
            host_limits: config.host_limits.clone(),
            host_breaker: config.host_breaker,
        }
    }
}

/// What the engine knows of other processes on the same database.
#[derive(Clone)]
pub(crate) struct Neighbours {
    /// This process's name in its announcements, to tell its own from others'.
    pub instance: String,
    /// Fires when another process announces that it committed changes.
    pub announced: Arc<tokio::sync::Notify>,
    /// Jobs other processes canceled, whose calls may be running here; `None` asks
    /// for every running call to be checked.
    pub canceled: Arc<std::sync::Mutex<Option<Vec<String>>>>,
}

/// A handle on the engine: cheap to clone, one per caller.
#[derive(Clone)]
pub struct Engine {
    ops: mpsc::Sender<Op>,
    store: Store,
    /// Routes committed changes to watchers.
    hub: hub::Hub,
    /// Fires when the service stops: watches end so the server can drain.
    stopping: CancellationToken,
    metrics: Metrics,
    /// How long a caller waits for the writer's answer.
    db_timeout: Duration,
    /// The contracts in use, compiled.
    library: Arc<Library>,
    /// Each queue's destinations, as the writer last loaded them.
    destinations: crate::outbound::destinations::QueueDestinations,
}

/// Ops waiting for the writer. Callers wait for room rather than pile up in memory.
const OP_QUEUE: usize = 8192;

impl Engine {
    /// Starts the writer. When `shutdown` fires it stops claiming, lets running calls
    /// finish within the shutdown grace, puts the rest back in the queue, and ends
    /// once every handle is dropped; the returned receiver resolves when it has.
    ///
    /// The writer runs on a thread of its own: every job passes through it several
    /// times, so it must never wait in a run queue behind hundreds of HTTP calls and
    /// gRPC requests. Executors run on the caller's runtime.
    pub async fn start(
        store: Store,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<(Engine, oneshot::Receiver<()>), EngineError> {
        let client = HttpClient::new(config.result_max_bytes, config.outbound_guard())
            .map_err(|e| EngineError::Client(e.to_string()))?;
        let shutdown_token = shutdown.clone();
        let (tx, rx) = mpsc::channel(OP_QUEUE);
        let feed = events::Feed::new();
        let metrics = Metrics::new(feed.watchers.clone(), store.kind(), config.role.as_str());
        let neighbours = Neighbours {
            instance: ulid::Ulid::new().to_string(),
            announced: Arc::new(tokio::sync::Notify::new()),
            canceled: Arc::new(std::sync::Mutex::new(Some(Vec::new()))),
        };
        let library = Library::new(store.clone());
        let settings = Settings::from(config);
        let destinations = settings.queue_destinations.clone();
        let writer = writer::Writer::new(
            store.clone(),
            library.clone(),
            settings,
            Arc::new(client),
            rx,
            tx.downgrade(),
            tokio::runtime::Handle::current(),
            feed.clone(),
            neighbours.clone(),
            metrics.clone(),
        )
        .await?;
        // On PostgreSQL, other replicas' commits wake this writer and this hub
        // at once; polling remains for anything missed while reconnecting.
        let log_news = Arc::new(tokio::sync::Notify::new());
        {
            let (store, stop, news) = (store.clone(), shutdown.clone(), log_news.clone());
            let Neighbours {
                instance,
                announced,
                canceled,
            } = neighbours;
            tokio::spawn(async move {
                store
                    .listen(&instance, stop, |announcement| {
                        let mut pending = canceled.lock().unwrap_or_else(|p| p.into_inner());
                        match announcement {
                            Some(a) if !a.check_running => {
                                if let Some(ids) = pending.as_mut() {
                                    ids.extend(a.canceled);
                                }
                            }
                            // Missed or too many to list: check every running call.
                            _ => *pending = None,
                        }
                        drop(pending);
                        announced.notify_one();
                        news.notify_one();
                    })
                    .await
            });
        }
        let hub = hub::Hub::counting(feed.watchers.clone());
        // Where routing starts, read before anyone can watch.
        let (_, head) = store.event_bounds().await?;
        tokio::spawn(hub.clone().run(
            head + 1,
            store.clone(),
            feed.sender.subscribe(),
            log_news,
            config.poll_interval,
            shutdown.clone(),
        ));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(EngineError::Writer)?;
        let (stopped, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("jobqueue-writer".into())
            .spawn(move || {
                runtime.block_on(writer.run(shutdown));
                let _ = stopped.send(());
            })
            .map_err(EngineError::Writer)?;
        Ok((
            Engine {
                ops: tx,
                store,
                hub,
                stopping: shutdown_token,
                metrics,
                db_timeout: config.db_timeout,
                library,
                destinations,
            },
            done,
        ))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The contracts in use, compiled.
    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    /// Each queue's destinations, as the writer last loaded them.
    pub fn queue_destinations(&self) -> &crate::outbound::destinations::QueueDestinations {
        &self.destinations
    }

    /// This process's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Follows status changes: see [`events::watch`].
    pub async fn watch(
        &self,
        filter: events::WatchFilter,
        start: events::Start,
        heartbeat: Duration,
    ) -> Result<mpsc::Receiver<Result<events::Watched, events::WatchError>>, events::WatchError>
    {
        events::watch(
            self.store.clone(),
            &self.hub,
            self.stopping.clone(),
            filter,
            start,
            heartbeat,
        )
        .await
    }

    /// Hands `op` to the writer and waits for its answer, at most the database
    /// timeout. The writer answers within it on its own (see [`Settings::db_timeout`]);
    /// this bound is for a writer held up beyond that. An op still waiting when it
    /// passes is not applied (the writer drops ops whose caller left), but one already
    /// in a transaction may land: hence "may or may not".
    async fn ask<T>(
        &self,
        op: impl FnOnce(Reply<T>, Option<Arc<crate::audit::Actor>>) -> Op,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.ops
                .send(op(reply, crate::audit::current()))
                .await
                .map_err(|_| EngineError::ShuttingDown)?;
            answer.await.map_err(|_| EngineError::ShuttingDown)?
        };
        match tokio::time::timeout(self.db_timeout, asked).await {
            Ok(answer) => answer,
            Err(_) => Err(EngineError::Unwritten(outage::Unwritten::Unknown {
                database: self.store.name().to_string(),
                reason: format!("no answer within {:?}", self.db_timeout),
            })),
        }
    }

    /// Stores jobs, all or none; answers in the same order.
    /// Shared so the writer can keep a due job for its claim without a copy.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<Vec<Submitted>, EngineError> {
        let jobs = jobs
            .into_iter()
            .map(|j| (Arc::new(j.job), j.unset))
            .collect();
        self.ask(|reply, actor| Op::Submit { jobs, reply, actor })
            .await
    }

    /// Cancels the job `id` of `namespace`.
    pub async fn cancel(&self, namespace: String, id: String) -> Result<jobs::Model, EngineError> {
        self.ask(|reply, actor| Op::Cancel {
            namespace,
            id,
            reply,
            actor,
        })
        .await
    }

    /// Retrys the job `id` of `namespace`.
    pub async fn retry(&self, namespace: String, id: String) -> Result<jobs::Model, EngineError> {
        self.ask(|reply, actor| Op::Retry {
            namespace,
            id,
            reply,
            actor,
        })
        .await
    }

    /// Deletes the job `id` of `namespace`.
    pub async fn delete(&self, namespace: String, id: String) -> Result<(), EngineError> {
        self.ask(|reply, actor| Op::Delete {
            namespace,
            id,
            reply,
            actor,
        })
        .await
    }

    pub async fn change_contract(
        &self,
        change: ContractChange,
    ) -> Result<contracts::Model, EngineError> {
        self.ask(|reply, actor| Op::Contract {
            change,
            reply,
            actor,
        })
        .await
    }

    pub async fn change_chain(&self, change: ChainChange) -> Result<ChainChanged, EngineError> {
        self.ask(|reply, actor| Op::Chain {
            change,
            reply,
            actor,
        })
        .await
    }

    /// Saves or revokes keys; answers the keys as stored.
    pub async fn change_keys(
        &self,
        change: KeyChange,
    ) -> Result<Vec<api_keys::Model>, EngineError> {
        self.ask(|reply, actor| Op::Key {
            change,
            reply,
            actor,
        })
        .await
    }

    pub async fn change_template(
        &self,
        change: TemplateChange,
    ) -> Result<templates::Model, EngineError> {
        self.ask(|reply, actor| Op::Template {
            change,
            reply,
            actor,
        })
        .await
    }

    pub async fn change_queue(&self, change: QueueChange) -> Result<QueueChanged, EngineError> {
        self.ask(|reply, actor| Op::Queue {
            change,
            reply,
            actor,
        })
        .await
    }

    pub async fn change_schedule(
        &self,
        change: ScheduleChange,
    ) -> Result<ScheduleChanged, EngineError> {
        self.ask(|reply, actor| Op::Schedule {
            change,
            reply,
            actor,
        })
        .await
    }
}
