//! The HTTP call a job makes, as a client sends it: checked field by field against
//! what the call may carry and what targets take, then put in the shape it is stored
//! in.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};

use super::Violations;
use super::convert::{Limits, json_from_value};
use crate::proto;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

// What one job's call may carry. Servers commonly refuse a request whose header
// section passes 8 to 16 KiB (nginx takes 8 KiB a line, Node.js 16 KiB in all) or
// whose request line passes 8 KiB, so a job is held to what a target will take.
/// Most headers a job may set.
pub const MAX_HEADERS: usize = 64;
/// Longest value of one header.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 << 10;
/// Most bytes of header names and values together.
pub const MAX_HEADERS_BYTES: usize = 16 << 10;
/// Most query parameters a job may add to its URL.
pub const MAX_PARAMS: usize = 64;
/// Longest URL, with the job's query parameters added, as it is sent.
pub const MAX_URL_BYTES: usize = 8 << 10;
/// Headers the HTTP client sets from the body and the connection: a job's own value
/// would contradict them, and HTTP/2 targets refuse the connection-specific ones.
const CLIENT_HEADERS: [&str; 7] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

pub(super) type StoredRequest = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
);

pub(super) fn http_request(
    r: proto::HttpRequest,
    path: &str,
    limits: &Limits,
    v: &mut Violations,
) -> Option<StoredRequest> {
    let proto::HttpRequest {
        method,
        url,
        headers,
        params,
        body,
    } = r;
    let method = if method.is_empty() {
        "GET".to_string()
    } else {
        method.to_ascii_uppercase()
    };
    if !METHODS.contains(&method.as_str()) {
        v.add(
            format!("{path}.method"),
            format!("must be one of {}", METHODS.join(", ")),
        );
    }
    if url.is_empty() {
        v.add(
            format!("{path}.url"),
            "required: an absolute http:// or https:// URL",
        );
    } else {
        match url::Url::parse(&url) {
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => v.add(
                format!("{path}.url"),
                format!("scheme must be http or https, not {}", parsed.scheme()),
            ),
            Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
                v.add(format!("{path}.url"), "must name a host")
            }
            Ok(_) => {}
            Err(e) => v.add(
                format!("{path}.url"),
                format!("must be an absolute http:// or https:// URL ({e})"),
            ),
        }
    }
    check_headers(&headers, path, v);
    check_params(&url, &params, path, v);
    let (body_kind, body) = match body {
        None => (None, None),
        Some(proto::http_request::Body::Json(value)) => match json_from_value(&value) {
            Some(json) => (
                Some("json".to_string()),
                Some(serde_json::to_vec(&json).unwrap_or_default()),
            ),
            None => {
                v.add(format!("{path}.json"), "must be JSON (numbers finite)");
                (None, None)
            }
        },
        Some(proto::http_request::Body::Text(text)) => {
            (Some("text".to_string()), Some(text.into_bytes()))
        }
        Some(proto::http_request::Body::Raw(raw)) => (Some("raw".to_string()), Some(raw)),
    };
    if let Some(body) = &body
        && body.len() > limits.max_body_bytes
    {
        v.add(
            format!("{path}.{}", body_kind.as_deref().unwrap_or("body")),
            format!(
                "body is {} bytes; at most {} allowed",
                body.len(),
                limits.max_body_bytes
            ),
        );
    }
    let headers: BTreeMap<String, String> = headers.into_iter().collect();
    let params: BTreeMap<String, String> = params.into_iter().collect();
    Some((
        method,
        url,
        serde_json::to_string(&headers).ok()?,
        serde_json::to_string(&params).ok()?,
        body_kind,
        body,
    ))
}

/// A job's headers: valid, not the client's own, and within the limits above.
fn check_headers(
    headers: &std::collections::HashMap<String, String>,
    path: &str,
    v: &mut Violations,
) {
    if headers.len() > MAX_HEADERS {
        v.add(
            format!("{path}.headers"),
            format!("{} headers; at most {MAX_HEADERS}", headers.len()),
        );
    }
    let total: usize = headers.iter().map(|(n, value)| n.len() + value.len()).sum();
    if total > MAX_HEADERS_BYTES {
        v.add(
            format!("{path}.headers"),
            format!("{total} bytes of names and values; at most {MAX_HEADERS_BYTES}"),
        );
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    // In name order, so the refusals read the same at every call.
    let sorted: BTreeMap<&String, &String> = headers.iter().collect();
    for (name, value) in sorted {
        let field = format!("{path}.headers[{name:?}]");
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            v.add(field, "header name must be a valid HTTP token");
        } else if CLIENT_HEADERS.contains(&lower.as_str()) {
            v.add(
                field,
                "set by the HTTP client from the body and the connection; leave it out",
            );
        } else if let Some(other) = seen.insert(lower, name) {
            v.add(
                field,
                format!("the same header as {other:?}: names are case-insensitive"),
            );
        } else if value.len() > MAX_HEADER_VALUE_BYTES {
            v.add(
                field,
                format!(
                    "value is {} bytes; at most {MAX_HEADER_VALUE_BYTES}",
                    value.len()
                ),
            );
        } else if HeaderValue::from_str(value).is_err() {
            v.add(
                field,
                "header value must be visible ASCII or tab, without CR or LF",
            );
        }
    }
}

/// A job's query parameters: named, and with the URL within its limit.
fn check_params(
    url: &str,
    params: &std::collections::HashMap<String, String>,
    path: &str,
    v: &mut Violations,
) {
    if params.len() > MAX_PARAMS {
        v.add(
            format!("{path}.params"),
            format!("{} parameters; at most {MAX_PARAMS}", params.len()),
        );
    }
    for name in params.keys() {
        if name.is_empty() || name.chars().any(char::is_control) {
            v.add(
                format!("{path}.params[{name:?}]"),
                "name must not be empty or hold control characters",
            );
        }
    }
    let sorted: BTreeMap<String, String> = params
        .iter()
        .map(|(n, value)| (n.clone(), value.clone()))
        .collect();
    if let Ok(full) = crate::http::merge_params(url, &sorted)
        && full.as_str().len() > MAX_URL_BYTES
    {
        v.add(
            format!("{path}.url"),
            format!(
                "with its params the URL is {} bytes; at most {MAX_URL_BYTES}",
                full.as_str().len()
            ),
        );
    }
}

/// A chain step's call once its references are resolved, checked as a submitted
/// job's call is (a value a reference brought in can still make it one that
/// cannot be sent); the problems in one line when it does not pass.
pub(crate) fn rendered_call(
    call: crate::chain::definition::RenderedCall,
    limits: &Limits,
) -> Result<StoredRequest, String> {
    use crate::chain::definition::RenderedBody;
    let crate::chain::definition::RenderedCall {
        method,
        url,
        headers,
        params,
        body,
    } = call;
    // The body goes as rendered: through `google.protobuf.Value` an integer
    // would come back as a double.
    let (body_kind, body) = match body {
        None => (None, None),
        Some(RenderedBody::Json(json)) => (
            Some("json".to_string()),
            Some(serde_json::to_vec(&json).map_err(|e| e.to_string())?),
        ),
        Some(RenderedBody::Text(text)) => (Some("text".to_string()), Some(text.into_bytes())),
        Some(RenderedBody::Raw(raw)) => (Some("raw".to_string()), Some(raw)),
    };
    if let Some(bytes) = &body
        && bytes.len() > limits.max_body_bytes
    {
        return Err(format!(
            "request.body: body is {} bytes; at most {} allowed",
            bytes.len(),
            limits.max_body_bytes
        ));
    }
    let request = proto::HttpRequest {
        method,
        url,
        headers: headers.into_iter().collect(),
        params: params.into_iter().collect(),
        body: None,
    };
    let mut v = Violations::default();
    let stored = http_request(request, "request", limits, &mut v);
    if !v.is_empty() {
        return Err(tonic::Status::from(v).message().to_string());
    }
    let (method, url, headers, params, _, _) =
        stored.ok_or_else(|| "the call could not be stored".to_string())?;
    Ok((method, url, headers, params, body_kind, body))
}
