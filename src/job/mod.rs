//! Pure domain logic: a job's statuses, its backoff, and what an attempt's outcome
//! means for it. Nothing here does I/O.

pub mod call;
pub mod hosts;
pub mod limits;
pub mod schedule;
pub mod wall_clock;

use std::time::Duration;

/// Where a job is in its life; stored as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub const TERMINAL: [Status; 3] = [Status::Succeeded, Status::Failed, Status::Canceled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "canceled" => Status::Canceled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }
}

/// Why an attempt ended without an HTTP response; stored as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Connect,
    Timeout,
    Network,
    Protocol,
    Canceled,
    Interrupted,
    /// A chain step's body broke its contract.
    ContractViolation,
    /// A chain step's response was larger than a step's output may be.
    OutputTooLarge,
    /// A chain step's reference found nothing, or rendered a call that cannot be
    /// sent.
    Reference,
    /// The call's destination is one the service does not call (see
    /// `crate::outbound::guard`); nothing was sent.
    DestinationRefused,
    /// Not an attempt: the job waits, queued, for its host's limits (or the
    /// time the host asked for with `Retry-After`).
    HostLimited,
    /// Not an attempt: the job waits, queued, while its host's circuit is open.
    CircuitOpen,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Network => "network",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Canceled => "canceled",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::ContractViolation => "contract_violation",
            ErrorClass::OutputTooLarge => "output_too_large",
            ErrorClass::Reference => "reference",
            ErrorClass::DestinationRefused => "destination_refused",
            ErrorClass::HostLimited => "host_limited",
            ErrorClass::CircuitOpen => "circuit_open",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        Some(match s {
            "connect" => ErrorClass::Connect,
            "timeout" => ErrorClass::Timeout,
            "network" => ErrorClass::Network,
            "protocol" => ErrorClass::Protocol,
            "canceled" => ErrorClass::Canceled,
            "interrupted" => ErrorClass::Interrupted,
            "contract_violation" => ErrorClass::ContractViolation,
            "output_too_large" => ErrorClass::OutputTooLarge,
            "reference" => ErrorClass::Reference,
            "destination_refused" => ErrorClass::DestinationRefused,
            "host_limited" => ErrorClass::HostLimited,
            "circuit_open" => ErrorClass::CircuitOpen,
            _ => return None,
        })
    }

    /// Connection trouble and timeouts may pass; a target that does not speak HTTP
    /// will not start to on a retry.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Network
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffStrategy {
    Fixed,
    Linear,
    Exponential,
}

impl BackoffStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffStrategy::Fixed => "fixed",
            BackoffStrategy::Linear => "linear",
            BackoffStrategy::Exponential => "exponential",
        }
    }

    pub fn parse(s: &str) -> Option<BackoffStrategy> {
        Some(match s {
            "fixed" => BackoffStrategy::Fixed,
            "linear" => BackoffStrategy::Linear,
            "exponential" => BackoffStrategy::Exponential,
            _ => return None,
        })
    }
}

/// The delay before a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub strategy: BackoffStrategy,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX: Duration = Duration::from_secs(3600);

    /// The delay before retry `n` (1 for the retry after the first attempt).
    pub fn delay(&self, n: u32) -> Duration {
        let n = n.max(1);
        let delay = match self.strategy {
            BackoffStrategy::Fixed => self.base,
            BackoffStrategy::Linear => self.base.saturating_mul(n),
            BackoffStrategy::Exponential => {
                // 2^31 times any base is past every sensible cap already.
                self.base.saturating_mul(1u32 << (n - 1).min(31))
            }
        };
        delay.min(self.max)
    }
}

/// How a backoff delay is spread, so the retries of many jobs that failed
/// together (a target that went down) do not come back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the delay.
    None,
    /// Half the delay, plus a random part of the other half: never sooner than
    /// half the delay.
    Equal,
    /// A random part of the whole delay: the widest spread.
    Full,
}

impl Jitter {
    pub fn parse(s: &str) -> Result<Jitter, String> {
        match s {
            "none" => Ok(Jitter::None),
            "equal" => Ok(Jitter::Equal),
            "full" => Ok(Jitter::Full),
            _ => Err("JOBQUEUE_BACKOFF_JITTER must be none, equal or full".into()),
        }
    }

    /// `delay` spread, with `unit` a random number in [0, 1).
    pub fn apply(self, delay: Duration, unit: f64) -> Duration {
        let unit = unit.clamp(0.0, 1.0);
        match self {
            Jitter::None => delay,
            Jitter::Equal => delay / 2 + (delay / 2).mul_f64(unit),
            Jitter::Full => delay.mul_f64(unit),
        }
    }

    /// `delay` spread at random.
    pub fn spread(self, delay: Duration) -> Duration {
        self.apply(delay, fastrand::f64())
    }
}

/// Longest a `Retry-After` may push a retry out; a target asking for more is
/// retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one attempt came to, as the executor saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    Error(ErrorClass),
}

/// What happens to the job after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    Failed,
    /// Queued again; the next attempt is due after this delay.
    Retry(Duration),
    /// Canceled while in flight: the cancel already wrote the job's status.
    Canceled,
    /// The service is stopping: queued again at once, the attempt not counted.
    Requeue,
}

impl Next {
    /// What the attempt meant for its job, as traces say it.
    pub fn label(&self) -> &'static str {
        match self {
            Next::Succeeded => "succeeded",
            Next::Failed => "failed",
            Next::Retry(_) => "retry",
            Next::Canceled => "canceled",
            Next::Requeue => "interrupted",
        }
    }
}

/// Decides a job's next step after attempt number `attempt` (counted within the
/// current attempt budget) of `max_attempts`; a backoff delay is spread by
/// `jitter` (a target's `Retry-After` is kept as it said).
pub fn next_step(
    outcome: &CallOutcome,
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
    jitter: Jitter,
) -> Next {
    let retry_after = match outcome {
        CallOutcome::Response { status, .. } if (200..300).contains(status) => {
            return Next::Succeeded;
        }
        CallOutcome::Response {
            status,
            retry_after,
        } if is_retryable_status(*status) => *retry_after,
        CallOutcome::Response { .. } => return Next::Failed,
        CallOutcome::Error(ErrorClass::Canceled) => return Next::Canceled,
        CallOutcome::Error(ErrorClass::Interrupted) => return Next::Requeue,
        CallOutcome::Error(class) if class.is_retryable() => None,
        CallOutcome::Error(_) => return Next::Failed,
    };
    if attempt >= max_attempts {
        return Next::Failed;
    }
    let delay = match retry_after {
        // The target said when to come back; coming back sooner is refused anyway.
        Some(after) => after.min(MAX_RETRY_AFTER),
        None => jitter.spread(backoff.delay(attempt)),
    };
    Next::Retry(delay)
}

/// 408 and 429 say "later"; 5xx says the target is in trouble. Other 4xx will not
/// change on a retry, nor will the 5xx that describe the request or the server's
/// setup rather than a passing condition: 501 Not Implemented, 505 HTTP Version Not
/// Supported, 506 Variant Also Negotiates, 508 Loop Detected, 510 Not Extended and
/// 511 Network Authentication Required (a person has to sign in first).
pub fn is_retryable_status(status: u16) -> bool {
    const SETTLED: [u16; 6] = [501, 505, 506, 508, 510, 511];
    status == 408 || status == 429 || ((500..600).contains(&status) && !SETTLED.contains(&status))
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(strategy: BackoffStrategy) -> Backoff {
        Backoff {
            strategy,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }

    #[test]
    fn backoff_grows_by_strategy_and_stops_at_the_cap() {
        let ms = |b: Backoff, n| b.delay(n).as_millis();
        let fixed = backoff(BackoffStrategy::Fixed);
        assert_eq!([ms(fixed, 1), ms(fixed, 2), ms(fixed, 9)], [100, 100, 100]);
        let linear = backoff(BackoffStrategy::Linear);
        assert_eq!(
            [ms(linear, 1), ms(linear, 3), ms(linear, 20)],
            [100, 300, 1000]
        );
        let exp = backoff(BackoffStrategy::Exponential);
        assert_eq!(
            [ms(exp, 1), ms(exp, 2), ms(exp, 4), ms(exp, 5)],
            [100, 200, 800, 1000]
        );
        assert_eq!(
            ms(exp, 500),
            1000,
            "huge retry counts saturate, never overflow"
        );
    }

    #[test]
    fn outcomes_decide_success_failure_and_retry() {
        let b = backoff(BackoffStrategy::Fixed);
        let resp = |status| CallOutcome::Response {
            status,
            retry_after: None,
        };
        assert_eq!(
            next_step(&resp(200), 1, 3, &b, Jitter::None),
            Next::Succeeded
        );
        assert_eq!(
            next_step(&resp(204), 3, 3, &b, Jitter::None),
            Next::Succeeded
        );
        assert_eq!(next_step(&resp(404), 1, 3, &b, Jitter::None), Next::Failed);
        assert_eq!(next_step(&resp(400), 1, 3, &b, Jitter::None), Next::Failed);
        for status in [501, 505, 506, 508, 510, 511] {
            assert_eq!(
                next_step(&resp(status), 1, 3, &b, Jitter::None),
                Next::Failed,
                "{status}"
            );
        }
        for status in [408, 429, 500, 502, 503, 504, 507, 599] {
            assert_eq!(
                next_step(&resp(status), 1, 3, &b, Jitter::None),
                Next::Retry(Duration::from_millis(100))
            );
            assert_eq!(
                next_step(&resp(status), 3, 3, &b, Jitter::None),
                Next::Failed,
                "attempts spent"
            );
        }
        for class in [
            ErrorClass::Connect,
            ErrorClass::Timeout,
            ErrorClass::Network,
        ] {
            assert!(matches!(
                next_step(&CallOutcome::Error(class), 2, 3, &b, Jitter::None),
                Next::Retry(_)
            ));
        }
        assert_eq!(
            next_step(
                &CallOutcome::Error(ErrorClass::Protocol),
                1,
                3,
                &b,
                Jitter::None
            ),
            Next::Failed
        );
        assert_eq!(
            next_step(
                &CallOutcome::Error(ErrorClass::Canceled),
                1,
                3,
                &b,
                Jitter::None
            ),
            Next::Canceled
        );
        assert_eq!(
            next_step(
                &CallOutcome::Error(ErrorClass::Interrupted),
                3,
                3,
                &b,
                Jitter::None
            ),
            Next::Requeue
        );
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let b = backoff(BackoffStrategy::Fixed);
        let outcome = CallOutcome::Response {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            next_step(&outcome, 1, 3, &b, Jitter::None),
            Next::Retry(Duration::from_secs(7))
        );
        let far = CallOutcome::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(9_999_999)),
        };
        assert_eq!(
            next_step(&far, 1, 3, &b, Jitter::None),
            Next::Retry(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:28:00 GMT is 1_445_412_480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Canceled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(Status::Canceled.is_terminal() && !Status::Running.is_terminal());
    }

    /// Many delays spread by each kind of jitter: within its range, spread across
    /// it (every tenth of the range taken), and centred where it should be. Only
    /// the distribution is checked, never a value.
    #[test]
    fn jitter_spreads_delays_across_its_range() {
        let delay = Duration::from_millis(1000);
        for (jitter, low, mean) in [(Jitter::Full, 0.0, 500.0), (Jitter::Equal, 500.0, 750.0)] {
            let samples: Vec<f64> = (0..20_000)
                .map(|_| jitter.spread(delay).as_secs_f64() * 1000.0)
                .collect();
            assert!(
                samples.iter().all(|ms| (low..=1000.0).contains(ms)),
                "{jitter:?}"
            );
            let average = samples.iter().sum::<f64>() / samples.len() as f64;
            assert!((average - mean).abs() < 15.0, "{jitter:?}: mean {average}");
            let width = (1000.0 - low) / 10.0;
            let mut tenths = [0usize; 10];
            for ms in &samples {
                tenths[(((ms - low) / width) as usize).min(9)] += 1;
            }
            // About 2,000 each; none empty or twice as full as it should be.
            assert!(
                tenths.iter().all(|n| (1500..2500).contains(n)),
                "{jitter:?}: {tenths:?}"
            );
        }
        assert_eq!(Jitter::None.spread(delay), delay);
        let b = backoff(BackoffStrategy::Fixed);
        let unavailable = CallOutcome::Response {
            status: 503,
            retry_after: None,
        };
        let spread = |_| match next_step(&unavailable, 1, 3, &b, Jitter::Full) {
            Next::Retry(d) => d,
            other => panic!("{other:?}"),
        };
        let delays: std::collections::BTreeSet<Duration> = (0..50).map(spread).collect();
        assert!(
            delays.len() > 40,
            "retries come back spread, not together: {delays:?}"
        );
    }
}
