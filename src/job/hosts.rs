//! What a destination host allows, whatever queue its calls come from: at most
//! so many calls at once and so many a second (`JOBQUEUE_HOST_LIMITS`), none
//! while it asked to be left alone (a 429 or 503 with `Retry-After`), and none
//! while its circuit is open after a run of failures (`JOBQUEUE_HOST_BREAKER`),
//! but one probe. Pure rules: the writer keeps each host's state in the store,
//! so every process on one database holds to the same limits.

use std::collections::BTreeMap;
use std::time::Duration;

use super::limits::Bucket;

/// One host's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostLimit {
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub burst: Option<u32>,
}

impl HostLimit {
    pub fn bucket(&self) -> Option<Bucket> {
        self.rate.map(|per_second| Bucket {
            per_second,
            burst: f64::from(self.burst.unwrap_or(1)),
        })
    }
}

/// Limits by host, `*` for every host not named.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostLimits(pub BTreeMap<String, HostLimit>);

impl HostLimits {
    /// The limits of `host` (lower case).
    pub fn of(&self, host: &str) -> Option<&HostLimit> {
        self.0.get(host).or_else(|| self.0.get("*"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `*:concurrency=20,rate=10,burst=5;api.example.com:concurrency=2`.
    pub fn parse(text: &str) -> Result<HostLimits, String> {
        let mut limits = BTreeMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (host, settings) = part.split_once(':').ok_or_else(|| {
                format!("{part:?}: write HOST:concurrency=N,rate=N,burst=N (HOST * for every host)")
            })?;
            let host = host.trim().to_ascii_lowercase();
            if host != "*"
                && (host.is_empty()
                    || !host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._[]".contains(&b)))
            {
                return Err(format!(
                    "{host:?}: a host name or address, or * for every host"
                ));
            }
            let mut limit = HostLimit::default();
            for setting in settings.split(',').map(str::trim) {
                let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
                let whole = || {
                    value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or_else(|| {
                            format!("{host}: {key} must be a whole number from 1 to 1000000")
                        })
                };
                match key.trim() {
                    "concurrency" => limit.concurrency = Some(whole()?),
                    "burst" => limit.burst = Some(whole()?),
                    "rate" => {
                        limit.rate = Some(
                            value
                                .trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|r| *r > 0.0 && *r <= 1_000_000.0)
                                .ok_or_else(|| {
                                    format!("{host}: rate must be calls a second, more than 0")
                                })?,
                        )
                    }
                    other => {
                        return Err(format!(
                            "{host}: {other:?} is no limit; limits are concurrency, rate and burst"
                        ));
                    }
                }
            }
            if limit.burst.is_some() && limit.rate.is_none() {
                return Err(format!("{host}: burst needs a rate"));
            }
            if limits.insert(host.clone(), limit).is_some() {
                return Err(format!("{host}: named twice"));
            }
        }
        Ok(HostLimits(limits))
    }
}

/// When a host's circuit opens, and for how long (`JOBQUEUE_HOST_BREAKER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Failures in a row (connection errors, timeouts, 5xx) that open it.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Breaker {
    /// Parses `failures=5,open=30s`.
    pub fn parse(text: &str) -> Result<Breaker, String> {
        let mut failures = None;
        let mut open_for = None;
        for setting in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            match key.trim() {
                "failures" => {
                    failures = Some(
                        value
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=10_000).contains(n))
                            .ok_or("failures must be a whole number from 1 to 10000")?,
                    )
                }
                "open" => {
                    open_for = Some(
                        humantime::parse_duration(value.trim())
                            .ok()
                            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400))
                            .ok_or("open must be a duration from 1ms to 24h, such as 30s")?,
                    )
                }
                other => {
                    return Err(format!(
                        "{other:?} is no setting; write failures=N,open=DURATION"
                    ));
                }
            }
        }
        Ok(Breaker {
            failures: failures.ok_or("failures=N is required, such as failures=5,open=30s")?,
            open_for: open_for.ok_or("open=DURATION is required, such as failures=5,open=30s")?,
        })
    }
}

/// A host's state, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub host: String,
    /// Calls in flight, every process together.
    pub running: i64,
    pub tokens: f64,
    pub tokens_at: i64,
    /// Failures in a row.
    pub failures: i64,
    /// Open until then; past it, half open: one probe at a time.
    pub open_until: Option<i64>,
    /// The job whose call is the probe of a half-open circuit.
    pub probe: Option<String>,
    /// It asked for no calls until then (`Retry-After`).
    pub slow_until: Option<i64>,
}

/// Why a due job waits for its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// At its concurrency or rate limit, or asked for time (`Retry-After`).
    Limited,
    /// Its circuit is open (or half open, its probe out).
    CircuitOpen,
}

impl Held {
    pub fn error_class(self) -> super::ErrorClass {
        match self {
            Held::Limited => super::ErrorClass::HostLimited,
            Held::CircuitOpen => super::ErrorClass::CircuitOpen,
        }
    }
}

/// How long a job held by a full host waits before it is looked at again (a
/// call ending frees a slot at an unknown time).
pub const FULL_RECHECK_MS: i64 = 200;
/// How long a job waits while a half-open circuit's probe is out.
pub const PROBE_RECHECK_MS: i64 = 500;

impl HostState {
    pub fn new(host: String, now: i64) -> HostState {
        HostState {
            host,
            running: 0,
            tokens: f64::MAX,
            tokens_at: now,
            failures: 0,
            open_until: None,
            probe: None,
            slow_until: None,
        }
    }

    /// Whether the job `id` may call the host now (then counted as running), or
    /// why not and until when it waits.
    pub fn admit(
        &mut self,
        id: &str,
        limit: Option<&HostLimit>,
        breaker: Option<&Breaker>,
        now: i64,
    ) -> Result<(), (Held, i64)> {
        if let Some(until) = self.slow_until.filter(|u| *u > now) {
            return Err((Held::Limited, until));
        }
        let mut probing = false;
        if breaker.is_some()
            && let Some(until) = self.open_until
        {
            if until > now {
                return Err((Held::CircuitOpen, until));
            }
            if self.probe.is_some() {
                return Err((Held::CircuitOpen, now + PROBE_RECHECK_MS));
            }
            probing = true;
        }
        if let Some(limit) = limit {
            if let Some(max) = limit.concurrency
                && self.running >= i64::from(max)
            {
                return Err((Held::Limited, now + FULL_RECHECK_MS));
            }
            if let Some(bucket) = limit.bucket() {
                let tokens = bucket.refill(self.tokens.min(bucket.burst), self.tokens_at, now);
                self.tokens = tokens;
                self.tokens_at = now;
                if tokens < 1.0 {
                    return Err((
                        Held::Limited,
                        now + bucket.until_next(tokens).as_millis() as i64,
                    ));
                }
                self.tokens -= 1.0;
            }
        }
        if probing {
            self.probe = Some(id.to_string());
        }
        self.running += 1;
        Ok(())
    }

    /// A call of the job `id` ended: `failed` when the host failed it (a
    /// connection error, a timeout, a 5xx), `Some(false)` when it answered, `None`
    /// when the call says nothing of it (canceled, interrupted); `retry_after_until`
    /// when it asked for time.
    pub fn ended(
        &mut self,
        id: &str,
        failed: Option<bool>,
        retry_after_until: Option<i64>,
        breaker: Option<&Breaker>,
        now: i64,
    ) {
        self.running = (self.running - 1).max(0);
        if let Some(until) = retry_after_until {
            self.slow_until = Some(self.slow_until.unwrap_or(0).max(until));
        }
        let Some(breaker) = breaker else {
            return;
        };
        let was_probe = self.probe.as_deref() == Some(id);
        if was_probe {
            self.probe = None;
        }
        let Some(failed) = failed else {
            return;
        };
        if failed {
            self.failures += 1;
            if was_probe || self.failures >= i64::from(breaker.failures) {
                self.open_until = Some(now + breaker.open_for.as_millis() as i64);
            }
        } else {
            self.failures = 0;
            if was_probe || self.open_until.is_some_and(|u| u <= now) {
                self.open_until = None;
            }
        }
    }

    /// Whether its circuit is open (or half open) now.
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }
}

/// The host of a URL as calls to it are counted: lower case, without user,
/// port or path. A cheap scan: the URL was checked when the job was accepted.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_once(']').map(|(h, _)| &h[1..])?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_urls() {
        for (url, host) in [
            ("http://Api.Example.com/x?y", "api.example.com"),
            ("https://user:pw@host:8443/", "host"),
            ("http://127.0.0.1:9000", "127.0.0.1"),
            ("http://[::1]:80/p", "::1"),
        ] {
            assert_eq!(host_of(url).as_deref(), Some(host), "{url}");
        }
    }

    #[test]
    fn settings_parse_and_bad_ones_say_what_was_expected() {
        let limits = HostLimits::parse("*:concurrency=20;API.example.com:rate=2,burst=3").unwrap();
        assert_eq!(limits.of("other").unwrap().concurrency, Some(20));
        assert_eq!(limits.of("api.example.com").unwrap().rate, Some(2.0));
        // The chart's example (helm/jobqueue/ci/postgres-ha.yaml).
        HostLimits::parse("*:concurrency=100;api.partner.example:concurrency=5,rate=10,burst=2")
            .unwrap();
        for (text, expected) in [
            ("a", "write HOST:"),
            ("a:speed=1", "is no limit"),
            ("a:burst=2", "burst needs a rate"),
            ("a:concurrency=0", "from 1"),
            ("a b:rate=1", "a host name"),
            ("a:rate=1;A:rate=2", "named twice"),
        ] {
            let error = HostLimits::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert_eq!(
            Breaker::parse("failures=5,open=30s").unwrap(),
            Breaker {
                failures: 5,
                open_for: Duration::from_secs(30)
            }
        );
        assert!(Breaker::parse("failures=5").is_err());
        assert!(Breaker::parse("failures=0,open=1s").is_err());
    }

    #[test]
    fn a_host_admits_within_its_limits() {
        let limit = HostLimit {
            concurrency: Some(2),
            rate: None,
            burst: None,
        };
        let mut host = HostState::new("h".into(), 0);
        assert_eq!(host.admit("a", Some(&limit), None, 0), Ok(()));
        assert_eq!(host.admit("b", Some(&limit), None, 0), Ok(()));
        assert_eq!(
            host.admit("c", Some(&limit), None, 0),
            Err((Held::Limited, FULL_RECHECK_MS))
        );
        host.ended("a", Some(false), Some(5_000), None, 10);
        assert_eq!(
            host.admit("c", Some(&limit), None, 10),
            Err((Held::Limited, 5_000))
        );
        assert_eq!(host.admit("c", Some(&limit), None, 5_000), Ok(()));

        let rate = HostLimit {
            concurrency: None,
            rate: Some(2.0),
            burst: Some(1),
        };
        let mut host = HostState::new("h".into(), 0);
        assert_eq!(host.admit("a", Some(&rate), None, 0), Ok(()));
        assert_eq!(
            host.admit("b", Some(&rate), None, 0),
            Err((Held::Limited, 500))
        );
        assert_eq!(host.admit("b", Some(&rate), None, 500), Ok(()));
    }

    #[test]
    fn the_circuit_opens_after_failures_then_one_probe_closes_it() {
        let breaker = Breaker {
            failures: 2,
            open_for: Duration::from_secs(1),
        };
        let b = Some(&breaker);
        let mut host = HostState::new("h".into(), 0);
        for id in ["a", "b"] {
            host.admit(id, None, b, 0).unwrap();
            host.ended(id, Some(true), None, b, 10);
        }
        assert_eq!(host.open_until, Some(1_010));
        assert_eq!(
            host.admit("c", None, b, 500),
            Err((Held::CircuitOpen, 1_010))
        );
        // Half open: one probe; the others wait for it.
        assert_eq!(host.admit("c", None, b, 1_010), Ok(()));
        assert_eq!(
            host.admit("d", None, b, 1_020),
            Err((Held::CircuitOpen, 1_020 + PROBE_RECHECK_MS))
        );
        // A failed probe opens it again; a good one closes it.
        host.ended("c", Some(true), None, b, 1_100);
        assert_eq!(host.open_until, Some(2_100));
        host.admit("d", None, b, 2_100).unwrap();
        host.ended("d", Some(false), None, b, 2_200);
        assert!(!host.is_open());
        assert_eq!(host.failures, 0);
        assert_eq!(host.admit("e", None, b, 2_200), Ok(()));
    }
}
