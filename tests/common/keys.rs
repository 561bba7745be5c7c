//! Keys for tests that run the server with a keys file: the file, and requests
//! that present a key.

use std::path::PathBuf;

/// Every scope a key can hold.
pub const EVERY_SCOPE: &[&str] = &[
    "submit",
    "read",
    "manage",
    "queues.admin",
    "schedules.admin",
    "registry.admin",
    "keys.admin",
    "audit.read",
];

/// A fresh whole key (`jq_...`).
pub fn new_key() -> String {
    jobqueue::auth::key::generate().1
}

/// Writes a keys file of `(key, namespace)` pairs, each key holding every scope;
/// the folder lives as long as the answer.
pub fn keys_file(keys: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(key, namespace)| {
            serde_json::json!({ "key": key, "namespace": namespace, "scopes": EVERY_SCOPE })
        })
        .collect();
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    (dir, path)
}

/// `message` as a request presenting `key`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}
