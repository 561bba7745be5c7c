//! A server span per gRPC call (health checks left out), a child of the caller's
//! `traceparent` when the metadata carries one. The handler finds the span's
//! context in the request's extensions ([`rpc_context`]); the span ends with the
//! call's status, when its response stream ends.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::{enabled, tracer};
use crate::call_status::{self, OnStatus, Report};

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

#[derive(Clone, Default)]
pub struct RpcSpanLayer;

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = RpcSpanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcSpanService { inner }
    }
}

#[derive(Clone)]
pub struct RpcSpanService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcSpanService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body,
{
    type Response = http::Response<OnStatus<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let cx = (enabled() && !path.starts_with(UNTRACED)).then(|| {
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
            RpcTrace {
                cx: parent.with_span(span),
                from_caller,
            }
        });
        if let Some(trace) = &cx {
            request.extensions_mut().insert(trace.clone());
        }
        let cx = cx.map(|trace| trace.cx);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let report: Report = match cx {
                Some(cx) => Box::new(move |code| end(&cx, code)),
                None => Box::new(|_| {}),
            };
            Ok(call_status::watch(response, report))
        })
    }
}

/// Ends the span with the call's status; the codes a server is at fault for mark
/// it as an error (as the conventions for gRPC servers say).
fn end(cx: &Context, code: i32) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    if [2, 4, 12, 13, 14, 15].contains(&code) {
        span.set_status(Status::error(""));
    }
    span.end();
}
