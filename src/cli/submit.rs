//! `jobqueue job submit`: a job from curl-like flags or a file, or many from
//! JSON lines, sent in batches.

use std::path::Path;

use super::args::SubmitArgs;
use super::fail::Failure;
use super::json;
use crate::proto;

/// Jobs per SubmitJobs call.
pub const BATCH: usize = 500;

/// The job the flags (over `-f FILE`, when given) describe.
pub fn one(args: &SubmitArgs) -> Result<proto::JobSpec, Failure> {
    let base = match &args.file {
        Some(path) => json::from_file("jobqueue.v1.JobSpec", path, "--file")?,
        None => proto::JobSpec::default(),
    };
    let spec = apply(args, base)?;
    let has_call = spec.request.as_ref().is_some_and(|r| !r.url.is_empty());
    if !has_call && spec.template.is_none() {
        return Err(Failure::usage(
            "--url: the URL to call (or a file with `request` or `template`: -f FILE)",
        ));
    }
    Ok(spec)
}

/// Every job of a JSON-lines source, the flags applied to each.
pub fn many(args: &SubmitArgs, path: &Path) -> Result<Vec<proto::JobSpec>, Failure> {
    let text = json::read_source(path, "--jobs")?;
    let mut specs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let what = format!("--jobs {} line {}", path.display(), i + 1);
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Failure::usage(format!("{what}: not JSON: {e}")))?;
        let spec = json::from_json("jobqueue.v1.JobSpec", value, &what)?;
        specs.push(apply(args, spec)?);
    }
    if specs.is_empty() {
        return Err(Failure::usage(format!(
            "--jobs {}: no jobs",
            path.display()
        )));
    }
    Ok(specs)
}

/// The flags given, over `spec`.
fn apply(args: &SubmitArgs, mut spec: proto::JobSpec) -> Result<proto::JobSpec, Failure> {
    let touches_request = args.url.is_some()
        || args.method.is_some()
        || !args.headers.is_empty()
        || !args.secret_headers.is_empty()
        || args.data.is_some()
        || !args.params.is_empty();
    if touches_request {
        let request = spec.request.get_or_insert_with(Default::default);
        if let Some(url) = &args.url {
            request.url = url.clone();
        }
        for (header, secret) in args
            .headers
            .iter()
            .map(|h| (h, false))
            .chain(args.secret_headers.iter().map(|h| (h, true)))
        {
            let flag = if secret { "--secret-header" } else { "-H" };
            let Some((name, value)) = header.split_once(':') else {
                return Err(Failure::usage(format!(
                    "{flag} {header:?}: expected `Name: value`"
                )));
            };
            let name = name.trim().to_string();
            request
                .headers
                .insert(name.clone(), value.trim().to_string());
            if secret {
                request.secret_headers.push(name);
            }
        }
        for param in &args.params {
            let Some((name, value)) = param.split_once('=') else {
                return Err(Failure::usage(format!(
                    "--param {param:?}: expected `name=value`"
                )));
            };
            request.params.insert(name.to_string(), value.to_string());
        }
        if let Some(data) = &args.data {
            request.body = Some(body(data)?);
        }
        if let Some(method) = &args.method {
            request.method = method.clone();
        } else if request.method.is_empty() && request.body.is_some() {
            request.method = "POST".into();
        }
    }
    if let Some(queue) = &args.queue {
        spec.queue = queue.clone();
    }
    if let Some(priority) = args.priority {
        spec.priority = priority;
    }
    if let Some(max_attempts) = args.max_attempts {
        spec.max_attempts = Some(max_attempts);
    }
    if let Some(timeout) = args.timeout {
        spec.timeout = Some(duration(timeout));
    }
    if let Some(ttl) = args.ttl {
        spec.ttl = Some(duration(ttl));
    }
    if let Some(at) = &args.at {
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| Failure::usage(format!("--at {at:?}: not an RFC 3339 time: {e}")))?;
        spec.schedule_time = Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        });
    }
    if let Some(delay) = args.delay {
        let at = std::time::SystemTime::now() + delay;
        spec.schedule_time = Some(prost_types::Timestamp::from(at));
    }
    spec.tags.extend(args.tags.iter().cloned());
    if let Some(key) = &args.idempotency_key {
        spec.idempotency_key = key.clone();
    }
    Ok(spec)
}

/// `-d`: JSON when it parses, else text; `@FILE` and `@-` read it.
fn body(data: &str) -> Result<proto::http_request::Body, Failure> {
    let text = match data.strip_prefix('@') {
        Some(path) => json::read_source(Path::new(path), "-d")?,
        None => data.to_string(),
    };
    Ok(match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => proto::http_request::Body::Json(crate::api::convert::value_from_json(json)),
        Err(_) => proto::http_request::Body::Text(text),
    })
}

fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}
