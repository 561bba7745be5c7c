//! A schedule that fires a chain: the chain checked as `SubmitChain` checks it
//! (its fields under `schedule.chain`), its contract and template versions pinned
//! when the schedule is written, and kept in the two forms the schedule stores.

use prost::Message;
use tonic::Status;

use super::chain_spec;
use super::convert::Limits;
use crate::chain::definition::{Definition, Scheduled};
use crate::contract::library::Library;
use crate::proto;
use crate::store::Store;

/// Where a schedule's chain stands in its request.
const AT: &str = "schedule.chain";

/// A schedule's chain, checked and pinned.
#[derive(Debug, Clone)]
pub struct ScheduledChain {
    /// The `ChainSpec` as clients read it back, every version pinned.
    pub spec: Vec<u8>,
    /// What each run starts: JSON of [`Scheduled`].
    pub start: String,
    /// The queue its steps run in unless they name one.
    pub queue: String,
    /// Its chains' labels, as a JSON array, and how long they are kept.
    pub tags: String,
    pub ttl_ms: i64,
}

/// Checks the chain a schedule of `namespace` is to fire; the refusal names
/// `schedule.chain`.
pub async fn checked(
    namespace: &str,
    spec: proto::ChainSpec,
    limits: &Limits,
    store: &Store,
    library: &Library,
) -> Result<ScheduledChain, Status> {
    if !spec.idempotency_key.is_empty() {
        return Err(super::invalid(
            format!("{AT}.idempotency_key"),
            "must be unset: each run's chain gets the key <schedule id>/<fire time>",
        ));
    }
    let mut shown = spec.clone();
    let checked = chain_spec::check(namespace, Some(spec), AT, limits, store, library).await?;
    if !checked.accepted() {
        return Err(checked.refusal());
    }
    pin(&mut shown, &checked.definition);
    let queue = if shown.queue.is_empty() {
        "default"
    } else {
        shown.queue.as_str()
    };
    let queue = crate::namespace::qualify(namespace, queue);
    let start = serde_json::to_string(&Scheduled {
        input: checked.input,
        definition: checked.definition,
    })
    .map_err(|e| Status::internal(e.to_string()))?;
    Ok(ScheduledChain {
        spec: shown.encode_to_vec(),
        start,
        queue,
        tags: serde_json::to_string(&checked.tags).unwrap_or_else(|_| "[]".into()),
        ttl_ms: checked.ttl_ms,
    })
}

/// The chain a schedule fires, as clients read it back; `None` for a damaged
/// row.
pub fn shown(spec: &[u8]) -> Option<proto::ChainSpec> {
    proto::ChainSpec::decode(spec).ok()
}

/// Writes into `spec` the versions its check pinned: a version left 0 (the latest)
/// reads back as the one the schedule's runs use.
fn pin(spec: &mut proto::ChainSpec, definition: &Definition) {
    if let (Some(named), Some(pinned)) = (&mut spec.input_contract, &definition.input_contract) {
        named.version = pinned.version as u32;
    }
    for (step, def) in spec.steps.iter_mut().zip(&definition.steps) {
        if let (Some(named), Some(pinned)) = (&mut step.template, &def.template) {
            named.version = pinned.version as u32;
        } else if let (Some(named), Some(pinned)) = (&mut step.contract, &def.contract) {
            named.version = pinned.version as u32;
        }
    }
}
