//! A server span per gRPC call (health checks left out), a child of the caller's
//! `traceparent` when the metadata carries one. The handler finds the span's
//! context in the request's extensions ([`rpc_context`]); the span ends with the
//! call's status, when its response stream ends (`crate::observe` starts and ends
//! it).

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::{enabled, tracer};

/// Calls that get no span: Kubernetes probes them every few seconds.
const UNTRACED: &str = "/grpc.health.v1.Health/";

/// The call a handler serves, as traced.
#[derive(Clone)]
pub struct RpcTrace {
    /// The call's server span.
    pub cx: Context,
    /// Whether the caller sent a trace context of its own: then it travels with
    /// the call's work even when this service records none of it.
    pub from_caller: bool,
}

impl RpcTrace {
    /// Whether what follows from the call is worth tracing: it is recorded, or
    /// it continues a caller's trace.
    pub fn carried(&self) -> bool {
        self.from_caller || self.cx.span().span_context().is_sampled()
    }
}

/// The trace of the call a handler serves, when tracing is on.
pub fn rpc_context<T>(request: &tonic::Request<T>) -> Option<&RpcTrace> {
    request.extensions().get::<RpcTrace>()
}

/// Starts the server span of a call when tracing is on (health checks excepted),
/// and puts its [`RpcTrace`] into the request's extensions for the handler.
pub fn start<B>(request: &mut http::Request<B>) -> Option<Context> {
    let path = request.uri().path();
    if !enabled() || path.starts_with(UNTRACED) {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let from_caller = parent.span().span_context().is_valid();
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracer()
        .span_builder(name.to_string())
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_string()),
            KeyValue::new("rpc.method", method.to_string()),
        ])
        .start_with_context(tracer(), &parent);
    let cx = parent.with_span(span);
    request.extensions_mut().insert(RpcTrace {
        cx: cx.clone(),
        from_caller,
    });
    Some(cx)
}

/// Ends the span with the call's status; the codes a server is at fault for mark
/// it as an error (as the conventions for gRPC servers say).
pub fn end(cx: &Context, code: i32) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if [2, 4, 12, 13, 14, 15].contains(&code) {
        span.set_status(Status::error(""));
    }
    span.end();
}
