//! `jobqueue.v1.QueueService`, with the conversions of its messages.

use tonic::{Request, Response, Status};

use super::convert::{self, Limits};
use super::{Violations, invalid};
use crate::auth::Caller;
use crate::engine::{Engine, QueueChange, QueueChanged, QueueFields};
use crate::namespace::{local, qualify};
use crate::now_ms;
use crate::proto::{self, queue_service_server::QueueService};
use crate::store::{QueueStats, queues};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;
const PAGE_TOKEN_PREFIX: &str = "queues-after:";
/// Highest concurrency limit a queue may set.
const MAX_CONCURRENCY: i32 = 100_000;
/// Highest rate and burst a queue may set.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_BURST: i32 = 1_000_000;
use super::convert::MAX_REDIRECTS;

/// What the dispatch rate is averaged over.
const RATE_WINDOW_SECONDS: f64 = 60.0;

pub struct QueueApi {
    engine: Engine,
    limits: Limits,
}

impl QueueApi {
    pub fn new(engine: Engine, limits: Limits) -> Self {
        QueueApi { engine, limits }
    }

    /// The queue as a read answers it: its settings, and its jobs now in `stats`.
    async fn read(&self, queue: queues::Model) -> Result<proto::Queue, Status> {
        let now = now_ms();
        let (namespace, name) = (&queue.namespace, local(&queue.name));
        let stats = self
            .engine
            .store()
            .queue_stats(namespace, name, now)
            .await?;
        Ok(proto::Queue {
            stats: Some(stats_proto(stats, now)),
            ..queue_proto(queue)
        })
    }

    /// Pauses or resumes the queue `name` of `namespace`.
    async fn switch(
        &self,
        namespace: &str,
        name: String,
        change: fn(String) -> QueueChange,
    ) -> Result<Response<proto::Queue>, Status> {
        let name = queue_name(name, "name")?;
        let queue = self.change(change(qualify(namespace, &name))).await?;
        Ok(Response::new(queue_proto(queue)))
    }

    async fn change(&self, change: QueueChange) -> Result<queues::Model, Status> {
        match self.engine.change_queue(change).await? {
            QueueChanged::Queue(queue) => {
                // This process's submits hold to them at once; others' at their
                // writer's next look at the queues.
                self.engine
                    .queue_destinations()
                    .set(&queue.name, queue.destinations.as_deref());
                Ok(*queue)
            }
            QueueChanged::Purged(_) => Err(Status::internal("a purge answered a queue change")),
        }
    }
}

/// Checks a queue name given in `field`.
fn queue_name(name: String, field: &str) -> Result<String, Status> {
    if name.is_empty() {
        return Err(invalid(field, "required: a queue name"));
    }
    if !convert::valid_name(&name) {
        return Err(invalid(field, convert::NAME_RULE));
    }
    Ok(name)
}

/// Checks a queue's settings and builds its row (not paused, bucket full): a
/// queue of `namespace` as asked for (its name as stored), or `None` with what
/// is wrong in `v`.
fn queue_row(
    namespace: &str,
    queue: Option<proto::Queue>,
    limits: &Limits,
    now: i64,
    v: &mut Violations,
) -> Option<queues::Model> {
    let Some(proto::Queue {
        name,
        paused,
        max_concurrency,
        rate_limit,
        job_defaults,
        create_time: _,
        update_time: _,
        stats: _,
        follow_redirects,
        signing,
        destinations,
    }) = queue
    else {
        v.add("queue", "required: the queue's name and settings");
        return None;
    };
    if let Err(status) = queue_name(name.clone(), "queue.name") {
        v.add("queue.name", status.message());
    }
    if max_concurrency.is_some_and(|n| !(1..=MAX_CONCURRENCY).contains(&n)) {
        v.add(
            "queue.max_concurrency",
            format!("must be from 1 to {MAX_CONCURRENCY}, or unset for no limit"),
        );
    }
    let (rate_per_second, rate_burst) = match rate_limit {
        None => (None, None),
        Some(proto::RateLimit { per_second, burst }) => {
            if !(per_second > 0.0 && per_second <= MAX_RATE) {
                v.add(
                    "queue.rate_limit.per_second",
                    format!("must be more than 0 and at most {MAX_RATE}"),
                );
            }
            if burst.is_some_and(|b| !(1..=MAX_BURST).contains(&b)) {
                v.add(
                    "queue.rate_limit.burst",
                    format!("must be from 1 to {MAX_BURST}, or unset for 1"),
                );
            }
            (Some(per_second), Some(burst.unwrap_or(1)))
        }
    };
    let stored_name = qualify(namespace, &name);
    let signing = super::signing::sealed(
        signing,
        "queue.signing",
        limits,
        crate::secret::Row::queue(&stored_name),
        v,
    );
    let destinations = match crate::outbound::address::RuleList::parse(&destinations) {
        Ok(rules) if rules.is_empty() => None,
        Ok(_) => Some(destinations),
        Err(expected) => {
            v.add("queue.destinations", expected);
            None
        }
    };
    let mut row = queues::Model {
        signing,
        destinations,
        name: stored_name,
        namespace: namespace.to_string(),
        follow_redirects: if follow_redirects > MAX_REDIRECTS {
            v.add(
                "queue.follow_redirects",
                format!("at most {MAX_REDIRECTS}, or 0 to follow none"),
            );
            0
        } else {
            follow_redirects as i32
        },
        paused,
        max_concurrency,
        rate_per_second,
        rate_burst,
        tokens: f64::from(rate_burst.unwrap_or(1)),
        tokens_at: now,
        default_timeout_ms: None,
        default_max_attempts: None,
        default_backoff_strategy: None,
        default_backoff_base_ms: None,
        default_backoff_max_ms: None,
        default_ttl_ms: None,
        created_at: now,
        updated_at: now,
    };
    if let Some(proto::JobDefaults {
        timeout,
        max_attempts,
        backoff,
        ttl,
    }) = job_defaults
    {
        let path = "queue.job_defaults";
        if let Some(d) = timeout {
            match convert::duration_ms(&d) {
                Some(ms) if ms > 0 && ms <= limits.max_timeout.as_millis() as i64 => {
                    row.default_timeout_ms = Some(ms)
                }
                _ => v.add(
                    format!("{path}.timeout"),
                    format!(
                        "must be more than 0 and at most {}",
                        humantime::format_duration(limits.max_timeout)
                    ),
                ),
            }
        }
        match max_attempts {
            None => {}
            Some(n) if (1..=convert::MAX_ATTEMPTS).contains(&n) => {
                row.default_max_attempts = Some(n)
            }
            Some(_) => v.add(
                format!("{path}.max_attempts"),
                format!("must be from 1 to {}", convert::MAX_ATTEMPTS),
            ),
        }
        if backoff.is_some() {
            let b = convert::backoff_of(backoff, &format!("{path}.backoff"), v);
            row.default_backoff_strategy = Some(b.strategy.as_str().to_string());
            row.default_backoff_base_ms = Some(b.base.as_millis() as i64);
            row.default_backoff_max_ms = Some(b.max.as_millis() as i64);
        }
        if let Some(d) = ttl {
            match convert::duration_ms(&d) {
                Some(ms) if ms >= 0 => row.default_ttl_ms = Some(ms),
                _ => v.add(format!("{path}.ttl"), "must not be negative"),
            }
        }
    }
    Some(row)
}

/// The settings an update mask names; an empty mask names them all.
fn fields_of(
    mask: Option<prost_types::FieldMask>,
    queue: Option<&proto::Queue>,
    v: &mut Violations,
) -> QueueFields {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        // As AIP-134 has it: no mask changes the settings the request sets,
        // and leaves the others as they are.
        return queue.map_or_else(QueueFields::default, set_in);
    }
    if paths.len() == 1 && paths[0] == "*" {
        return QueueFields::ALL;
    }
    let mut fields = QueueFields::default();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "max_concurrency" => fields.max_concurrency = true,
            "follow_redirects" => fields.follow_redirects = true,
            "signing" => fields.signing = true,
            "destinations" => fields.destinations = true,
            "rate_limit" => fields.rate_limit = true,
            "job_defaults" => {
                fields.timeout = true;
                fields.max_attempts = true;
                fields.backoff = true;
                fields.ttl = true;
            }
            "job_defaults.timeout" => fields.timeout = true,
            "job_defaults.max_attempts" => fields.max_attempts = true,
            "job_defaults.backoff" => fields.backoff = true,
            "job_defaults.ttl" => fields.ttl = true,
            _ => v.add(
                format!("update_mask.paths[{i}]"),
                "must be max_concurrency, rate_limit, follow_redirects, signing, destinations, \
                 job_defaults or \
                 job_defaults.timeout, .max_attempts, .backoff or .ttl, or * alone for all",
            ),
        }
    }
    fields
}

/// The settings a queue message sets: those not at their default.
fn set_in(queue: &proto::Queue) -> QueueFields {
    let defaults = queue.job_defaults.as_ref();
    QueueFields {
        max_concurrency: queue.max_concurrency.is_some(),
        follow_redirects: queue.follow_redirects != 0,
        signing: queue.signing.is_some(),
        destinations: !queue.destinations.is_empty(),
        rate_limit: queue.rate_limit.is_some(),
        timeout: defaults.is_some_and(|d| d.timeout.is_some()),
        max_attempts: defaults.is_some_and(|d| d.max_attempts.is_some()),
        backoff: defaults.is_some_and(|d| d.backoff.is_some()),
        ttl: defaults.is_some_and(|d| d.ttl.is_some()),
    }
}

fn queue_proto(q: queues::Model) -> proto::Queue {
    let queues::Model {
        name,
        namespace: _,
        follow_redirects,
        signing,
        destinations,
        paused,
        max_concurrency,
        rate_per_second,
        rate_burst,
        tokens: _,
        tokens_at: _,
        default_timeout_ms,
        default_max_attempts,
        default_backoff_strategy,
        default_backoff_base_ms,
        default_backoff_max_ms,
        default_ttl_ms,
        created_at,
        updated_at,
    } = q;
    let defaults = proto::JobDefaults {
        timeout: default_timeout_ms.map(convert::duration),
        max_attempts: default_max_attempts,
        backoff: default_backoff_strategy.map(|strategy| proto::Backoff {
            strategy: convert::backoff_strategy_of(&strategy) as i32,
            base_delay: default_backoff_base_ms.map(convert::duration),
            max_delay: default_backoff_max_ms.map(convert::duration),
        }),
        ttl: default_ttl_ms.map(convert::duration),
    };
    let any_default = defaults != proto::JobDefaults::default();
    proto::Queue {
        name: local(&name).to_string(),
        paused,
        max_concurrency,
        rate_limit: rate_per_second.map(|per_second| proto::RateLimit {
            per_second,
            burst: rate_burst,
        }),
        job_defaults: any_default.then_some(defaults),
        create_time: Some(convert::timestamp(created_at)),
        update_time: Some(convert::timestamp(updated_at)),
        follow_redirects: follow_redirects.max(0) as u32,
        signing: super::signing::shown(signing.as_deref()),
        destinations: destinations.unwrap_or_default(),
        stats: None,
    }
}

fn stats_proto(s: QueueStats, now: i64) -> proto::QueueStats {
    let QueueStats {
        waiting,
        scheduled,
        running,
        succeeded,
        failed,
        canceled,
        oldest_waiting_since,
        dispatched_last_minute,
    } = s;
    proto::QueueStats {
        waiting,
        scheduled,
        running,
        succeeded,
        failed,
        canceled,
        oldest_waiting_age: Some(convert::duration(
            oldest_waiting_since.map_or(0, |since| (now - since).max(0)),
        )),
        dispatched_last_minute,
        dispatch_rate_per_second: dispatched_last_minute as f64 / RATE_WINDOW_SECONDS,
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    async fn create_queue(
        &self,
        request: Request<proto::CreateQueueRequest>,
    ) -> Result<Response<proto::Queue>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CreateQueueRequest { queue } = request.into_inner();
        let mut v = Violations::default();
        let row = queue_row(&namespace, queue, &self.limits, now_ms(), &mut v);
        let row = v
            .into_result(row)?
            .ok_or_else(|| Status::internal("queue not built"))?;
        let created = self.change(QueueChange::Create(row)).await?;
        Ok(Response::new(queue_proto(created)))
    }

    async fn get_queue(
        &self,
        request: Request<proto::GetQueueRequest>,
    ) -> Result<Response<proto::Queue>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetQueueRequest { name } = request.into_inner();
        let name = queue_name(name, "name")?;
        let queue = self
            .engine
            .store()
            .queue(&namespace, &name)
            .await?
            .ok_or_else(|| Status::not_found(format!("queue {name} not found")))?;
        Ok(Response::new(self.read(queue).await?))
    }

    async fn list_queues(
        &self,
        request: Request<proto::ListQueuesRequest>,
    ) -> Result<Response<proto::ListQueuesResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListQueuesRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let page_size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
        let after = convert::page_start(PAGE_TOKEN_PREFIX, &page_token, "ListQueues", &mut v);
        v.into_result(())?;
        let mut page = self
            .engine
            .store()
            .list_queues(&namespace, after.as_deref(), page_size as u64 + 1)
            .await?;
        let next_page_token =
            convert::page_end(&mut page, page_size, PAGE_TOKEN_PREFIX, |q| local(&q.name));
        let mut queues = Vec::with_capacity(page.len());
        for queue in page {
            queues.push(self.read(queue).await?);
        }
        Ok(Response::new(proto::ListQueuesResponse {
            queues,
            next_page_token,
        }))
    }

    async fn update_queue(
        &self,
        request: Request<proto::UpdateQueueRequest>,
    ) -> Result<Response<proto::Queue>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::UpdateQueueRequest { queue, update_mask } = request.into_inner();
        let mut v = Violations::default();
        let fields = fields_of(update_mask, queue.as_ref(), &mut v);
        let row = queue_row(&namespace, queue, &self.limits, now_ms(), &mut v);
        let row = v
            .into_result(row)?
            .ok_or_else(|| Status::internal("queue not built"))?;
        let updated = self.change(QueueChange::Update(row, fields)).await?;
        Ok(Response::new(queue_proto(updated)))
    }

    async fn pause_queue(
        &self,
        request: Request<proto::PauseQueueRequest>,
    ) -> Result<Response<proto::Queue>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::PauseQueueRequest { name } = request.into_inner();
        self.switch(&namespace, name, QueueChange::Pause).await
    }

    async fn resume_queue(
        &self,
        request: Request<proto::ResumeQueueRequest>,
    ) -> Result<Response<proto::Queue>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ResumeQueueRequest { name } = request.into_inner();
        self.switch(&namespace, name, QueueChange::Resume).await
    }

    async fn purge_queue(
        &self,
        request: Request<proto::PurgeQueueRequest>,
    ) -> Result<Response<proto::PurgeQueueResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::PurgeQueueRequest { name } = request.into_inner();
        let name = qualify(&namespace, &queue_name(name, "name")?);
        match self.engine.change_queue(QueueChange::Purge(name)).await? {
            QueueChanged::Purged(canceled) => Ok(Response::new(proto::PurgeQueueResponse {
                canceled: canceled as i64,
            })),
            QueueChanged::Queue(_) => Err(Status::internal("a queue change answered a purge")),
        }
    }
}
