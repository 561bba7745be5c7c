//! The client commands' flags: `jobqueue job|queue|schedule ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// How to reach the service and how to answer; every client command takes them,
/// before or after its subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The service: `host:port`, or an `http://` or `https://` URL.
    #[arg(
        long,
        global = true,
        env = "JOBQUEUE_ADDRESS",
        default_value = "http://127.0.0.1:50051"
    )]
    pub address: String,
    /// The API key to present (`jq_...`), sent as `authorization: Bearer`.
    #[arg(long, global = true, env = "JOBQUEUE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM file of the CAs that sign the service's certificate; implies TLS.
    #[arg(long, global = true, env = "JOBQUEUE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present to a service that asks for one (mTLS).
    #[arg(
        long,
        global = true,
        env = "JOBQUEUE_TLS_CLIENT_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`.
    #[arg(
        long,
        global = true,
        env = "JOBQUEUE_TLS_CLIENT_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// `human`: tables, local times and live progress on a terminal; `json`: the
    /// API's JSON, one document (or one line per item or event).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "JOBQUEUE_OUTPUT",
        default_value = "human"
    )]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submits a job: the call from flags (like curl), from a JSON or YAML file,
    /// or many jobs as JSON lines.
    Submit(Box<SubmitArgs>),
    /// Shows a job: its state, times and request.
    Get { id: String },
    /// Shows a job's outcome: every attempt, and the final response's body.
    Result { id: String },
    /// Cancels a queued or running job.
    Cancel { id: String },
    /// Runs a failed or canceled job again, with a fresh attempt budget.
    Retry { id: String },
    /// Removes a finished job and its result.
    Delete { id: String },
    /// Lists jobs, newest first.
    List(ListArgs),
    /// Follows jobs until they finish (by id), or every change a filter names.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The URL to call.
    #[arg(long)]
    pub url: Option<String>,
    /// The method (GET when there is no body, POST when there is).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A header, `Name: value`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// A header whose value is secret: stored encrypted, never shown again.
    #[arg(long = "secret-header", value_name = "HEADER")]
    pub secret_headers: Vec<String>,
    /// The body: sent as JSON when it parses as JSON, else as text. `@FILE` reads
    /// a file, `@-` standard input.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// A query parameter, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The job as the API's JSON (`JobSpec`) in a JSON or YAML file (`-` for
    /// standard input); the other flags change it.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "jobs")]
    pub file: Option<PathBuf>,
    /// Many jobs: a file of JSON lines, one `JobSpec` each (`-` for standard
    /// input), sent in batches; the other flags apply to each.
    #[arg(long, value_name = "FILE")]
    pub jobs: Option<PathBuf>,
    /// The queue to run in.
    #[arg(long)]
    pub queue: Option<String>,
    /// Higher runs first.
    #[arg(long)]
    pub priority: Option<i32>,
    /// Attempts in all, from 1 to 100.
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Limit for one attempt, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// How long the finished job is kept, e.g. `7d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// Not before this time (RFC 3339, e.g. `2026-12-24T18:00:00Z`).
    #[arg(long, value_name = "TIME", conflicts_with = "delay")]
    pub at: Option<String>,
    /// Not before this long from now, e.g. `10m`.
    #[arg(long = "in", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// A tag; repeat for more.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A second submit with the same key returns the first job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Waits for the job (or jobs) to finish, showing progress; the exit code
    /// says how they ended.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this status (queued, running, succeeded, failed,
    /// canceled); repeat for more.
    #[arg(long = "status")]
    pub statuses: Vec<String>,
    /// Only jobs carrying this tag; repeat for more (all must match).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only jobs in this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
    /// Where a previous page ended.
    #[arg(long)]
    pub page_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The jobs to follow until each has finished.
    pub ids: Vec<String>,
    /// Every change of jobs carrying this tag; repeat for more.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Every change of jobs in this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Every change of every job.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lists queues with their jobs by status.
    List,
    /// Shows a queue's settings and jobs.
    Get { name: String },
    /// Creates a queue.
    Create(QueueSettings),
    /// Changes the settings given, leaving the others.
    Update(QueueSettings),
    /// Stops starting calls from a queue.
    Pause { name: String },
    /// Starts calls from a paused queue again.
    Resume { name: String },
    /// Cancels every queued job of a queue.
    Purge { name: String },
}

#[derive(Debug, Args)]
pub struct QueueSettings {
    /// The queue's name.
    pub name: String,
    /// Most calls in flight at once, across every process.
    #[arg(long)]
    pub max_concurrency: Option<i32>,
    /// Calls started per second, on average.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Calls that may start at once after an idle spell.
    #[arg(long, requires = "rate")]
    pub burst: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Lists schedules.
    List,
    /// Shows a schedule, its next and latest runs.
    Get { id: String },
    /// Creates a schedule from a JSON or YAML file (`Schedule`, as the API has it).
    Create {
        /// Its id; empty: `s_` and a ULID.
        #[arg(long)]
        id: Option<String>,
        /// The schedule (`-` for standard input).
        #[arg(short = 'f', long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Stops a schedule from firing.
    Pause { id: String },
    /// Lets a paused schedule fire again.
    Resume { id: String },
    /// Fires a schedule now, once.
    Trigger { id: String },
    /// Removes a schedule (its jobs stay).
    Delete { id: String },
}
