//! Conversions between the proto messages and the stored rows, with the validation
//! of everything a client sends. Proto messages are destructured field by field, so
//! a new field breaks the build until it is handled here.

use std::time::Duration;

use prost_types::value::Kind;
use reqwest::header::HeaderValue;

use super::Violations;
use crate::config::Config;
use crate::engine::events::{Event, Watched};
use crate::engine::{NewJob, Unset};
use crate::job::{Backoff, BackoffStrategy, ErrorClass, Status};
use crate::namespace::local;
use crate::proto;
use crate::secret::Row;
use crate::store::jobs;

/// Most redirects a job's calls may follow.
pub const MAX_REDIRECTS: u32 = 10;
/// Most attempts a job may ask for.
pub const MAX_ATTEMPTS: i32 = 100;
/// Attempts when a job asks for none.
pub const DEFAULT_ATTEMPTS: i32 = 3;
const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 128;
const MAX_KEY_LEN: usize = 256;
/// The service-side limits and defaults a submitted job is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_body_bytes: usize,
    pub default_ttl: Duration,
    /// What a call's URL may name.
    pub destinations: crate::outbound::guard::Guard,
    /// The keys secret headers are sealed with; none refuses them.
    pub keyring: Option<crate::secret::Keyring>,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Self {
        Limits {
            default_timeout: c.default_timeout,
            max_timeout: c.max_timeout,
            max_body_bytes: c.max_body_bytes,
            default_ttl: c.default_ttl,
            destinations: c.outbound_guard(),
            keyring: c.keyring(),
        }
    }
}

/// Checks a submitted job and builds its row, of `namespace` (its queue named as
/// stored), noting every bad field under `path`. Its secret headers are sealed
/// for the row that keeps them: `kept_by`, or the job `id` itself.
#[allow(clippy::too_many_arguments)]
pub fn new_job(
    namespace: &str,
    spec: Option<proto::JobSpec>,
    path: &str,
    limits: &Limits,
    id: String,
    kept_by: Option<Row<'_>>,
    now: i64,
    v: &mut Violations,
) -> Option<NewJob> {
    let Some(spec) = spec else {
        v.add(path, "required: the job to run");
        return None;
    };
    let proto::JobSpec {
        request,
        timeout,
        priority,
        max_attempts,
        backoff,
        schedule_time,
        ttl,
        tags,
        idempotency_key,
        queue,
        // Made into the fields above before (see `super::templates::expand`).
        template: _,
        signing,
        follow_redirects,
    } = spec;
    let before = v.0.len();
    let unset = Unset {
        timeout: timeout.is_none(),
        max_attempts: max_attempts.is_none(),
        backoff: backoff.is_none(),
        ttl: ttl.is_none(),
    };
    let request = match request {
        Some(r) => super::request::http_request(r, &format!("{path}.request"), limits, v),
        None => {
            v.add(format!("{path}.request"), "required: the HTTP call to make");
            None
        }
    };
    let timeout_ms = match timeout {
        None => limits.default_timeout.as_millis() as i64,
        Some(d) => match duration_ms(&d) {
            Some(ms) if ms > 0 && ms <= limits.max_timeout.as_millis() as i64 => ms,
            _ => {
                v.add(
                    format!("{path}.timeout"),
                    format!(
                        "must be more than 0 and at most {}",
                        humantime::format_duration(limits.max_timeout)
                    ),
                );
                0
            }
        },
    };
    let max_attempts = match max_attempts {
        None => DEFAULT_ATTEMPTS,
        Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => n,
        Some(_) => {
            v.add(
                format!("{path}.max_attempts"),
                format!("must be from 1 to {MAX_ATTEMPTS}, or unset for {DEFAULT_ATTEMPTS}"),
            );
            0
        }
    };
    let backoff = backoff_of(backoff, &format!("{path}.backoff"), v);
    if follow_redirects.is_some_and(|n| n > MAX_REDIRECTS) {
        v.add(
            format!("{path}.follow_redirects"),
            format!("at most {MAX_REDIRECTS}, 0 to follow none, or unset for the queue's setting"),
        );
    }
    let scheduled_at = match schedule_time {
        None => now,
        Some(t) => timestamp_ms(&t).unwrap_or_else(|| {
            v.add(format!("{path}.schedule_time"), "must be a valid timestamp");
            now
        }),
    };
    let ttl_ms = ttl_ms(ttl, path, limits, v);
    let tags = checked_tags(tags, path, v);
    check_idempotency_key(&idempotency_key, path, v);
    let queue = if queue.is_empty() {
        "default".to_string()
    } else {
        queue
    };
    if !valid_name(&queue) {
        v.add(format!("{path}.queue"), NAME_RULE);
    }
    if v.0.len() > before {
        return None;
    }
    let (method, url, headers, params, body_kind, body) = request?;
    let row = kept_by.unwrap_or(Row::job(&id));
    let signing = super::signing::sealed(signing, &format!("{path}.signing"), limits, row, v);
    if v.0.len() > before {
        return None;
    }
    let headers = match headers.stored(limits.keyring.as_ref(), row) {
        Ok(headers) => headers,
        Err(no_key) => {
            v.add(
                format!("{path}.request.headers[{:?}]", no_key.name),
                no_key.to_string(),
            );
            return None;
        }
    };
    let job = jobs::Model {
        id,
        namespace: namespace.to_string(),
        queue: crate::namespace::qualify(namespace, &queue),
        status: Status::Queued.as_str().into(),
        priority,
        attempt: 0,
        max_attempts,
        retry_base: 0,
        method,
        url,
        headers,
        params,
        body_kind,
        body,
        timeout_ms,
        backoff_strategy: backoff.strategy.as_str().into(),
        backoff_base_ms: backoff.base.as_millis() as i64,
        backoff_max_ms: backoff.max.as_millis() as i64,
        ttl_ms,
        tags: serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()),
        idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
        created_at: now,
        scheduled_at,
        run_at: scheduled_at,
        started_at: None,
        finished_at: None,
        lease_expires_at: None,
        expires_at: None,
        last_status_code: None,
        last_error_class: None,
        schedule_id: None,
        fire_at: None,
        // Set by the service from the call's trace, once the job is accepted.
        trace_context: None,
        chain_id: None,
        step_id: None,
        contract: None,
        signing,
        follow_redirects: follow_redirects.map(|n| n as i32),
    };
    Some(NewJob { job, unset })
}

/// How long a finished job (or chain) is kept: unset means the service default.
pub fn ttl_ms(
    ttl: Option<prost_types::Duration>,
    path: &str,
    limits: &Limits,
    v: &mut Violations,
) -> i64 {
    match ttl {
        None => limits.default_ttl.as_millis() as i64,
        Some(d) => match duration_ms(&d) {
            Some(ms) if ms >= 0 => ms,
            _ => {
                v.add(format!("{path}.ttl"), "must not be negative");
                0
            }
        },
    }
}

/// Tags checked, sorted and without repeats.
pub fn checked_tags(mut tags: Vec<String>, path: &str, v: &mut Violations) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        v.add(format!("{path}.tags"), format!("at most {MAX_TAGS} tags"));
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            v.add(
                format!("{path}.tags[{i}]"),
                format!("must be 1 to {MAX_TAG_LEN} bytes"),
            );
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

pub fn check_idempotency_key(key: &str, path: &str, v: &mut Violations) {
    if key.len() > MAX_KEY_LEN || HeaderValue::from_str(key).is_err() {
        v.add(
            format!("{path}.idempotency_key"),
            format!("at most {MAX_KEY_LEN} bytes of visible ASCII (it is sent as a header)"),
        );
    }
}

/// A status filter: each entry must name a status.
pub fn statuses(statuses: Vec<i32>, v: &mut Violations) -> Vec<Status> {
    let mut valid = Vec::with_capacity(statuses.len());
    for (i, s) in statuses.into_iter().enumerate() {
        match proto::JobStatus::try_from(s).ok().and_then(status_of) {
            Some(status) => valid.push(status),
            None => v.add(
                format!("statuses[{i}]"),
                "must be QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELED",
            ),
        }
    }
    valid
}

/// A queue filter: empty means any queue.
pub fn queue_filter(queue: String, v: &mut Violations) -> Option<String> {
    if queue.is_empty() {
        return None;
    }
    if !valid_name(&queue) {
        v.add("queue", NAME_RULE);
    }
    Some(queue)
}

/// What queue names and schedule ids must look like, as refusals say it.
pub const NAME_RULE: &str = "must match [a-z0-9][a-z0-9_-]{0,62}";

/// A schedule filter: empty means any (or no) schedule.
pub fn schedule_filter(id: String, v: &mut Violations) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    if !valid_name(&id) {
        v.add("schedule_id", NAME_RULE);
    }
    Some(id)
}

/// A page size from a list request: 0 means `default`, more than `max` is refused.
pub fn page_size(requested: i32, default: i32, max: i32, v: &mut Violations) -> i32 {
    match requested {
        0 => default,
        n if (1..=max).contains(&n) => n,
        _ => {
            v.add(
                "page_size",
                format!("must be from 1 to {max} (0 for {default})"),
            );
            default
        }
    }
}

/// Whether `name` can name a queue or a schedule.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

pub fn backoff_of(b: Option<proto::Backoff>, path: &str, v: &mut Violations) -> Backoff {
    let mut backoff = Backoff {
        strategy: BackoffStrategy::Exponential,
        base: Backoff::DEFAULT_BASE,
        max: Backoff::DEFAULT_MAX,
    };
    let Some(proto::Backoff {
        strategy,
        base_delay,
        max_delay,
    }) = b
    else {
        return backoff;
    };
    backoff.strategy = match proto::BackoffStrategy::try_from(strategy) {
        Ok(proto::BackoffStrategy::Unspecified | proto::BackoffStrategy::Exponential) => {
            BackoffStrategy::Exponential
        }
        Ok(proto::BackoffStrategy::Fixed) => BackoffStrategy::Fixed,
        Ok(proto::BackoffStrategy::Linear) => BackoffStrategy::Linear,
        Err(_) => {
            v.add(
                format!("{path}.strategy"),
                "must be FIXED, LINEAR or EXPONENTIAL",
            );
            BackoffStrategy::Exponential
        }
    };
    for (name, value, slot) in [
        ("base_delay", base_delay, &mut backoff.base),
        ("max_delay", max_delay, &mut backoff.max),
    ] {
        if let Some(d) = value {
            match duration_ms(&d) {
                Some(ms) if ms >= 0 => *slot = Duration::from_millis(ms as u64),
                _ => v.add(format!("{path}.{name}"), "must not be negative"),
            }
        }
    }
    backoff
}

/// Milliseconds of a proto duration, rounded up so a positive duration stays
/// positive; `None` when it is malformed.
/// A page token: where the next page starts, opaque to clients.
pub fn page_token(prefix: &str, last: &str) -> String {
    format!("{prefix}{last}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a list request's page starts: the key its `page_token` carries, or `None`
/// for the first page; a token `rpc` did not make is a bad field.
pub fn page_start(prefix: &str, token: &str, rpc: &str, v: &mut Violations) -> Option<String> {
    page_token_after(prefix, token).unwrap_or_else(|MalformedToken| {
        v.add(
            "page_token",
            format!("must be a next_page_token returned by {rpc}"),
        );
        None
    })
}

/// Cuts rows read one past `size` back to `size`; answers the next page's token,
/// empty when these rows end the list.
pub fn page_end<T>(rows: &mut Vec<T>, size: i32, prefix: &str, key: impl Fn(&T) -> &str) -> String {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    match rows.last() {
        Some(last) if more => page_token(prefix, key(last)),
        _ => String::new(),
    }
}

/// A registry's page start, `name/version`, from what [`page_start`] decoded.
pub fn name_and_version(
    after: Option<String>,
    rpc: &str,
    v: &mut Violations,
) -> Option<(String, i32)> {
    let after = after?;
    match after.split_once('/') {
        Some((name, version)) if version.parse::<i32>().is_ok() => {
            Some((name.to_string(), version.parse().unwrap_or(0)))
        }
        _ => {
            v.add(
                "page_token",
                format!("must be a next_page_token returned by {rpc}"),
            );
            None
        }
    }
}

/// As [`page_end`], for a registry's versions keyed `name/version`.
pub fn versions_page_end<T>(
    rows: &mut Vec<T>,
    size: i32,
    prefix: &str,
    key: impl Fn(&T) -> (&str, i32),
) -> String {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    match rows.last() {
        Some(last) if more => {
            let (name, version) = key(last);
            page_token(prefix, &format!("{name}/{version}"))
        }
        _ => String::new(),
    }
}

/// A page token this service did not make.
#[derive(Debug)]
pub struct MalformedToken;

/// What [`page_token`] encoded: `None` for an empty token (the first page), an
/// error for a token it did not make.
pub fn page_token_after(prefix: &str, token: &str) -> Result<Option<String>, MalformedToken> {
    if token.is_empty() {
        return Ok(None);
    }
    if !token.len().is_multiple_of(2) {
        return Err(MalformedToken);
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or(MalformedToken)?;
    let text = String::from_utf8(bytes).map_err(|_| MalformedToken)?;
    let last = text.strip_prefix(prefix).ok_or(MalformedToken)?;
    Ok(Some(last.to_string()))
}

/// A stored backoff strategy, as the proto enum.
pub fn backoff_strategy_of(stored: &str) -> proto::BackoffStrategy {
    match BackoffStrategy::parse(stored) {
        Some(BackoffStrategy::Fixed) => proto::BackoffStrategy::Fixed,
        Some(BackoffStrategy::Linear) => proto::BackoffStrategy::Linear,
        _ => proto::BackoffStrategy::Exponential,
    }
}

pub fn duration_ms(d: &prost_types::Duration) -> Option<i64> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos)
        || (d.seconds > 0 && d.nanos < 0)
        || (d.seconds < 0 && d.nanos > 0)
    {
        return None;
    }
    let nanos = (d.seconds as i128) * 1_000_000_000 + d.nanos as i128;
    let ms = if nanos >= 0 {
        (nanos + 999_999) / 1_000_000
    } else {
        nanos / 1_000_000
    };
    i64::try_from(ms).ok()
}

/// Milliseconds since the epoch of a proto timestamp; `None` when it is malformed.
pub fn timestamp_ms(t: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return None;
    }
    t.seconds
        .checked_mul(1000)?
        .checked_add((t.nanos / 1_000_000) as i64)
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A `google.protobuf.Value` as plain JSON. It carries every number as a double:
/// one that is whole (and exact as a double) comes back as an integer, so a
/// client's `3` reaches its target as `3`, not `3.0`.
pub(super) fn json_from_value(value: &prost_types::Value) -> Option<serde_json::Value> {
    Some(match value.kind.as_ref() {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() <= 9.007_199_254_740_992e15 => {
            serde_json::Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Value::Number(serde_json::Number::from_f64(*n)?),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .iter()
                .map(json_from_value)
                .collect::<Option<_>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| Some((k.clone(), json_from_value(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

pub fn value_from_json(json: serde_json::Value) -> prost_types::Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(value_from_json).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| (k, value_from_json(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn status(s: &str) -> proto::JobStatus {
    match Status::parse(s) {
        Some(Status::Queued) => proto::JobStatus::Queued,
        Some(Status::Running) => proto::JobStatus::Running,
        Some(Status::Succeeded) => proto::JobStatus::Succeeded,
        Some(Status::Failed) => proto::JobStatus::Failed,
        Some(Status::Canceled) => proto::JobStatus::Canceled,
        None => proto::JobStatus::Unspecified,
    }
}

pub fn status_of(s: proto::JobStatus) -> Option<Status> {
    match s {
        proto::JobStatus::Unspecified => None,
        proto::JobStatus::Queued => Some(Status::Queued),
        proto::JobStatus::Running => Some(Status::Running),
        proto::JobStatus::Succeeded => Some(Status::Succeeded),
        proto::JobStatus::Failed => Some(Status::Failed),
        proto::JobStatus::Canceled => Some(Status::Canceled),
    }
}

pub fn error_class(s: Option<&str>) -> proto::ErrorClass {
    match s.and_then(ErrorClass::parse) {
        None => proto::ErrorClass::Unspecified,
        Some(ErrorClass::Connect) => proto::ErrorClass::Connect,
        Some(ErrorClass::Timeout) => proto::ErrorClass::Timeout,
        Some(ErrorClass::Network) => proto::ErrorClass::Network,
        Some(ErrorClass::Protocol) => proto::ErrorClass::Protocol,
        Some(ErrorClass::Canceled) => proto::ErrorClass::Canceled,
        Some(ErrorClass::Interrupted) => proto::ErrorClass::Interrupted,
        Some(ErrorClass::ContractViolation) => proto::ErrorClass::ContractViolation,
        Some(ErrorClass::OutputTooLarge) => proto::ErrorClass::OutputTooLarge,
        Some(ErrorClass::Reference) => proto::ErrorClass::Reference,
        Some(ErrorClass::DestinationRefused) => proto::ErrorClass::DestinationRefused,
        Some(ErrorClass::HostLimited) => proto::ErrorClass::HostLimited,
        Some(ErrorClass::CircuitOpen) => proto::ErrorClass::CircuitOpen,
    }
}

/// A JSON object of strings as stored (params, a response's headers), as a map.
pub(super) fn map_of(json: &str) -> std::collections::HashMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn job(m: jobs::Model) -> proto::Job {
    let jobs::Model {
        id,
        namespace: _,
        queue,
        status: job_status,
        priority,
        attempt,
        max_attempts,
        retry_base,
        method,
        url,
        headers,
        params,
        body_kind,
        body,
        timeout_ms,
        backoff_strategy,
        backoff_base_ms,
        backoff_max_ms,
        ttl_ms,
        tags,
        idempotency_key,
        created_at,
        scheduled_at,
        run_at,
        started_at,
        finished_at,
        lease_expires_at: _,
        expires_at,
        last_status_code,
        last_error_class,
        schedule_id,
        fire_at: _,
        trace_context: _,
        chain_id,
        step_id,
        contract: _,
        signing,
        follow_redirects,
    } = m;
    let status = status(&job_status);
    let (headers, secret_headers) = crate::secret::headers::masked(&headers);
    let body = match (body_kind.as_deref(), body) {
        (Some("json"), Some(bytes)) => serde_json::from_slice(&bytes)
            .ok()
            .map(|json| proto::http_request::Body::Json(value_from_json(json))),
        (Some("text"), Some(bytes)) => Some(proto::http_request::Body::Text(
            String::from_utf8_lossy(&bytes).into_owned(),
        )),
        (_, Some(bytes)) => Some(proto::http_request::Body::Raw(bytes)),
        (_, None) => None,
    };
    let strategy = backoff_strategy_of(&backoff_strategy);
    proto::Job {
        id,
        queue: local(&queue).to_string(),
        status: status as i32,
        attempt,
        max_attempts: retry_base + max_attempts,
        priority,
        create_time: Some(timestamp(created_at)),
        schedule_time: Some(timestamp(scheduled_at)),
        start_time: started_at.map(timestamp),
        finish_time: finished_at.map(timestamp),
        next_attempt_time: (status == proto::JobStatus::Queued).then(|| timestamp(run_at)),
        expire_time: expires_at.map(timestamp),
        request: Some(proto::HttpRequest {
            method,
            url,
            headers,
            secret_headers,
            params: map_of(&params),
            body,
        }),
        timeout: Some(duration(timeout_ms)),
        backoff: Some(proto::Backoff {
            strategy: strategy as i32,
            base_delay: Some(duration(backoff_base_ms)),
            max_delay: Some(duration(backoff_max_ms)),
        }),
        ttl: Some(duration(ttl_ms)),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        idempotency_key: idempotency_key.unwrap_or_default(),
        last_status_code: last_status_code.unwrap_or(0),
        last_error_class: error_class(last_error_class.as_deref()) as i32,
        schedule_id: schedule_id
            .as_deref()
            .map(local)
            .unwrap_or_default()
            .to_string(),
        chain_id: chain_id.unwrap_or_default(),
        step_id: step_id.unwrap_or_default(),
        signing: super::signing::shown(signing.as_deref()),
        follow_redirects: follow_redirects.map(|n| n.max(0) as u32),
    }
}

/// A watch item as the stream carries it.
pub fn watched(item: Watched) -> proto::JobEvent {
    match item {
        Watched::Snapshot { job, cursor } => {
            let time = job.finished_at.or(job.started_at).unwrap_or(job.created_at);
            let queued = Status::parse(&job.status) == Some(Status::Queued);
            proto::JobEvent {
                kind: proto::JobEventKind::Snapshot as i32,
                cursor: cursor.to_string(),
                status: status(&job.status) as i32,
                attempt: job.attempt,
                event_time: Some(timestamp(time)),
                tags: serde_json::from_str(&job.tags).unwrap_or_default(),
                status_code: job.last_status_code.unwrap_or(0),
                error_class: error_class(job.last_error_class.as_deref()) as i32,
                next_attempt_time: queued.then(|| timestamp(job.run_at)),
                job_id: job.id,
                queue: local(&job.queue).to_string(),
                schedule_id: job
                    .schedule_id
                    .as_deref()
                    .map(local)
                    .unwrap_or_default()
                    .into(),
            }
        }
        Watched::Change(e) => {
            let Event {
                seq,
                job_id,
                status: changed_to,
                attempt,
                at,
                queue,
                tags,
                status_code,
                error_class: class,
                next_attempt_at,
                schedule_id,
            } = e;
            proto::JobEvent {
                kind: proto::JobEventKind::Change as i32,
                cursor: seq.to_string(),
                job_id,
                status: status(changed_to.as_str()) as i32,
                attempt,
                event_time: Some(timestamp(at)),
                queue: local(&queue).to_string(),
                tags,
                status_code: status_code.unwrap_or(0),
                error_class: error_class(class.as_deref()) as i32,
                next_attempt_time: next_attempt_at.map(timestamp),
                schedule_id: schedule_id.as_deref().map(local).unwrap_or_default().into(),
            }
        }
        Watched::Heartbeat { cursor } => proto::JobEvent {
            kind: proto::JobEventKind::Heartbeat as i32,
            cursor: cursor.to_string(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_milliseconds_and_reject_mixed_signs() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(duration_ms(&d(1, 500_000_000)), Some(1500));
        assert_eq!(
            duration_ms(&d(0, 1)),
            Some(1),
            "a positive duration stays positive"
        );
        assert_eq!(duration_ms(&d(-1, 0)), Some(-1000));
        assert_eq!(duration_ms(&d(1, -1)), None);
        assert_eq!(duration_ms(&d(0, 1_000_000_000)), None);
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1] {
            assert_eq!(timestamp_ms(&timestamp(ms)), Some(ms));
        }
    }

    #[test]
    fn queue_names_follow_the_pattern() {
        for good in ["default", "a", "0-x_y", &"q".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Default", "-a", "_a", "a b", "a.b", &"q".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
