//! The audit log's side of a call: who is asking ([`Actor`]: the key, its
//! namespace and the peer's address), set by the key gate for the call's handler
//! and read by the engine when it hands a change to the writer, which writes the
//! entry in the transaction of the change (`engine/writer/audit.rs`).

use std::future::Future;
use std::sync::Arc;

/// Every action an entry records, as `AuditEntry.action` spells it: what
/// `engine/writer/audit.rs` writes and what `ListAuditEntries` filters by.
pub const ACTIONS: [&str; 24] = [
    "job.submit",
    "job.cancel",
    "job.retry",
    "job.delete",
    "chain.submit",
    "chain.cancel",
    "chain.retry",
    "queue.create",
    "queue.update",
    "queue.pause",
    "queue.resume",
    "queue.purge",
    "schedule.create",
    "schedule.update",
    "schedule.pause",
    "schedule.resume",
    "schedule.trigger",
    "schedule.delete",
    "contract.create",
    "contract.deactivate",
    "template.create",
    "template.deactivate",
    "key.create",
    "key.revoke",
];

/// Who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The key presented; `None` when the service runs open.
    pub key_id: Option<String>,
    pub namespace: String,
    /// `ip:port`, as the connection came in.
    pub peer: Option<String>,
}

tokio::task_local! {
    static ACTOR: Arc<Actor>;
}

/// Runs `call` (a call's handler) as `actor`'s.
pub async fn acting<F: Future>(actor: Arc<Actor>, call: F) -> F::Output {
    ACTOR.scope(actor, call).await
}

/// The actor of the call being handled, if any (none for the service's own
/// work: outcomes, schedules firing, the keys file loaded at start).
pub fn current() -> Option<Arc<Actor>> {
    ACTOR.try_with(Arc::clone).ok()
}

/// The peer address tonic's transport put in a request's extensions, plain or
/// over TLS.
pub fn peer_of<B>(request: &http::Request<B>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map(|a| a.to_string())
}
