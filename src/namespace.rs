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

#[cfg(test)]
mod tests {
    use super::*;

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
