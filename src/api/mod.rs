//! The gRPC services: each handler validates, converts, delegates and `?`s. The one
//! mapping from the engine's errors to gRPC statuses lives here.

pub mod audit;
pub mod chain_spec;
pub mod chain_watch;
pub mod chains;
pub mod contracts;
pub mod convert;
pub mod jobs;
pub mod keys;
pub mod queues;
pub mod request;
pub mod response;
pub mod schedule_chains;
pub mod schedules;
pub mod signing;
pub mod templates;
pub mod versions;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::EngineError;
use crate::engine::events::WatchError;
use crate::engine::outage::Unwritten;
use crate::store::{Fault, StoreError};

/// Bad fields of a request: each with its path (`jobs[2].request.url`) and what was
/// expected. Becomes one `INVALID_ARGUMENT` carrying `google.rpc.BadRequest`.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, expected: impl Into<String>) {
        self.0.push((field.into(), expected.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many bad fields so far: a check compares before and after.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(value)` when nothing was wrong.
    pub fn into_result<T>(self, value: T) -> Result<T, Status> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.into())
        }
    }
}

/// Most bad fields an answer lists in its details, and in its message: both
/// travel in response headers, which HTTP/2 peers cap (16 KiB is common), and a
/// batch of a thousand bad jobs would pass that and reach the client as a
/// protocol error instead of this answer.
const MOST_DETAILED: usize = 20;
const MOST_IN_MESSAGE: usize = 5;

impl From<Violations> for Status {
    fn from(violations: Violations) -> Status {
        let all = violations.0.len();
        let mut message = violations
            .0
            .iter()
            .take(MOST_IN_MESSAGE)
            .map(|(field, expected)| format!("{field}: {expected}"))
            .collect::<Vec<_>>()
            .join("; ");
        if all > MOST_IN_MESSAGE {
            message.push_str(&format!(
                "; and {} more ({all} bad fields in all)",
                all - MOST_IN_MESSAGE
            ));
        }
        let mut details = ErrorDetails::new();
        for (field, expected) in violations.0.into_iter().take(MOST_DETAILED) {
            details.add_bad_request_violation(field, expected);
        }
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

/// One bad field, as a status.
pub fn invalid(field: impl Into<String>, expected: impl Into<String>) -> Status {
    let mut v = Violations::default();
    v.add(field, expected);
    v.into()
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Status {
        match error {
            EngineError::Invalid { field, expected } => invalid(field, expected),
            EngineError::Store(e) => e.into(),
            EngineError::Unwritten(unwritten) => unwritten.into(),
            full @ EngineError::NamespaceFull { .. } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(RETRY_AFTER_FULL));
                Status::with_error_details(full.code(), full.to_string(), details)
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

impl From<WatchError> for Status {
    fn from(error: WatchError) -> Status {
        let message = error.to_string();
        match error {
            WatchError::Pruned { .. } => Status::out_of_range(message),
            WatchError::Ahead { .. } => invalid("cursor", message),
            WatchError::SnapshotTooLarge { .. } => Status::failed_precondition(message),
            WatchError::NotFound(_) => Status::not_found(message),
            WatchError::Closing { .. } => Status::unavailable(message),
            WatchError::Store(store) => store.into(),
        }
    }
}

impl From<Unwritten> for Status {
    fn from(unwritten: Unwritten) -> Status {
        match &unwritten {
            Unwritten::DiskFull { .. } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(RETRY_AFTER_FULL));
                Status::with_error_details(Code::ResourceExhausted, unwritten.to_string(), details)
            }
            Unwritten::Unavailable { .. } | Unwritten::Unknown { .. } => {
                Status::unavailable(unwritten.to_string())
            }
        }
    }
}

/// The retry hint of a write refused for a full disk or a full namespace.
const RETRY_AFTER_FULL: std::time::Duration = std::time::Duration::from_secs(5);

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error.fault() {
            // Reads that find the database gone; the writer logs its own episodes.
            Some(Fault::Unavailable) => {
                Status::unavailable(format!("database unavailable: {error}"))
            }
            Some(Fault::DiskFull) => {
                Status::resource_exhausted(format!("database disk is full: {error}"))
            }
            None => {
                tracing::error!(%error, "store error");
                Status::internal(format!("storage failed: {error}"))
            }
        }
    }
}
