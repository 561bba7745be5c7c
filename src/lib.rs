//! jobqueue: a durable job queue, served over gRPC, whose jobs are outbound HTTP calls.
//!
//! - [`config`]: typed settings from flags and `JOBQUEUE_*` variables, validated once.
//! - [`server`]: the tonic server (jobs, health, reflection); [`server::run`] starts the
//!   engine, serves until shutdown, then drains.
//! - [`api`]: the gRPC services: validate, convert, delegate; the one `Error -> Status`.
//! - [`auth`]: API keys, the scope each call needs, and the check in front of every call.
//! - [`admit`]: the one layer for checks that let a call in or refuse it (auth, overload).
//! - [`chain`]: chains of calls and the references that carry data between them.
//! - [`contract`]: JSON Schema contracts and whether one fits another.
//! - [`job`]: pure domain logic: statuses, backoff, what an attempt's outcome means.
//! - [`store`]: SeaORM entities and every query; nothing outside it writes SQL.
//! - [`engine`]: the writer (group commit, claims, completions, maintenance) and the
//!   executor that makes one HTTP call.
//! - [`health`]: readiness and liveness, as probes read them.
//! - [`http`]: the shared outbound client and response capture.
//! - [`outbound`]: which destinations calls may reach.
//! - [`secret`]: secret headers, sealed at rest with a keyring, masked on every read.
//! - [`metrics`]: this process's metrics, served for Prometheus.
//! - [`telemetry`]: traces, exported over OTLP when the environment asks for it.
//! - [`observe`]: every gRPC call counted, timed and traced by one layer.
//! - [`overload`]: calls refused with a retry hint rather than queued without bound.

pub mod admit;
pub mod api;
pub mod audit;
pub mod auth;
pub mod chain;
pub mod cli;
pub mod config;
pub mod contract;
pub mod engine;
pub mod health;
pub mod http;
pub mod job;
pub mod metrics;
pub mod namespace;
pub mod observe;
pub mod outbound;
pub mod overload;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;

/// Code generated from `proto/jobqueue/v1/jobs.proto`.
pub mod proto {
    tonic::include_proto!("jobqueue.v1");

    /// The encoded descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("jobqueue_descriptor");
}

/// How far this process's wall clock is set from the system's, in milliseconds: 0
/// but for drills and tests that run the service at another date
/// (`JOBQUEUE_CLOCK_START`). Every wall-clock reading goes through [`now_ms`].
static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Milliseconds since the Unix epoch, by the system's clock.
fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the one time unit of the store.
pub fn now_ms() -> i64 {
    system_ms() + CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets this process's wall clock to read `ms` now; it runs on from there.
pub fn set_clock(ms: i64) {
    CLOCK_OFFSET_MS.store(ms - system_ms(), std::sync::atomic::Ordering::Relaxed);
}
