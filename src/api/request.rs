//! The HTTP call a job makes, as a client sends it: its body turned into bytes,
//! then checked field by field against the rules of `job::call`, each problem
//! under the request's path.

use super::Violations;
use super::convert::{Limits, json_from_value};
use crate::job::call::{self, Call};
use crate::proto;

/// A client's call checked against [`call`]'s rules, each problem under `path`.
pub(super) fn http_request(
    r: proto::HttpRequest,
    path: &str,
    limits: &Limits,
    v: &mut Violations,
) -> Option<call::Stored> {
    let proto::HttpRequest {
        method,
        url,
        headers,
        secret_headers,
        params,
        body,
    } = r;
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
    let call = Call {
        method,
        url,
        headers: headers.into_iter().collect(),
        secret_headers,
        params: params.into_iter().collect(),
        body_kind,
        body,
    };
    match call.checked(limits.max_body_bytes) {
        Ok(stored) => {
            // What the URL alone shows of where it leads; a name is judged when
            // it is resolved, at each attempt.
            if let Ok(url) = url::Url::parse(&stored.1)
                && let Err(refused) = limits.destinations.at_submit(&url)
            {
                v.add(format!("{path}.url"), refused.to_string());
                return None;
            }
            Some(stored)
        }
        Err(problems) => {
            for p in problems {
                v.add(format!("{path}.{}", p.field), p.expected);
            }
            None
        }
    }
}
