//! Namespaces: whose each object is.
//!
//! Every job, queue, schedule, chain, contract, template, key and audit entry
//! belongs to one namespace, the one of the credential that made it (see
//! [`crate::auth::Caller`]); a caller acts in its own and never learns of another's
//! objects: asked for one, the store finds nothing, so the answer is `NOT_FOUND`
//! exactly as for an object that never was.
//!
//! How that is kept, in one place:
//! - each table of objects has a `namespace` column, and every read the API makes
//!   filters on it in the store (ids are unique across namespaces, so an id alone
//!   would find another's);
//! - names a caller chooses (queues, schedules, contracts, templates) are unique per
//!   namespace, so they are stored [qualified](qualify): as given in the default
//!   namespace, `namespace/name` in any other. A name cannot hold `/`, so no two
//!   namespaces' names meet, and everything keyed by a stored name (the engine's
//!   queues and their limits, the event log's queue, the registry of contracts)
//!   keeps namespaces apart without knowing of them. The API qualifies names on
//!   the way in and shows them [bare](local) on the way out;
//! - idempotency keys are unique per namespace (an index on both).
//!
//! The default namespace's names are stored as they were before namespaces, so a
//! database made then upgrades without a row rewritten and everything in it lands
//! in `default`, where the open service acts.

/// The namespace of the open service, and of everything made before namespaces.
pub const DEFAULT: &str = "default";

/// What separates a namespace from a name in a qualified name.
const SEPARATOR: char = '/';

/// `name` of `namespace` as stored: bare in the default namespace,
/// `namespace/name` in any other.
pub fn qualify(namespace: &str, name: &str) -> String {
    if namespace == DEFAULT {
        name.to_string()
    } else {
        format!("{namespace}{SEPARATOR}{name}")
    }
}

/// A stored name as its namespace knows it.
pub fn local(stored: &str) -> &str {
    stored
        .split_once(SEPARATOR)
        .map_or(stored, |(_, name)| name)
}

/// The namespace a stored name belongs to.
pub fn of(stored: &str) -> &str {
    stored
        .split_once(SEPARATOR)
        .map_or(DEFAULT, |(namespace, _)| namespace)
}

/// What one namespace may hold and run, across every process: unset parts are
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limit {
    /// Most jobs stored at once, finished ones included until their ttl; a submit
    /// past it is refused with RESOURCE_EXHAUSTED.
    pub jobs: Option<u64>,
    /// Most calls of its jobs open at once.
    pub concurrency: Option<u32>,
    /// Most calls started per second, on average, and at once after an idle spell.
    pub rate: Option<f64>,
    pub burst: Option<u32>,
}

impl Limit {
    /// Whether its claims are held back (by concurrency or rate).
    pub fn limits_calls(&self) -> bool {
        self.concurrency.is_some() || self.rate.is_some()
    }
}

/// Limits by namespace (`JOBQUEUE_NAMESPACE_LIMITS`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits(pub std::collections::BTreeMap<String, Limit>);

impl Limits {
    pub fn of(&self, namespace: &str) -> Option<&Limit> {
        self.0.get(namespace)
    }

    /// Parses `billing:jobs=100000,concurrency=20,rate=50,burst=10;other:...`.
    pub fn parse(text: &str) -> Result<Limits, String> {
        let mut limits = std::collections::BTreeMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (namespace, settings) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: write NAMESPACE:jobs=N,concurrency=N,rate=N"))?;
            let namespace = namespace.trim();
            if !crate::api::convert::valid_name(namespace) {
                return Err(format!(
                    "{namespace:?}: a namespace {}",
                    crate::api::convert::NAME_RULE
                ));
            }
            let mut limit = Limit::default();
            for setting in settings.split(',').map(str::trim) {
                let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
                let whole = |max: u64| {
                    value
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (1..=max).contains(n))
                        .ok_or_else(|| {
                            format!("{namespace}: {key} must be a whole number from 1 to {max}")
                        })
                };
                match key.trim() {
                    "jobs" => limit.jobs = Some(whole(1_000_000_000_000)?),
                    "concurrency" => limit.concurrency = Some(whole(1_000_000)? as u32),
                    "burst" => limit.burst = Some(whole(1_000_000)? as u32),
                    "rate" => {
                        let rate = value
                            .trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|r| *r > 0.0 && *r <= 1_000_000.0)
                            .ok_or_else(|| {
                                format!("{namespace}: rate must be calls a second, more than 0")
                            })?;
                        limit.rate = Some(rate);
                    }
                    other => {
                        return Err(format!(
                            "{namespace}: {other:?} is no limit; limits are jobs, concurrency, \
                             rate and burst"
                        ));
                    }
                }
            }
            if limit.burst.is_some() && limit.rate.is_none() {
                return Err(format!("{namespace}: burst needs a rate"));
            }
            if limits.insert(namespace.to_string(), limit).is_some() {
                return Err(format!("{namespace}: named twice"));
            }
        }
        Ok(Limits(limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_bad_ones_say_what_is_wrong() {
        let limits = Limits::parse("billing:jobs=100,concurrency=2 ; search:rate=0.5,burst=3")
            .expect("good limits");
        assert_eq!(
            limits.of("billing"),
            Some(&Limit {
                jobs: Some(100),
                concurrency: Some(2),
                ..Limit::default()
            })
        );
        assert_eq!(limits.of("search").and_then(|l| l.rate), Some(0.5));
        assert_eq!(limits.of("default"), None);
        assert_eq!(Limits::parse("").unwrap(), Limits::default());
        for (bad, says) in [
            ("billing", "NAMESPACE:"),
            ("Billing:jobs=1", "a namespace must match"),
            ("billing:jobs=0", "jobs must be a whole number"),
            ("billing:rate=-1", "rate must be"),
            ("billing:burst=2", "burst needs a rate"),
            ("billing:speed=2", "\"speed\" is no limit"),
            ("billing:jobs=1;billing:jobs=2", "named twice"),
        ] {
            let error = Limits::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn names_round_trip_and_never_meet() {
        for (namespace, name) in [("default", "emails"), ("billing", "emails"), ("b-2", "x_y")] {
            let stored = qualify(namespace, name);
            assert_eq!(local(&stored), name);
            assert_eq!(of(&stored), namespace);
        }
        assert_eq!(qualify("default", "emails"), "emails");
        assert_ne!(qualify("billing", "emails"), qualify("default", "emails"));
        assert_ne!(qualify("billing", "emails"), qualify("billingx", "emails"));
    }
}
