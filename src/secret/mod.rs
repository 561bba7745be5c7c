//! Values jobqueue keeps only encrypted: secret headers (and the secrets requests
//! are signed with), sealed with a keyring of AES-256-GCM keys, each value bound
//! to its row, shown to clients by name only.

pub mod headers;
pub mod keyring;
pub mod rekey;
pub mod signing;

pub use headers::{Headers, Row};
pub use keyring::Keyring;
