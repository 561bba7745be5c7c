//! Destination hosts' state for an operator: read, and a circuit reset (beside
//! a running service: the writer reads each host's row at every claim).

use super::{Store, StoreError};

impl Store {
    /// Every destination host's state, for an operator.
    pub async fn hosts(&self) -> Result<Vec<crate::job::hosts::HostState>, StoreError> {
        super::write::all_hosts(&self.reader).await
    }

    /// An operator's reset of a host's circuit; whether the host was known.
    pub async fn reset_host(&self, host: &str, now: i64) -> Result<bool, StoreError> {
        let writer = self.open_writer().await?;
        let done = super::write::reset_host(&writer, host, now).await;
        writer.close().await?;
        done
    }
}
