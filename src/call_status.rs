//! The gRPC status a call ended with, as the layers that observe calls (metrics,
//! traces) learn it: from the response headers when the call was refused before
//! any message, else from the trailers at the end of the response stream; a
//! response dropped before either is a call the client gave up (`CANCELLED`), and
//! a stream that ends without a status failed in transport (`UNKNOWN`).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

/// Told the call's status code, once.
pub type Report = Box<dyn FnOnce(i32) + Send>;

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `response`, reporting its status to `report` when it is known.
pub fn watch<B>(response: http::Response<B>, report: Report) -> http::Response<OnStatus<B>> {
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
