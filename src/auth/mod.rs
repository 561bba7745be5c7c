//! Who may call, and what they may do: API keys presented in the `authorization`
//! metadata ([`key`]: their shape, secrets kept only as hashes; [`file`]: the
//! keys file loaded at start), the scope each RPC needs ([`needed`]), and the
//! tower layer in front of every service that checks both ([`layer`]). Handlers
//! find the [`Caller`] in their request's extensions.

pub mod file;
pub mod key;
pub mod layer;

use std::collections::BTreeSet;
use std::fmt;

/// The namespace of the open service, and of everything made before keys.
pub const DEFAULT_NAMESPACE: &str = crate::namespace::DEFAULT;

/// What a key may do. Each RPC needs exactly one (see [`needed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Submit jobs and chains.
    Submit,
    /// Read jobs, results, chains, queues, schedules, contracts and templates.
    Read,
    /// Cancel, retry and delete jobs; cancel and retry chains.
    Manage,
    QueuesAdmin,
    SchedulesAdmin,
    /// Contracts and templates.
    RegistryAdmin,
    KeysAdmin,
    /// Read the audit log.
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::Submit,
        Scope::Read,
        Scope::Manage,
        Scope::QueuesAdmin,
        Scope::SchedulesAdmin,
        Scope::RegistryAdmin,
        Scope::KeysAdmin,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Manage => "manage",
            Scope::QueuesAdmin => "queues.admin",
            Scope::SchedulesAdmin => "schedules.admin",
            Scope::RegistryAdmin => "registry.admin",
            Scope::KeysAdmin => "keys.admin",
            Scope::AuditRead => "audit.read",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Every scope's name, for messages.
    pub fn names() -> String {
        Scope::ALL.map(Scope::as_str).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scopes as stored: names separated by spaces. Unknown names are dropped.
pub fn scopes_from(stored: &str) -> BTreeSet<Scope> {
    stored.split_whitespace().filter_map(Scope::parse).collect()
}

pub fn scopes_text(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a call to a gRPC path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    /// Health and reflection: served to anyone, so probes and tools work.
    Nothing,
    Scope(Scope),
    /// A method no service has: refused as if it needed a scope no key holds.
    Unknown,
}

/// The scope the RPC at `path` (`/jobqueue.v1.JobService/SubmitJob`) needs; each
/// RPC's doc comment in `proto/` names the same one.
pub fn needed(path: &str) -> Needed {
    use Scope::*;
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Needed::Unknown;
    };
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        return Needed::Nothing;
    }
    let scope = match (service, method) {
        ("jobqueue.v1.JobService", "SubmitJob" | "SubmitJobs") => Submit,
        ("jobqueue.v1.JobService", "GetJob" | "GetJobResult" | "ListJobs" | "WatchJobs") => Read,
        ("jobqueue.v1.JobService", "CancelJob" | "RetryJob" | "DeleteJob") => Manage,
        ("jobqueue.v1.QueueService", "GetQueue" | "ListQueues") => Read,
        (
            "jobqueue.v1.QueueService",
            "CreateQueue" | "UpdateQueue" | "PauseQueue" | "ResumeQueue" | "PurgeQueue",
        ) => QueuesAdmin,
        ("jobqueue.v1.ScheduleService", "GetSchedule" | "ListSchedules" | "ListScheduleRuns") => {
            Read
        }
        (
            "jobqueue.v1.ScheduleService",
            "CreateSchedule" | "UpdateSchedule" | "PauseSchedule" | "ResumeSchedule"
            | "TriggerSchedule" | "DeleteSchedule",
        ) => SchedulesAdmin,
        ("jobqueue.v1.ContractService", "GetContract" | "ListContracts") => Read,
        ("jobqueue.v1.ContractService", "CreateContract" | "DeactivateContract") => RegistryAdmin,
        ("jobqueue.v1.TemplateService", "GetTemplate" | "ListTemplates") => Read,
        ("jobqueue.v1.TemplateService", "CreateTemplate" | "DeactivateTemplate") => RegistryAdmin,
        ("jobqueue.v1.ChainService", "SubmitChain" | "CheckChain") => Submit,
        ("jobqueue.v1.ChainService", "GetChain" | "ListChains" | "WatchChain") => Read,
        ("jobqueue.v1.ChainService", "CancelChain" | "RetryChain") => Manage,
        ("jobqueue.v1.KeyService", "CreateKey" | "ListKeys" | "RevokeKey") => KeysAdmin,
        ("jobqueue.v1.AuditService", "ListAuditEntries") => AuditRead,
        _ => return Needed::Unknown,
    };
    Needed::Scope(scope)
}

/// Who is calling: put in each request's extensions by the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key it presented; `None` when the service runs open.
    pub key_id: Option<String>,
    pub namespace: String,
    pub scopes: BTreeSet<Scope>,
}

impl Caller {
    /// The caller of a service that runs open: every scope, the default namespace.
    pub fn open() -> Caller {
        Caller {
            key_id: None,
            namespace: DEFAULT_NAMESPACE.into(),
            scopes: Scope::ALL.into_iter().collect(),
        }
    }

    /// A caller without a key or a scope: one of health and reflection.
    pub fn anyone() -> Caller {
        Caller {
            key_id: None,
            namespace: DEFAULT_NAMESPACE.into(),
            scopes: BTreeSet::new(),
        }
    }

    /// The caller of `request`, as the layer found it (open when there is no
    /// layer, as in a service built without one).
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::open)
    }

    /// The namespace `request` acts in: only that is copied, not the caller's
    /// scopes (what most handlers need, on every call).
    pub fn namespace_of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| DEFAULT_NAMESPACE.to_string(), |c| c.namespace.clone())
    }
}
