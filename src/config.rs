//! Settings, each from a flag or its `JOBQUEUE_*` variable, validated when parsed so a
//! bad value stops the start with one line naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "jobqueue",
    version,
    about = "A durable job queue whose jobs are HTTP calls"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at the start: the size of the settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API and run jobs.
    Serve(Config),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The keys secret headers are encrypted with.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Destination hosts' state: calls in flight, circuits, the time they asked for.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Jobs of a running service: submit, get, result, cancel, retry, delete,
    /// list, watch.
    Job {
        #[command(flatten)]
        client: crate::cli::args::ClientArgs,
        #[command(subcommand)]
        command: crate::cli::args::JobCommand,
    },
    /// Queues of a running service.
    Queue {
        #[command(flatten)]
        client: crate::cli::args::ClientArgs,
        #[command(subcommand)]
        command: crate::cli::args::QueueCommand,
    },
    /// Schedules of a running service.
    Schedule {
        #[command(flatten)]
        client: crate::cli::args::ClientArgs,
        #[command(subcommand)]
        command: crate::cli::args::ScheduleCommand,
    },
}

// Parsed once at the start, as `Command` is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Lists each host the service keeps state for, as every process sees it.
    List(Config),
    /// Closes a host's circuit and forgets its failures and the time it asked
    /// for: its waiting jobs are taken at once. Safe while the service runs.
    Reset {
        /// The host, as `hosts list` shows it.
        host: String,
        #[command(flatten)]
        config: Config,
    },
}

// Parsed once at the start, as `Command` is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Prints a new key, `id=base64`, for JOBQUEUE_SECRET_KEYS (first, to make it
    /// the active one).
    NewKey {
        /// The key's id: what sealed values name it by.
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Seals every stored secret header again with the active key, and those
    /// kept in the clear before headers were sealed; then older keys may go.
    /// Takes the service's settings (database and keys); safe while it runs.
    Rekey(Config),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Prints a new key, for the keys file (JOBQUEUE_KEYS_FILE).
    New,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// What this process does: `all` serves the API and runs jobs; `api` serves the
    /// API and runs none; `worker` runs jobs and serves only health (and metrics).
    /// Any number of each may share one database.
    #[arg(long, env = "JOBQUEUE_ROLE", default_value = "all", value_parser = parse_role)]
    pub role: Role,

    /// How the log is written: `text` (for a person at a terminal), `json` (one JSON
    /// object a line, for collectors), or `auto`: text when stderr is a terminal,
    /// JSON lines otherwise. `JOBQUEUE_LOG` filters it.
    #[arg(long, env = "JOBQUEUE_LOG_FORMAT", default_value = "auto", value_parser = parse_log_format)]
    pub log_format: LogFormat,

    /// Address the gRPC API listens on.
    #[arg(long, env = "JOBQUEUE_LISTEN_ADDR", default_value = "127.0.0.1:50051",
          value_parser = parse_addr("JOBQUEUE_LISTEN_ADDR"))]
    pub listen_addr: SocketAddr,

    /// Where to serve this process's metrics for Prometheus (`GET /metrics`);
    /// unset serves none.
    #[arg(long, env = "JOBQUEUE_METRICS_ADDR",
          value_parser = parse_addr("JOBQUEUE_METRICS_ADDR"))]
    pub metrics_addr: Option<SocketAddr>,

    /// Database URL: `sqlite://path?mode=rwc` or `postgres://…`.
    #[arg(long, env = "JOBQUEUE_DB_URL", default_value = "sqlite://./data/jobqueue.db?mode=rwc",
          value_parser = parse_db_url)]
    pub db_url: String,

    /// Longest a request waits for the database. A write it has not taken by then
    /// is answered UNAVAILABLE (RESOURCE_EXHAUSTED when its disk is full), and so is
    /// a read it cannot serve; the service keeps running and recovers by itself.
    #[arg(long, env = "JOBQUEUE_DB_TIMEOUT", default_value = "5s",
          value_parser = parse_duration("JOBQUEUE_DB_TIMEOUT"))]
    pub db_timeout: Duration,

    /// Most HTTP calls in flight at once in this process, all queues together.
    #[arg(long, env = "JOBQUEUE_CONCURRENCY", default_value = "1024",
          value_parser = parse_count("JOBQUEUE_CONCURRENCY", 1, 100_000))]
    pub concurrency: usize,

    /// Most HTTP calls one queue may have in flight in this process, so a queue
    /// whose target hangs holds at most this many slots and the others keep theirs.
    /// A queue's own `max_concurrency` (across every process) may lower it. Each
    /// writer turn starts as many calls as have finished, so more in flight means
    /// fewer commits per job (one queue measured 15.1-16.5k jobs/s at 128,
    /// 17.3-17.6k at 256).
    #[arg(long, env = "JOBQUEUE_QUEUE_CONCURRENCY", default_value = "256",
          value_parser = parse_count("JOBQUEUE_QUEUE_CONCURRENCY", 1, 100_000))]
    pub queue_concurrency: usize,

    /// How often to look for due work when nothing announces it.
    #[arg(long, env = "JOBQUEUE_POLL_INTERVAL", default_value = "1s",
          value_parser = parse_duration("JOBQUEUE_POLL_INTERVAL"))]
    pub poll_interval: Duration,

    /// Per-attempt timeout of a job that sets none.
    #[arg(long, env = "JOBQUEUE_DEFAULT_TIMEOUT", default_value = "30s",
          value_parser = parse_duration("JOBQUEUE_DEFAULT_TIMEOUT"))]
    pub default_timeout: Duration,

    /// Longest per-attempt timeout a job may ask for.
    #[arg(long, env = "JOBQUEUE_MAX_TIMEOUT", default_value = "1h",
          value_parser = parse_duration("JOBQUEUE_MAX_TIMEOUT"))]
    pub max_timeout: Duration,

    /// Response body bytes kept per attempt; longer bodies are cut and flagged.
    #[arg(long, env = "JOBQUEUE_RESULT_MAX_BYTES", default_value = "1048576",
          value_parser = parse_count("JOBQUEUE_RESULT_MAX_BYTES", 0, 64 << 20))]
    pub result_max_bytes: usize,

    /// Largest response body a chain step may pass on to the steps after it, in
    /// bytes. A step whose response is larger (or was cut at the result size)
    /// fails with the error class `output_too_large`, so one chain cannot fill
    /// the database.
    #[arg(long, env = "JOBQUEUE_STEP_OUTPUT_MAX_BYTES", default_value = "262144",
          value_parser = parse_count("JOBQUEUE_STEP_OUTPUT_MAX_BYTES", 1, 64 << 20))]
    pub step_output_max_bytes: usize,

    /// Largest request body a job may carry.
    #[arg(long, env = "JOBQUEUE_MAX_BODY_BYTES", default_value = "1048576",
          value_parser = parse_count("JOBQUEUE_MAX_BODY_BYTES", 0, 16 << 20))]
    pub max_body_bytes: usize,

    /// How long a finished job is kept when it sets no ttl.
    #[arg(long, env = "JOBQUEUE_DEFAULT_TTL", default_value = "7d",
          value_parser = parse_duration("JOBQUEUE_DEFAULT_TTL"))]
    pub default_ttl: Duration,

    /// Added to a running job's timeout to make its lease: a job whose lease runs out
    /// (its process died) is run again.
    #[arg(long, env = "JOBQUEUE_LEASE_GRACE", default_value = "30s",
          value_parser = parse_duration("JOBQUEUE_LEASE_GRACE"))]
    pub lease_grace: Duration,

    /// On SIGTERM/SIGINT, how long running calls may take to finish before they are
    /// aborted and queued again.
    #[arg(long, env = "JOBQUEUE_SHUTDOWN_GRACE", default_value = "30s",
          value_parser = parse_duration("JOBQUEUE_SHUTDOWN_GRACE"))]
    pub shutdown_grace: Duration,

    /// On SIGTERM/SIGINT, how long the service keeps serving after it reports itself
    /// not ready (so load balancers stop sending calls) before it drains.
    #[arg(long, env = "JOBQUEUE_SHUTDOWN_DELAY", default_value = "0s",
          value_parser = parse_duration_or_zero("JOBQUEUE_SHUTDOWN_DELAY"))]
    pub shutdown_delay: Duration,

    /// For drills and tests only: run as if the wall clock read this RFC 3339 time at
    /// the start (it runs on from there), to see schedules across a date without
    /// waiting for it. Never on a database other processes share.
    #[arg(long, env = "JOBQUEUE_CLOCK_START", value_parser = parse_instant("JOBQUEUE_CLOCK_START"))]
    pub clock_start: Option<i64>,

    /// How long the event log keeps a status change; watchers resume from a cursor
    /// within it.
    #[arg(long, env = "JOBQUEUE_EVENT_RETENTION", default_value = "24h",
          value_parser = parse_duration("JOBQUEUE_EVENT_RETENTION"))]
    pub event_retention: Duration,

    /// How long audit log entries are kept (see `AuditService`).
    #[arg(long, env = "JOBQUEUE_AUDIT_RETENTION", default_value = "90d",
          value_parser = parse_duration("JOBQUEUE_AUDIT_RETENTION"))]
    pub audit_retention: Duration,

    /// How often expired leases are rescued and expired jobs removed.
    #[arg(long, env = "JOBQUEUE_MAINTENANCE_INTERVAL", default_value = "1s",
          value_parser = parse_duration("JOBQUEUE_MAINTENANCE_INTERVAL"))]
    pub maintenance_interval: Duration,

    /// Whether a job naming a queue that does not exist creates it (with no limits),
    /// or is refused until the queue is created with CreateQueue.
    #[arg(long, env = "JOBQUEUE_CREATE_QUEUES_ON_USE", default_value = "true",
          value_parser = parse_bool("JOBQUEUE_CREATE_QUEUES_ON_USE"), action = clap::ArgAction::Set)]
    pub create_queues_on_use: bool,

    /// A JSON file of the API keys the service starts with (mount it from a
    /// Kubernetes Secret). With one, every call but health and reflection presents
    /// a key; without one the service runs open, in the `default` namespace, and
    /// only on a loopback address unless JOBQUEUE_INSECURE_OPEN says otherwise.
    #[arg(long, env = "JOBQUEUE_KEYS_FILE")]
    pub keys_file: Option<std::path::PathBuf>,

    /// Serve open (no keys file) on an address other than loopback: anyone who
    /// reaches the port may do anything. Said loudly at every start.
    #[arg(long, env = "JOBQUEUE_INSECURE_OPEN", default_value = "false",
          value_parser = parse_bool("JOBQUEUE_INSECURE_OPEN"), action = clap::ArgAction::Set)]
    pub insecure_open: bool,

    /// PEM certificate chain for TLS on the gRPC port (with JOBQUEUE_TLS_KEY).
    /// The files are read again when they change, so a renewal needs no restart.
    #[arg(long, env = "JOBQUEUE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of JOBQUEUE_TLS_CERT.
    #[arg(long, env = "JOBQUEUE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// PEM CA certificates: with it, every client presents a certificate one of
    /// them signed (mTLS). Needs JOBQUEUE_TLS_CERT.
    #[arg(long, env = "JOBQUEUE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// How often the TLS files are looked at for a change.
    #[arg(long, env = "JOBQUEUE_TLS_RELOAD_INTERVAL", default_value = "10s",
          value_parser = parse_duration("JOBQUEUE_TLS_RELOAD_INTERVAL"))]
    pub tls_reload_interval: Duration,

    /// Where to serve gRPC health alone, in plaintext and without keys, for
    /// probes that cannot speak TLS or present a key (Kubernetes' `grpc:`
    /// probes); unset serves health on the API port only.
    #[arg(long, env = "JOBQUEUE_HEALTH_ADDR",
          value_parser = parse_addr("JOBQUEUE_HEALTH_ADDR"))]
    pub health_addr: Option<SocketAddr>,

    /// Most gRPC calls this process serves at once (watch streams aside); past it a
    /// call is refused with RESOURCE_EXHAUSTED and a retry hint, not queued.
    #[arg(long, env = "JOBQUEUE_MAX_IN_FLIGHT", default_value = "4096",
          value_parser = parse_count("JOBQUEUE_MAX_IN_FLIGHT", 1, 7168))]
    pub max_in_flight: usize,

    /// Calls a second each API key may make (a second's worth at once); past it a
    /// call is refused with RESOURCE_EXHAUSTED and when to retry. 0: no limit.
    #[arg(long, env = "JOBQUEUE_KEY_RATE", default_value = "0",
          value_parser = parse_count("JOBQUEUE_KEY_RATE", 0, 1_000_000))]
    pub key_rate: usize,

    /// Limits per namespace, across every process:
    /// `NAMESPACE:jobs=N,concurrency=N,rate=N,burst=N` separated by `;` (each part
    /// optional). Past `jobs` stored a submit is refused with RESOURCE_EXHAUSTED;
    /// `concurrency` and `rate` hold its calls back as a queue's limits do.
    #[arg(long, env = "JOBQUEUE_NAMESPACE_LIMITS", default_value = "",
          value_parser = crate::namespace::Limits::parse)]
    pub namespace_limits: crate::namespace::Limits,

    /// How a retry's backoff delay is spread, so jobs that failed together do
    /// not retry together: `equal` (half the delay, plus a random part of the
    /// other half), `full` (a random part of the whole delay) or `none`. A
    /// target's `Retry-After` is kept as it says.
    #[arg(long, env = "JOBQUEUE_BACKOFF_JITTER", default_value = "equal",
          value_parser = crate::job::Jitter::parse)]
    pub backoff_jitter: crate::job::Jitter,

    /// Destinations calls may reach despite their class (loopback, private,
    /// link-local, cloud metadata...): networks (`10.0.0.0/8`), addresses
    /// (`127.0.0.1`), hosts (`api.internal`) and host suffixes (`.corp.example`),
    /// separated by commas. Empty: public addresses only.
    #[arg(long, env = "JOBQUEUE_OUTBOUND_ALLOW", default_value = "",
          value_parser = crate::outbound::address::RuleList::parse)]
    pub outbound_allow: crate::outbound::address::RuleList,

    /// Destinations calls may never reach, public or allowed ones included; the
    /// same forms as JOBQUEUE_OUTBOUND_ALLOW. A deny wins.
    #[arg(long, env = "JOBQUEUE_OUTBOUND_DENY", default_value = "",
          value_parser = crate::outbound::address::RuleList::parse)]
    pub outbound_deny: crate::outbound::address::RuleList,

    /// Limits per destination host, across every queue and every process:
    /// `HOST:concurrency=N,rate=N,burst=N` separated by `;`, `*` for every host
    /// not named. A job over its host's limit waits, queued (ERROR_CLASS_HOST_LIMITED).
    #[arg(long, env = "JOBQUEUE_HOST_LIMITS", default_value = "",
          value_parser = crate::job::hosts::HostLimits::parse)]
    pub host_limits: crate::job::hosts::HostLimits,

    /// A circuit breaker per destination host: `failures=N,open=DURATION`. After N
    /// failures in a row (connection errors, timeouts, 5xx) the host's jobs wait
    /// for DURATION (ERROR_CLASS_CIRCUIT_OPEN), then one probe call closes it or
    /// opens it again. Unset: no breaker.
    #[arg(long, env = "JOBQUEUE_HOST_BREAKER",
          value_parser = crate::job::hosts::Breaker::parse)]
    pub host_breaker: Option<crate::job::hosts::Breaker>,

    /// Keys secret headers are encrypted with (AES-256-GCM): `id=base64` entries
    /// separated by commas, the first the one new values are sealed with, the
    /// others still read (`jobqueue secrets new-key` prints one; `jobqueue secrets
    /// rekey` seals every stored value again with the first). Unset, with no keys
    /// file either: a job with a secret header is refused.
    #[arg(long, env = "JOBQUEUE_SECRET_KEYS", hide_env_values = true,
          conflicts_with = "secret_keys_file",
          value_parser = crate::secret::Keyring::parse)]
    pub secret_keys: Option<crate::secret::Keyring>,

    /// A file holding the keys, one `id=base64` entry a line, the active one first
    /// (the Helm chart mounts its Secret as one). Read at the start.
    #[arg(long, env = "JOBQUEUE_SECRET_KEYS_FILE",
          value_parser = crate::secret::Keyring::from_file)]
    pub secret_keys_file: Option<crate::secret::Keyring>,
}

impl Config {
    /// The guard every call out passes, from the allow and deny settings.
    pub fn outbound_guard(&self) -> crate::outbound::guard::Guard {
        crate::outbound::guard::Guard::new(crate::outbound::address::Rules::of(
            self.outbound_allow.clone(),
            self.outbound_deny.clone(),
        ))
    }

    /// The keys secret values are sealed with, from either setting.
    pub fn keyring(&self) -> Option<crate::secret::Keyring> {
        self.secret_keys
            .clone()
            .or_else(|| self.secret_keys_file.clone())
    }

    /// Where the TLS files are, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The settings with every default, for a database URL: what tests and the
    /// benchmark start from.
    pub fn with_db_url(db_url: impl Into<String>) -> Self {
        let cli = Cli::parse_from(["jobqueue", "serve", "--db-url", &db_url.into()]);
        match cli.command {
            Command::Serve(config) => config,
            _ => unreachable!("parsed from a serve command"),
        }
    }
}

fn parse_addr(var: &'static str) -> impl Fn(&str) -> Result<SocketAddr, String> + Clone {
    move |s| {
        if let Ok(addr) = s.parse() {
            return Ok(addr);
        }
        // A name such as localhost: its first address, IPv4 first.
        use std::net::ToSocketAddrs;
        let addrs: Vec<SocketAddr> = match s.to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(e) if s.contains(':') => return Err(format!("{var}={s}: {e}")),
            Err(_) => {
                return Err(format!(
                    "{var}={s} must be host:port, like 127.0.0.1:50051 or localhost:50051"
                ));
            }
        };
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{var}={s}: the name has no address"))
    }
}

fn parse_db_url(s: &str) -> Result<String, String> {
    if s.starts_with("sqlite:") || s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_string())
    } else {
        Err("JOBQUEUE_DB_URL must start with sqlite: or postgres://".into())
    }
}

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    /// As `JOBQUEUE_ROLE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    pub fn runs_jobs(self) -> bool {
        self != Role::Api
    }
}

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "auto" => Ok(LogFormat::Auto),
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("JOBQUEUE_LOG_FORMAT must be auto, text or json".into()),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "all" => Ok(Role::All),
        "api" => Ok(Role::Api),
        "worker" => Ok(Role::Worker),
        _ => Err("JOBQUEUE_ROLE must be all, api or worker".into()),
    }
}

fn parse_bool(var: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone {
    move |s| match s {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{var} must be true or false")),
    }
}

fn parse_count(
    var: &'static str,
    min: usize,
    max: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s| match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{var} must be a whole number from {min} to {max}")),
    }
}

fn parse_instant(var: &'static str) -> impl Fn(&str) -> Result<i64, String> + Clone {
    move |s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| format!("{var} must be an RFC 3339 time like 2030-03-10T06:59:45Z"))
    }
}

fn parse_duration_or_zero(var: &'static str) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s| {
        humantime::parse_duration(s)
            .map_err(|_| format!("{var} must be a duration like 0s, 500ms or 5s"))
    }
}

fn parse_duration(var: &'static str) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s| match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{var} must be a positive duration like 500ms, 30s or 5m"
        )),
    }
}
