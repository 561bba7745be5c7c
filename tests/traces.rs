//! Traces from the caller to the target, as an operator's collector receives them:
//! the service runs as a process exporting over OTLP to a receiver started here,
//! and the loopback target reads the `traceparent` each call carries.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::{self, JobStatus, schedule::Timetable};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

const SOON: Duration = Duration::from_secs(15);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const SECRET: &str = "s3cret-header-value";

/// An OTLP trace receiver that keeps every span it is sent, with its service name.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    exports: Arc<Mutex<Vec<Export>>>,
}

/// One export's `x-tenant` metadata and its resource's attributes.
type Export = (Option<String>, HashMap<String, String>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut kept = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attributes = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|a| Some((a.key.clone(), text(a.value.as_ref()?.value.as_ref()?)?)))
                .collect();
            self.exports
                .lock()
                .unwrap()
                .push((tenant.clone(), attributes));
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    kept.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

impl Receiver {
    async fn start() -> (Receiver, std::net::SocketAddr) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn services(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(service, _)| service.clone())
            .collect()
    }

    /// Waits until `done` holds for the spans received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + SOON;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: received {:#?}",
                summary(&spans)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|a| Some((a.key.clone(), text(a.value.as_ref()?.value.as_ref()?)?)))
        .collect()
}

fn summary(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} kind={} trace={} span={} parent={} {:?}",
                s.name,
                s.kind,
                hex(&s.trace_id),
                hex(&s.span_id),
                hex(&s.parent_span_id),
                attributes(s)
            )
        })
        .collect()
}

fn of_kind(spans: &[Span], kind: SpanKind) -> Vec<&Span> {
    spans.iter().filter(|s| s.kind == kind as i32).collect()
}

/// The `traceparent` header of a request the target received.
fn traceparent(request: &testkit::Received) -> Option<String> {
    request
        .headers
        .iter()
        .find(|(name, _)| name == "traceparent")
        .map(|(_, value)| value.clone())
}

fn otel_env(receiver: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{receiver}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        // Sent within a tenth of a second, so the test need not wait.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

/// The service as a process over `db`, exporting its traces to `receiver`.
fn traced(
    db: &TestDb,
    receiver: std::net::SocketAddr,
    args: &[&str],
    more: &[(&str, &str)],
) -> Process {
    let mut env: Vec<(&str, String)> = otel_env(receiver);
    env.push(("JOBQUEUE_SECRET_KEYS", TEST_SECRET_KEYS.to_string()));
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::start_with_env(&db.url, args, &env)
}

/// `message` as a caller in the trace `TRACE_ID` sends it, from its span
/// `CALLER_SPAN`, with these trace flags (`01`: sampled).
fn from_caller<T>(message: T, flags: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-{flags}")
            .parse()
            .unwrap(),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_s_trace_runs_from_the_caller_through_each_attempt_to_the_target() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(&db, receiver_addr, &[], &[]);
    let mut client = connect(server.addr).await;

    // Fails once (503), then succeeds: two attempts, each its own consumer span.
    let mut spec = get(target.url("/traced?fail=1&api_key=k-123"));
    spec.max_attempts = Some(2);
    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    spec.request
        .as_mut()
        .unwrap()
        .headers
        .insert("authorization".into(), SECRET.into());
    let mut request = from_caller(proto::SubmitJobRequest { job: Some(spec) }, "01");
    request
        .metadata_mut()
        .insert("tracestate", "vendor=kept".parse().unwrap());
    let id = client.submit_job(request).await.unwrap().into_inner().id;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;

    let spans = receiver
        .wait_for("two client spans", |spans| {
            of_kind(spans, SpanKind::Client).len() >= 2
                && of_kind(spans, SpanKind::Consumer).len() >= 2
        })
        .await;
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert!(
        receiver.services().iter().all(|s| s == "jobqueue"),
        "{:?}",
        receiver.services()
    );

    // The RPC's server span, a child of the caller's span.
    let server_span = in_trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.name == "jobqueue.v1.JobService/SubmitJob")
        .unwrap_or_else(|| panic!("a SubmitJob server span: {:#?}", summary(&spans)));
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN);
    let rpc = attributes(server_span);
    assert_eq!(rpc["rpc.system"], "grpc");
    assert_eq!(rpc["rpc.method"], "SubmitJob");
    assert_eq!(rpc["rpc.grpc.status_code"], "0");

    // The producer span for the job, under the server span.
    let producer = in_trace
        .iter()
        .find(|s| s.kind == SpanKind::Producer as i32)
        .expect("a producer span");
    assert_eq!(producer.parent_span_id, server_span.span_id);
    assert_eq!(attributes(producer)["messaging.message.id"], id);
    assert_eq!(producer.trace_state, "vendor=kept", "tracestate travels");

    // One consumer span per attempt, children of the producer, linked to it.
    let mut consumers: Vec<&&Span> = in_trace
        .iter()
        .filter(|s| s.kind == SpanKind::Consumer as i32)
        .collect();
    consumers.sort_by_key(|s| attributes(s)["jobqueue.attempt"].clone());
    assert_eq!(consumers.len(), 2, "{:#?}", summary(&spans));
    for (n, consumer) in consumers.iter().enumerate() {
        let a = attributes(consumer);
        assert_eq!(consumer.parent_span_id, producer.span_id);
        assert_eq!(consumer.links.len(), 1);
        assert_eq!(consumer.links[0].span_id, producer.span_id);
        assert_eq!(a["messaging.destination.name"], "default");
        assert_eq!(a["messaging.message.id"], id);
        assert_eq!(a["jobqueue.attempt"], (n + 1).to_string());
        assert_eq!(a["jobqueue.outcome"], ["retry", "succeeded"][n]);
    }

    // One client span per call, under its attempt; the target saw each one's id.
    let received = target.received_on("/traced");
    assert_eq!(received.len(), 2);
    let mut clients: Vec<&&Span> = in_trace
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(clients.len(), 2, "{:#?}", summary(&spans));
    for (n, client_span) in clients.iter().enumerate() {
        assert_eq!(client_span.parent_span_id, consumers[n].span_id);
        let a = attributes(client_span);
        assert_eq!(a["http.request.method"], "GET");
        assert_eq!(a["server.address"], "127.0.0.1");
        assert_eq!(a["server.port"], target.addr.port().to_string());
        assert_eq!(a["http.response.status_code"], ["503", "200"][n]);
        assert_eq!(
            a.get("error.type").map(String::as_str),
            [Some("503"), None][n]
        );
        assert!(
            a["url.full"].ends_with("/traced?fail=1&api_key=REDACTED"),
            "{}",
            a["url.full"]
        );
        let sent = traceparent(&received[n]).expect("the call carries a traceparent");
        assert_eq!(
            sent,
            format!("00-{TRACE_ID}-{}-01", hex(&client_span.span_id)),
            "the target joins the trace under the client span"
        );
    }
    // No secret in any attribute of any span.
    for span in &spans {
        for (key, value) in attributes(span) {
            assert!(
                !value.contains(SECRET) && !value.contains("k-123"),
                "{key}={value} in {}",
                span.name
            );
        }
    }
    // Health checks make no spans.
    let _ = health_status(server.addr, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans().iter().all(|s| !s.name.contains("Health")),
        "{:#?}",
        summary(&receiver.spans())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_s_run_starts_its_own_trace_linked_to_the_schedule_s_creation() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(&db, receiver_addr, &[], &[]);
    let mut schedules = schedules(server.addr).await;
    let request = from_caller(
        proto::CreateScheduleRequest {
            schedule_id: "traced".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(Timetable::OnceTime(timestamp(jobqueue::now_ms() + 300))),
                job: Some(get(target.url("/run"))),
                ..Default::default()
            }),
        },
        "01",
    );
    schedules.create_schedule(request).await.unwrap();
    let spans = receiver
        .wait_for("the run's client span", |spans| {
            !of_kind(spans, SpanKind::Client).is_empty()
        })
        .await;
    let creation = spans
        .iter()
        .find(|s| s.name == "jobqueue.v1.ScheduleService/CreateSchedule")
        .expect("the creation's span");
    assert_eq!(hex(&creation.trace_id), TRACE_ID);
    let consumer = of_kind(&spans, SpanKind::Consumer)[0];
    assert_ne!(hex(&consumer.trace_id), TRACE_ID, "a trace of its own");
    assert!(consumer.parent_span_id.is_empty(), "a root span");
    assert_eq!(consumer.links.len(), 1);
    assert_eq!(hex(&consumer.links[0].trace_id), TRACE_ID);
    assert_eq!(consumer.links[0].span_id, creation.span_id);
    let received = target.received_on("/run");
    assert_eq!(received.len(), 1);
    let sent = traceparent(&received[0]).expect("a traceparent");
    assert!(sent.contains(&hex(&consumer.trace_id)), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_endpoint_set_nothing_is_traced_or_sent() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let server = Process::start_with_env(&db.url, &[], &[]);
    let mut client = connect(server.addr).await;
    let request = from_caller(
        proto::SubmitJobRequest {
            job: Some(get(target.url("/plain"))),
        },
        "01",
    );
    let id = client.submit_job(request).await.unwrap().into_inner().id;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let received = target.received_on("/plain");
    assert_eq!(received.len(), 1);
    assert_eq!(traceparent(&received[0]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_line_of_a_job_that_failed_for_good_carries_its_trace() {
    let target = Target::start().await.unwrap();
    let (_receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(&db, receiver_addr, &["--log-format", "json"], &[]);
    let mut client = connect(server.addr).await;
    let mut spec = get(target.url("/gone?status=404"));
    spec.max_attempts = Some(1);
    let request = from_caller(proto::SubmitJobRequest { job: Some(spec) }, "01");
    let id = client.submit_job(request).await.unwrap().into_inner().id;
    wait_status(&mut client, &id, JobStatus::Failed, SOON).await;
    let deadline = Instant::now() + SOON;
    let line = loop {
        if let Some(line) = server.log_lines("job failed for good").pop() {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line for the failed job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let fields = &json["fields"];
    assert_eq!(fields["job"], id.as_str(), "{line}");
    assert_eq!(fields["queue"], "default", "{line}");
    assert_eq!(fields["attempts"], 1, "{line}");
    assert_eq!(fields["trace_id"], TRACE_ID, "{line}");
    let span_id = fields["span_id"].as_str().expect("a span id");
    assert_eq!(span_id.len(), 16, "{line}");
    assert_ne!(span_id, CALLER_SPAN, "the job's own span: {line}");
    for key in ["timestamp", "level", "target"] {
        assert!(json.get(key).is_some(), "{key} in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_go_over_http_protobuf_too() {
    use http_body_util::BodyExt;
    use prost::Message;
    // A receiver of OTLP over HTTP: POST /v1/traces, a protobuf body.
    let spans = Arc::new(Mutex::new(Vec::<Span>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    let kept = spans.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            assert_eq!(request.uri().path(), "/v1/traces");
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for r in export.resource_spans {
                                for s in r.scope_spans {
                                    kept.lock().unwrap().extend(s.spans);
                                }
                            }
                            let answer = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let endpoint = format!("http://{receiver_addr}");
    let server = Process::start_with_env(
        &db.url,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let mut client = connect(server.addr).await;
    let id = submit(&mut client, get(target.url("/over-http"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let deadline = Instant::now() + SOON;
    loop {
        let got = spans.lock().unwrap().clone();
        if of_kind(&got, SpanKind::Client).len() == 1 {
            let client_span = of_kind(&got, SpanKind::Client)[0];
            let sent = traceparent(&target.received_on("/over-http")[0]).unwrap();
            assert!(sent.contains(&hex(&client_span.span_id)), "{sent}");
            break;
        }
        assert!(Instant::now() < deadline, "{:#?}", summary(&got));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn an_unknown_otlp_protocol_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .arg("serve")
        .env("JOBQUEUE_LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "JOBQUEUE_DB_URL",
            format!("sqlite://{}/x.db?mode=rwc", dir.path().display()),
        )
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon") && stderr.contains("grpc"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_by_one_process_and_run_by_another_stays_in_its_trace() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let mut first = traced(&db, receiver_addr, &[], &[]);
    let mut client = connect(first.addr).await;
    // Due in a second and a half: the first process is killed before it is.
    let mut spec = get(target.url("/later"));
    spec.schedule_time = Some(timestamp(jobqueue::now_ms() + 1_500));
    let request = from_caller(proto::SubmitJobRequest { job: Some(spec) }, "01");
    let id = client.submit_job(request).await.unwrap().into_inner().id;
    first.kill9();
    let second = traced(&db, receiver_addr, &[], &[]);
    let mut client = connect(second.addr).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let spans = receiver
        .wait_for("the second process's consumer span", |spans| {
            !of_kind(spans, SpanKind::Consumer).is_empty()
        })
        .await;
    let consumer = of_kind(&spans, SpanKind::Consumer)[0];
    assert_eq!(hex(&consumer.trace_id), TRACE_ID, "{:#?}", summary(&spans));
    assert_eq!(
        consumer.parent_span_id.len(),
        8,
        "a child of the stored context"
    );
    assert_ne!(hex(&consumer.parent_span_id), CALLER_SPAN);
    assert_eq!(consumer.links[0].span_id, consumer.parent_span_id);
    let sent = traceparent(&target.received_on("/later")[0]).unwrap();
    assert!(sent.starts_with(&format!("00-{TRACE_ID}-")), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_caller_s_trace_still_reaches_the_target_and_records_nothing() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(
        &db,
        receiver_addr,
        &[],
        &[("OTEL_TRACES_SAMPLER", "parentbased_always_off")],
    );
    let mut client = connect(server.addr).await;
    // The caller's trace, not sampled (flags 00): it travels, nothing is recorded.
    let request = from_caller(
        proto::SubmitJobRequest {
            job: Some(get(target.url("/unsampled"))),
        },
        "00",
    );
    let carried = client.submit_job(request).await.unwrap().into_inner().id;
    // No caller context and a trace nobody samples: no traceparent at all.
    let untraced = submit(&mut client, get(target.url("/untraced"))).await;
    wait_status(&mut client, &carried, JobStatus::Succeeded, SOON).await;
    wait_status(&mut client, &untraced, JobStatus::Succeeded, SOON).await;
    let sent = traceparent(&target.received_on("/unsampled")[0]).expect("a traceparent");
    assert!(sent.starts_with(&format!("00-{TRACE_ID}-")), "{sent}");
    assert!(sent.ends_with("-00"), "not sampled: {sent}");
    assert_eq!(traceparent(&target.received_on("/untraced")[0]), None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        receiver.spans().is_empty(),
        "{:#?}",
        summary(&receiver.spans())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_each_job_a_producer_span_of_its_own() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(&db, receiver_addr, &[], &[]);
    let mut client = connect(server.addr).await;
    let jobs = (0..3)
        .map(|i| get(target.url(&format!("/batch/{i}"))))
        .collect();
    let request = from_caller(proto::SubmitJobsRequest { jobs }, "01");
    let ids: Vec<String> = client
        .submit_jobs(request)
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.id)
        .collect();
    for id in &ids {
        wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
    }
    let spans = receiver
        .wait_for("three client spans", |spans| {
            of_kind(spans, SpanKind::Client).len() == 3
        })
        .await;
    let producers = of_kind(&spans, SpanKind::Producer);
    let mut produced: Vec<String> = producers
        .iter()
        .map(|s| attributes(s)["messaging.message.id"].clone())
        .collect();
    produced.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(produced, expected);
    // Each job's attempt is the child of its own producer span.
    for consumer in of_kind(&spans, SpanKind::Consumer) {
        let job = &attributes(consumer)["messaging.message.id"];
        let producer = producers
            .iter()
            .find(|p| &attributes(p)["messaging.message.id"] == job)
            .unwrap();
        assert_eq!(consumer.parent_span_id, producer.span_id);
        assert_eq!(hex(&consumer.trace_id), TRACE_ID);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_variables_name_the_service_its_resource_and_the_export_headers() {
    let target = Target::start().await.unwrap();
    let (receiver, receiver_addr) = Receiver::start().await;
    let db = TestDb::new().await;
    let server = traced(
        &db,
        receiver_addr,
        &[],
        &[
            ("OTEL_SERVICE_NAME", "billing-queue"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme"),
        ],
    );
    let mut client = connect(server.addr).await;
    let request = from_caller(
        proto::SubmitJobRequest {
            job: Some(get(target.url("/named"))),
        },
        "01",
    );
    let id = client.submit_job(request).await.unwrap().into_inner().id;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    receiver
        .wait_for("the client span", |spans| {
            !of_kind(spans, SpanKind::Client).is_empty()
        })
        .await;
    assert!(receiver.services().iter().all(|s| s == "billing-queue"));
    let exports = receiver.exports.lock().unwrap().clone();
    assert!(!exports.is_empty());
    for (tenant, attributes) in exports {
        assert_eq!(tenant.as_deref(), Some("acme"));
        assert_eq!(attributes["deployment.environment"], "test");
        assert_eq!(attributes["service.version"], env!("CARGO_PKG_VERSION"));
    }
}
