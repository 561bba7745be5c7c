//! The client span of an attempt's HTTP call, after OpenTelemetry's semantic
//! conventions for HTTP clients, and the `traceparent` the request carries to its
//! target. Nothing secret goes into it: no header is recorded, and the URL's
//! credentials and the values of query parameters that carry secrets are redacted.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::tracer;

const REDACTED: &str = "REDACTED";

/// Query parameters whose values are secrets: the conventions' list, and any name
/// that says it holds a key, token, secret, password or signature.
fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["awsaccesskeyid", "signature", "sig", "x-goog-signature"].contains(&name.as_str())
        || [
            "key",
            "token",
            "secret",
            "password",
            "passwd",
            "signature",
            "auth",
        ]
        .iter()
        .any(|word| name.contains(word))
}

/// `url` as the span may show it.
pub fn redacted_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username(REDACTED);
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some(REDACTED));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = match secret_param(&name) {
                    true => REDACTED.to_string(),
                    false => value.into_owned(),
                };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// Starts the client span of a call under the attempt's span `attempt`, and puts
/// its `traceparent` (and `tracestate`) into the request's headers.
pub fn start(
    attempt: &Context,
    method: &reqwest::Method,
    url: &url::Url,
    headers: &mut http::HeaderMap,
) -> Context {
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.as_str().to_string()),
        KeyValue::new("url.full", redacted_url(url)),
    ];
    if let Some(host) = url.host_str() {
        attributes.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(port) = url.port_or_known_default() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    let span = tracer()
        .span_builder(method.as_str().to_string())
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer(), attempt);
    let cx = attempt.with_span(span);
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    cx
}

/// Ends a call's span: the response's status, or the class of error that left it
/// without one.
pub fn ended(cx: &Context, status: Option<u16>, error_class: Option<&str>) {
    let span = cx.span();
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 400 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
    }
    if let Some(class) = error_class {
        span.set_attribute(KeyValue::new("error.type", class.to_string()));
        span.set_status(Status::error(""));
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_secret_parameters_are_redacted() {
        let url = url::Url::parse(
            "https://user:pw@api.example.com:8443/hook?page=2&api_key=k1&Signature=s&sig=t&token=u",
        )
        .unwrap();
        let shown = redacted_url(&url);
        assert_eq!(
            shown,
            "https://REDACTED:REDACTED@api.example.com:8443/hook?page=2&api_key=REDACTED\
             &Signature=REDACTED&sig=REDACTED&token=REDACTED"
        );
        let plain = url::Url::parse("http://127.0.0.1:9/a?b=1").unwrap();
        assert_eq!(redacted_url(&plain), "http://127.0.0.1:9/a?b=1");
    }
}
