//! Health as probes read it, on `grpc.health.v1`:
//!
//! - `liveness` (and the empty name, the server as a whole): SERVING while the process
//!   runs, so a database outage does not get every pod restarted.
//! - `readiness`, and the name of each API service this process serves: SERVING once
//!   the schema is migrated and while the database answers; NOT_SERVING while it does
//!   not, and from the moment a shutdown is asked for, so load balancers stop sending
//!   calls before the listener closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::store::Store;

/// The name a readiness probe asks for.
pub const READINESS: &str = "readiness";
/// The name a liveness (or startup) probe asks for.
pub const LIVENESS: &str = "liveness";
/// How often the database is asked whether it answers.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What this process reports; cheap to clone.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    /// The API services served here, reported with readiness.
    services: Arc<Vec<&'static str>>,
    /// Set at shutdown: readiness stays NOT_SERVING whatever the database says.
    stopping: Arc<AtomicBool>,
}

impl Health {
    pub async fn new(reporter: HealthReporter, services: Vec<&'static str>) -> Health {
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let health = Health {
            reporter,
            services: Arc::new(services),
            stopping: Arc::default(),
        };
        health.set_ready(false).await;
        health
    }

    async fn set_ready(&self, ready: bool) {
        let status = match ready {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        self.reporter.set_service_status(READINESS, status).await;
        for service in self.services.iter() {
            self.reporter.set_service_status(*service, status).await;
        }
    }

    /// A shutdown was asked for: not ready from now on.
    pub async fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_ready(false).await;
    }

    /// Asks the database whether it answers every [`CHECK_EVERY`] and reports
    /// readiness by it, until `stop`. Changes are logged once each.
    pub async fn watch_database(self, store: Store, stop: CancellationToken) {
        let mut ready = None;
        loop {
            let answered = tokio::select! {
                answered = store.ping() => answered,
                _ = stop.cancelled() => return,
            };
            let now_ready = answered.is_ok() && !self.stopping.load(Ordering::SeqCst);
            if ready != Some(now_ready) {
                match &answered {
                    Err(error) if ready.is_some() => {
                        tracing::warn!(%error, "the database does not answer: not ready")
                    }
                    Ok(()) if ready == Some(false) => {
                        tracing::info!("the database answers again: ready")
                    }
                    _ => {}
                }
                self.set_ready(now_ready).await;
                ready = Some(now_ready);
                // A shutdown asked for meanwhile wins.
                if self.stopping.load(Ordering::SeqCst) {
                    self.set_ready(false).await;
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
