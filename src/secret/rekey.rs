//! `jobqueue secrets rekey`: every stored secret header sealed again with the
//! active key (and any kept in the clear from before headers were sealed), so an
//! older key can then be dropped. Safe beside a running service.

use super::{Keyring, Row, headers};
use crate::store::{HeadersTable, Store};

/// Rows read at a time.
const PAGE: u64 = 500;

/// What a rekey did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    /// Rows read.
    pub read: u64,
    /// Rows sealed again.
    pub sealed: u64,
    /// Rows whose headers could not be opened (a key no longer held, a value
    /// altered): left as they are.
    pub failed: u64,
}

pub async fn rekey(store: &Store, keyring: &Keyring) -> Result<Rekeyed, crate::store::StoreError> {
    let mut done = Rekeyed::default();
    for table in [HeadersTable::Jobs, HeadersTable::Schedules] {
        let mut after = String::new();
        loop {
            let page = store.headers_page(table, &after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            done.read += page.len() as u64;
            let mut changes = Vec::new();
            for (id, stored) in page {
                let row = match table {
                    HeadersTable::Jobs => Row::job(&id),
                    HeadersTable::Schedules => Row::schedule(&id),
                };
                match headers::rekeyed(&stored, keyring, row) {
                    Ok(None) => {}
                    Ok(Some(sealed)) => changes.push((id, stored, sealed)),
                    Err(error) => {
                        done.failed += 1;
                        tracing::warn!(?table, %id, %error, "left as it is");
                    }
                }
            }
            done.sealed += store.replace_headers(table, &changes).await?;
        }
    }
    Ok(done)
}
