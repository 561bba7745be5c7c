//! `ChainService`: chains checked ([`super::chain_spec`]), handed to the writer,
//! and read back with where each step stands.

use tonic::{Request, Response, Status};

use super::chain_spec;
use super::convert::{self, Limits, duration, timestamp, value_from_json};
use super::{Violations, invalid};
use crate::auth::Caller;
use crate::chain::definition::{Definition, Pinned, RunIfName};
use crate::chain::progress::{self, StepStatus};
use crate::engine::{ChainChange, Engine, NewChain};
use crate::namespace::local;
use crate::proto::{self, chain_service_server::ChainService};
use crate::store::{ChainRead, chains};
use crate::{now_ms, telemetry};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;
const PAGE_TOKEN_PREFIX: &str = "chains-before:";

pub struct ChainApi {
    engine: Engine,
    limits: Limits,
}

impl ChainApi {
    pub fn new(engine: Engine, limits: Limits) -> Self {
        ChainApi { engine, limits }
    }

    async fn read(&self, namespace: &str, id: &str) -> Result<proto::Chain, Status> {
        match self.engine.store().chain(namespace, id).await? {
            Some(read) => Ok(chain_view(read)),
            None => Err(Status::not_found(format!("chain {id} not found"))),
        }
    }
}

fn chain_id(id: &str) -> Result<&str, Status> {
    if id.starts_with("c_") && id.len() == 28 {
        Ok(id)
    } else {
        Err(invalid("id", "a chain id: c_ followed by a ULID"))
    }
}

pub(super) fn chain_status(s: &str) -> proto::ChainStatus {
    match s {
        "running" => proto::ChainStatus::Running,
        "succeeded" => proto::ChainStatus::Succeeded,
        "failed" => proto::ChainStatus::Failed,
        "canceled" => proto::ChainStatus::Canceled,
        _ => proto::ChainStatus::Unspecified,
    }
}

fn chain_status_name(s: proto::ChainStatus) -> Option<&'static str> {
    Some(match s {
        proto::ChainStatus::Running => "running",
        proto::ChainStatus::Succeeded => "succeeded",
        proto::ChainStatus::Failed => "failed",
        proto::ChainStatus::Canceled => "canceled",
        proto::ChainStatus::Unspecified => return None,
    })
}

fn run_if(r: RunIfName) -> proto::RunIf {
    match r {
        RunIfName::OnSuccess => proto::RunIf::OnSuccess,
        RunIfName::OnFailure => proto::RunIf::OnFailure,
        RunIfName::Always => proto::RunIf::Always,
    }
}

fn pinned(p: &Pinned) -> proto::ContractVersion {
    proto::ContractVersion {
        name: local(&p.name).to_string(),
        version: p.version as u32,
    }
}

fn step_status(status: StepStatus) -> proto::StepStatus {
    match status {
        StepStatus::Waiting => proto::StepStatus::Waiting,
        StepStatus::Queued => proto::StepStatus::Queued,
        StepStatus::Running => proto::StepStatus::Running,
        StepStatus::Succeeded => proto::StepStatus::Succeeded,
        StepStatus::Failed => proto::StepStatus::Failed,
        StepStatus::Skipped => proto::StepStatus::Skipped,
        StepStatus::Canceled => proto::StepStatus::Canceled,
    }
}

pub(super) fn chain_view(read: ChainRead) -> proto::Chain {
    let ChainRead {
        chain,
        step_jobs,
        notes,
        mut jobs,
        mut attempts,
    } = read;
    let definition: Option<Definition> = serde_json::from_str(&chain.definition).ok();
    let order = definition
        .as_ref()
        .map(Definition::order)
        .unwrap_or_default();
    let steps = progress::steps(&order, step_jobs, notes)
        .into_iter()
        .map(|step| {
            let def = definition.as_ref().and_then(|d| d.step(&step.id));
            let job = step.job_id.as_ref().and_then(|id| jobs.remove(id));
            let tries = step
                .job_id
                .as_ref()
                .and_then(|id| attempts.remove(id))
                .unwrap_or_default();
            // A failed job's own words, from its last attempt, when a read has them.
            let reason = match (step.status, tries.last()) {
                (StepStatus::Failed, Some(last)) if step.reason.is_some() => last
                    .error_message
                    .clone()
                    .or(step.reason)
                    .unwrap_or_default(),
                _ => step.reason.unwrap_or_default(),
            };
            proto::StepState {
                id: step.id.clone(),
                status: step_status(step.status) as i32,
                depends_on: def.map(|d| d.parents.clone()).unwrap_or_default(),
                run_if: def.map_or(proto::RunIf::OnSuccess, |d| run_if(d.run_if)) as i32,
                reason,
                error_class: convert::error_class(step.error_class.as_deref()) as i32,
                job_id: step.job_id.unwrap_or_default(),
                request: job.map(|j| convert::job(j).request.unwrap_or_default()),
                contract: def.and_then(|d| d.contract.as_ref()).map(pinned),
                start_time: step.started_at.map(timestamp),
                finish_time: step.finished_at.map(timestamp),
                attempts: tries.into_iter().map(super::response::attempt).collect(),
            }
        })
        .collect();
    let chains::Model {
        id,
        namespace: _,
        status,
        input,
        definition: _,
        tags,
        idempotency_key,
        ttl_ms,
        created_at,
        updated_at: _,
        finished_at,
        expires_at,
        schedule_id,
        trace_context: _,
        fire_at,
    } = chain;
    proto::Chain {
        id,
        status: chain_status(&status) as i32,
        input: serde_json::from_str(&input).ok().map(value_from_json),
        input_contract: definition
            .as_ref()
            .and_then(|d| d.input_contract.as_ref())
            .map(pinned),
        steps,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        idempotency_key: idempotency_key.unwrap_or_default(),
        create_time: Some(timestamp(created_at)),
        finish_time: finished_at.map(timestamp),
        expire_time: expires_at.map(timestamp),
        ttl: Some(duration(ttl_ms)),
        existing: false,
        schedule_id: schedule_id.as_deref().map(local).unwrap_or_default().into(),
        fire_time: fire_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl ChainService for ChainApi {
    type WatchChainStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::ChainEvent, Status>>;

    async fn watch_chain(
        &self,
        request: Request<proto::WatchChainRequest>,
    ) -> Result<Response<Self::WatchChainStream>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::WatchChainRequest { id } = request.into_inner();
        let id = chain_id(&id)?.to_string();
        let events = super::chain_watch::watch(self.engine.clone(), namespace, id).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            events,
        )))
    }

    async fn submit_chain(
        &self,
        request: Request<proto::SubmitChainRequest>,
    ) -> Result<Response<proto::Chain>, Status> {
        // Each step's job runs in the trace of the call that submitted its chain.
        let trace = telemetry::rpc::rpc_context(&request)
            .and_then(|rpc| telemetry::TraceContext::store(&rpc.cx));
        let namespace = Caller::namespace_of(&request);
        let proto::SubmitChainRequest { chain } = request.into_inner();
        let checked = chain_spec::check(
            &namespace,
            chain,
            "chain",
            &self.limits,
            self.engine.store(),
            self.engine.library(),
        )
        .await?;
        if !checked.accepted() {
            return Err(checked.refusal());
        }
        let now = now_ms();
        let row = chains::Model {
            id: crate::engine::scheduler::chain_id(),
            namespace: namespace.clone(),
            status: "running".into(),
            input: checked.input.to_string(),
            definition: serde_json::to_string(&checked.definition)
                .map_err(|e| Status::internal(e.to_string()))?,
            tags: serde_json::to_string(&checked.tags).unwrap_or_else(|_| "[]".into()),
            idempotency_key: checked.idempotency_key.clone(),
            ttl_ms: checked.ttl_ms,
            created_at: now,
            updated_at: now,
            finished_at: None,
            expires_at: None,
            schedule_id: None,
            trace_context: trace,
            fire_at: None,
        };
        let changed = self
            .engine
            .change_chain(ChainChange::Submit(Box::new(NewChain {
                chain: row,
                definition: checked.definition,
            })))
            .await?;
        let mut chain = self.read(&namespace, &changed.chain.id).await?;
        chain.existing = changed.existing;
        Ok(Response::new(chain))
    }

    async fn check_chain(
        &self,
        request: Request<proto::CheckChainRequest>,
    ) -> Result<Response<proto::ChainCheck>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CheckChainRequest { chain } = request.into_inner();
        let checked = chain_spec::check(
            &namespace,
            chain,
            "chain",
            &self.limits,
            self.engine.store(),
            self.engine.library(),
        )
        .await?;
        Ok(Response::new(checked.report()))
    }

    async fn get_chain(
        &self,
        request: Request<proto::GetChainRequest>,
    ) -> Result<Response<proto::Chain>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetChainRequest { id } = request.into_inner();
        Ok(Response::new(self.read(&namespace, chain_id(&id)?).await?))
    }

    async fn list_chains(
        &self,
        request: Request<proto::ListChainsRequest>,
    ) -> Result<Response<proto::ListChainsResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListChainsRequest {
            page_size,
            page_token,
            statuses,
        } = request.into_inner();
        let mut v = Violations::default();
        let size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let before = convert::page_start(PAGE_TOKEN_PREFIX, &page_token, "ListChains", &mut v);
        let mut names = Vec::new();
        for (i, s) in statuses.iter().enumerate() {
            match proto::ChainStatus::try_from(*s)
                .ok()
                .and_then(chain_status_name)
            {
                Some(name) => names.push(name),
                None => v.add(
                    format!("statuses[{i}]"),
                    "must be a ChainStatus other than UNSPECIFIED",
                ),
            }
        }
        v.into_result(())?;
        let mut rows = self
            .engine
            .store()
            .list_chains(&namespace, &names, before.as_deref(), size as u64 + 1)
            .await?;
        let next_page_token =
            convert::page_end(&mut rows, size, PAGE_TOKEN_PREFIX, |r| r.chain.id.as_str());
        let chains = rows.into_iter().map(chain_view).collect();
        Ok(Response::new(proto::ListChainsResponse {
            chains,
            next_page_token,
        }))
    }

    async fn cancel_chain(
        &self,
        request: Request<proto::CancelChainRequest>,
    ) -> Result<Response<proto::Chain>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CancelChainRequest { id } = request.into_inner();
        let id = chain_id(&id)?.to_string();
        self.engine
            .change_chain(ChainChange::Cancel {
                namespace: namespace.clone(),
                id: id.clone(),
            })
            .await?;
        Ok(Response::new(self.read(&namespace, &id).await?))
    }

    async fn retry_chain(
        &self,
        request: Request<proto::RetryChainRequest>,
    ) -> Result<Response<proto::Chain>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::RetryChainRequest { id } = request.into_inner();
        let id = chain_id(&id)?.to_string();
        self.engine
            .change_chain(ChainChange::Retry {
                namespace: namespace.clone(),
                id: id.clone(),
            })
            .await?;
        Ok(Response::new(self.read(&namespace, &id).await?))
    }
}
