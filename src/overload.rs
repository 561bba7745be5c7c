//! Overload answered rather than queued: a check in front of every service
//! (through [`crate::admit`]) that refuses a call with
//! `RESOURCE_EXHAUSTED` and a retry hint when this process already serves its
//! most calls at once (`JOBQUEUE_MAX_IN_FLIGHT`), or when the caller's key has
//! used its rate (`JOBQUEUE_KEY_RATE`). Watch streams are long-lived and bounded
//! on their own, so they do not count as calls in flight. Each call in flight
//! holds at most one request for the writer, and the writer's queue is larger
//! than the limit, so the writer's backlog is bounded by it too.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::admit::Admit;
use crate::auth::Caller;

/// How soon a call refused for too many in flight is asked to come back.
const RETRY_IN_FLIGHT: Duration = Duration::from_millis(200);

/// The limits one process keeps.
pub struct Limits {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
}

impl Limits {
    /// At most `max_in_flight` calls at once; `key_rate` calls a second per key
    /// (with a burst of one second's worth), none when 0.
    pub fn new(max_in_flight: usize, key_rate: u32) -> Limits {
        Limits {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            per_key: NonZeroU32::new(key_rate)
                .map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
        }
    }
}

fn exhausted(message: String, retry: Duration) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(retry));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

fn streams(path: &str) -> bool {
    path.ends_with("/WatchJobs") || path.ends_with("/WatchChain") || path.starts_with("/grpc.")
}

impl Admit for Limits {
    /// A call's place among those in flight; none for a stream.
    type Pass = Option<OwnedSemaphorePermit>;

    async fn admit<B: Send>(&self, request: &mut http::Request<B>) -> Result<Self::Pass, Status> {
        if let (Some(per_key), Some(key)) = (
            &self.per_key,
            request
                .extensions()
                .get::<Caller>()
                .and_then(|c| c.key_id.as_deref()),
        ) && let Err(not_until) = per_key.check_key(&key.to_string())
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(exhausted(
                format!("key {key} is over its rate (JOBQUEUE_KEY_RATE); retry after {wait:?}"),
                wait,
            ));
        }
        if streams(request.uri().path()) {
            return Ok(None);
        }
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(exhausted(
                format!(
                    "this process serves its most calls at once ({}, JOBQUEUE_MAX_IN_FLIGHT); retry shortly",
                    self.max_in_flight
                ),
                RETRY_IN_FLIGHT,
            )),
        }
    }
}
