//! The rules an HTTP call must keep to be stored as a job's call, whoever made
//! it: a client's request, or a chain step's call once its references are
//! resolved. Each problem names the field (relative to the call) and what was
//! expected; callers put their own path in front.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};

use crate::secret::Headers;

pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

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

/// A call, its body already in bytes with its kind (`json`, `text`, `raw`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Headers (of `headers`, any case) to keep secret besides those always
    /// secret ([`crate::secret::headers::ALWAYS_SECRET`]).
    pub secret_headers: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub body_kind: Option<String>,
    pub body: Option<Vec<u8>>,
}

/// A call checked, in the shape a job row keeps it but for its headers, which
/// are sealed for the row they are stored in: method, url, headers, params as a
/// JSON object, body kind, body.
pub type Stored = (
    String,
    String,
    Headers,
    String,
    Option<String>,
    Option<Vec<u8>>,
);

/// One thing wrong with a call: the field, relative to the call (`url`,
/// `headers["X-A"]`), and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub expected: String,
}

impl Call {
    /// The call as stored, its method in upper case (GET when empty); or every
    /// rule it breaks.
    pub fn checked(self, max_body_bytes: usize) -> Result<Stored, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut add = |field: String, expected: String| problems.push(Problem { field, expected });
        let method = if self.method.is_empty() {
            "GET".to_string()
        } else {
            self.method.to_ascii_uppercase()
        };
        if !METHODS.contains(&method.as_str()) {
            add(
                "method".into(),
                format!("must be one of {}", METHODS.join(", ")),
            );
        }
        check_url(&self.url, &mut add);
        check_headers(&self.headers, &mut add);
        let marked = check_secret_headers(&self.headers, &self.secret_headers, &mut add);
        check_params(&self.url, &self.params, &mut add);
        if let Some(body) = &self.body
            && body.len() > max_body_bytes
        {
            add(
                self.body_kind.clone().unwrap_or_else(|| "body".into()),
                format!(
                    "body is {} bytes; at most {max_body_bytes} allowed",
                    body.len()
                ),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let json = |map: &BTreeMap<String, String>| {
            serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
        };
        Ok((
            method,
            self.url,
            Headers {
                values: self.headers,
                marked,
            },
            json(&self.params),
            self.body_kind,
            self.body,
        ))
    }
}

fn check_url(url: &str, add: &mut impl FnMut(String, String)) {
    if url.is_empty() {
        add(
            "url".into(),
            "required: an absolute http:// or https:// URL".into(),
        );
        return;
    }
    match url::Url::parse(url) {
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => add(
            "url".into(),
            format!("scheme must be http or https, not {}", parsed.scheme()),
        ),
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
            add("url".into(), "must name a host".into())
        }
        Ok(_) => {}
        Err(e) => add(
            "url".into(),
            format!("must be an absolute http:// or https:// URL ({e})"),
        ),
    }
}

/// A call's headers: valid, not the client's own, and within the limits above.
fn check_headers(headers: &BTreeMap<String, String>, add: &mut impl FnMut(String, String)) {
    if headers.len() > MAX_HEADERS {
        add(
            "headers".into(),
            format!("{} headers; at most {MAX_HEADERS}", headers.len()),
        );
    }
    let total: usize = headers.iter().map(|(n, value)| n.len() + value.len()).sum();
    if total > MAX_HEADERS_BYTES {
        add(
            "headers".into(),
            format!("{total} bytes of names and values; at most {MAX_HEADERS_BYTES}"),
        );
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    // In name order, so the refusals read the same at every call.
    for (name, value) in headers {
        let field = format!("headers[{name:?}]");
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            add(field, "header name must be a valid HTTP token".into());
        } else if CLIENT_HEADERS.contains(&lower.as_str()) {
            add(
                field,
                "set by the HTTP client from the body and the connection; leave it out".into(),
            );
        } else if let Some(other) = seen.insert(lower, name) {
            add(
                field,
                format!("the same header as {other:?}: names are case-insensitive"),
            );
        } else if value.len() > MAX_HEADER_VALUE_BYTES {
            add(
                field,
                format!(
                    "value is {} bytes; at most {MAX_HEADER_VALUE_BYTES}",
                    value.len()
                ),
            );
        } else if HeaderValue::from_str(value).is_err() {
            add(
                field,
                "header value must be visible ASCII or tab, without CR or LF".into(),
            );
        }
    }
}

/// The headers a call marks secret: each one it sets, named once. Their names in
/// lower case.
fn check_secret_headers(
    headers: &BTreeMap<String, String>,
    marked: &[String],
    add: &mut impl FnMut(String, String),
) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for (i, name) in marked.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !headers.keys().any(|h| h.eq_ignore_ascii_case(name)) {
            add(
                format!("secret_headers[{i}]"),
                format!("names {name:?}, which headers does not set; name a header of the request"),
            );
        } else if !names.insert(lower) {
            add(
                format!("secret_headers[{i}]"),
                format!("{name:?} is named twice (names are case-insensitive)"),
            );
        }
    }
    names
}

/// A call's query parameters: named, and with the URL within its limit.
fn check_params(
    url: &str,
    params: &BTreeMap<String, String>,
    add: &mut impl FnMut(String, String),
) {
    if params.len() > MAX_PARAMS {
        add(
            "params".into(),
            format!("{} parameters; at most {MAX_PARAMS}", params.len()),
        );
    }
    for name in params.keys() {
        if name.is_empty() || name.chars().any(char::is_control) {
            add(
                format!("params[{name:?}]"),
                "name must not be empty or hold control characters".into(),
            );
        }
    }
    if let Ok(full) = crate::http::merge_params(url, params)
        && full.as_str().len() > MAX_URL_BYTES
    {
        add(
            "url".into(),
            format!(
                "with its params the URL is {} bytes; at most {MAX_URL_BYTES}",
                full.as_str().len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_stored_with_its_method_in_upper_case_and_its_maps_as_json() {
        let call = Call {
            method: "post".into(),
            url: "http://127.0.0.1/x".into(),
            headers: BTreeMap::from([("X-A".into(), "1".into())]),
            ..Default::default()
        };
        let (method, url, headers, params, _, _) = call.checked(10).unwrap();
        assert_eq!(method, "POST");
        assert_eq!(url, "http://127.0.0.1/x");
        assert_eq!(headers.values["X-A"], "1");
        assert!(!headers.has_secrets());
        assert_eq!(params, "{}");
    }

    #[test]
    fn every_broken_rule_is_named_by_its_field() {
        let call = Call {
            method: "BREW".into(),
            url: "ftp://host/".into(),
            headers: BTreeMap::from([
                ("Content-Length".into(), "3".into()),
                ("x-a".into(), "1".into()),
                ("X-A".into(), "2".into()),
            ]),
            secret_headers: vec!["X-A".into(), "x-a".into(), "X-None".into()],
            params: BTreeMap::from([(String::new(), "v".into())]),
            body_kind: Some("text".into()),
            body: Some(vec![b'x'; 11]),
        };
        let fields: Vec<String> = call
            .checked(10)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "method",
                "url",
                "headers[\"Content-Length\"]",
                "headers[\"x-a\"]",
                "secret_headers[1]",
                "secret_headers[2]",
                "params[\"\"]",
                "text"
            ]
        );
    }
}
