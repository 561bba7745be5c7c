//! Who calls: a `Caller` (a key, its namespace and a connection), `call!` to
//! make an RPC with its key, `all_pages!` to list page by page, and what a
//! caller reads of its own objects (`read_job`, `wait_job_of`, `jobs_listed`, ...).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jobqueue::proto::{
    self, ChainStatus, JobSpec, JobStatus, audit_service_client::AuditServiceClient,
    chain_service_client::ChainServiceClient, contract_service_client::ContractServiceClient,
    job_service_client::JobServiceClient, key_service_client::KeyServiceClient,
    queue_service_client::QueueServiceClient, schedule_service_client::ScheduleServiceClient,
    template_service_client::TemplateServiceClient,
};
use tonic::Status;
use tonic::transport::Channel;

pub const SOON: Duration = Duration::from_secs(10);

/// A key, the namespace it acts in, and a connection to present it on.
#[derive(Clone)]
pub struct Caller {
    pub ns: &'static str,
    /// Who it is, in failure messages.
    pub label: &'static str,
    pub key: String,
    pub id: String,
    pub channel: Channel,
}

impl Caller {
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.key).parse().unwrap(),
        );
        request
    }

    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    pub fn queues(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(self.channel.clone())
    }

    pub fn schedules(&self) -> ScheduleServiceClient<Channel> {
        ScheduleServiceClient::new(self.channel.clone())
    }

    pub fn chains(&self) -> ChainServiceClient<Channel> {
        ChainServiceClient::new(self.channel.clone())
    }

    pub fn contracts(&self) -> ContractServiceClient<Channel> {
        ContractServiceClient::new(self.channel.clone())
    }

    pub fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel.clone())
    }

    pub fn keys(&self) -> KeyServiceClient<Channel> {
        KeyServiceClient::new(self.channel.clone())
    }

    pub fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }
}

/// `call!(who, jobs.get_job(request))`: the RPC with `who`'s key, its answer's
/// message or status.
macro_rules! call {
    ($who:expr, $service:ident . $method:ident ( $message:expr )) => {{
        let who: &$crate::callers::Caller = &$who;
        who.$service()
            .$method(who.req($message))
            .await
            .map(tonic::Response::into_inner)
    }};
}

/// A list request, asked for one page.
pub trait Paged {
    fn page(self, page_size: i32, page_token: String) -> Self;
}

macro_rules! paged {
    ($($request:ident),+) => {$(
        impl Paged for proto::$request {
            fn page(self, page_size: i32, page_token: String) -> Self {
                let mut request = self;
                request.page_size = page_size;
                request.page_token = page_token;
                request
            }
        }
    )+};
}

paged!(
    ListQueuesRequest,
    ListSchedulesRequest,
    ListScheduleRunsRequest,
    ListChainsRequest,
    ListContractsRequest,
    ListTemplatesRequest,
    ListKeysRequest,
    ListAuditEntriesRequest
);

/// Every item of a list RPC, page by page (`$items` names the answer's list).
macro_rules! all_pages {
    ($who:expr, $service:ident . $method:ident ( $request:expr ), $items:ident) => {{
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            match call!(
                $who,
                $service.$method($crate::callers::Paged::page($request, 1000, page_token))
            ) {
                Err(status) => break Err(status),
                Ok(page) => {
                    all.extend(page.$items);
                    if page.next_page_token.is_empty() {
                        break Ok(all);
                    }
                    page_token = page.next_page_token;
                }
            }
        }
    }};
}

pub fn finished(status: i32) -> bool {
    [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Canceled]
        .iter()
        .any(|s| *s as i32 == status)
}

pub async fn read_job(who: &Caller, id: &str) -> proto::Job {
    call!(who, jobs.get_job(proto::GetJobRequest { id: id.into() }))
        .unwrap_or_else(|e| panic!("{} reads its job {id}: {e:?}", who.label))
}

pub async fn wait_job_of(who: &Caller, id: &str, status: JobStatus) -> proto::Job {
    let until = Instant::now() + SOON;
    loop {
        let job = read_job(who, id).await;
        if job.status == status as i32 {
            return job;
        }
        assert!(
            Instant::now() < until,
            "{}'s job {id} never became {status:?}: {job:#?}",
            who.label
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn read_chain(who: &Caller, id: &str) -> proto::Chain {
    call!(
        who,
        chains.get_chain(proto::GetChainRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its chain {id}: {e:?}", who.label))
}

pub async fn wait_chain_of(who: &Caller, id: &str) -> proto::Chain {
    let until = Instant::now() + SOON;
    loop {
        let chain = read_chain(who, id).await;
        if chain.status != ChainStatus::Running as i32 {
            return chain;
        }
        assert!(
            Instant::now() < until,
            "{}'s chain {id} never ended: {chain:#?}",
            who.label
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn read_queue(who: &Caller, name: &str) -> proto::Queue {
    call!(
        who,
        queues.get_queue(proto::GetQueueRequest { name: name.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its queue {name}: {e:?}", who.label))
}

pub async fn read_schedule(who: &Caller, id: &str) -> proto::Schedule {
    call!(
        who,
        schedules.get_schedule(proto::GetScheduleRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} reads its schedule {id}: {e:?}", who.label))
}

pub async fn read_contract(who: &Caller, name: &str, version: u32) -> proto::Contract {
    call!(
        who,
        contracts.get_contract(proto::GetContractRequest {
            name: name.into(),
            version
        })
    )
    .unwrap_or_else(|e| panic!("{} reads its contract {name}/{version}: {e:?}", who.label))
}

pub async fn read_template(who: &Caller, name: &str, version: u32) -> proto::Template {
    call!(
        who,
        templates.get_template(proto::GetTemplateRequest {
            name: name.into(),
            version
        })
    )
    .unwrap_or_else(|e| panic!("{} reads its template {name}/{version}: {e:?}", who.label))
}

pub async fn submit_as(who: &Caller, spec: JobSpec) -> proto::SubmitJobResponse {
    call!(
        who,
        jobs.submit_job(proto::SubmitJobRequest { job: Some(spec) })
    )
    .unwrap_or_else(|e| panic!("{} submits a job: {e:?}", who.label))
}

pub async fn trigger_as(who: &Caller, id: &str) -> proto::ScheduleRun {
    call!(
        who,
        schedules.trigger_schedule(proto::TriggerScheduleRequest { id: id.into() })
    )
    .unwrap_or_else(|e| panic!("{} triggers its schedule {id}: {e:?}", who.label))
}

/// Every job a caller lists with `filter`, and the total the first page counts.
pub async fn jobs_listed(
    who: &Caller,
    filter: proto::ListJobsRequest,
) -> Result<(Vec<proto::Job>, i64), Status> {
    let mut jobs = Vec::new();
    let mut total = None;
    let mut page_token = String::new();
    loop {
        let page = call!(
            who,
            jobs.list_jobs(proto::ListJobsRequest {
                page_size: 1000,
                page_token,
                ..filter.clone()
            })
        )?;
        total.get_or_insert(page.total_size);
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            return Ok((jobs, total.unwrap_or_default()));
        }
        page_token = page.next_page_token;
    }
}

pub async fn job_ids(who: &Caller, filter: proto::ListJobsRequest) -> BTreeSet<String> {
    jobs_listed(who, filter)
        .await
        .unwrap_or_else(|e| panic!("{} lists its jobs: {e:?}", who.label))
        .0
        .into_iter()
        .map(|j| j.id)
        .collect()
}
