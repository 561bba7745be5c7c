//! The keys secret values are sealed with: AES-256-GCM, one active key for new
//! values and older ones still read, each value bound to the row and the name it
//! was sealed for, so a ciphertext copied to another row or header does not open.
//!
//! A sealed value reads `<key id>.<base64url of nonce, ciphertext and tag>`: the
//! id says which key opens it, so keys can be rotated without a flag day
//! (`jobqueue secrets rekey` seals every stored value again with the active key).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of a key: AES-256.
pub const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
/// Longest key id.
const MAX_ID: usize = 32;

/// The keys, the first the active one. Cloning shares them; `Debug` shows ids only.
#[derive(Clone)]
pub struct Keyring(Arc<Inner>);

struct Inner {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// What a sealed value is bound to: the kind of row, its id, and the name of the
/// value within it. The same bytes must be given to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(Vec<u8>);

impl Binding {
    /// The value `name` (case-insensitive, as header names are) of the row `id`
    /// of kind `row` (`job`, `schedule`, `queue`, ...).
    pub fn new(row: &str, id: &str, name: &str) -> Binding {
        let mut bytes = Vec::with_capacity(24 + row.len() + id.len() + name.len());
        bytes.extend_from_slice(b"jobqueue-secret-v1\0");
        bytes.extend_from_slice(row.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(id.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        Binding(bytes)
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it is not a sealed value")]
    Malformed,
    #[error("it was sealed with key {0:?}, which the keyring no longer holds")]
    UnknownKey(String),
    #[error("it does not open with key {0:?} for this row: altered, or sealed for another")]
    Refused(String),
}

impl Keyring {
    /// Keys as the settings write them: `id=base64` entries, separated by commas
    /// or lines (blank lines and `#` comments are skipped), the first the active
    /// key. Each key is 32 random bytes (`jobqueue secrets new-key` prints one).
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let Some((id, encoded)) = entry.split_once('=') else {
                return Err(format!(
                    "key {}: expected id=base64 (a 32-byte key), such as k1=<44 characters>",
                    i + 1
                ));
            };
            let id = id.trim();
            check_id(id).map_err(|e| format!("key {}: {e}", i + 1))?;
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("key {id:?} is listed twice"));
            }
            let bytes = decode(encoded.trim()).ok_or_else(|| {
                format!("key {id:?}: not base64 (the value of `jobqueue secrets new-key`)")
            })?;
            if bytes.len() != KEY_BYTES {
                return Err(format!(
                    "key {id:?}: {} bytes; an AES-256 key is {KEY_BYTES}",
                    bytes.len()
                ));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| format!("key {id:?}: not an AES-256 key"))?;
            keys.push((id.to_string(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err("no keys: expected id=base64 entries, the active one first".into());
        }
        Ok(Keyring(Arc::new(Inner {
            keys,
            random: SystemRandom::new(),
        })))
    }

    /// Reads a keys file (the Helm chart mounts its Secret as one).
    pub fn from_file(path: &str) -> Result<Keyring, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// A new random key named `id`, as the settings write it.
    pub fn new_key(id: &str) -> Result<String, String> {
        check_id(id)?;
        let mut bytes = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system's random source failed".to_string())?;
        Ok(format!("{id}={}", STANDARD.encode(bytes)))
    }

    /// Key ids, the active one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys.iter().map(|(id, _)| id.as_str())
    }

    /// The id of the key new values are sealed with.
    pub fn active(&self) -> &str {
        &self.0.keys[0].0
    }

    /// `plain` sealed with the active key for `binding`.
    pub fn seal(&self, plain: &[u8], binding: &Binding) -> String {
        let (id, key) = &self.0.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.0
            .random
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut sealed = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_BYTES);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plain);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&binding.0),
                &mut sealed[NONCE_LEN..],
            )
            .expect("a value within AES-GCM's limits");
        sealed.extend_from_slice(tag.as_ref());
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plain bytes of a value sealed for `binding`.
    pub fn open(&self, sealed: &str, binding: &Binding) -> Result<Vec<u8>, OpenError> {
        let (id, encoded) = sealed.split_once('.').ok_or(OpenError::Malformed)?;
        let key = self
            .0
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_BYTES {
            return Err(OpenError::Malformed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
            .map_err(|_| OpenError::Malformed)?;
        let plain = key
            .open_in_place(nonce, Aad::from(&binding.0), &mut bytes[NONCE_LEN..])
            .map_err(|_| OpenError::Refused(id.to_string()))?;
        Ok(plain.to_vec())
    }

    /// Whether `sealed` is sealed with the active key (nothing to rekey).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.split_once('.').map(|(id, _)| id) == Some(self.active())
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "id {id:?} must be 1 to {MAX_ID} letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Base64 as people paste it: standard or URL-safe, padded or not.
fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    #[test]
    fn a_value_opens_only_for_its_binding() {
        let keys = ring(&Keyring::new_key("k1").unwrap());
        let here = Binding::new("job", "01A", "Authorization");
        let sealed = keys.seal(b"Bearer s3cret", &here);
        assert!(sealed.starts_with("k1."));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            keys.open(&sealed, &Binding::new("job", "01A", "authorization")),
            Ok(b"Bearer s3cret".to_vec()),
            "header names are case-insensitive"
        );
        for other in [
            Binding::new("job", "01B", "authorization"),
            Binding::new("job", "01A", "cookie"),
            Binding::new("schedule", "01A", "authorization"),
        ] {
            assert_eq!(
                keys.open(&sealed, &other),
                Err(OpenError::Refused("k1".into()))
            );
        }
        // One bit changed anywhere is refused.
        let (id, body) = sealed.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{id}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(
            keys.open(&altered, &here),
            Err(OpenError::Refused("k1".into()))
        );
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(keys.seal(b"x", &here), keys.seal(b"x", &here));
    }

    #[test]
    fn older_keys_still_open_and_the_first_seals() {
        let old = Keyring::new_key("old").unwrap();
        let new = Keyring::new_key("new").unwrap();
        let before = ring(&old);
        let binding = Binding::new("job", "1", "x-api-key");
        let sealed = before.seal(b"v", &binding);
        let rotated = ring(&format!("{new},{old}"));
        assert_eq!(rotated.open(&sealed, &binding), Ok(b"v".to_vec()));
        assert!(!rotated.is_current(&sealed));
        assert!(rotated.seal(b"v", &binding).starts_with("new."));
        let dropped = ring(&new);
        assert_eq!(
            dropped.open(&sealed, &binding),
            Err(OpenError::UnknownKey("old".into()))
        );
        assert_eq!(format!("{rotated:?}"), r#"Keyring { ids: ["new", "old"] }"#);
    }

    #[test]
    fn bad_settings_are_refused_with_what_was_expected() {
        let short = format!("k={}", STANDARD.encode([0u8; 16]));
        let key = Keyring::new_key("a").unwrap();
        for (text, expected) in [
            ("", "no keys"),
            ("k1", "expected id=base64"),
            ("=AAAA", "id \"\" must be"),
            ("k 1=AAAA", "must be 1 to 32"),
            ("k1=***", "not base64"),
            (short.as_str(), "16 bytes; an AES-256 key is 32"),
            (&format!("{key},{key}"), "listed twice"),
        ] {
            let error = Keyring::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let file = format!(
            "# rotated 2026-12\n{}\n\n{key}\n",
            Keyring::new_key("b").unwrap()
        );
        assert_eq!(ring(&file).ids().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(
            ring(&file).open("nodot", &Binding::new("job", "1", "x")),
            Err(OpenError::Malformed)
        );
    }
}
