//! `jobqueue secrets rekey`: every stored secret header and signing secret
//! sealed again with the active key (and any header kept in the clear from
//! before headers were sealed), so an older key can then be dropped. Safe beside
//! a running service.

use super::{Keyring, Row, headers, signing};
use crate::store::{SealedColumn, Store};

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
    for column in SealedColumn::ALL {
        let mut after = String::new();
        loop {
            let page = store.sealed_page(column, &after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            done.read += page.len() as u64;
            let mut changes = Vec::new();
            for (id, stored) in page {
                let rekeyed = match column {
                    SealedColumn::JobHeaders => headers::rekeyed(&stored, keyring, Row::job(&id)),
                    SealedColumn::ScheduleHeaders => {
                        headers::rekeyed(&stored, keyring, Row::schedule(&id))
                    }
                    SealedColumn::JobSigning => signing::rekeyed(&stored, keyring, Row::job(&id)),
                    SealedColumn::QueueSigning => {
                        signing::rekeyed(&stored, keyring, Row::queue(&id))
                    }
                };
                match rekeyed {
                    Ok(None) => {}
                    Ok(Some(sealed)) => changes.push((id, stored, sealed)),
                    Err(error) => {
                        done.failed += 1;
                        tracing::warn!(?column, %id, %error, "left as it is");
                    }
                }
            }
            done.sealed += store.replace_sealed(column, &changes).await?;
        }
    }
    Ok(done)
}
