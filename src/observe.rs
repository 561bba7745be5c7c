//! Every gRPC call observed once, by one tower layer in front of every service:
//! its server span started (when tracing is on) and, when the call ends, counted
//! and timed in the metrics and its span ended with its status.
//!
//! The status is learnt from the response headers when the call was refused
//! before any message, else from the trailers at the end of the response stream;
//! a response dropped before either is a call the client gave up (`CANCELLED`),
//! and a stream that ends without a status failed in transport (`UNKNOWN`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};

use crate::metrics::Metrics;
use crate::telemetry;

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

/// Told the call's status code, once.
type Report = Box<dyn FnOnce(i32) + Send>;

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `response`, reporting its status to `report` when it is known.
fn watch<B>(response: http::Response<B>, report: Report) -> http::Response<OnStatus<B>> {
    let mut report = Some(report);
    if let Some(code) = grpc_status(response.headers())
        && let Some(report) = report.take()
    {
        report(code);
    }
    response.map(|inner| OnStatus { inner, report })
}

pin_project_lite::pin_project! {
    /// A response body watched for the status that ends its call.
    pub struct OnStatus<B> {
        #[pin]
        inner: B,
        report: Option<Report>,
    }

    impl<B> PinnedDrop for OnStatus<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(report) = this.project().report.take() {
                report(CANCELLED);
            }
        }
    }
}

impl<B: Body> Body for OnStatus<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().and_then(grpc_status),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Some(UNKNOWN),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(report) = this.report.take()
        {
            report(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Observes every call that passes through it.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Metrics,
}

impl ObserveLayer {
    pub fn new(metrics: Metrics) -> ObserveLayer {
        ObserveLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Body,
{
    type Response = http::Response<OnStatus<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_string();
        let span = telemetry::rpc::start(&mut request);
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let report = move |code| {
                metrics.grpc().record(&path, code, started);
                if let Some(span) = span {
                    telemetry::rpc::end(&span, code);
                }
            };
            Ok(watch(response, Box::new(report)))
        })
    }
}
