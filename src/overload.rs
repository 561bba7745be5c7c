//! Overload answered rather than queued: a tower layer that refuses a call with
//! `RESOURCE_EXHAUSTED` and a retry hint when this process already serves its
//! most calls at once (`JOBQUEUE_MAX_IN_FLIGHT`), or when the caller's key has
//! used its rate (`JOBQUEUE_KEY_RATE`). Watch streams are long-lived and bounded
//! on their own, so they do not count as calls in flight. Each call in flight
//! holds at most one request for the writer, and the writer's queue is larger
//! than the limit, so the writer's backlog is bounded by it too.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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

#[derive(Clone)]
pub struct OverloadLayer {
    limits: Arc<Limits>,
}

impl OverloadLayer {
    pub fn new(limits: Limits) -> OverloadLayer {
        OverloadLayer {
            limits: Arc::new(limits),
        }
    }
}

impl<S> tower::Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Overload {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Overload<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, B> tower::Service<http::Request<B>> for Overload<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if let (Some(per_key), Some(key)) = (
                &limits.per_key,
                request
                    .extensions()
                    .get::<Caller>()
                    .and_then(|c| c.key_id.clone()),
            ) && let Err(not_until) = per_key.check_key(&key)
            {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Ok(exhausted(
                    format!("key {key} is over its rate (JOBQUEUE_KEY_RATE); retry after {wait:?}"),
                    wait,
                )
                .into_http());
            }
            if streams(path) {
                return inner.call(request).await;
            }
            let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
                return Ok(exhausted(
                    format!(
                        "this process serves its most calls at once ({}, JOBQUEUE_MAX_IN_FLIGHT); retry shortly",
                        limits.max_in_flight
                    ),
                    RETRY_IN_FLIGHT,
                )
                .into_http());
            };
            inner.call(request).await
        })
    }
}
