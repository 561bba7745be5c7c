//! `jobqueue.v1.ScheduleService`, with the conversions of its messages.

use tonic::{Request, Response, Status};

use super::convert::{self, Limits};
use super::schedule_chains::{self, ScheduledChain};
use super::{Violations, invalid};
use crate::auth::Caller;
use crate::engine::scheduler::{self, CRON, INTERVAL, ONCE};
use crate::engine::{Engine, ScheduleChange, ScheduleChanged, ScheduleFields};
use crate::job::schedule::{self, Timetable, Timing};
use crate::namespace::{local, qualify};
use crate::now_ms;
use crate::proto::{self, schedule_service_server::ScheduleService};
use crate::store::{ScheduleRun, chains, jobs, schedules};
use crate::telemetry::{self, TraceContext};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;
const DEFAULT_RUNS_PAGE: i32 = 50;
const PAGE_TOKEN_PREFIX: &str = "schedules-after:";
const RUNS_TOKEN_PREFIX: &str = "runs-before:";
/// Next run times and latest runs a schedule shows.
const SHOWN: usize = 5;
const MIN_INTERVAL_MS: i64 = 1000;
const MAX_INTERVAL_MS: i64 = 366 * 24 * 3600 * 1000;
const DEFAULT_CATCHUP_MS: i64 = 60_000;
const MAX_CATCHUP_MS: i64 = 7 * 24 * 3600 * 1000;
const MAX_DESCRIPTION: usize = 4096;

pub struct ScheduleApi {
    engine: Engine,
    limits: Limits,
}

/// A schedule as written, made ready: see [`ScheduleApi::prepared`].
#[derive(Default)]
struct Prepared {
    schedule: Option<proto::Schedule>,
    chain: Option<ScheduledChain>,
    /// The contract a template's job keeps, `name/version`.
    contract: Option<String>,
}

impl ScheduleApi {
    pub fn new(engine: Engine, limits: Limits) -> Self {
        ScheduleApi { engine, limits }
    }

    /// A schedule as written, with what needs the registries done: a job that
    /// names a template made from it (each run makes the call the template made
    /// when the schedule was written, and keeps the contract it promises), and a
    /// chain checked and pinned (taken out of the schedule).
    async fn prepared(
        &self,
        namespace: &str,
        schedule: Option<proto::Schedule>,
    ) -> Result<Prepared, Status> {
        let Some(mut schedule) = schedule else {
            return Ok(Prepared::default());
        };
        let chain = match schedule.chain.take() {
            Some(spec) => Some(
                schedule_chains::checked(
                    namespace,
                    spec,
                    &self.limits,
                    self.engine.store(),
                    self.engine.library(),
                )
                .await?,
            ),
            None => None,
        };
        let mut contract = None;
        if let Some(job) = schedule.job.take() {
            let (job, kept) = super::templates::expand(
                namespace,
                job,
                "schedule.job",
                self.engine.store(),
                self.engine.library(),
                &mut Default::default(),
            )
            .await?;
            schedule.job = Some(job);
            contract = kept;
        }
        Ok(Prepared {
            schedule: Some(schedule),
            chain,
            contract,
        })
    }

    async fn change(&self, change: ScheduleChange) -> Result<schedules::Model, Status> {
        match self.engine.change_schedule(change).await? {
            ScheduleChanged::Schedule(s) => Ok(*s),
            _ => Err(Status::internal(
                "a schedule change answered something else",
            )),
        }
    }

    /// Pauses or resumes the schedule `id` of `namespace`.
    async fn switch(
        &self,
        namespace: &str,
        id: String,
        change: fn(String) -> ScheduleChange,
    ) -> Result<Response<proto::Schedule>, Status> {
        let id = qualify(namespace, &schedule_id(id, "id")?);
        let changed = self.change(change(id)).await?;
        Ok(Response::new(self.shown(changed, true).await?))
    }

    /// A schedule as clients see it; `with_runs` adds its latest runs.
    async fn shown(&self, s: schedules::Model, with_runs: bool) -> Result<proto::Schedule, Status> {
        let recent = if with_runs {
            self.engine
                .store()
                .schedule_runs(&s.namespace, Some(local(&s.id)), None, SHOWN as u64)
                .await?
        } else {
            Vec::new()
        };
        Ok(schedule_proto(s, recent))
    }
}

/// Checks a schedule id given in `field`.
fn schedule_id(id: String, field: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(invalid(field, "required: a schedule id"));
    }
    if !convert::valid_name(&id) {
        return Err(invalid(field, convert::NAME_RULE));
    }
    Ok(id)
}

/// Checks the parts of a schedule that `fields` names and builds its row, `id`
/// as stored (which says whose it is); the other parts keep neutral values (an
/// update takes only what it names).
fn schedule_row(
    id: String,
    schedule: Option<proto::Schedule>,
    chain: Option<ScheduledChain>,
    fields: ScheduleFields,
    limits: &Limits,
    now: i64,
    v: &mut Violations,
) -> Option<schedules::Model> {
    let Some(proto::Schedule {
        id: _,
        description,
        timetable,
        time_zone,
        start_time,
        end_time,
        catchup_window,
        job,
        state: _,
        next_run_times: _,
        run_count: _,
        last_run_time: _,
        recent_runs: _,
        create_time: _,
        update_time: _,
        overlap_policy,
        skipped_run_count: _,
        // Taken out, checked and pinned, as `chain`.
        chain: _,
    }) = schedule
    else {
        v.add(
            "schedule",
            "required: the timetable and the job or chain to run",
        );
        return None;
    };
    let before = v.len();
    if fields.description && description.len() > MAX_DESCRIPTION {
        v.add(
            "schedule.description",
            format!("at most {MAX_DESCRIPTION} bytes"),
        );
    }
    let zone = if fields.time_zone || fields.timing {
        match schedule::parse_zone(&time_zone) {
            Ok(zone) => Some(zone),
            Err(error) => {
                v.add("schedule.time_zone", error);
                None
            }
        }
    } else {
        None
    };
    let mut timing = (String::new(), None, None, None);
    if fields.timing {
        use proto::schedule::Timetable as T;
        match timetable {
            None => v.add(
                "schedule.timetable",
                "required: one of cron, interval or once_time",
            ),
            Some(T::Cron(expression)) => match schedule::parse_cron(&expression) {
                Err(error) => v.add("schedule.cron", error),
                Ok(cron) => {
                    if let Some(zone) = zone {
                        let unbounded = Timetable {
                            timing: Timing::Cron {
                                cron: Box::new(cron),
                                zone,
                            },
                            start: None,
                            end: None,
                        };
                        if unbounded.at_or_after(now).is_none() {
                            v.add("schedule.cron", "never matches a date to come");
                        }
                    }
                    timing = (CRON.to_string(), Some(expression), None, None);
                }
            },
            Some(T::Interval(d)) => match convert::duration_ms(&d) {
                Some(ms) if (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) => {
                    timing = (INTERVAL.to_string(), None, Some(ms), None);
                }
                _ => v.add("schedule.interval", "must be from 1s to 366 days"),
            },
            Some(T::OnceTime(t)) => match convert::timestamp_ms(&t) {
                Some(at) => timing = (ONCE.to_string(), None, None, Some(at)),
                None => v.add("schedule.once_time", "must be a valid timestamp"),
            },
        }
        if zone.is_some() && !timing.0.is_empty() && timing.0 != CRON && !time_zone.is_empty() {
            v.add(
                "schedule.time_zone",
                "applies to cron only: leave it empty for an interval or a date",
            );
        }
    }
    let mut instant = |field: &str, named: bool, t: Option<prost_types::Timestamp>| {
        if !named {
            return None;
        }
        t.and_then(|t| {
            let ms = convert::timestamp_ms(&t);
            if ms.is_none() {
                v.add(format!("schedule.{field}"), "must be a valid timestamp");
            }
            ms
        })
    };
    let start_at = instant("start_time", fields.start, start_time);
    let end_at = instant("end_time", fields.end, end_time);
    if let (Some(start), Some(end)) = (start_at, end_at)
        && end < start
    {
        v.add("schedule.end_time", "must not be before start_time");
    }
    let catchup_window_ms = match catchup_window {
        None => DEFAULT_CATCHUP_MS,
        Some(_) if !fields.catchup_window => DEFAULT_CATCHUP_MS,
        Some(d) => match convert::duration_ms(&d) {
            Some(ms) if (0..=MAX_CATCHUP_MS).contains(&ms) => ms,
            _ => {
                v.add(
                    "schedule.catchup_window",
                    "must be from 0 to 7 days, or unset for 1m",
                );
                0
            }
        },
    };
    let overlap = match proto::OverlapPolicy::try_from(overlap_policy) {
        _ if !fields.overlap => scheduler::ALLOW,
        Ok(proto::OverlapPolicy::Unspecified | proto::OverlapPolicy::Allow) => scheduler::ALLOW,
        Ok(proto::OverlapPolicy::Skip) => scheduler::SKIP,
        Err(_) => {
            v.add(
                "schedule.overlap_policy",
                "must be OVERLAP_POLICY_ALLOW or OVERLAP_POLICY_SKIP",
            );
            scheduler::ALLOW
        }
    };
    let namespace = crate::namespace::of(&id).to_string();
    let runs = if fields.job {
        runs_of(&id, job, chain, limits, now, v)
    } else {
        None
    };
    if v.len() > before {
        return None;
    }
    let (kind, cron, interval_ms, once_at) = timing;
    let (job, unset, chain) = match runs {
        Some(Runs::Job(new)) => {
            let crate::engine::NewJob { job, unset } = *new;
            (job, unset, None)
        }
        Some(Runs::Chain(chain)) => {
            let job = jobs::Model {
                queue: chain.queue.clone(),
                tags: chain.tags.clone(),
                ttl_ms: chain.ttl_ms,
                ..Default::default()
            };
            (job, crate::engine::Unset::default(), Some(chain))
        }
        // An update that leaves the job alone: nothing of it is taken.
        None => (
            jobs::Model::default(),
            crate::engine::Unset::default(),
            None,
        ),
    };
    Some(schedules::Model {
        id,
        namespace,
        description,
        kind,
        cron,
        interval_ms,
        once_at,
        time_zone: if time_zone.is_empty() {
            "UTC".into()
        } else {
            time_zone
        },
        start_at,
        end_at,
        catchup_window_ms,
        overlap: overlap.to_string(),
        skipped_count: 0,
        paused: false,
        next_fire_at: None,
        run_count: 0,
        last_fire_at: None,
        queue: job.queue,
        priority: job.priority,
        method: job.method,
        url: job.url,
        headers: job.headers,
        params: job.params,
        body_kind: job.body_kind,
        body: job.body,
        timeout_ms: job.timeout_ms,
        max_attempts: job.max_attempts,
        backoff_strategy: job.backoff_strategy,
        backoff_base_ms: job.backoff_base_ms,
        backoff_max_ms: job.backoff_max_ms,
        ttl_ms: job.ttl_ms,
        tags: job.tags,
        inherit: unset.bits(),
        created_at: now,
        updated_at: now,
        // Set by the service from the call's trace.
        trace_context: None,
        chain_spec: chain.as_ref().map(|c| c.spec.clone()),
        chain: chain.map(|c| c.start),
        // Set by the service from the template the job names, if any.
        contract: None,
    })
}

/// What each run of a schedule submits.
enum Runs {
    Job(Box<crate::engine::NewJob>),
    Chain(ScheduledChain),
}

/// Checks that a schedule (`id` as stored) names exactly one of a job and a chain.
fn runs_of(
    id: &str,
    job: Option<proto::JobSpec>,
    chain: Option<ScheduledChain>,
    limits: &Limits,
    now: i64,
    v: &mut Violations,
) -> Option<Runs> {
    match (job, chain) {
        (Some(_), Some(_)) => {
            v.add(
                "schedule.chain",
                "must be unset when schedule.job is set: a schedule fires a job or a chain",
            );
            None
        }
        (None, Some(chain)) => Some(Runs::Chain(chain)),
        (None, None) => {
            v.add(
                "schedule.job",
                "required: the job each run submits (or schedule.chain, a chain)",
            );
            None
        }
        (job, None) => template_of(id, job, limits, now, v).map(|job| Runs::Job(Box::new(job))),
    }
}

/// Checks a schedule's job: a job spec, without the two fields a run sets itself;
/// its secret headers sealed for the schedule `id` (as stored).
fn template_of(
    id: &str,
    job: Option<proto::JobSpec>,
    limits: &Limits,
    now: i64,
    v: &mut Violations,
) -> Option<crate::engine::NewJob> {
    if let Some(spec) = &job {
        if spec.schedule_time.is_some() {
            v.add(
                "schedule.job.schedule_time",
                "must be unset: each run is due at its fire time",
            );
        }
        if spec.follow_redirects.is_some() {
            v.add(
                "schedule.job.follow_redirects",
                "must be unset: a schedule's runs follow their queue's follow_redirects",
            );
        }
        if spec.signing.is_some() {
            v.add(
                "schedule.job.signing",
                "must be unset: a schedule's runs are signed by their queue's signing",
            );
        }
        if !spec.idempotency_key.is_empty() {
            v.add(
                "schedule.job.idempotency_key",
                "must be unset: each run gets the key <schedule id>/<fire time>",
            );
        }
    }
    convert::new_job(
        crate::namespace::of(id),
        job,
        "schedule.job",
        limits,
        String::new(),
        Some(crate::secret::Row::schedule(id)),
        now,
        v,
    )
}

/// What an update mask names: no mask names what the request sets (AIP-134),
/// `*` alone everything settable.
fn fields_of(
    mask: Option<prost_types::FieldMask>,
    set: ScheduleFields,
    v: &mut Violations,
) -> ScheduleFields {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return set;
    }
    if paths.len() == 1 && paths[0] == "*" {
        return ScheduleFields::ALL;
    }
    let mut fields = ScheduleFields::default();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "description" => fields.description = true,
            "cron" | "interval" | "once_time" | "timetable" => fields.timing = true,
            "time_zone" => fields.time_zone = true,
            "start_time" => fields.start = true,
            "end_time" => fields.end = true,
            "catchup_window" => fields.catchup_window = true,
            "overlap_policy" => fields.overlap = true,
            "job" | "chain" => fields.job = true,
            _ => v.add(
                format!("update_mask.paths[{i}]"),
                "must be description, cron, interval, once_time, time_zone, start_time, end_time, \
                 catchup_window, overlap_policy, job or chain (either of which replaces what \
                 each run submits), or * alone for all",
            ),
        }
    }
    fields
}

/// The parts of a schedule a request sets: those not at their default.
fn set_in(s: &proto::Schedule) -> ScheduleFields {
    ScheduleFields {
        description: !s.description.is_empty(),
        timing: s.timetable.is_some(),
        time_zone: !s.time_zone.is_empty(),
        start: s.start_time.is_some(),
        end: s.end_time.is_some(),
        catchup_window: s.catchup_window.is_some(),
        overlap: s.overlap_policy != 0,
        job: s.job.is_some() || s.chain.is_some(),
    }
}

fn state_of(s: &schedules::Model) -> proto::ScheduleState {
    match scheduler::State::of(s) {
        scheduler::State::Active => proto::ScheduleState::Active,
        scheduler::State::Paused => proto::ScheduleState::Paused,
        scheduler::State::Completed => proto::ScheduleState::Completed,
    }
}

fn schedule_proto(s: schedules::Model, recent: Vec<ScheduleRun>) -> proto::Schedule {
    let state = state_of(&s);
    let next_run_times = match (s.next_fire_at, scheduler::timetable(&s)) {
        (Some(next), Ok(timetable)) if !s.paused => timetable
            .upcoming(next, SHOWN)
            .into_iter()
            .map(convert::timestamp)
            .collect(),
        _ => Vec::new(),
    };
    let chain = s.chain_spec.as_deref().map(schedule_chains::shown);
    let job = chain.is_none().then(|| job_shown(&s));
    let schedules::Model {
        id,
        description,
        kind,
        cron,
        interval_ms,
        once_at,
        time_zone,
        start_at,
        end_at,
        catchup_window_ms,
        overlap,
        skipped_count,
        paused: _,
        next_fire_at: _,
        run_count,
        last_fire_at,
        created_at,
        updated_at,
        ..
    } = s;
    use proto::schedule::Timetable as T;
    let timetable = match kind.as_str() {
        CRON => cron.map(T::Cron),
        INTERVAL => interval_ms.map(|ms| T::Interval(convert::duration(ms))),
        ONCE => once_at.map(|at| T::OnceTime(convert::timestamp(at))),
        _ => None,
    };
    proto::Schedule {
        id: local(&id).to_string(),
        description,
        time_zone: if kind == CRON {
            time_zone
        } else {
            String::new()
        },
        timetable,
        start_time: start_at.map(convert::timestamp),
        end_time: end_at.map(convert::timestamp),
        catchup_window: Some(convert::duration(catchup_window_ms)),
        job,
        chain: chain.flatten(),
        state: state as i32,
        next_run_times,
        run_count,
        last_run_time: last_fire_at.map(convert::timestamp),
        recent_runs: recent.into_iter().map(run_proto).collect(),
        create_time: Some(convert::timestamp(created_at)),
        update_time: Some(convert::timestamp(updated_at)),
        overlap_policy: if overlap == scheduler::SKIP {
            proto::OverlapPolicy::Skip
        } else {
            proto::OverlapPolicy::Allow
        } as i32,
        skipped_run_count: skipped_count,
    }
}

/// The job each run of a schedule submits, as clients wrote it.
fn job_shown(s: &schedules::Model) -> proto::JobSpec {
    let unset = crate::engine::Unset::from_bits(s.inherit);
    let (template, _) = scheduler::run(s, String::new(), None, 0);
    let shown = convert::job(template);
    proto::JobSpec {
        request: shown.request,
        timeout: shown.timeout.filter(|_| !unset.timeout),
        priority: shown.priority,
        max_attempts: (!unset.max_attempts).then_some(s.max_attempts),
        backoff: shown.backoff.filter(|_| !unset.backoff),
        schedule_time: None,
        ttl: shown.ttl.filter(|_| !unset.ttl),
        tags: shown.tags,
        idempotency_key: String::new(),
        queue: shown.queue,
        template: None,
        signing: None,
        follow_redirects: None,
    }
}

fn run_proto(run: ScheduleRun) -> proto::ScheduleRun {
    match run {
        ScheduleRun::Job(job) => job_run(*job),
        ScheduleRun::Chain(chain) => chain_run(*chain),
    }
}

fn trigger_of(fire_at: Option<i64>) -> proto::RunTrigger {
    if fire_at.is_some() {
        proto::RunTrigger::Timetable
    } else {
        proto::RunTrigger::Manual
    }
}

fn chain_run(chain: chains::Model) -> proto::ScheduleRun {
    proto::ScheduleRun {
        schedule_id: chain
            .schedule_id
            .as_deref()
            .map(local)
            .unwrap_or_default()
            .into(),
        fire_time: Some(convert::timestamp(
            chain.fire_at.unwrap_or(chain.created_at),
        )),
        trigger: trigger_of(chain.fire_at) as i32,
        start_time: Some(convert::timestamp(chain.created_at)),
        finish_time: chain.finished_at.map(convert::timestamp),
        chain_status: super::chains::chain_status(&chain.status) as i32,
        chain_id: chain.id,
        ..Default::default()
    }
}

fn job_run(job: jobs::Model) -> proto::ScheduleRun {
    let trigger = trigger_of(job.fire_at);
    proto::ScheduleRun {
        schedule_id: job
            .schedule_id
            .as_deref()
            .map(local)
            .unwrap_or_default()
            .into(),
        fire_time: Some(convert::timestamp(job.fire_at.unwrap_or(job.created_at))),
        trigger: trigger as i32,
        job_id: job.id,
        status: convert::status(&job.status) as i32,
        attempt: job.attempt,
        start_time: job.started_at.map(convert::timestamp),
        finish_time: job.finished_at.map(convert::timestamp),
        status_code: job.last_status_code.unwrap_or(0),
        error_class: convert::error_class(job.last_error_class.as_deref()) as i32,
        chain_id: String::new(),
        chain_status: proto::ChainStatus::Unspecified as i32,
    }
}

#[tonic::async_trait]
impl ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        request: Request<proto::CreateScheduleRequest>,
    ) -> Result<Response<proto::Schedule>, Status> {
        // The schedule's runs start traces of their own, linked to this call's.
        let trace_context = telemetry::rpc::rpc_context(&request)
            .filter(|rpc| rpc.carried())
            .and_then(|rpc| TraceContext::store(&rpc.cx));
        let namespace = Caller::namespace_of(&request);
        let proto::CreateScheduleRequest {
            schedule_id,
            schedule,
        } = request.into_inner();
        let Prepared {
            schedule,
            chain,
            contract,
        } = self.prepared(&namespace, schedule).await?;
        let mut v = Violations::default();
        let id = if schedule_id.is_empty() {
            format!("s_{}", ulid::Ulid::new().to_string().to_lowercase())
        } else {
            if !convert::valid_name(&schedule_id) {
                v.add("schedule_id", convert::NAME_RULE);
            }
            schedule_id
        };
        let row = schedule_row(
            qualify(&namespace, &id),
            schedule,
            chain,
            ScheduleFields::ALL,
            &self.limits,
            now_ms(),
            &mut v,
        );
        let mut row = v
            .into_result(row)?
            .ok_or_else(|| Status::internal("schedule not built"))?;
        row.trace_context = trace_context;
        row.contract = contract;
        let created = self.change(ScheduleChange::Create(Box::new(row))).await?;
        // Due at once (by the writer's clock, which stamped it), it fired in the same
        // commit: show it as it stands, with its run. Otherwise it has no runs yet.
        if created
            .next_fire_at
            .is_none_or(|at| at > created.updated_at)
        {
            return Ok(Response::new(self.shown(created, false).await?));
        }
        let current = self
            .engine
            .store()
            .schedule(&namespace, local(&created.id))
            .await?;
        Ok(Response::new(
            self.shown(current.unwrap_or(created), true).await?,
        ))
    }

    async fn get_schedule(
        &self,
        request: Request<proto::GetScheduleRequest>,
    ) -> Result<Response<proto::Schedule>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetScheduleRequest { id } = request.into_inner();
        let id = schedule_id(id, "id")?;
        let s = self
            .engine
            .store()
            .schedule(&namespace, &id)
            .await?
            .ok_or_else(|| Status::not_found(format!("schedule {id} not found")))?;
        Ok(Response::new(self.shown(s, true).await?))
    }

    async fn list_schedules(
        &self,
        request: Request<proto::ListSchedulesRequest>,
    ) -> Result<Response<proto::ListSchedulesResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListSchedulesRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let page_size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let after = convert::page_start(PAGE_TOKEN_PREFIX, &page_token, "ListSchedules", &mut v);
        v.into_result(())?;
        let mut rows = self
            .engine
            .store()
            .list_schedules(&namespace, after.as_deref(), page_size as u64 + 1)
            .await?;
        let next_page_token =
            convert::page_end(&mut rows, page_size, PAGE_TOKEN_PREFIX, |s| local(&s.id));
        Ok(Response::new(proto::ListSchedulesResponse {
            schedules: rows
                .into_iter()
                .map(|s| schedule_proto(s, Vec::new()))
                .collect(),
            next_page_token,
        }))
    }

    async fn update_schedule(
        &self,
        request: Request<proto::UpdateScheduleRequest>,
    ) -> Result<Response<proto::Schedule>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::UpdateScheduleRequest {
            schedule,
            update_mask,
        } = request.into_inner();
        // Read before the chain is taken out of it.
        let set = schedule.as_ref().map(set_in).unwrap_or_default();
        let Prepared {
            schedule,
            chain,
            contract,
        } = self.prepared(&namespace, schedule).await?;
        let mut v = Violations::default();
        let fields = fields_of(update_mask, set, &mut v);
        let id = schedule.as_ref().map(|s| s.id.clone()).unwrap_or_default();
        if schedule.is_some()
            && let Err(status) = schedule_id(id.clone(), "schedule.id")
        {
            v.add("schedule.id", status.message());
        }
        let id = qualify(&namespace, &id);
        let row = schedule_row(id, schedule, chain, fields, &self.limits, now_ms(), &mut v);
        let mut row = v
            .into_result(row)?
            .ok_or_else(|| Status::internal("schedule not built"))?;
        row.contract = contract;
        let updated = self
            .change(ScheduleChange::Update(Box::new(row), fields))
            .await?;
        Ok(Response::new(self.shown(updated, true).await?))
    }

    async fn pause_schedule(
        &self,
        request: Request<proto::PauseScheduleRequest>,
    ) -> Result<Response<proto::Schedule>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::PauseScheduleRequest { id } = request.into_inner();
        self.switch(&namespace, id, ScheduleChange::Pause).await
    }

    async fn resume_schedule(
        &self,
        request: Request<proto::ResumeScheduleRequest>,
    ) -> Result<Response<proto::Schedule>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ResumeScheduleRequest { id } = request.into_inner();
        self.switch(&namespace, id, ScheduleChange::Resume).await
    }

    async fn trigger_schedule(
        &self,
        request: Request<proto::TriggerScheduleRequest>,
    ) -> Result<Response<proto::ScheduleRun>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::TriggerScheduleRequest { id } = request.into_inner();
        let id = qualify(&namespace, &schedule_id(id, "id")?);
        match self
            .engine
            .change_schedule(ScheduleChange::Trigger(id))
            .await?
        {
            ScheduleChanged::Run(run) => Ok(Response::new(run_proto(*run))),
            _ => Err(Status::internal("a trigger answered something else")),
        }
    }

    async fn delete_schedule(
        &self,
        request: Request<proto::DeleteScheduleRequest>,
    ) -> Result<Response<()>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::DeleteScheduleRequest { id } = request.into_inner();
        let id = qualify(&namespace, &schedule_id(id, "id")?);
        self.engine
            .change_schedule(ScheduleChange::Delete(id))
            .await?;
        Ok(Response::new(()))
    }

    async fn list_schedule_runs(
        &self,
        request: Request<proto::ListScheduleRunsRequest>,
    ) -> Result<Response<proto::ListScheduleRunsResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListScheduleRunsRequest {
            schedule_id,
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let schedule = convert::schedule_filter(schedule_id, &mut v);
        let page_size = convert::page_size(page_size, DEFAULT_RUNS_PAGE, MAX_PAGE, &mut v);
        let before =
            convert::page_start(RUNS_TOKEN_PREFIX, &page_token, "ListScheduleRuns", &mut v);
        v.into_result(())?;
        let mut runs = self
            .engine
            .store()
            .schedule_runs(
                &namespace,
                schedule.as_deref(),
                before.as_deref(),
                page_size as u64 + 1,
            )
            .await?;
        let next_page_token =
            convert::page_end(&mut runs, page_size, RUNS_TOKEN_PREFIX, |r| r.id());
        Ok(Response::new(proto::ListScheduleRunsResponse {
            runs: runs.into_iter().map(run_proto).collect(),
            next_page_token,
        }))
    }
}
