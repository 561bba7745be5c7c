//! The keys file (`JOBQUEUE_KEYS_FILE`, mounted from a Kubernetes Secret): the
//! keys a service starts with, as JSON:
//!
//! ```json
//! {"keys": [{"key": "jq_k01..._9f...", "namespace": "billing",
//!            "scopes": ["submit", "read"], "expires": "2027-06-01T00:00:00Z",
//!            "description": "billing's workers"}]}
//! ```
//!
//! Each key is loaded at every start (a key revoked through `KeyService` stays
//! revoked); the secret is hashed at once and never stored.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::{DEFAULT_NAMESPACE, Scope, key};
use crate::store::api_keys;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<FileKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    key: String,
    #[serde(default)]
    namespace: Option<String>,
    scopes: Vec<String>,
    /// RFC 3339; a key of the file may be without end.
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    description: String,
}

/// Far enough to be no end: a key of the file without `expires`.
const NO_END_MS: i64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z

/// The keys of the file at `path`, as rows; the error names the file, the key's
/// place in it and what is wrong.
pub fn load(path: &Path, now: i64) -> Result<Vec<api_keys::Model>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("keys file {}: {e}", path.display()))?;
    parse(&text, now).map_err(|e| format!("keys file {}: {e}", path.display()))
}

pub fn parse(text: &str, now: i64) -> Result<Vec<api_keys::Model>, String> {
    let file: KeysFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.keys.is_empty() {
        return Err("holds no key: list at least one under \"keys\"".into());
    }
    let mut rows = Vec::with_capacity(file.keys.len());
    let mut ids = BTreeSet::new();
    for (i, k) in file.keys.into_iter().enumerate() {
        let at = format!("keys[{i}]");
        let presented = key::parse(&k.key).ok_or_else(|| {
            format!("{at}.key: not a key (jq_<id>_<secret>; make one with `jobqueue key new`)")
        })?;
        if !ids.insert(presented.id.to_string()) {
            return Err(format!("{at}.key: the same key as an earlier one"));
        }
        let namespace = k.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !crate::api::convert::valid_name(&namespace) {
            return Err(format!(
                "{at}.namespace: {}",
                crate::api::convert::NAME_RULE
            ));
        }
        let mut scopes = BTreeSet::new();
        for name in &k.scopes {
            scopes.insert(Scope::parse(name).ok_or_else(|| {
                format!(
                    "{at}.scopes: {name:?} is no scope; scopes are {}",
                    Scope::names()
                )
            })?);
        }
        if scopes.is_empty() {
            return Err(format!("{at}.scopes: at least one"));
        }
        let expires_at = match &k.expires {
            None => NO_END_MS,
            Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| format!("{at}.expires: an RFC 3339 time ({e})"))?
                .timestamp_millis(),
        };
        rows.push(api_keys::Model {
            id: presented.id.to_string(),
            namespace,
            scopes: super::scopes_text(&scopes),
            secret_hash: key::hash(presented.secret),
            description: k.description,
            source: "file".into(),
            created_at: now,
            expires_at,
            revoked_at: None,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_rows_with_hashes_never_secrets() {
        let (_, whole) = key::generate();
        let text = format!(
            r#"{{"keys": [{{"key": "{whole}", "namespace": "billing", "scopes": ["submit", "read"]}}]}}"#
        );
        let rows = parse(&text, 5).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].namespace, "billing");
        assert_eq!(rows[0].scopes, "submit read");
        assert!(!format!("{rows:?}").contains(key::parse(&whole).unwrap().secret));
    }

    #[test]
    fn a_bad_file_says_where() {
        let (_, whole) = key::generate();
        for (text, expected) in [
            (r#"{"keys": []}"#.to_string(), "holds no key"),
            (
                r#"{"keys": [{"key": "nope", "scopes": ["read"]}]}"#.to_string(),
                "keys[0].key",
            ),
            (
                format!(r#"{{"keys": [{{"key": "{whole}", "scopes": ["fly"]}}]}}"#),
                "keys[0].scopes",
            ),
            (
                format!(r#"{{"keys": [{{"key": "{whole}", "scopes": []}}]}}"#),
                "keys[0].scopes",
            ),
            (
                format!(
                    r#"{{"keys": [{{"key": "{whole}", "scopes": ["read"], "expires": "soon"}}]}}"#
                ),
                "keys[0].expires",
            ),
            (
                format!(
                    r#"{{"keys": [{{"key": "{whole}", "scopes": ["read"]}}, {{"key": "{whole}", "scopes": ["read"]}}]}}"#
                ),
                "keys[1].key",
            ),
        ] {
            let error = parse(&text, 0).unwrap_err();
            assert!(error.contains(expected), "{error} for {text}");
        }
    }
}
