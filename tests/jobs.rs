//! The core job lifecycle through the real gRPC API: submit, run, read back.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobStatus};

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_submitted_call_reaches_the_target_and_its_response_is_kept() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();

    let mut body = prost_types::Struct::default();
    body.fields.insert(
        "n".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::NumberValue(7.0)),
        },
    );
    let spec = proto::JobSpec {
        request: Some(proto::HttpRequest {
            method: "post".into(),
            url: target.url("/hook?a=1"),
            headers: HashMap::from([("x-team".into(), "blue".into())]),
            secret_headers: Vec::new(),
            params: HashMap::from([("b".into(), "two words".into())]),
            body: Some(proto::http_request::Body::Json(prost_types::Value {
                kind: Some(prost_types::value::Kind::StructValue(body)),
            })),
        }),
        tags: vec!["billing".into(), "eu".into()],
        idempotency_key: "order-42".into(),
        ..Default::default()
    };
    let answer = client
        .submit_job(proto::SubmitJobRequest { job: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer.id.starts_with("j_") && answer.id.len() == 28,
        "id {}",
        answer.id
    );
    assert_eq!(answer.status, JobStatus::Queued as i32);
    assert!(!answer.existing);

    let job = wait_status(&mut client, &answer.id, JobStatus::Succeeded, SOON).await;
    let seen = target.received_on("/hook");
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.target, "/hook?a=1&b=two+words",
        "the URL's query is kept and params merged"
    );
    assert_eq!(request.header("x-team"), Some("blue"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("idempotency-key"), Some("order-42"));
    assert_eq!(
        String::from_utf8_lossy(&request.body),
        r#"{"n":7}"#,
        "a whole number reaches the target as an integer"
    );

    assert_eq!(job.attempt, 1);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.tags, vec!["billing", "eu"]);
    for (name, t) in [
        ("create", &job.create_time),
        ("schedule", &job.schedule_time),
        ("start", &job.start_time),
        ("finish", &job.finish_time),
        ("expire", &job.expire_time),
    ] {
        assert!(t.is_some(), "{name} time is set");
    }
    assert!(
        job.next_attempt_time.is_none(),
        "a finished job has no next attempt"
    );
    let submitted = job.request.unwrap();
    assert_eq!(submitted.method, "POST");
    assert_eq!(
        submitted.url,
        target.url("/hook?a=1"),
        "the request reads back as submitted"
    );
    assert_eq!(
        submitted.params.get("b").map(String::as_str),
        Some("two words")
    );
    assert_eq!(job.last_status_code, 200);

    let result = result(&mut client, &answer.id).await;
    assert_eq!(result.status, JobStatus::Succeeded as i32);
    assert_eq!(result.attempts.len(), 1);
    let last = result.final_attempt.unwrap();
    let response = last.response.unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("x-target-seen").map(String::as_str),
        Some("1")
    );
    let Some(proto::http_response::Body::Json(json)) = response.body else {
        panic!("JSON body expected")
    };
    let Some(prost_types::value::Kind::StructValue(fields)) = json.kind else {
        panic!("object expected")
    };
    assert_eq!(
        fields.fields["path"].kind,
        Some(prost_types::value::Kind::StringValue("/hook".into()))
    );
    assert!(!response.truncated);
    let took = last.duration.expect("an attempt's duration");
    assert!(took.seconds >= 0 && (0..1_000_000_000).contains(&took.nanos));
    assert_eq!(last.error_class, proto::ErrorClass::Unspecified as i32);
    server.stop().await;
}

#[tokio::test]
async fn response_bodies_read_back_as_text_bytes_or_truncated() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.result_max_bytes = 1000).await;
    let mut client = server.client.clone();
    let text = submit(&mut client, get(target.url("/t?body=text"))).await;
    let bytes = submit(&mut client, get(target.url("/b?body=bytes"))).await;
    let big = submit(&mut client, get(target.url("/big?body_size=5000000"))).await;
    // Spelled as a parse would not keep it: spacing, a trailing zero, and an
    // integer past what a double holds.
    let doc = r#"{"id": 12345678901234567891,  "ratio": 1.50}"#;
    let exact_url = target.url(&format!("/j?json={}", testkit::percent_encoded(doc)));
    let exact = submit(&mut client, get(exact_url)).await;
    for id in [&text, &bytes, &big, &exact] {
        wait_status(&mut client, id, JobStatus::Succeeded, SOON).await;
    }
    let body = |r: proto::JobResult| r.final_attempt.unwrap().response.unwrap();
    let t = body(result(&mut client, &text).await);
    assert_eq!(
        t.body,
        Some(proto::http_response::Body::Text("plain words".into()))
    );
    let b = body(result(&mut client, &bytes).await);
    assert_eq!(
        b.body,
        Some(proto::http_response::Body::Raw(vec![
            0xff, 0xfe, 0x00, 0x80
        ]))
    );
    let g = body(result(&mut client, &big).await);
    assert!(g.truncated, "a body over JOBQUEUE_RESULT_MAX_BYTES is cut");
    assert_eq!(g.body_size, 5_000_000, "the full size is reported");
    assert_eq!(
        g.body,
        Some(proto::http_response::Body::Text("x".repeat(1000)))
    );
    assert!(
        t.json_bytes.is_empty() && g.json_bytes.is_empty(),
        "text is exact already"
    );
    let j = body(result(&mut client, &exact).await);
    assert_eq!(
        j.json_bytes,
        doc.as_bytes(),
        "the JSON body's exact bytes are kept"
    );
    let Some(proto::http_response::Body::Json(json)) = j.body else {
        panic!("a JSON body: {:?}", j.body);
    };
    let Some(prost_types::value::Kind::StructValue(fields)) = json.kind else {
        panic!("an object");
    };
    assert_eq!(
        fields.fields["id"].kind,
        Some(prost_types::value::Kind::StringValue(
            "12345678901234567891".into()
        )),
        "an integer a double cannot hold keeps its digits"
    );
    assert_eq!(
        fields.fields["ratio"].kind,
        Some(prost_types::value::Kind::NumberValue(1.5))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_5xx_no_retry_can_cure_fails_at_once_and_the_others_are_retried() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let job = |path: String| {
        let mut spec = get(target.url(&path));
        spec.max_attempts = Some(3);
        spec.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
        spec
    };
    let mut settled = Vec::new();
    for status in [501, 505, 506, 508, 510, 511] {
        let id = submit(
            &mut client,
            job(format!("/settled/{status}?status={status}")),
        )
        .await;
        settled.push((status, id));
    }
    let mut passing = Vec::new();
    for status in [500, 502, 503, 504, 507] {
        let path = format!("/passing/{status}?fail=2&fail_status={status}");
        passing.push((status, submit(&mut client, job(path)).await));
    }
    for (status, id) in settled {
        let job = wait_status(&mut client, &id, JobStatus::Failed, SOON).await;
        assert_eq!(job.attempt, 1, "{status} is not retried");
        assert_eq!(target.received_on(&format!("/settled/{status}")).len(), 1);
    }
    for (status, id) in passing {
        let job = wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
        assert_eq!(job.attempt, 3, "{status} is retried");
    }
    server.stop().await;
}

#[tokio::test]
async fn retryable_answers_are_retried_with_backoff_until_success() {
    let target = Target::start().await.unwrap();
    // The strategy's delays exactly, not spread (spreading is tested on its own).
    let server = Server::start_with(|c| c.backoff_jitter = jobqueue::job::Jitter::None).await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/flaky?fail=2"));
    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 300);
    let id = submit(&mut client, spec).await;

    // Between attempts the job is queued with its attempt count and next attempt time.
    let waiting = wait_job(&mut client, &id, SOON, |j| {
        j.attempt == 1 && j.status == JobStatus::Queued as i32
    })
    .await;
    let next = waiting
        .next_attempt_time
        .expect("next attempt time while waiting");
    let finished = result(&mut client, &id).await.attempts[0]
        .finish_time
        .unwrap();
    let gap_ms =
        (next.seconds - finished.seconds) * 1000 + (next.nanos - finished.nanos) as i64 / 1_000_000;
    assert!(
        (299..=310).contains(&gap_ms),
        "next attempt due one backoff after the failure, got {gap_ms} ms"
    );

    let job = wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    assert_eq!(job.attempt, 3);
    let seen = target.received_on("/flaky");
    assert_eq!(seen.len(), 3);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap + Duration::from_millis(1) >= Duration::from_millis(300),
            "retry came after {gap:?}, before the 300 ms backoff"
        );
    }
    let attempts = result(&mut client, &id).await.attempts;
    let codes: Vec<i32> = attempts
        .iter()
        .map(|a| a.response.as_ref().unwrap().status_code)
        .collect();
    assert_eq!(codes, [503, 503, 200]);
    assert_eq!(
        attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    server.stop().await;
}

#[tokio::test]
async fn exponential_and_linear_backoff_space_the_attempts() {
    let target = Target::start().await.unwrap();
    // The strategy's delays exactly, not spread (spreading is tested on its own).
    let server = Server::start_with(|c| c.backoff_jitter = jobqueue::job::Jitter::None).await;
    let mut client = server.client.clone();
    let mut exp = get(target.url("/exp?fail=3"));
    exp.backoff = backoff(proto::BackoffStrategy::Exponential, 100);
    exp.max_attempts = Some(4);
    let mut lin = get(target.url("/lin?fail=3"));
    lin.backoff = backoff(proto::BackoffStrategy::Linear, 100);
    lin.max_attempts = Some(4);
    let exp = submit(&mut client, exp).await;
    let lin = submit(&mut client, lin).await;
    wait_status(&mut client, &exp, JobStatus::Succeeded, SOON).await;
    wait_status(&mut client, &lin, JobStatus::Succeeded, SOON).await;
    for (path, expected) in [("/exp", [100, 200, 400]), ("/lin", [100, 200, 300])] {
        let seen = target.received_on(path);
        assert_eq!(seen.len(), 4);
        for (pair, min_ms) in seen.windows(2).zip(expected) {
            // Due times are whole milliseconds: allow 1 ms of rounding.
            let gap = (pair[1].at - pair[0].at).as_millis() as u64 + 1;
            assert!(
                gap >= min_ms && gap < min_ms + 250,
                "{path}: gap {gap} ms, expected about {min_ms}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_backoff() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/busy?fail=1&fail_status=429&retry_after=1"));
    spec.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    let id = submit(&mut client, spec).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    let seen = target.received_on("/busy");
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    server.stop().await;
}

#[tokio::test]
async fn client_errors_fail_at_once_and_spent_attempts_fail() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut not_found = get(target.url("/gone?status=404"));
    not_found.max_attempts = Some(5);
    let not_found = submit(&mut client, not_found).await;
    let mut down = get(target.url("/down?status=500"));
    down.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    let down = submit(&mut client, down).await;
    for (code, attempts) in [
        (408, 2),
        (429, 2),
        (502, 2),
        (400, 1),
        (401, 1),
        (409, 1),
        (422, 1),
    ] {
        let mut spec = get(target.url(&format!("/code{code}?status={code}")));
        spec.max_attempts = Some(2);
        spec.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
        let id = submit(&mut client, spec).await;
        let job = wait_status(&mut client, &id, JobStatus::Failed, SOON).await;
        assert_eq!(job.attempt, attempts, "status {code}");
        assert_eq!(job.last_status_code, code);
    }
    let job = wait_status(&mut client, &not_found, JobStatus::Failed, SOON).await;
    assert_eq!(job.attempt, 1, "404 is not retried");
    let job = wait_status(&mut client, &down, JobStatus::Failed, SOON).await;
    assert_eq!(
        job.attempt, 3,
        "500 is retried until the attempts are spent"
    );
    assert_eq!(result(&mut client, &down).await.attempts.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn targets_that_misbehave_fail_or_retry_the_job_never_the_service() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let quick = |url: String, timeout_ms: u64| {
        let mut spec = get(url);
        spec.timeout = Some(ms(timeout_ms));
        spec.max_attempts = Some(2);
        spec.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
        spec
    };
    let cases = [
        (
            "refused",
            quick(format!("http://{closed}/x"), 2000),
            proto::ErrorClass::Connect,
            2,
        ),
        (
            "slow answer",
            quick(target.url("/slow?delay_ms=5000"), 300),
            proto::ErrorClass::Timeout,
            2,
        ),
        (
            "slow body",
            quick(target.url("/drip?slow_body=1"), 500),
            proto::ErrorClass::Timeout,
            2,
        ),
        (
            "silence",
            quick(target.url("/hang?mode=hang"), 300),
            proto::ErrorClass::Timeout,
            2,
        ),
        (
            "reset",
            quick(target.url("/reset?mode=reset"), 2000),
            proto::ErrorClass::Network,
            2,
        ),
        (
            "not http",
            quick(target.url("/garbage?mode=garbage"), 2000),
            proto::ErrorClass::Protocol,
            1,
        ),
    ];
    let mut ids = Vec::new();
    for (name, spec, class, attempts) in cases {
        ids.push((name, submit(&mut client, spec).await, class, attempts));
    }
    for (name, id, class, attempts) in ids {
        let job = wait_status(&mut client, &id, JobStatus::Failed, SOON).await;
        assert_eq!(job.attempt, attempts, "{name}: attempts");
        assert_eq!(job.last_error_class, class as i32, "{name}: error class");
        let result = result(&mut client, &id).await;
        let last = result.final_attempt.unwrap();
        assert!(last.response.is_none(), "{name}: no response");
        assert_eq!(last.error_class, class as i32, "{name}");
        assert!(
            !last.error_message.is_empty(),
            "{name}: the error is described"
        );
    }
    // The service is still serving.
    let ok = submit(&mut client, get(target.url("/after"))).await;
    wait_status(&mut client, &ok, JobStatus::Succeeded, SOON).await;
    server.stop().await;
}

#[tokio::test]
async fn scheduled_jobs_wait_for_their_time() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let at = std::time::SystemTime::now() + Duration::from_millis(700);
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut spec = get(target.url("/later"));
    spec.schedule_time = Some(prost_types::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    });
    let id = submit(&mut client, spec).await;
    let queued = get_job(&mut client, &id).await;
    assert_eq!(queued.status, JobStatus::Queued as i32);
    assert!(queued.next_attempt_time.is_some());
    assert!(target.wait_for(1, SOON).await);
    let arrived = target.received_on("/later")[0].at_system;
    assert!(
        arrived + Duration::from_millis(5) >= at,
        "ran {:?} early",
        at.duration_since(arrived).unwrap_or_default()
    );
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    server.stop().await;
}

#[tokio::test]
async fn higher_priority_runs_first_and_equal_priority_in_order() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.concurrency = 1).await;
    let mut client = server.client.clone();
    // Occupy the only slot so the rest wait in the queue together.
    let blocker = submit(&mut client, get(target.url("/blocker?delay_ms=500"))).await;
    assert!(target.wait_for(1, SOON).await);
    let mut specs = Vec::new();
    for (name, priority) in [
        ("low1", 0),
        ("high1", 10),
        ("mid", 5),
        ("low2", 0),
        ("high2", 10),
    ] {
        let mut spec = get(target.url(&format!("/{name}")));
        spec.priority = priority;
        specs.push(spec);
    }
    let ids = client
        .submit_jobs(proto::SubmitJobsRequest { jobs: specs })
        .await
        .unwrap()
        .into_inner()
        .results;
    for r in &ids {
        wait_status(&mut client, &r.id, JobStatus::Succeeded, SOON).await;
    }
    wait_status(&mut client, &blocker, JobStatus::Succeeded, SOON).await;
    let order: Vec<String> = target
        .received()
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(
        order,
        ["/blocker", "/high1", "/high2", "/mid", "/low1", "/low2"]
    );
    server.stop().await;
}

/// Jobs that failed together retry spread over their backoff delay, not together:
/// with full jitter each waits a random part of it. Only the spread is checked.
#[tokio::test]
async fn retries_of_jobs_that_failed_together_come_back_spread() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.backoff_jitter = jobqueue::job::Jitter::Full).await;
    let mut client = server.client.clone();
    const JOBS: usize = 30;
    for i in 0..JOBS {
        let mut spec = get(target.url(&format!("/spread/{i}?fail=1")));
        spec.backoff = backoff(proto::BackoffStrategy::Fixed, 1000);
        spec.max_attempts = Some(2);
        submit(&mut client, spec).await;
    }
    assert!(target.wait_for(2 * JOBS, Duration::from_secs(20)).await);
    let mut waits = Vec::new();
    for i in 0..JOBS {
        let seen = target.received_on(&format!("/spread/{i}"));
        assert_eq!(seen.len(), 2, "job {i}: one failure, one retry");
        waits.push(seen[1].at.duration_since(seen[0].at).as_millis() as i64);
    }
    waits.sort();
    // Within the delay (and a turn's slack), and spread across it: with the whole
    // delay each, they would all come back about 1 s after failing.
    assert!(waits.iter().all(|ms| *ms <= 1300), "{waits:?}");
    assert!(
        waits[JOBS - 1] - waits[0] >= 400,
        "spread over the delay: {waits:?}"
    );
    assert!(
        waits[JOBS / 2] < 800,
        "half come back well before the delay: {waits:?}"
    );
    server.stop().await;
}
