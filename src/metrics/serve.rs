//! The scrape endpoint: `GET` and `HEAD` on `/metrics` (any query string), in
//! OpenMetrics when the scraper's `Accept` asks for it and in Prometheus' text
//! format otherwise, over HTTP/1.1 with keep-alive.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::store::Store;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A slow or idle client is dropped after this long without a complete request.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves scrapes on `listener` until `stop`. Each scrape first reads what the
/// database holds (queue depths, schedules) from `store`.
pub async fn serve(listener: TcpListener, metrics: Metrics, store: Store, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let metrics = metrics.clone();
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let metrics = metrics.clone();
                let store = store.clone();
                async move { Ok::<_, Infallible>(answer(request, &metrics, &store).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "metrics connection");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    metrics: &Metrics,
    store: &Store,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut refused = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "/metrics answers GET and HEAD\n",
            );
            refused
                .headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
            return refused;
        }
    };
    let openmetrics = wants_openmetrics(request.headers().get(ACCEPT));
    let body = {
        let _one_at_a_time = metrics.inner.scrape.lock().await;
        refresh_from_database(metrics, store).await;
        metrics.render(openmetrics)
    };
    let content_type = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    let length = body.len();
    let mut response = Response::new(Full::new(match head {
        true => Bytes::new(),
        false => Bytes::from(body),
    }));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    // HEAD says how long the GET's body would be.
    headers.insert(http::header::CONTENT_LENGTH, length.into());
    response
}

/// Reads the queue depths and schedule counts into the gauges; on a database
/// error the gauges keep their last values and the error is logged.
async fn refresh_from_database(metrics: &Metrics, store: &Store) {
    let now = crate::now_ms();
    let read = async {
        let depths = store.queue_depths(now).await?;
        let schedules = store.schedule_counts().await?;
        Ok::<_, crate::store::StoreError>((depths, schedules))
    };
    match read.await {
        Ok((depths, schedules)) => metrics.database_gauges(&depths, &schedules, now),
        Err(error) => tracing::warn!(%error, "metrics: cannot read queue depths"),
    }
}

/// Whether the `Accept` header asks for OpenMetrics (and does not rank it at q=0).
fn wants_openmetrics(accept: Option<&http::HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        kind.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_served_to_scrapers_that_ask_for_it() {
        let asks = |v: &'static str| wants_openmetrics(Some(&http::HeaderValue::from_static(v)));
        // Prometheus' own Accept header.
        assert!(asks(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(asks("application/openmetrics-text"));
        assert!(!asks("text/plain;version=0.0.4"));
        assert!(!asks("application/openmetrics-text;q=0"));
        assert!(!asks("*/*"));
        assert!(!wants_openmetrics(None));
    }
}
