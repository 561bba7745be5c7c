//! `jobqueue.v1.JobService`.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, Limits};
use super::{Violations, invalid};
use crate::auth::Caller;
use crate::engine::events::{Start, WatchFilter};
use crate::engine::{Engine, Submitted};
use crate::namespace::qualify;
use crate::now_ms;
use crate::proto::{self, job_service_server::JobService};
use crate::store::JobFilter;
use crate::telemetry;

/// Most jobs in one `SubmitJobs`.
pub const MAX_BATCH: usize = 1000;
const DEFAULT_PAGE: i32 = 50;
const MAX_PAGE: i32 = 1000;

pub struct JobApi {
    engine: Engine,
    limits: Limits,
    ids: std::sync::Mutex<ulid::Generator>,
}

impl JobApi {
    pub fn new(engine: Engine, limits: Limits) -> Self {
        JobApi {
            engine,
            limits,
            ids: std::sync::Mutex::new(ulid::Generator::new()),
        }
    }

    /// A job's spec made from the template it names, if any; see
    /// [`super::templates::expand`].
    async fn expanded(
        &self,
        namespace: &str,
        job: proto::JobSpec,
        path: &str,
        templates: &mut std::collections::HashMap<(String, u32), super::templates::UsedTemplate>,
    ) -> Result<(proto::JobSpec, Option<String>), Status> {
        if job.template.is_none() {
            return Ok((job, None));
        }
        super::templates::expand(
            namespace,
            job,
            path,
            self.engine.store(),
            self.engine.library(),
            templates,
        )
        .await
    }

    /// A new job id. Ids increase within this process, so listing by id is listing
    /// by creation.
    fn new_id(&self) -> String {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ulid = ids.generate().unwrap_or_else(|_| ulid::Ulid::new());
        format!("j_{ulid}")
    }
}

fn submitted(s: Submitted) -> proto::SubmitJobResponse {
    let Submitted {
        id,
        status,
        existing,
    } = s;
    proto::SubmitJobResponse {
        id,
        status: convert::status(status.as_str()) as i32,
        existing,
    }
}

/// Checks an id's shape: `j_` and a ULID.
fn job_id(id: String, field: &str) -> Result<String, Status> {
    match id.strip_prefix("j_") {
        Some(ulid) if ulid::Ulid::from_string(ulid).is_ok() => Ok(id),
        _ => Err(invalid(
            field,
            "must be a job id: j_ followed by a 26-character ULID",
        )),
    }
}

const PAGE_TOKEN_PREFIX: &str = "jobs-after:";

fn encode_page_token(last_id: &str) -> String {
    convert::page_token(PAGE_TOKEN_PREFIX, last_id)
}

fn page_after(token: &str) -> Result<Option<String>, Status> {
    let malformed = || {
        invalid(
            "page_token",
            "must be a next_page_token returned by ListJobs",
        )
    };
    match convert::page_token_after(PAGE_TOKEN_PREFIX, token) {
        Err(convert::MalformedToken) => Err(malformed()),
        Ok(None) => Ok(None),
        Ok(Some(id)) => job_id(id, "page_token").map(Some).map_err(|_| malformed()),
    }
}

/// Most ids one watch may name.
const MAX_WATCH_IDS: usize = 1000;
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const HEARTBEAT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

type JobEventStream = Pin<Box<dyn Stream<Item = Result<proto::JobEvent, Status>> + Send>>;

/// FAILED_PRECONDITION for a job a chain made: where its chain stands rests on
/// it, so it is the chain that runs again, and the chain it goes with.
async fn refuse_chain_job(
    engine: &Engine,
    namespace: &str,
    id: &str,
    instead: &str,
) -> Result<(), Status> {
    if let Some(job) = engine.store().job(namespace, id).await?
        && let Some(chain) = job.chain_id
    {
        let what = match job.step_id {
            Some(step) => format!("step {step} of chain {chain}"),
            None => format!("an earlier run of a step of chain {chain}"),
        };
        return Err(Status::failed_precondition(format!(
            "job {id} is {what}; {instead}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl JobService for JobApi {
    type WatchJobsStream = JobEventStream;

    async fn watch_jobs(
        &self,
        request: Request<proto::WatchJobsRequest>,
    ) -> Result<Response<Self::WatchJobsStream>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::WatchJobsRequest {
            ids,
            tags,
            statuses,
            queue,
            all,
            snapshot,
            cursor,
            heartbeat_interval,
            schedule_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let mut filter = WatchFilter::default();
        let qualified = |name: String| qualify(&namespace, &name);
        if ids.len() > MAX_WATCH_IDS {
            v.add("ids", format!("at most {MAX_WATCH_IDS} ids per watch"));
        }
        for (i, id) in ids.into_iter().enumerate() {
            match job_id(id, "") {
                Ok(id) => filter.ids.push(id),
                Err(_) => v.add(
                    format!("ids[{i}]"),
                    "must be a job id: j_ followed by a 26-character ULID",
                ),
            }
        }
        filter.ids.sort();
        filter.ids.dedup();
        filter.tags = tags;
        filter.statuses = convert::statuses(statuses, &mut v);
        filter.queue = convert::queue_filter(queue, &mut v).map(qualified);
        filter.schedule = convert::schedule_filter(schedule_id, &mut v).map(qualified);
        let narrowed = !filter.ids.is_empty()
            || !filter.tags.is_empty()
            || !filter.statuses.is_empty()
            || filter.queue.is_some()
            || filter.schedule.is_some();
        if all && narrowed {
            v.add(
                "all",
                "must be alone: it means every job, which other filters contradict",
            );
        } else if !all && !narrowed && v.is_empty() {
            v.add(
                "all",
                "set ids, tags, statuses, queue or schedule_id, or all: true to watch every job",
            );
        }
        let start = match (snapshot, cursor.is_empty()) {
            (true, false) => {
                v.add(
                    "cursor",
                    "a cursor resumes a watch; it cannot be combined with snapshot",
                );
                Start::Snapshot
            }
            (true, true) => Start::Snapshot,
            (false, true) => Start::Now,
            (false, false) => match cursor.parse::<i64>() {
                Ok(seq) if seq >= 0 => Start::After(seq),
                _ => {
                    v.add("cursor", "must be a cursor from an earlier JobEvent");
                    Start::Now
                }
            },
        };
        let heartbeat = match heartbeat_interval {
            None => DEFAULT_HEARTBEAT,
            Some(d) => match convert::duration_ms(&d) {
                Some(ms)
                    if ms > 0 && HEARTBEAT_RANGE.contains(&Duration::from_millis(ms as u64)) =>
                {
                    Duration::from_millis(ms as u64)
                }
                _ => {
                    v.add("heartbeat_interval", "must be from 1s to 5m");
                    DEFAULT_HEARTBEAT
                }
            },
        };
        v.into_result(())?;
        filter.namespace = namespace;
        let items = self.engine.watch(filter, start, heartbeat).await?;
        let stream =
            ReceiverStream::new(items).map(|item| item.map(convert::watched).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn submit_job(
        &self,
        request: Request<proto::SubmitJobRequest>,
    ) -> Result<Response<proto::SubmitJobResponse>, Status> {
        let rpc = telemetry::rpc::rpc_context(&request).cloned();
        let namespace = Caller::namespace_of(&request);
        let proto::SubmitJobRequest { job } = request.into_inner();
        let (job, contract) = match job {
            Some(job) => {
                let (job, contract) = self
                    .expanded(&namespace, job, "job", &mut Default::default())
                    .await?;
                (Some(job), contract)
            }
            None => (None, None),
        };
        let mut v = Violations::default();
        let (id, now) = (self.new_id(), now_ms());
        let row = convert::new_job(&namespace, job, "job", &self.limits, id, None, now, &mut v);
        if let Some(row) = &row {
            self.check_destination(&row.job, "job", &mut v);
        }
        let mut row = v
            .into_result(row)?
            .ok_or_else(|| Status::internal("job not built"))?;
        row.job.contract = contract;
        let spans = telemetry::produce(rpc.as_ref(), std::iter::once(&mut row.job));
        let accepted = self.engine.submit(vec![row]).await;
        telemetry::produced(spans, &accepted);
        let mut answers = accepted?;
        let answer = answers
            .pop()
            .ok_or_else(|| Status::internal("no answer for the job"))?;
        Ok(Response::new(submitted(answer)))
    }

    async fn submit_jobs(
        &self,
        request: Request<proto::SubmitJobsRequest>,
    ) -> Result<Response<proto::SubmitJobsResponse>, Status> {
        let rpc = telemetry::rpc::rpc_context(&request).cloned();
        let namespace = Caller::namespace_of(&request);
        let proto::SubmitJobsRequest { jobs } = request.into_inner();
        if jobs.is_empty() {
            return Err(invalid("jobs", "at least one job"));
        }
        if jobs.len() > MAX_BATCH {
            return Err(invalid(
                "jobs",
                format!("at most {MAX_BATCH} jobs per call, got {}", jobs.len()),
            ));
        }
        let now = now_ms();
        let mut templates = Default::default();
        let mut expanded = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.into_iter().enumerate() {
            expanded.push(
                self.expanded(&namespace, job, &format!("jobs[{i}]"), &mut templates)
                    .await?,
            );
        }
        let mut v = Violations::default();
        let rows: Vec<_> = expanded
            .into_iter()
            .enumerate()
            .filter_map(|(i, (job, contract))| {
                let mut row = convert::new_job(
                    &namespace,
                    Some(job),
                    &format!("jobs[{i}]"),
                    &self.limits,
                    self.new_id(),
                    None,
                    now,
                    &mut v,
                )?;
                self.check_destination(&row.job, &format!("jobs[{i}]"), &mut v);
                row.job.contract = contract;
                Some(row)
            })
            .collect();
        let mut rows = v.into_result(rows)?;
        let spans = telemetry::produce(rpc.as_ref(), rows.iter_mut().map(|row| &mut row.job));
        let accepted = self.engine.submit(rows).await;
        telemetry::produced(spans, &accepted);
        let answers = accepted?;
        Ok(Response::new(proto::SubmitJobsResponse {
            results: answers.into_iter().map(submitted).collect(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetJobRequest { id } = request.into_inner();
        let id = job_id(id, "id")?;
        let job = self
            .engine
            .store()
            .job(&namespace, &id)
            .await?
            .ok_or_else(|| Status::not_found(format!("job {id} not found")))?;
        Ok(Response::new(convert::job(job)))
    }

    async fn get_job_result(
        &self,
        request: Request<proto::GetJobResultRequest>,
    ) -> Result<Response<proto::JobResult>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetJobResultRequest { id } = request.into_inner();
        let id = job_id(id, "id")?;
        let store = self.engine.store();
        let job = store
            .job(&namespace, &id)
            .await?
            .ok_or_else(|| Status::not_found(format!("job {id} not found")))?;
        let attempts: Vec<proto::Attempt> = store
            .attempts(&id)
            .await?
            .into_iter()
            .map(super::response::attempt)
            .collect();
        Ok(Response::new(proto::JobResult {
            id,
            status: convert::status(&job.status) as i32,
            final_attempt: attempts.last().cloned(),
            attempts,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CancelJobRequest { id } = request.into_inner();
        let job = self.engine.cancel(namespace, job_id(id, "id")?).await?;
        Ok(Response::new(convert::job(job)))
    }

    async fn retry_job(
        &self,
        request: Request<proto::RetryJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::RetryJobRequest { id } = request.into_inner();
        let id = job_id(id, "id")?;
        // A step's job belongs to its chain, which has moved on from its failure:
        // the chain is what runs again.
        let instead = "run the chain again with RetryChain";
        refuse_chain_job(&self.engine, &namespace, &id, instead).await?;
        let job = self.engine.retry(namespace, id).await?;
        Ok(Response::new(convert::job(job)))
    }

    async fn delete_job(
        &self,
        request: Request<proto::DeleteJobRequest>,
    ) -> Result<Response<()>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::DeleteJobRequest { id } = request.into_inner();
        let id = job_id(id, "id")?;
        let instead = "it is kept as long as its chain and goes with it";
        refuse_chain_job(&self.engine, &namespace, &id, instead).await?;
        self.engine.delete(namespace, id).await?;
        Ok(Response::new(()))
    }

    async fn list_jobs(
        &self,
        request: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListJobsRequest {
            page_size,
            page_token,
            statuses,
            tags,
            create_start_time,
            create_end_time,
            queue,
            schedule_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let page_size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let mut filter = JobFilter {
            namespace,
            statuses: convert::statuses(statuses, &mut v),
            tags,
            queue: convert::queue_filter(queue, &mut v),
            schedule: convert::schedule_filter(schedule_id, &mut v),
            ..Default::default()
        };
        for (field, t, slot) in [
            (
                "create_start_time",
                create_start_time,
                &mut filter.created_after,
            ),
            (
                "create_end_time",
                create_end_time,
                &mut filter.created_before,
            ),
        ] {
            if let Some(t) = t {
                match convert::timestamp_ms(&t) {
                    Some(ms) => *slot = Some(ms),
                    None => v.add(field, "must be a valid timestamp"),
                }
            }
        }
        let after = match page_after(&page_token) {
            Ok(after) => after,
            Err(_) => {
                v.add(
                    "page_token",
                    "must be a next_page_token returned by ListJobs",
                );
                None
            }
        };
        v.into_result(())?;
        let (mut rows, total) = self
            .engine
            .store()
            .list_jobs(&filter, after.as_deref(), page_size as u64 + 1)
            .await?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last()
                .map(|j| encode_page_token(&j.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListJobsResponse {
            jobs: rows.into_iter().map(convert::job).collect(),
            next_page_token,
            total_size: total as i64,
        }))
    }
}

impl JobApi {
    /// A job whose queue holds its calls to some destinations, aimed elsewhere:
    /// refused on its url, naming the queue's setting.
    fn check_destination(&self, job: &crate::store::jobs::Model, path: &str, v: &mut Violations) {
        let Some(rules) = self.engine.queue_destinations().of(&job.queue) else {
            return;
        };
        if let Ok(url) = url::Url::parse(&job.url)
            && !rules.admits(&url)
        {
            v.add(
                format!("{path}.request.url"),
                format!(
                    "{} is not among the destinations of queue {} (its `destinations`)",
                    url.host_str().unwrap_or_default(),
                    crate::namespace::local(&job.queue)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_anything_else() {
        let id = format!("j_{}", ulid::Ulid::new());
        assert_eq!(page_after(&encode_page_token(&id)).unwrap(), Some(id));
        assert_eq!(page_after("").unwrap(), None);
        for bad in ["zz", "abc", "6a6f62732d61667465723a", "not a token"] {
            assert!(page_after(bad).is_err(), "{bad}");
        }
    }
}
