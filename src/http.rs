//! The shared outbound client: one connection pool for every job, a whole-call
//! timeout, and response capture that never holds more than the result cap.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::{Duration, SystemTime};

use reqwest::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};

use crate::job::{ErrorClass, parse_retry_after};
use crate::outbound::guard::{self, Guard};

/// A call, ready to send.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Redirects to follow, each hop's destination judged as the first's; 0: a
    /// 3xx is the answer.
    pub follow_redirects: u32,
    /// Where its queue holds its calls to, every hop's (none: anywhere allowed).
    pub destinations: Option<std::sync::Arc<crate::outbound::address::RuleList>>,
}

/// A response as kept.
#[derive(Debug, Clone)]
pub struct Captured {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The full size when known (read in full or announced), else the bytes read.
    pub body_size: u64,
    pub truncated: bool,
    pub retry_after: Option<Duration>,
}

/// A call that got no response.
#[derive(Debug, Clone)]
pub struct CallError {
    pub class: ErrorClass,
    pub message: String,
}

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    result_max_bytes: usize,
    guard: Guard,
}

impl HttpClient {
    /// The client, its destinations judged by `guard`: names through its resolver
    /// (the only one), addresses before each call. No proxy from the environment
    /// (it would make the proxy the destination judged) and no redirects followed
    /// (each hop would be a destination unjudged): a 3xx is the attempt's outcome.
    pub fn new(result_max_bytes: usize, guard: Guard) -> Result<HttpClient, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("jobqueue/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(guard.resolver())
            .build()?;
        Ok(HttpClient {
            client,
            result_max_bytes,
            guard,
        })
    }

    /// Makes the call. The timeout covers connecting, sending and reading the body.
    pub async fn call(&self, call: Call) -> Result<Captured, CallError> {
        let timeout = call.timeout;
        match tokio::time::timeout(timeout, self.send(call)).await {
            Ok(result) => result,
            Err(_) => Err(CallError {
                class: ErrorClass::Timeout,
                message: format!(
                    "no complete response within {}",
                    humantime::format_duration(timeout)
                ),
            }),
        }
    }

    /// Sends the call, following redirects by hand when it asks to: each hop's
    /// destination judged again (by the resolver for a name, here for an
    /// address), credentials left behind when the host changes, and the method
    /// turned to GET where browsers turn it (303, and 301 or 302 after a POST).
    async fn send(&self, call: Call) -> Result<Captured, CallError> {
        let Call {
            mut method,
            mut url,
            mut headers,
            mut body,
            follow_redirects,
            destinations,
            ..
        } = call;
        let mut hops = 0;
        loop {
            if let Err(refused) = self.guard.literal(&url) {
                return Err(CallError {
                    class: ErrorClass::DestinationRefused,
                    message: refused.to_string(),
                });
            }
            if let Some(rules) = &destinations
                && !rules.admits(&url)
            {
                return Err(CallError {
                    class: ErrorClass::DestinationRefused,
                    message: format!(
                        "{} is not among the destinations of the job's queue",
                        url.host_str().unwrap_or_default()
                    ),
                });
            }
            // Kept for the next hop only when there can be one: a call that follows
            // no redirect hands its headers and body over as they are.
            let more = hops < follow_redirects;
            let (these_headers, this_body) = if more {
                (headers.clone(), body.clone())
            } else {
                (std::mem::take(&mut headers), body.take())
            };
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(these_headers);
            if let Some(body) = this_body {
                request = request.body(body);
            }
            let response = request.send().await.map_err(classify)?;
            let status = response.status();
            let next = (status.is_redirection() && more)
                .then(|| redirect_target(&response, &url))
                .flatten();
            let Some(next) = next else {
                return self.capture(response).await;
            };
            hops += 1;
            let to_get = status == reqwest::StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302)
                    && method != reqwest::Method::GET
                    && method != reqwest::Method::HEAD);
            if to_get {
                method = reqwest::Method::GET;
                body = None;
                headers.remove(CONTENT_TYPE);
                headers.remove(CONTENT_LENGTH);
            }
            let same_origin = next.scheme() == url.scheme()
                && next.host_str() == url.host_str()
                && next.port_or_known_default() == url.port_or_known_default();
            if !same_origin {
                // Secret headers (credentials, and those the job marked) are
                // marked sensitive when the call is built: never sent on to
                // another origin.
                let secret: Vec<HeaderName> = headers
                    .iter()
                    .filter(|(_, value)| value.is_sensitive())
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in secret {
                    headers.remove(name);
                }
            }
            url = next;
        }
    }

    async fn capture(&self, mut response: reqwest::Response) -> Result<Captured, CallError> {
        let status = response.status().as_u16();
        let mut headers = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());

        let mut body =
            Vec::with_capacity(announced.unwrap_or(0).min(self.result_max_bytes as u64) as usize);
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let room = self.result_max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                // Stop reading: a huge or endless body must not hold the slot or memory.
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let body_size = match (truncated, announced) {
            (true, Some(n)) => n,
            _ => body.len() as u64,
        };
        Ok(Captured {
            status,
            headers,
            body,
            body_size,
            truncated,
            retry_after,
        })
    }
}

/// Where a redirect points, when it points somewhere an HTTP call can go.
fn redirect_target(response: &reqwest::Response, from: &url::Url) -> Option<url::Url> {
    let location = response.headers().get(reqwest::header::LOCATION)?;
    let next = from.join(location.to_str().ok()?).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

/// Sorts a transport failure into the classes the retry rules know.
fn classify(error: reqwest::Error) -> CallError {
    if let Some(refused) = guard::refusal_in(&error) {
        return CallError {
            class: ErrorClass::DestinationRefused,
            message: refused.to_string(),
        };
    }
    let message = describe(&error);
    let class = if error.is_timeout() {
        ErrorClass::Timeout
    } else if error.is_connect() {
        ErrorClass::Connect
    } else if error.is_redirect() || error.is_builder() || is_parse_error(&error) {
        ErrorClass::Protocol
    } else {
        ErrorClass::Network
    };
    CallError { class, message }
}

fn is_parse_error(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_parse()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error and its causes in one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}

/// The Content-Type a body kind gets when the job sets none.
pub fn default_content_type(body_kind: &str) -> HeaderValue {
    HeaderValue::from_static(match body_kind {
        "json" => "application/json",
        "text" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    })
}

/// Builds the header map of a call from stored headers.
pub fn header_map(
    headers: &BTreeMap<String, String>,
    body_kind: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len() + 2);
    for (name, value) in headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name {name:?}"))?;
        let value = HeaderValue::from_str(value).map_err(|_| format!("header {name} value"))?;
        map.append(name, value);
    }
    if let Some(kind) = body_kind
        && !map.contains_key(CONTENT_TYPE)
    {
        map.insert(CONTENT_TYPE, default_content_type(kind));
    }
    // A job that sets its own Idempotency-Key header keeps it.
    let idempotency = HeaderName::from_static("idempotency-key");
    if let Some(key) = idempotency_key
        && !map.contains_key(&idempotency)
        && let Ok(value) = HeaderValue::from_str(key)
    {
        map.insert(idempotency, value);
    }
    Ok(map)
}

/// The URL with `params` appended to whatever query string it already has.
pub fn merge_params(
    url: &str,
    params: &BTreeMap<String, String>,
) -> Result<url::Url, url::ParseError> {
    let mut url = url::Url::parse(url)?;
    if !params.is_empty() {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_appended_to_the_urls_own_query() {
        let params = BTreeMap::from([
            ("b".to_string(), "2 3".to_string()),
            ("c".to_string(), "&".to_string()),
        ]);
        let url = merge_params("http://h/p?a=1", &params).unwrap();
        assert_eq!(url.as_str(), "http://h/p?a=1&b=2+3&c=%26");
        let kept = merge_params("http://h/p?a=1&a=2", &BTreeMap::new()).unwrap();
        assert_eq!(kept.as_str(), "http://h/p?a=1&a=2");
    }
}
