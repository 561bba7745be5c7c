//! `AuditService`: the audit log of the caller's namespace, newest first.

use tonic::{Request, Response, Status};

use super::Violations;
use super::convert::{self, timestamp, timestamp_ms};
use crate::audit::ACTIONS;
use crate::auth::Caller;
use crate::engine::Engine;
use crate::proto::{self, audit_service_server::AuditService};
use crate::store::{AuditFilter, audit_entries};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;
const PAGE_TOKEN_PREFIX: &str = "audit-before:";

pub struct AuditApi {
    engine: Engine,
}

impl AuditApi {
    pub fn new(engine: Engine) -> Self {
        AuditApi { engine }
    }
}

fn entry(e: audit_entries::Model) -> proto::AuditEntry {
    proto::AuditEntry {
        id: e.id,
        commit_time: Some(timestamp(e.at)),
        namespace: e.namespace,
        key_id: e.key_id.unwrap_or_default(),
        peer: e.peer.unwrap_or_default(),
        action: e.action,
        object: e.object,
        outcome: e.outcome,
        detail: e.detail.unwrap_or_default(),
    }
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<proto::ListAuditEntriesRequest>,
    ) -> Result<Response<proto::ListAuditEntriesResponse>, Status> {
        let caller = Caller::of(&request);
        let proto::ListAuditEntriesRequest {
            start_time,
            end_time,
            key_id,
            action,
            object,
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let before =
            convert::page_start(PAGE_TOKEN_PREFIX, &page_token, "ListAuditEntries", &mut v);
        let mut time = |t: Option<prost_types::Timestamp>, field: &str| {
            let t = t?;
            let ms = timestamp_ms(&t);
            if ms.is_none() {
                v.add(field, "must be a valid timestamp");
            }
            ms
        };
        let from = time(start_time, "start_time");
        let until = time(end_time, "end_time");
        if let (Some(from), Some(until)) = (from, until)
            && until <= from
        {
            v.add("end_time", "must be after start_time");
        }
        if !action.is_empty() && !ACTIONS.contains(&action.as_str()) {
            v.add("action", format!("must be one of {}", ACTIONS.join(", ")));
        }
        v.into_result(())?;
        let filter = AuditFilter {
            namespace: caller.namespace,
            from,
            until,
            key_id: nonempty(key_id),
            action: nonempty(action),
            object: nonempty(object),
        };
        let mut rows = self
            .engine
            .store()
            .audit_entries(&filter, before.as_deref(), size as u64 + 1)
            .await?;
        let next_page_token = convert::page_end(&mut rows, size, PAGE_TOKEN_PREFIX, |e| &e.id);
        Ok(Response::new(proto::ListAuditEntriesResponse {
            entries: rows.into_iter().map(entry).collect(),
            next_page_token,
        }))
    }
}
