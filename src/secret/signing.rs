//! Signed requests, the Standard Webhooks way (<https://www.standardwebhooks.com>):
//! each request carries `webhook-id` (its job's id, the same at every attempt),
//! `webhook-timestamp` (the attempt's start, in Unix seconds) and
//! `webhook-signature`, `v1,<base64 HMAC-SHA256 of id.timestamp.body>` for each
//! secret, separated by spaces, so a receiver that knows any of them verifies
//! while secrets rotate. Secrets are sealed as secret headers are, for the row
//! (job or queue) that keeps them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use super::headers::Row;
use super::keyring::Keyring;

/// Most secrets one job or queue signs with.
pub const MAX_SECRETS: usize = 4;
/// What a secret's text starts with.
pub const PREFIX: &str = "whsec_";
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;

/// A secret as a client writes it: `whsec_` and the base64 of 24 to 64 bytes.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let encoded = text.strip_prefix(PREFIX).ok_or_else(|| {
        format!("must start with {PREFIX} and hold base64 key bytes, as Standard Webhooks libraries make them")
    })?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| format!("after {PREFIX}, must be base64 (standard alphabet, padded)"))?;
    if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes; from {MIN_KEY} to {MAX_KEY} expected",
            key.len()
        ));
    }
    Ok(key)
}

/// What names a secret on reads: `whsec_` and the first 8 hex digits of its key's
/// SHA-256 (which tells nothing of the key).
pub fn fingerprint(key: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, key);
    let hex: String = hash.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{PREFIX}{hex}")
}

/// One secret as a `signing` column keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    fingerprint: String,
    sealed: String,
}

fn name(i: usize) -> String {
    format!("signing-secret-{i}")
}

/// The JSON a `signing` column keeps: each key sealed for `row`.
pub fn stored(keys: &[Vec<u8>], keyring: &Keyring, row: Row<'_>) -> String {
    let kept: Vec<Kept> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Kept {
            fingerprint: fingerprint(key),
            sealed: keyring.seal(key, &row.binding(&name(i))),
        })
        .collect();
    serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into())
}

/// The fingerprints of the secrets a `signing` column keeps.
pub fn fingerprints(stored: &str) -> Vec<String> {
    serde_json::from_str::<Vec<Kept>>(stored)
        .unwrap_or_default()
        .into_iter()
        .map(|k| k.fingerprint)
        .collect()
}

/// The keys a `signing` column keeps, opened for an attempt.
pub fn opened(
    stored: &str,
    keyring: Option<&Keyring>,
    row: Row<'_>,
) -> Result<Vec<Vec<u8>>, String> {
    let kept: Vec<Kept> =
        serde_json::from_str(stored).map_err(|e| format!("stored signing secrets: {e}"))?;
    let keyring = keyring.ok_or(
        "the signing secrets cannot be opened: this service has no keys (JOBQUEUE_SECRET_KEYS)",
    )?;
    kept.iter()
        .enumerate()
        .map(|(i, k)| {
            keyring
                .open(&k.sealed, &row.binding(&name(i)))
                .map_err(|e| format!("signing secret {} cannot be opened: {e}", k.fingerprint))
        })
        .collect()
}

/// A `signing` column sealed with the active key; `None` when it already is.
pub fn rekeyed(stored: &str, keyring: &Keyring, row: Row<'_>) -> Result<Option<String>, String> {
    let kept: Vec<Kept> =
        serde_json::from_str(stored).map_err(|e| format!("stored signing secrets: {e}"))?;
    if kept.iter().all(|k| keyring.is_current(&k.sealed)) {
        return Ok(None);
    }
    let keys = opened(stored, Some(keyring), row)?;
    Ok(Some(self::stored(&keys, keyring, row)))
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` set on `headers` for
/// the message `id` sent at `timestamp` (Unix seconds) with `body`.
pub fn sign(
    headers: &mut HeaderMap,
    keys: &[Vec<u8>],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<(), String> {
    let mut message = Vec::with_capacity(id.len() + 24 + body.len());
    message.extend_from_slice(id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &message);
            format!("v1,{}", STANDARD.encode(tag.as_ref()))
        })
        .collect();
    let value =
        |text: String| HeaderValue::from_str(&text).map_err(|_| format!("webhook header {text:?}"));
    headers.insert(
        HeaderName::from_static("webhook-id"),
        value(id.to_string())?,
    );
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        value(timestamp.to_string())?,
    );
    headers.insert(
        HeaderName::from_static("webhook-signature"),
        value(signatures.join(" "))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_named_by_fingerprint() {
        let key = vec![7u8; 32];
        let text = format!("{PREFIX}{}", STANDARD.encode(&key));
        assert_eq!(parse_secret(&text), Ok(key.clone()));
        for (bad, expected) in [
            ("abc", "must start with whsec_"),
            ("whsec_***", "must be base64"),
            (
                &format!("{PREFIX}{}", STANDARD.encode([1u8; 8])),
                "8 bytes; from 24 to 64",
            ),
        ] {
            let error = parse_secret(bad).unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
        let print = fingerprint(&key);
        assert_eq!(print.len(), PREFIX.len() + 8);
        assert_ne!(print, fingerprint(&[8u8; 32]));
    }

    #[test]
    fn the_signature_is_the_standard_s_example() {
        // The example in the Standard Webhooks specification.
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut headers = HeaderMap::new();
        sign(
            &mut headers,
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(
            headers["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(headers["webhook-timestamp"], "1614265330");
    }

    #[test]
    fn sealed_secrets_open_for_their_row_only() {
        let keyring = Keyring::parse(&Keyring::new_key("k").unwrap()).unwrap();
        let keys = vec![vec![1u8; 24], vec![2u8; 24]];
        let kept = stored(&keys, &keyring, Row::queue("q"));
        assert_eq!(
            fingerprints(&kept),
            [fingerprint(&keys[0]), fingerprint(&keys[1])]
        );
        assert_eq!(
            opened(&kept, Some(&keyring), Row::queue("q")).unwrap(),
            keys
        );
        assert!(opened(&kept, Some(&keyring), Row::queue("r")).is_err());
        assert!(opened(&kept, Some(&keyring), Row::job("q")).is_err());
    }
}
