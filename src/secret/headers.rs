//! Secret headers: which headers are secret, how a row's headers column keeps
//! them (sealed, each for its row and name), and the ways they are read: opened
//! for the call, masked for clients, sealed again for another row or key.
//!
//! The column holds a JSON object; a plain header's value is a string, a secret
//! one's an object `{"sealed": "<key id>.<ciphertext>"}`, which no plain value can
//! be mistaken for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::keyring::{Binding, Keyring};

/// Headers that are secret whatever the caller says: they carry credentials.
pub const ALWAYS_SECRET: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
];

/// Whether a header of this name is secret by its name alone.
pub fn always_secret(name: &str) -> bool {
    ALWAYS_SECRET.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// The row a value is sealed for.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    kind: &'static str,
    id: &'a str,
}

impl<'a> Row<'a> {
    pub fn job(id: &'a str) -> Self {
        Row { kind: "job", id }
    }

    /// A schedule, by its id as stored.
    pub fn schedule(id: &'a str) -> Self {
        Row {
            kind: "schedule",
            id,
        }
    }

    /// A queue, by its name as stored.
    pub fn queue(id: &'a str) -> Self {
        Row { kind: "queue", id }
    }

    pub(super) fn binding(&self, name: &str) -> Binding {
        Binding::new(self.kind, self.id, name)
    }
}

/// One header as the column keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Kept {
    Plain(String),
    Sealed { sealed: String },
}

/// A call's headers in memory: their values, and the names (lower case) of the
/// ones to keep secret besides [`ALWAYS_SECRET`]. `Debug` shows no secret value.
#[derive(Clone, Default, PartialEq)]
pub struct Headers {
    pub values: BTreeMap<String, String>,
    pub marked: BTreeSet<String>,
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .values
            .iter()
            .map(|(name, value)| {
                let value = if self.is_secret(name) {
                    "(secret)"
                } else {
                    value.as_str()
                };
                (name.as_str(), value)
            })
            .collect();
        shown.fmt(f)
    }
}

/// A secret header that cannot be stored: the service has no key to seal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoKey {
    /// The header, as the caller named it.
    pub name: String,
}

impl fmt::Display for NoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a secret header is kept only encrypted, and this service has no key to \
             encrypt it: set JOBQUEUE_SECRET_KEYS or JOBQUEUE_SECRET_KEYS_FILE \
             (the chart's secrets.keysSecret)"
        )
    }
}

impl Headers {
    /// Plain headers, none marked secret.
    pub fn plain(values: BTreeMap<String, String>) -> Self {
        Headers {
            values,
            marked: BTreeSet::new(),
        }
    }

    pub fn is_secret(&self, name: &str) -> bool {
        always_secret(name) || self.marked.contains(&name.to_ascii_lowercase())
    }

    /// Whether any header is secret.
    pub fn has_secrets(&self) -> bool {
        self.values.keys().any(|name| self.is_secret(name))
    }

    /// The JSON the headers column keeps, every secret value sealed for `row`.
    pub fn stored(&self, keyring: Option<&Keyring>, row: Row<'_>) -> Result<String, NoKey> {
        if !self.has_secrets() {
            return Ok(serde_json::to_string(&self.values).unwrap_or_else(|_| "{}".into()));
        }
        let mut kept = BTreeMap::new();
        for (name, value) in &self.values {
            let entry = if self.is_secret(name) {
                let Some(keyring) = keyring else {
                    return Err(NoKey { name: name.clone() });
                };
                Kept::Sealed {
                    sealed: keyring.seal(value.as_bytes(), &row.binding(name)),
                }
            } else {
                Kept::Plain(value.clone())
            };
            kept.insert(name.as_str(), entry);
        }
        Ok(serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into()))
    }
}

fn read(stored: &str) -> Result<BTreeMap<String, Kept>, String> {
    serde_json::from_str(stored).map_err(|e| format!("stored headers: {e}"))
}

/// A row's headers opened for its call: every value in the clear, the sealed
/// ones marked secret.
pub fn opened(stored: &str, keyring: Option<&Keyring>, row: Row<'_>) -> Result<Headers, String> {
    let mut headers = Headers::default();
    for (name, kept) in read(stored)? {
        let value = match kept {
            Kept::Plain(value) => value,
            Kept::Sealed { sealed } => {
                headers.marked.insert(name.to_ascii_lowercase());
                open(&sealed, keyring, row, &name)?
            }
        };
        headers.values.insert(name, value);
    }
    Ok(headers)
}

fn open(
    sealed: &str,
    keyring: Option<&Keyring>,
    row: Row<'_>,
    name: &str,
) -> Result<String, String> {
    let keyring = keyring.ok_or_else(|| {
        format!(
            "secret header {name} cannot be opened: this service has no keys \
             (JOBQUEUE_SECRET_KEYS or JOBQUEUE_SECRET_KEYS_FILE)"
        )
    })?;
    let plain = keyring
        .open(sealed, &row.binding(name))
        .map_err(|e| format!("secret header {name} cannot be opened: {e}"))?;
    String::from_utf8(plain).map_err(|_| format!("secret header {name} is not text"))
}

/// A row's headers as clients read them: the plain ones with their values, and
/// the names of the secret ones, whose values are never shown.
pub fn masked(stored: &str) -> (HashMap<String, String>, Vec<String>) {
    let mut plain = HashMap::new();
    let mut secret = Vec::new();
    for (name, kept) in read(stored).unwrap_or_default() {
        match kept {
            // A row from before headers were sealed is masked by name.
            Kept::Plain(value) if !always_secret(&name) => {
                plain.insert(name, value);
            }
            _ => secret.push(name),
        }
    }
    (plain, secret)
}

/// A row's headers, the secret ones sealed for `from`, sealed instead for `to`
/// (a schedule's headers for the job a run submits); a credential a schedule
/// from before sealing keeps in the clear is sealed for the run.
pub fn resealed(
    stored: &str,
    keyring: Option<&Keyring>,
    from: Row<'_>,
    to: Row<'_>,
) -> Result<String, String> {
    let headers = opened(stored, keyring, from)?;
    headers
        .stored(keyring, to)
        .map_err(|e| format!("header {}: {e}", e.name))
}

/// A row's headers with every secret value sealed with the active key, those
/// stored in the clear before secret headers were sealed included; `None` when
/// nothing needs it.
pub fn rekeyed(stored: &str, keyring: &Keyring, row: Row<'_>) -> Result<Option<String>, String> {
    let kept = read(stored)?;
    let stale = kept.iter().any(|(name, kept)| match kept {
        Kept::Plain(_) => always_secret(name),
        Kept::Sealed { sealed } => !keyring.is_current(sealed),
    });
    if !stale {
        return Ok(None);
    }
    let headers = opened(stored, Some(keyring), row)?;
    headers
        .stored(Some(keyring), row)
        .map(Some)
        .map_err(|e| format!("header {}: {e}", e.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::parse(&Keyring::new_key("k1").unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)], marked: &[&str]) -> Headers {
        Headers {
            values: pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            marked: marked.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    #[test]
    fn secret_values_are_stored_sealed_and_open_only_for_their_row() {
        let keys = keys();
        let h = headers(
            &[
                ("Authorization", "Bearer tok-1"),
                ("X-Sig", "sig-2"),
                ("X-A", "1"),
            ],
            &["x-sig"],
        );
        let stored = h.stored(Some(&keys), Row::job("J1")).unwrap();
        assert!(
            !stored.contains("tok-1") && !stored.contains("sig-2"),
            "{stored}"
        );
        assert!(stored.contains(r#""X-A":"1""#));
        let opened = opened(&stored, Some(&keys), Row::job("J1")).unwrap();
        assert_eq!(opened.values, h.values);
        assert!(opened.is_secret("x-sig") && opened.is_secret("authorization"));
        assert!(!opened.is_secret("X-A"));
        let error = super::opened(&stored, Some(&keys), Row::job("J2")).unwrap_err();
        assert!(error.contains("cannot be opened"), "{error}");
        assert!(!format!("{opened:?}").contains("tok-1"));

        let (plain, secret) = masked(&stored);
        assert_eq!(plain, HashMap::from([("X-A".to_string(), "1".to_string())]));
        assert_eq!(secret, ["Authorization", "X-Sig"]);
    }

    #[test]
    fn without_a_key_secret_headers_are_refused_and_plain_ones_kept() {
        let h = headers(&[("Cookie", "c=1"), ("X-A", "1")], &[]);
        assert_eq!(
            h.stored(None, Row::job("J")),
            Err(NoKey {
                name: "Cookie".into()
            })
        );
        let plain = headers(&[("X-A", "1")], &[]);
        assert_eq!(plain.stored(None, Row::job("J")).unwrap(), r#"{"X-A":"1"}"#);
    }

    #[test]
    fn a_schedule_s_headers_are_sealed_again_for_each_run() {
        let keys = keys();
        let h = headers(&[("X-Api-Key", "key-9")], &[]);
        let kept = h.stored(Some(&keys), Row::schedule("S")).unwrap();
        let run = resealed(&kept, Some(&keys), Row::schedule("S"), Row::job("J")).unwrap();
        assert_ne!(run, kept);
        assert_eq!(
            opened(&run, Some(&keys), Row::job("J")).unwrap().values["X-Api-Key"],
            "key-9"
        );
        let plain = r#"{"X-A":"1"}"#;
        assert_eq!(
            resealed(plain, None, Row::schedule("S"), Row::job("J")).unwrap(),
            plain
        );
        // A schedule from before sealing: its run's copy is sealed.
        let clear = r#"{"Cookie":"c=old"}"#;
        let run = resealed(clear, Some(&keys), Row::schedule("S"), Row::job("J")).unwrap();
        assert!(!run.contains("c=old"), "{run}");
        assert_eq!(
            opened(&run, Some(&keys), Row::job("J")).unwrap().values["Cookie"],
            "c=old"
        );
    }

    #[test]
    fn rekeying_seals_old_and_clear_values_with_the_active_key() {
        let old = Keyring::new_key("old").unwrap();
        let before = Keyring::parse(&old).unwrap();
        let after = Keyring::parse(&format!("{},{old}", Keyring::new_key("new").unwrap())).unwrap();
        let sealed = headers(&[("Cookie", "c=1")], &[])
            .stored(Some(&before), Row::job("J"))
            .unwrap();
        let moved = rekeyed(&sealed, &after, Row::job("J")).unwrap().unwrap();
        assert!(moved.contains("\"new."), "{moved}");
        assert_eq!(rekeyed(&moved, &after, Row::job("J")).unwrap(), None);
        // A row from before sealing: its credential in the clear.
        let clear = r#"{"Authorization":"Bearer old-tok","X-A":"1"}"#;
        let sealed = rekeyed(clear, &after, Row::job("J")).unwrap().unwrap();
        assert!(!sealed.contains("old-tok"));
        assert_eq!(
            opened(&sealed, Some(&after), Row::job("J")).unwrap().values["Authorization"],
            "Bearer old-tok"
        );
        assert_eq!(
            rekeyed(r#"{"X-A":"1"}"#, &after, Row::job("J")).unwrap(),
            None
        );
        let (plain, secret) = masked(clear);
        assert_eq!(plain.len(), 1);
        assert_eq!(secret, ["Authorization"]);
    }
}
