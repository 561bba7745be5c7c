//! An attempt as clients read it back: its response's status, headers and body,
//! the body shown as JSON, text or bytes without losing what was sent.

use prost_types::value::Kind;

use super::convert::{duration, error_class, map_of, timestamp, value_from_json};
use crate::proto;
use crate::store::attempts;

pub fn attempt(a: attempts::Model) -> proto::Attempt {
    let attempts::Model {
        job_id: _,
        number,
        started_at,
        finished_at,
        duration_ms,
        status_code,
        headers,
        body,
        body_size,
        truncated,
        error_class: class,
        error_message,
    } = a;
    let response = status_code.map(|status_code| {
        let (body, json_bytes) = match body.filter(|b| !b.is_empty()) {
            Some(bytes) => response_body(bytes, truncated),
            None => (None, Vec::new()),
        };
        proto::HttpResponse {
            status_code,
            headers: headers.as_deref().map(map_of).unwrap_or_default(),
            body,
            truncated,
            body_size,
            json_bytes,
        }
    });
    proto::Attempt {
        number,
        start_time: Some(timestamp(started_at)),
        finish_time: Some(timestamp(finished_at)),
        duration: Some(duration(duration_ms)),
        response,
        error_class: error_class(class.as_deref()) as i32,
        error_message: error_message.unwrap_or_default(),
    }
}

/// JSON when it parses (and is whole), with the exact bytes beside it; text
/// when it is UTF-8, bytes otherwise (each exact already).
fn response_body(bytes: Vec<u8>, truncated: bool) -> (Option<proto::http_response::Body>, Vec<u8>) {
    if !truncated && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        let body = proto::http_response::Body::Json(exact_value_from_json(json));
        return (Some(body), bytes);
    }
    let body = match String::from_utf8(bytes) {
        Ok(text) => proto::http_response::Body::Text(text),
        Err(e) => proto::http_response::Body::Raw(e.into_bytes()),
    };
    (Some(body), Vec::new())
}

/// Largest integer a double holds exactly, and every one below it.
const EXACT_IN_DOUBLE: u64 = 1 << 53;

/// As [`value_from_json`], but an integer a double cannot hold exactly becomes
/// a string of its digits instead of a double near it.
pub fn exact_value_from_json(json: serde_json::Value) -> prost_types::Value {
    let kind = match json {
        serde_json::Value::Number(n)
            if n.as_u64().is_some_and(|u| u > EXACT_IN_DOUBLE)
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() > EXACT_IN_DOUBLE) =>
        {
            Kind::StringValue(n.to_string())
        }
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(exact_value_from_json).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| (k, exact_value_from_json(v)))
                .collect(),
        }),
        other => return value_from_json(other),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_json_keeps_every_integer_exact() {
        let json = serde_json::from_str(
            r#"{"id": 12345678901234567891, "neg": -9007199254740993, "edge": 9007199254740992,
                "small": 42, "ratio": 1.5, "list": [18446744073709551615]}"#,
        )
        .unwrap();
        let Some(Kind::StructValue(s)) = exact_value_from_json(json).kind else {
            panic!("an object");
        };
        let field = |name: &str| s.fields[name].kind.clone().unwrap();
        assert_eq!(
            field("id"),
            Kind::StringValue("12345678901234567891".into())
        );
        assert_eq!(field("neg"), Kind::StringValue("-9007199254740993".into()));
        assert_eq!(field("edge"), Kind::NumberValue(9007199254740992.0));
        assert_eq!(field("small"), Kind::NumberValue(42.0));
        assert_eq!(field("ratio"), Kind::NumberValue(1.5));
        let Kind::ListValue(list) = field("list") else {
            panic!("a list");
        };
        assert_eq!(
            list.values[0].kind,
            Some(Kind::StringValue("18446744073709551615".into()))
        );
    }
}
