//! A job's or a queue's signing, as clients write and read it: secrets checked
//! and sealed for the row that keeps them, shown by fingerprint only.

use super::Violations;
use super::convert::Limits;
use crate::proto;
use crate::secret::Row;
use crate::secret::signing::{self, MAX_SECRETS};

/// The `signing` column for `signing` as a client wrote it (`None`: unsigned),
/// sealed for `row`; every bad secret noted under `path`.
pub(super) fn sealed(
    signing: Option<proto::Signing>,
    path: &str,
    limits: &Limits,
    row: Row<'_>,
    v: &mut Violations,
) -> Option<String> {
    // Fingerprints are output only: what a read showed may be sent back.
    let proto::Signing {
        secrets,
        fingerprints: _,
    } = signing?;
    if secrets.is_empty() || secrets.len() > MAX_SECRETS {
        v.add(
            format!("{path}.secrets"),
            format!(
                "{} secrets; 1 to {MAX_SECRETS} expected (two while one replaces another)",
                secrets.len()
            ),
        );
        return None;
    }
    let mut keys = Vec::with_capacity(secrets.len());
    for (i, secret) in secrets.iter().enumerate() {
        match signing::parse_secret(secret) {
            Ok(key) => keys.push(key),
            Err(expected) => v.add(format!("{path}.secrets[{i}]"), expected),
        }
    }
    if keys.len() < secrets.len() {
        return None;
    }
    match &limits.keyring {
        Some(keyring) => Some(signing::stored(&keys, keyring, row)),
        None => {
            v.add(
                format!("{path}.secrets"),
                "signing secrets are kept only encrypted, and this service has no key to \
                 encrypt them: set JOBQUEUE_SECRET_KEYS or JOBQUEUE_SECRET_KEYS_FILE \
                 (the chart's secrets.keysSecret)",
            );
            None
        }
    }
}

/// A `signing` column as clients read it: fingerprints, never secrets.
pub(super) fn shown(stored: Option<&str>) -> Option<proto::Signing> {
    stored.map(|stored| proto::Signing {
        secrets: Vec::new(),
        fingerprints: signing::fingerprints(stored),
    })
}
