//! The metrics endpoint as a scraper meets it: counters, histograms and gauges
//! after a known workload, read by the Prometheus project's own parsers in both
//! exposition formats, and the HTTP answers a scraper relies on.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobStatus, schedule::Timetable};
use serde_json::Value;

const SOON: Duration = Duration::from_secs(10);

/// One parsed sample: its name, its labels and its value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every sample of `name` whose labels include `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The one sample of `name` with exactly these labels (besides `le`).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, labels);
    let exact: Vec<_> = found
        .iter()
        .filter(|s| s.labels.len() == labels.len())
        .collect();
    assert_eq!(exact.len(), 1, "{name}{labels:?}: {found:?}");
    exact[0].value
}

/// Both parses of one scrape, by the Python parsers.
fn scrape_and_parse(addr: std::net::SocketAddr) -> Option<(Vec<Sample>, Vec<Sample>)> {
    if !tool_available(
        Command::new("python3").args(["-c", "import prometheus_client"]),
        "Python prometheus_client",
    ) {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/metrics_check.py");
    let output = Command::new("python3")
        .args([script, &addr.to_string()])
        .output()
        .expect("python3 ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the parsers refused the page:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_str(&stdout).expect("JSON from the checker");
    let read = |format: &str| -> Vec<Sample> {
        parsed[format]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| Sample {
                name: s[0].as_str().unwrap().to_string(),
                labels: s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: s[2].as_f64().unwrap(),
            })
            .collect()
    };
    Some((read("text"), read("openmetrics")))
}

/// A histogram's buckets rise with `le` and end at `+Inf` with its count.
fn histogram_is_whole(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut buckets: Vec<(f64, f64)> = find(samples, &format!("{name}_bucket"), labels)
        .iter()
        .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 5, "{name}{labels:?}: buckets {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}: cumulative buckets {buckets:?}"
    );
    let count = value(samples, &format!("{name}_count"), labels);
    let last = buckets.last().unwrap();
    assert!(
        last.0.is_infinite() && last.1 == count,
        "{name}: {buckets:?}"
    );
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraper_reads_counts_histograms_and_gauges_after_a_known_workload() {
    let target = Target::start().await.unwrap();
    let metrics_addr = free_port();
    let server = Server::start_with(|c| c.metrics_addr = Some(metrics_addr)).await;
    let mut client = server.client.clone();
    let mut queues = queues(server.addr).await;
    for name in ["mail", "hooks", "quiet"] {
        queues
            .create_queue(proto::CreateQueueRequest {
                queue: Some(proto::Queue {
                    name: name.into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("queue created");
    }
    // Before any job: every queue has its series, at zero.
    let (text, _) = match scrape_and_parse(metrics_addr) {
        Some(parsed) => parsed,
        None => return,
    };
    for state in ["waiting", "scheduled", "running"] {
        assert_eq!(
            value(
                &text,
                "jobqueue_queue_jobs",
                &[("queue", "quiet"), ("state", state)]
            ),
            0.0
        );
    }
    assert_eq!(
        value(
            &text,
            "jobqueue_jobs_submitted_total",
            &[("queue", "quiet")]
        ),
        0.0
    );

    let good = submit_all(
        &mut client,
        (0..3)
            .map(|i| get_in("mail", target.url(&format!("/m/{i}"))))
            .collect(),
    )
    .await;
    let mut failing = get_in("hooks", target.url("/h?status=503"));
    failing.max_attempts = Some(2);
    failing.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    let bad = submit(&mut client, failing).await;
    let mut timing_out = get_in("hooks", target.url("/slow?delay_ms=2000"));
    timing_out.max_attempts = Some(2);
    timing_out.timeout = Some(ms(100));
    timing_out.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    let slow = submit(&mut client, timing_out).await;
    // Due in an hour: scheduled, not waiting.
    let mut later = get_in("quiet", target.url("/later"));
    later.schedule_time = Some(timestamp(jobqueue::now_ms() + 3_600_000));
    submit(&mut client, later).await;
    for id in &good {
        wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
    }
    wait_status(&mut client, &bad, JobStatus::Failed, SOON).await;
    wait_status(&mut client, &slow, JobStatus::Failed, SOON).await;
    // A refusal, counted under its code.
    let missing = client
        .get_job(proto::GetJobRequest {
            id: "j_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Schedules: one active, one paused.
    let mut schedules = schedules(server.addr).await;
    for id in ["hourly", "stopped"] {
        schedules
            .create_schedule(proto::CreateScheduleRequest {
                schedule_id: id.into(),
                schedule: Some(proto::Schedule {
                    timetable: Some(Timetable::Interval(ms(3_600_000))),
                    start_time: Some(timestamp(jobqueue::now_ms() + 3_600_000)),
                    job: Some(get(target.url("/hourly"))),
                    ..Default::default()
                }),
            })
            .await
            .expect("schedule created");
    }
    schedules
        .pause_schedule(proto::PauseScheduleRequest {
            id: "stopped".into(),
        })
        .await
        .expect("paused");
    // One run of a one-shot, in the quiet queue: its lateness is measured, and
    // the schedule is completed.
    let mut run = get_in("quiet", target.url("/once"));
    run.max_attempts = Some(1);
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "once".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(Timetable::OnceTime(timestamp(jobqueue::now_ms() + 200))),
                job: Some(run),
                ..Default::default()
            }),
        })
        .await
        .expect("schedule created");
    let deadline = std::time::Instant::now() + SOON;
    while target.received_on("/once").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the one-shot fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its outcome written: nothing of it is still running.
    let once = all_runs(&mut schedules, "once").await;
    assert_eq!(once.len(), 1);
    wait_status(&mut client, &once[0].job_id, JobStatus::Succeeded, SOON).await;

    let (text, openmetrics) = scrape_and_parse(metrics_addr).expect("parsers available");
    for samples in [&text, &openmetrics] {
        let mail = [("queue", "mail")];
        let hooks = [("queue", "hooks")];
        assert_eq!(value(samples, "jobqueue_jobs_submitted_total", &mail), 3.0);
        assert_eq!(value(samples, "jobqueue_jobs_submitted_total", &hooks), 2.0);
        assert_eq!(
            value(samples, "jobqueue_attempts_started_total", &hooks),
            4.0
        );
        let finished = |queue: &str, outcome: &str| {
            value(
                samples,
                "jobqueue_attempts_finished_total",
                &[("queue", queue), ("outcome", outcome)],
            )
        };
        assert_eq!(finished("mail", "succeeded"), 3.0);
        assert_eq!(finished("hooks", "retried"), 2.0);
        assert_eq!(finished("hooks", "failed"), 2.0);
        // Retries by why: one 503, one timeout.
        let retries = |reason: &str| {
            value(
                samples,
                "jobqueue_attempt_retries_total",
                &[("queue", "hooks"), ("reason", reason)],
            )
        };
        assert_eq!(retries("http_5xx"), 1.0);
        assert_eq!(retries("timeout"), 1.0);
        // Histograms: every attempt timed, every start waited, every end latency.
        assert_eq!(
            histogram_is_whole(samples, "jobqueue_attempt_duration_seconds", &hooks),
            4.0
        );
        assert_eq!(
            histogram_is_whole(samples, "jobqueue_queue_wait_seconds", &mail),
            3.0
        );
        assert_eq!(
            histogram_is_whole(samples, "jobqueue_job_latency_seconds", &hooks),
            2.0
        );
        // The timed-out attempts took at least their 100 ms timeout.
        let under_50ms = find(
            samples,
            "jobqueue_attempt_duration_seconds_bucket",
            &[("queue", "hooks"), ("le", "0.064")],
        );
        assert_eq!(under_50ms.len(), 1, "a 64 ms bucket");
        assert!(under_50ms[0].value <= 2.0, "{under_50ms:?}");
        assert!(histogram_is_whole(samples, "jobqueue_writer_turn_duration_seconds", &[]) > 0.0);
        assert!(histogram_is_whole(samples, "jobqueue_writer_commit_duration_seconds", &[]) > 0.0);
        // What the database holds.
        let jobs = |queue: &str, state: &str| {
            value(
                samples,
                "jobqueue_queue_jobs",
                &[("queue", queue), ("state", state)],
            )
        };
        assert_eq!(jobs("quiet", "scheduled"), 1.0);
        assert_eq!(jobs("quiet", "waiting"), 0.0);
        assert_eq!(jobs("mail", "running"), 0.0);
        assert_eq!(
            value(
                samples,
                "jobqueue_queue_oldest_waiting_age_seconds",
                &[("queue", "quiet")]
            ),
            0.0
        );
        let schedules = |state: &str| value(samples, "jobqueue_schedules", &[("state", state)]);
        assert_eq!(schedules("active"), 1.0);
        assert_eq!(schedules("paused"), 1.0);
        assert_eq!(schedules("completed"), 1.0);
        assert_eq!(
            histogram_is_whole(
                samples,
                "jobqueue_schedule_lateness_seconds",
                &[("queue", "quiet")]
            ),
            1.0
        );
        assert_eq!(value(samples, "jobqueue_calls_in_flight", &mail), 0.0);
        let build = find(samples, "jobqueue_build_info", &[]);
        assert_eq!(build.len(), 1, "{build:?}");
        assert_eq!(build[0].labels["version"], env!("CARGO_PKG_VERSION"));
        let commit = &build[0].labels["build"];
        assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{build:?}"
        );
        assert!(
            ["sqlite", "postgres"].contains(&build[0].labels["database"].as_str()),
            "{build:?}"
        );
        // gRPC calls by method and code.
        let handled = |method: &str, code: &str| {
            value(
                samples,
                "grpc_server_handled_total",
                &[
                    ("grpc_service", "jobqueue.v1.JobService"),
                    ("grpc_method", method),
                    ("grpc_code", code),
                ],
            )
        };
        assert_eq!(handled("GetJob", "NOT_FOUND"), 1.0);
        assert_eq!(handled("SubmitJob", "OK"), 3.0);
        assert_eq!(handled("SubmitJobs", "OK"), 1.0);
        assert_eq!(
            histogram_is_whole(
                samples,
                "grpc_server_handling_seconds",
                &[
                    ("grpc_service", "jobqueue.v1.JobService"),
                    ("grpc_method", "SubmitJob")
                ]
            ),
            3.0
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_head_query_strings_and_refuses_other_methods_and_paths() {
    let metrics_addr = free_port();
    let server = Server::start_with(|c| c.metrics_addr = Some(metrics_addr)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{metrics_addr}/metrics");
    let get = http.get(format!("{url}?x=1")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let length: usize = get.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = get.text().await.unwrap();
    assert_eq!(body.len(), length);
    assert!(body.contains("# TYPE jobqueue_watchers gauge"), "{body}");
    assert!(!body.contains("# EOF"), "the text format has no EOF marker");

    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let announced: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(announced > 0);
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");

    let om = http
        .get(&url)
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));

    let post = http.post(&url).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let elsewhere = http
        .get(format!("http://{metrics_addr}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_share_one_series_and_a_watch_given_up_counts_as_cancelled() {
    let metrics_addr = free_port();
    let server = Server::start_with(|c| c.metrics_addr = Some(metrics_addr)).await;
    // Made-up paths: each is UNIMPLEMENTED, none gets a series of its own.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for n in 0..5 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/made.up.Service{n}/Method{n}").parse().unwrap();
        let codec = tonic_prost::ProstCodec::<proto::GetJobRequest, proto::Job>::default();
        let refused = grpc
            .unary(
                tonic::Request::new(proto::GetJobRequest::default()),
                path,
                codec,
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
    }
    // A watch the client drops before its end.
    let mut client = server.client.clone();
    let stream = client
        .watch_jobs(proto::WatchJobsRequest {
            all: true,
            ..Default::default()
        })
        .await
        .expect("watching");
    drop(stream);

    let unknown = "grpc_server_handled_total{grpc_service=\"unknown\",grpc_method=\"unknown\",grpc_code=\"UNIMPLEMENTED\"}";
    let cancelled = "grpc_server_handled_total{grpc_service=\"jobqueue.v1.JobService\",grpc_method=\"WatchJobs\",grpc_code=\"CANCELLED\"}";
    let deadline = std::time::Instant::now() + SOON;
    let page = loop {
        let page = metrics_page(metrics_addr).await;
        if sample(&page, cancelled).is_some() {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped watch is counted:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&page, unknown), Some(5.0), "{page}");
    assert!(!page.contains("made.up"), "{page}");
    assert_eq!(sample(&page, cancelled), Some(1.0), "{page}");
    server.stop().await;
}
