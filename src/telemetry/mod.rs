//! Traces, exported over OTLP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other standard variables
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`, `_HEADERS`, `_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its argument, the batch
//! processor's `OTEL_BSP_*`) apply as the OpenTelemetry SDK reads them. When none
//! is set nothing is made: every path below first asks [`enabled`].
//!
//! The shape of a job's trace: the caller's `traceparent` (gRPC metadata) is the
//! parent of the RPC's server span ([`rpc`]); each job accepted gets a producer
//! span, whose context is stored with the job ([`TraceContext`]); each attempt is a
//! consumer span, a child of that stored context and linked to it, whichever
//! replica runs it and after any restart; the HTTP call is a client span under it
//! ([`call`]), and the request carries that span's `traceparent` to the target. A
//! schedule stores the context it was created in; each run starts a trace of its
//! own, linked to it.

pub mod call;
pub mod rpc;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

/// Spans waiting for export when `OTEL_BSP_MAX_QUEUE_SIZE` is unset.
const SPANS_QUEUED: usize = 16_384;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACER: std::sync::OnceLock<SdkTracer> = std::sync::OnceLock::new();

/// Whether traces are made and exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The tracer every span comes from; only called once [`enabled`].
fn tracer() -> &'static SdkTracer {
    TRACER
        .get()
        .expect("tracing is enabled only once the tracer is set")
}

/// The exporter, flushed by [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporter (it blocks: call it from a
    /// blocking thread).
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(error) = self.provider.shutdown() {
            eprintln!("jobqueue: traces: the last spans were not all sent: {error}");
        }
    }
}

/// Starts the exporter when the environment asks for one. An error names the
/// variable at fault. Must run inside the Tokio runtime (the gRPC exporter uses it).
pub fn init() -> Result<Option<Telemetry>, String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if disabled || endpoint.is_none() {
        return Ok(None);
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(protocol) = &protocol
        && !["grpc", "http/protobuf"].contains(&protocol.as_str())
    {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: expected grpc or http/protobuf"
        ));
    }
    // The transport follows OTEL_EXPORTER_OTLP_PROTOCOL; the endpoint, headers and
    // timeout are read from the environment by the exporter itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| {
            format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT={}: {e}",
                crate::store::masked_url(endpoint.as_deref().unwrap_or_default())
            )
        })?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("jobqueue");
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The batch processor reads OTEL_BSP_*; its default queue of 2,048 spans fills
    // within a tenth of a second at this service's rates (three spans per job), and
    // a full queue drops spans, so unless told otherwise it holds more.
    let mut batch = BatchConfigBuilder::default();
    if set("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batch = batch.with_max_queue_size(SPANS_QUEUED);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build();
    // The sampler comes from OTEL_TRACES_SAMPLER (parent-based, always on, by default).
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let _ = TRACER.set(provider.tracer("jobqueue"));
    ENABLED.store(true, Ordering::Relaxed);
    tracing::info!(
        endpoint = %crate::store::masked_url(endpoint.as_deref().unwrap_or_default()),
        protocol = protocol.as_deref().unwrap_or("http/protobuf"),
        "exporting traces over OTLP"
    );
    Ok(Some(Telemetry { provider }))
}

/// A span context as stored with a job or a schedule: its `traceparent`, then a
/// newline and its `tracestate` when it has one.
pub struct TraceContext;

impl TraceContext {
    /// The stored form of `cx`'s span, when it has a valid one.
    pub fn store(cx: &Context) -> Option<String> {
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(cx, &mut carrier);
        let parent = carrier.remove("traceparent")?;
        Some(
            match carrier.remove("tracestate").filter(|s| !s.is_empty()) {
                Some(state) => format!("{parent}\n{state}"),
                None => parent,
            },
        )
    }

    /// The trace and span ids of a stored context, as hex, for a log line.
    pub fn ids(stored: &str) -> Option<(&str, &str)> {
        let mut parts = stored.lines().next()?.split('-');
        let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        Some((trace, span))
    }

    /// The span context stored in `stored`, as a remote parent; None when it does
    /// not read.
    pub fn restore(stored: &str) -> Option<SpanContext> {
        let (parent, state) = stored.split_once('\n').unwrap_or((stored, ""));
        let carrier = HashMap::from([
            ("traceparent".to_string(), parent.to_string()),
            ("tracestate".to_string(), state.to_string()),
        ]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        let span = cx.span().span_context().clone();
        span.is_valid().then_some(span)
    }
}

/// The messaging attributes a job's spans share.
fn job_attributes(queue: &str, job_id: &str, operation: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "jobqueue"),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.destination.name", queue.to_string()),
        KeyValue::new("messaging.message.id", job_id.to_string()),
    ]
}

/// A job being accepted: a producer span under the RPC's span `rpc`. Its stored
/// form goes with the job; [`Produced::end`] closes it once the job is stored (or
/// refused).
pub struct Produced {
    cx: Context,
}

impl Produced {
    pub fn start(rpc: &Context, queue: &str, job_id: &str) -> Produced {
        let span = tracer()
            .span_builder(format!("create {queue}"))
            .with_kind(SpanKind::Producer)
            .with_attributes(job_attributes(queue, job_id, "create"))
            .start_with_context(tracer(), rpc);
        Produced {
            cx: rpc.with_span(span),
        }
    }

    pub fn stored(&self) -> Option<String> {
        TraceContext::store(&self.cx)
    }

    /// Ends the span; `refused` says why the job was not stored.
    pub fn end(self, refused: Option<&str>) {
        let span = self.cx.span();
        if let Some(why) = refused {
            span.set_status(Status::error(why.to_string()));
        }
        span.end();
    }
}

/// Producer spans for jobs about to be submitted under the RPC's span, each job
/// carrying its span's stored context. A call whose trace is not sampled makes no
/// spans: its jobs carry the caller's context when there is one (so the target
/// still joins the caller's trace), and nothing otherwise (their attempts are not
/// traced either).
pub fn produce<'a>(
    rpc: Option<&rpc::RpcTrace>,
    jobs: impl Iterator<Item = &'a mut crate::store::jobs::Model>,
) -> Vec<Produced> {
    let Some(rpc) = rpc.filter(|rpc| rpc.carried()) else {
        return Vec::new();
    };
    if !rpc.cx.span().span_context().is_sampled() {
        let carried = TraceContext::store(&rpc.cx);
        for job in jobs {
            job.trace_context = carried.clone();
        }
        return Vec::new();
    }
    jobs.map(|job| {
        let produced = Produced::start(&rpc.cx, &job.queue, &job.id);
        job.trace_context = produced.stored();
        produced
    })
    .collect()
}

/// Ends the producer spans of a submit, with its refusal when it was refused.
pub fn produced<T, E: std::fmt::Display>(produced: Vec<Produced>, result: &Result<T, E>) {
    let refused = result.as_ref().err().map(ToString::to_string);
    for each in produced {
        each.end(refused.as_deref());
    }
}

/// Whether a job's attempts are traced: it was submitted in a trace, or it is a
/// schedule's run (each starts a trace of its own).
pub fn traces_attempts(stored: Option<&str>, from_schedule: bool) -> bool {
    enabled() && (stored.is_some() || from_schedule)
}

/// One attempt of a job: a consumer span, a child of the job's stored context and
/// linked to it; for a schedule's run, a trace of its own linked to the schedule.
pub fn attempt(
    stored: Option<&str>,
    from_schedule: bool,
    queue: &str,
    job_id: &str,
    attempt: i32,
) -> Context {
    let origin = stored.and_then(TraceContext::restore);
    let parent = match (&origin, from_schedule) {
        (Some(origin), false) => Context::new().with_remote_span_context(origin.clone()),
        _ => Context::new(),
    };
    let mut attributes = job_attributes(queue, job_id, "process");
    attributes.push(KeyValue::new("jobqueue.attempt", i64::from(attempt)));
    let mut builder = tracer()
        .span_builder(format!("process {queue}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes);
    if let Some(origin) = origin {
        builder = builder.with_links(vec![Link::with_context(origin)]);
    }
    let span = builder.start_with_context(tracer(), &parent);
    parent.with_span(span)
}

/// Ends an attempt's span with what the attempt meant for its job.
pub fn attempt_ended(cx: &Context, outcome: &'static str, failed: Option<&str>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("jobqueue.outcome", outcome));
    if let Some(message) = failed {
        span.set_status(Status::error(message.to_string()));
    }
    span.end();
}
