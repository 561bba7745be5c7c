//! An API key's shape: `jq_`, its id (`k` and a ULID, lower case), `_`, and a
//! secret of 32 random bytes in hex. The prefix makes a leaked key easy to
//! recognise (and to scan for); the id names it in lists and logs; the secret
//! is kept only as its SHA-256 and compared in constant time.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "jq_";
const SECRET_BYTES: usize = 32;

/// A key as presented: its id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// A new key: its id and the whole key to hand out once.
pub fn generate() -> (String, String) {
    let id = format!("k{}", ulid::Ulid::new()).to_ascii_lowercase();
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    let secret = hex(&bytes);
    let whole = format!("{PREFIX}{id}_{secret}");
    (id, whole)
}

/// The id and secret of a key in its shape; `None` for anything else.
pub fn parse(key: &str) -> Option<Presented<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 27
        && id.starts_with('k')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    let secret_ok =
        secret.len() == SECRET_BYTES * 2 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && secret_ok).then_some(Presented { id, secret })
}

/// The key in an `authorization` value: `Bearer <key>` (or the key alone).
pub fn from_authorization(value: &str) -> Option<Presented<'_>> {
    let value = value.trim();
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    parse(key)
}

/// What is stored of a secret.
pub fn hash(secret: &str) -> String {
    hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref())
}

/// Whether `secret` is the one whose hash is `stored`, in time that does not
/// depend on where they differ.
pub fn matches(secret: &str, stored: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_only_its_own_hash() {
        let (id, whole) = generate();
        let presented = parse(&whole).expect("its own shape");
        assert_eq!(presented.id, id);
        let stored = hash(presented.secret);
        assert!(matches(presented.secret, &stored));
        let (_, other) = generate();
        assert!(!matches(parse(&other).unwrap().secret, &stored));
        assert_eq!(
            from_authorization(&format!("Bearer {whole}")),
            Some(presented.clone())
        );
        assert_eq!(
            from_authorization(&format!("bearer  {whole} ")),
            Some(presented)
        );
    }

    #[test]
    fn anything_else_is_no_key() {
        let (_, whole) = generate();
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            &whole[..whole.len() - 1],
            &format!("{whole}0"),
            &whole.replace("jq_", "jx_"),
            &whole.to_ascii_uppercase(),
            &format!("Token {whole}"),
            "jq_k_",
            "jq_\u{0}_",
        ] {
            assert_eq!(from_authorization(bad), None, "{bad:?}");
        }
    }
}
