//! Runs one attempt of one job and decides what it means. It never touches the
//! database: the outcome goes back to the writer as a [`Completion`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Op;
use crate::contract::library::{self, Library};
use crate::contract::registry::Part;
use crate::contract::validate::describe;
use crate::http::{Call, CallError, Captured, HttpClient, header_map, merge_params};
use crate::job::{Backoff, BackoffStrategy, CallOutcome, ErrorClass, Jitter, Next, next_step};
use crate::now_ms;
use crate::secret::Row;
use crate::store::write::Claim;
use crate::store::{attempts, jobs};
use crate::telemetry;

/// An attempt's outcome, for the writer to record.
#[derive(Debug)]
pub struct Completion {
    /// The attempt as it will be stored: times, and the response or the error.
    pub record: attempts::Model,
    /// The job: its ttl for the expiry, its queue and tags for the event.
    pub job: Arc<jobs::Model>,
    pub next: Next,
    /// The time the target asked for with `Retry-After`, if it did.
    pub retry_after: Option<Duration>,
}

impl Completion {
    /// A claim that was never started: its job goes back to the queue as if the
    /// attempt had not been made (when the claim landed at all).
    pub fn unclaimed(job: Arc<jobs::Model>, claim: &Claim) -> Completion {
        let record = attempt_record(
            job.id.clone(),
            claim.attempt,
            claim.started_at,
            0,
            Err(CallError {
                class: ErrorClass::Interrupted,
                message: "claimed by a commit whose outcome was lost; never started".into(),
            }),
        );
        Completion {
            record,
            job,
            next: Next::Requeue,
            retry_after: None,
        }
    }
}

/// What an attempt is held to: once its call succeeded, a chain step's size and
/// the output schema of the contract a job keeps (a step's, a template's); once
/// it failed, how the delay before its retry is spread.
pub(crate) struct AttemptRules {
    pub library: Arc<Library>,
    /// Largest body a step passes on.
    pub output_max_bytes: usize,
    /// How retries' backoff delays are spread.
    pub jitter: Jitter,
    /// Opens the job's secret headers.
    pub keyring: Option<crate::secret::Keyring>,
}

impl AttemptRules {
    /// Why a step's successful response cannot be its output: too large, or not
    /// what its contract's output schema promises.
    async fn refuse(&self, job: &jobs::Model, captured: &Captured) -> Option<CallError> {
        let step = job.chain_id.is_some();
        if !step && job.contract.is_none() {
            return None;
        }
        if step && (captured.truncated || captured.body_size > self.output_max_bytes as u64) {
            return Some(CallError {
                class: ErrorClass::OutputTooLarge,
                message: format!(
                    "the response body is {} bytes; a step passes on at most {} (JOBQUEUE_STEP_OUTPUT_MAX_BYTES)",
                    captured.body_size, self.output_max_bytes
                ),
            });
        }
        let (name, version) = library::parse_label(job.contract.as_deref()?)?;
        let cannot_read = |error| CallError {
            class: ErrorClass::ContractViolation,
            message: format!("the output schema cannot be read: {error}"),
        };
        let body: serde_json::Value = match serde_json::from_slice(&captured.body) {
            Ok(body) => body,
            // Not JSON: fine for a contract that says nothing of the output.
            Err(error) => {
                return match self.library.validator(name, version, Part::Output).await {
                    Ok(None) => None,
                    Ok(Some(_)) => Some(CallError {
                        class: ErrorClass::ContractViolation,
                        message: format!(
                            "the response body breaks the output schema of contract {name} version {version}: it is not JSON ({error})"
                        ),
                    }),
                    Err(error) => Some(cannot_read(error)),
                };
            }
        };
        let found = match self
            .library
            .check(name, version, Part::Output, &body, VIOLATIONS_REPORTED)
            .await
        {
            Ok(found) => found,
            Err(error) => return Some(cannot_read(error)),
        };
        (!found.is_empty()).then(|| CallError {
            class: ErrorClass::ContractViolation,
            message: describe("the response body", name, version, Part::Output, &found),
        })
    }
}

/// Most places a contract violation lists.
const VIOLATIONS_REPORTED: usize = 10;

/// A job a claim just started, with what its queue asks of its call.
pub(crate) struct Dispatch {
    pub job: Arc<jobs::Model>,
    pub claim: Claim,
    /// Redirects its call follows: its queue's setting.
    pub follow_redirects: u32,
    /// The queue's signing secrets, as stored, for a job without its own.
    pub queue_signing: Option<String>,
    /// Where its queue holds its calls to.
    pub destinations: Option<Arc<crate::outbound::address::RuleList>>,
}

/// Runs the attempt the claim just started. `cancel` fires when a client cancels
/// this job, `interrupt` when the service stops; either drops the call at once.
pub(crate) async fn run(
    dispatch: Dispatch,
    client: Arc<HttpClient>,
    rules: Arc<AttemptRules>,
    cancel: CancellationToken,
    interrupt: CancellationToken,
    outcomes: mpsc::Sender<Op>,
) {
    let Dispatch {
        job,
        claim,
        follow_redirects,
        queue_signing,
        destinations,
    } = dispatch;
    let started_at = claim.started_at;
    let clock = Instant::now();
    let from_schedule = job.schedule_id.is_some();
    let traced =
        telemetry::traces_attempts(job.trace_context.as_deref(), from_schedule).then(|| {
            telemetry::attempt(
                job.trace_context.as_deref(),
                from_schedule,
                &job.queue,
                &job.id,
                claim.attempt,
            )
        });
    let mut call_span = None;
    let signing = job.signing.as_deref().or(queue_signing.as_deref());
    let built = build_call(&job, follow_redirects, signing, rules.keyring.as_ref());
    let result = match built.map(|call| Call {
        destinations,
        ..call
    }) {
        Err(message) => Err(CallError {
            class: ErrorClass::Protocol,
            message,
        }),
        Ok(mut call) => tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(CallError {
                class: ErrorClass::Canceled,
                message: "canceled by a client while in flight".into(),
            }),
            _ = interrupt.cancelled() => Err(CallError {
                class: ErrorClass::Interrupted,
                message: "the service stopped during the call; the attempt does not count".into(),
            }),
            result = async {
                if let Some(attempt) = &traced {
                    call_span = Some(telemetry::call::start(attempt, &call.method, &call.url, &mut call.headers));
                }
                client.call(call).await
            } => result,
        },
    };
    if let Some(span) = &call_span {
        match &result {
            Ok(captured) => telemetry::call::ended(span, Some(captured.status), None),
            Err(error) => telemetry::call::ended(span, None, Some(error.class.as_str())),
        }
    }
    let duration_ms = clock.elapsed().as_millis() as i64;
    let retry_after = result
        .as_ref()
        .ok()
        .and_then(|captured| captured.retry_after);
    let outcome = match &result {
        Ok(captured) => CallOutcome::Response {
            status: captured.status,
            retry_after: captured.retry_after,
        },
        Err(error) => CallOutcome::Error(error.class),
    };
    let backoff = Backoff {
        strategy: BackoffStrategy::parse(&job.backoff_strategy)
            .unwrap_or(BackoffStrategy::Exponential),
        base: Duration::from_millis(job.backoff_base_ms.max(0) as u64),
        max: Duration::from_millis(job.backoff_max_ms.max(0) as u64),
    };
    let budget_used = (claim.attempt - claim.retry_base).max(1) as u32;
    let mut next = next_step(
        &outcome,
        budget_used,
        job.max_attempts.max(1) as u32,
        &backoff,
        rules.jitter,
    );
    // A step's output must be one the steps after it can take; if it is not,
    // another try would not change that.
    let refused = match (&next, &result) {
        (Next::Succeeded, Ok(captured)) => rules.refuse(&job, captured).await,
        _ => None,
    };
    if refused.is_some() {
        next = Next::Failed;
    }
    if let Some(attempt) = &traced {
        let failed = match (&next, &result) {
            (Next::Failed, _) if refused.is_some() => refused.as_ref().map(|e| e.message.clone()),
            (Next::Failed, Err(error)) => Some(error.message.clone()),
            (Next::Failed, Ok(captured)) => Some(format!("status {}", captured.status)),
            _ => None,
        };
        telemetry::attempt_ended(attempt, next.label(), failed.as_deref());
    }
    let mut record = attempt_record(
        job.id.clone(),
        claim.attempt,
        started_at,
        duration_ms,
        result,
    );
    if let Some(refused) = refused {
        record.error_class = Some(refused.class.as_str().into());
        record.error_message = Some(refused.message);
    }
    let completion = Completion {
        record,
        job,
        next,
        retry_after,
    };
    // The writer outlives every executor (they hold its channel open), so this only
    // fails if the writer itself died; the lease then brings the job back.
    let _ = outcomes.send(Op::Complete(completion)).await;
}

/// The attempt's request: the job's call, its secret headers opened, signed
/// with `signing` (the job's secrets, or else its queue's) when set.
fn build_call(
    job: &jobs::Model,
    follow_redirects: u32,
    signing: Option<&str>,
    keyring: Option<&crate::secret::Keyring>,
) -> Result<Call, String> {
    let headers = crate::secret::headers::opened(&job.headers, keyring, Row::job(&job.id))?;
    let params: BTreeMap<String, String> =
        serde_json::from_str(&job.params).map_err(|e| format!("stored params: {e}"))?;
    let url = merge_params(&job.url, &params).map_err(|e| format!("url: {e}"))?;
    let method = reqwest::Method::from_bytes(job.method.as_bytes())
        .map_err(|_| format!("method {}", job.method))?;
    let mut map = header_map(
        &headers.values,
        job.body_kind.as_deref(),
        job.idempotency_key.as_deref(),
    )?;
    // Kept out of anything that prints the request.
    for (name, value) in map.iter_mut() {
        if headers.is_secret(name.as_str()) {
            value.set_sensitive(true);
        }
    }
    if let Some(stored) = signing {
        use crate::secret::signing;
        // Sealed for the row that keeps them: the job, or its queue.
        let row = if job.signing.is_some() {
            Row::job(&job.id)
        } else {
            Row::queue(&job.queue)
        };
        let keys = signing::opened(stored, keyring, row)?;
        let body = job.body.as_deref().unwrap_or_default();
        signing::sign(&mut map, &keys, &job.id, now_ms().div_euclid(1000), body)?;
    }
    Ok(Call {
        method,
        url,
        headers: map,
        body: job.body.clone(),
        timeout: Duration::from_millis(job.timeout_ms.max(1) as u64),
        follow_redirects,
        destinations: None,
    })
}

fn attempt_record(
    job_id: String,
    number: i32,
    started_at: i64,
    duration_ms: i64,
    result: Result<Captured, CallError>,
) -> attempts::Model {
    let mut record = attempts::Model {
        job_id,
        number,
        started_at,
        finished_at: now_ms().max(started_at),
        duration_ms,
        status_code: None,
        headers: None,
        body: None,
        body_size: 0,
        truncated: false,
        error_class: None,
        error_message: None,
    };
    match result {
        Ok(response) => {
            record.status_code = Some(response.status as i32);
            record.headers = serde_json::to_string(&response.headers).ok();
            record.body_size = response.body_size as i64;
            record.truncated = response.truncated;
            record.body = Some(response.body);
        }
        Err(error) => {
            record.error_class = Some(error.class.as_str().to_string());
            record.error_message = Some(error.message);
        }
    }
    record
}
