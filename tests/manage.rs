//! Cancel, retry, delete, list, ttl and idempotency through the real gRPC API.

mod common;

use std::time::Duration;

use common::*;
use jobqueue::proto::{self, JobStatus};
use tonic::Code;

const SOON: Duration = Duration::from_secs(10);

fn future(ms_ahead: u64) -> Option<prost_types::Timestamp> {
    let at = std::time::SystemTime::now() + Duration::from_millis(ms_ahead);
    let d = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    Some(prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

#[tokio::test]
async fn a_canceled_queued_job_never_runs() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/never"));
    spec.schedule_time = future(300);
    let id = submit(&mut client, spec).await;
    let job = client
        .cancel_job(proto::CancelJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, JobStatus::Canceled as i32);
    assert!(job.finish_time.is_some());
    // Past its scheduled time, with a canary job to prove the queue kept moving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let canary = submit(&mut client, get(target.url("/canary"))).await;
    wait_status(&mut client, &canary, JobStatus::Succeeded, SOON).await;
    assert!(
        target.received_on("/never").is_empty(),
        "a canceled job ran"
    );
    assert_eq!(
        get_job(&mut client, &id).await.status,
        JobStatus::Canceled as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn canceling_a_running_call_aborts_it_and_it_stays_canceled() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/slow?delay_ms=1500"));
    spec.timeout = Some(ms(5000));
    let id = submit(&mut client, spec).await;
    assert!(target.wait_for(1, SOON).await);
    wait_status(&mut client, &id, JobStatus::Running, SOON).await;
    let started = std::time::Instant::now();
    let job = client
        .cancel_job(proto::CancelJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, JobStatus::Canceled as i32);
    // The call is dropped at once: the target sees its connection close long before
    // it would have answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while target.open_connections() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(target.open_connections(), 0, "the call was not aborted");
    assert!(started.elapsed() < Duration::from_millis(1000));
    // The attempt is recorded as canceled, and the job never flips to succeeded.
    let result = wait_until_attempts(&mut client, &id, 1).await;
    assert_eq!(
        result.attempts[0].error_class,
        proto::ErrorClass::Canceled as i32
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        get_job(&mut client, &id).await.status,
        JobStatus::Canceled as i32
    );
    assert_eq!(
        target.received_on("/slow").len(),
        1,
        "a canceled job is not retried"
    );

    let err = client
        .cancel_job(proto::CancelJobRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let done = submit(&mut client, get(target.url("/done"))).await;
    wait_status(&mut client, &done, JobStatus::Succeeded, SOON).await;
    let err = client
        .cancel_job(proto::CancelJobRequest { id: done })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("succeeded"), "{}", err.message());
    let unknown = format!("j_{}", ulid_like());
    let err = client
        .cancel_job(proto::CancelJobRequest { id: unknown })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

async fn wait_until_attempts(client: &mut Client, id: &str, n: usize) -> proto::JobResult {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let r = result(client, id).await;
        if r.attempts.len() >= n || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A syntactically valid ULID that no job has.
fn ulid_like() -> String {
    "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string()
}

#[tokio::test]
async fn retry_requeues_a_failed_job_with_a_fresh_budget_and_keeps_its_attempts() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/twice?fail=2"));
    spec.max_attempts = Some(1);
    let id = submit(&mut client, spec).await;
    wait_status(&mut client, &id, JobStatus::Failed, SOON).await;

    let again = client
        .retry_job(proto::RetryJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, JobStatus::Queued as i32);
    assert_eq!(again.max_attempts, 2, "one more attempt's budget");
    let job = wait_status(&mut client, &id, JobStatus::Failed, SOON).await;
    assert_eq!(job.attempt, 2);

    let mut budget = proto::RetryJobRequest { id: id.clone() };
    client.retry_job(budget.clone()).await.unwrap();
    let job = wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    assert_eq!(job.attempt, 3);
    let result = result(&mut client, &id).await;
    let codes: Vec<i32> = result
        .attempts
        .iter()
        .map(|a| a.response.as_ref().unwrap().status_code)
        .collect();
    assert_eq!(codes, [503, 503, 200], "earlier attempts are kept");

    let err = client.retry_job(budget.clone()).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a succeeded job is not retried"
    );
    budget.id = "j_nope".into();
    let err = client.retry_job(budget).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["id"]);

    // A canceled job can be retried too.
    let mut spec = get(target.url("/later"));
    spec.schedule_time = future(60_000);
    let canceled = submit(&mut client, spec).await;
    client
        .cancel_job(proto::CancelJobRequest {
            id: canceled.clone(),
        })
        .await
        .unwrap();
    let retried = client
        .retry_job(proto::RetryJobRequest {
            id: canceled.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.status, JobStatus::Queued as i32);
    wait_status(&mut client, &canceled, JobStatus::Succeeded, SOON).await;
    server.stop().await;
}

#[tokio::test]
async fn delete_removes_a_finished_job_and_its_result() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let id = submit(&mut client, get(target.url("/x"))).await;
    wait_status(&mut client, &id, JobStatus::Succeeded, SOON).await;
    client
        .delete_job(proto::DeleteJobRequest { id: id.clone() })
        .await
        .unwrap();
    let err = client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_job_result(proto::GetJobResultRequest { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .delete_job(proto::DeleteJobRequest { id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut spec = get(target.url("/y"));
    spec.schedule_time = future(60_000);
    let queued = submit(&mut client, spec).await;
    let err = client
        .delete_job(proto::DeleteJobRequest { id: queued.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        get_job(&mut client, &queued).await.status,
        JobStatus::Queued as i32,
        "nothing was lost"
    );
    server.stop().await;
}

#[tokio::test]
async fn finished_jobs_disappear_when_their_ttl_runs_out() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut short = get(target.url("/short"));
    short.ttl = Some(ms(300));
    let short = submit(&mut client, short).await;
    let long = submit(&mut client, get(target.url("/long"))).await;
    let done = wait_status(&mut client, &short, JobStatus::Succeeded, SOON).await;
    let expire = done.expire_time.unwrap();
    let finish = done.finish_time.unwrap();
    assert_eq!(
        (expire.seconds - finish.seconds) * 1000 + (expire.nanos - finish.nanos) as i64 / 1_000_000,
        300
    );
    wait_status(&mut client, &long, JobStatus::Succeeded, SOON).await;
    let deadline = std::time::Instant::now() + SOON;
    loop {
        match client
            .get_job(proto::GetJobRequest { id: short.clone() })
            .await
        {
            Err(e) if e.code() == Code::NotFound => break,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("job with 300 ms ttl still there: {other:?}"),
        }
    }
    let err = client
        .get_job_result(proto::GetJobResultRequest { id: short })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "its result went with it");
    assert_eq!(
        get_job(&mut client, &long).await.status,
        JobStatus::Succeeded as i32,
        "a 7-day ttl keeps the job"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_job() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut spec = get(target.url("/once"));
    spec.idempotency_key = "pay-1".into();
    let first = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let second = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, second.id);
    assert!(!first.existing && second.existing);
    // In a batch: against the stored job and against a twin in the same batch.
    let mut other = spec.clone();
    other.idempotency_key = "pay-2".into();
    let batch = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![spec.clone(), other.clone(), other],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(batch[0].id, first.id);
    assert!(batch[0].existing);
    assert_eq!(batch[1].id, batch[2].id);
    assert!(!batch[1].existing && batch[2].existing);
    wait_status(&mut client, &first.id, JobStatus::Succeeded, SOON).await;
    wait_status(&mut client, &batch[1].id, JobStatus::Succeeded, SOON).await;
    assert_eq!(target.received_on("/once").len(), 2, "one call per key");
    let list = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 2);
    server.stop().await;
}

#[tokio::test]
async fn list_filters_pages_and_counts() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut spec = get(target.url(&format!(
            "/l{i}?status={}",
            if i % 2 == 0 { 200 } else { 404 }
        )));
        spec.tags = vec![
            "all".into(),
            format!("n{i}"),
            if i < 3 { "low".into() } else { "high".into() },
        ];
        if i == 0 {
            // A tag given twice is kept once.
            spec.tags.push("all".into());
        }
        spec.queue = if i == 6 { "side".into() } else { String::new() };
        ids.push(submit(&mut client, spec).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        wait_status(&mut client, id, want, SOON).await;
    }
    let lister = client.clone();
    let list = |req: proto::ListJobsRequest| {
        let mut client = lister.clone();
        async move { client.list_jobs(req).await.unwrap().into_inner() }
    };
    // Newest first, paged, with the total.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(proto::ListJobsRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        assert_eq!(page.total_size, 7);
        assert!(page.jobs.len() <= 3);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let failed = list(proto::ListJobsRequest {
        statuses: vec![JobStatus::Failed as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(failed.total_size, 3);
    assert!(
        failed
            .jobs
            .iter()
            .all(|j| j.status == JobStatus::Failed as i32)
    );
    assert_eq!(
        get_job(&mut client, &ids[0]).await.tags,
        ["all", "low", "n0"]
    );
    let all = list(proto::ListJobsRequest {
        tags: vec!["all".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(all.total_size, 7, "each job once");
    let tagged = list(proto::ListJobsRequest {
        tags: vec!["high".into(), "all".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(tagged.total_size, 4);
    let both = list(proto::ListJobsRequest {
        tags: vec!["low".into()],
        statuses: vec![JobStatus::Succeeded as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(
        both.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[0].clone()]
    );
    let side = list(proto::ListJobsRequest {
        queue: "side".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(side.jobs.len(), 1);
    assert_eq!(side.jobs[0].queue, "side");

    let third = get_job(&mut client, &ids[3]).await.create_time.unwrap();
    let from_third = list(proto::ListJobsRequest {
        create_start_time: Some(third),
        ..Default::default()
    })
    .await;
    assert!(
        from_third
            .jobs
            .iter()
            .all(|j| j.create_time.unwrap().seconds >= third.seconds)
    );
    assert!(from_third.jobs.iter().any(|j| j.id == ids[6]));
    let future_only = list(proto::ListJobsRequest {
        create_start_time: future(60_000),
        ..Default::default()
    })
    .await;
    assert_eq!(future_only.total_size, 0);
    let before = list(proto::ListJobsRequest {
        create_end_time: future(60_000),
        ..Default::default()
    })
    .await;
    assert_eq!(before.total_size, 7);

    for (req, field) in [
        (
            proto::ListJobsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            proto::ListJobsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::ListJobsRequest {
                page_size: 5000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::ListJobsRequest {
                statuses: vec![0],
                ..Default::default()
            },
            "statuses[0]",
        ),
        (
            proto::ListJobsRequest {
                queue: "Bad Queue".into(),
                ..Default::default()
            },
            "queue",
        ),
    ] {
        let err = client.list_jobs(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&err), [field]);
        assert!(err.message().contains(field), "{}", err.message());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_stored_whole_or_not_at_all() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    let good = get(target.url("/ok"));
    let bad = get("ftp://example.com/file");
    let err = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![good.clone(), bad, good.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["jobs[1].request.url"]);
    let list = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 0, "nothing of a refused batch is stored");

    // A whole batch of bad jobs is answered as such, its first bad fields listed
    // and the count of the rest, not lost in headers too large to send.
    let err = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![get("ftp://example.com/a-rather-long-path/to/a/file"); 1000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let fields = bad_fields(&err);
    assert_eq!(fields.len(), 20, "the first 20 bad fields in the details");
    assert_eq!(fields[0], "jobs[0].request.url");
    assert!(
        err.message()
            .contains("and 995 more (1000 bad fields in all)"),
        "{}",
        err.message()
    );

    let answers = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![good.clone(); 300],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(answers.len(), 300);
    let distinct: std::collections::HashSet<_> = answers.iter().map(|a| a.id.clone()).collect();
    assert_eq!(distinct.len(), 300);
    assert!(target.wait_for(300, SOON).await);
    for a in &answers {
        wait_status(&mut client, &a.id, JobStatus::Succeeded, SOON).await;
    }

    let err = client
        .submit_jobs(proto::SubmitJobsRequest { jobs: vec![] })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["jobs"]);
    let err = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![good; 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["jobs"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_changes_nothing() {
    let server = Server::start_with(|c| {
        c.max_body_bytes = 1024;
        c.max_timeout = Duration::from_secs(60);
    })
    .await;
    let mut client = server.client.clone();
    let url = "http://127.0.0.1:9/x";
    let with = |f: &dyn Fn(&mut proto::JobSpec)| {
        let mut spec = get(url);
        f(&mut spec);
        spec
    };
    let request = |f: &dyn Fn(&mut proto::HttpRequest)| {
        with(&|s: &mut proto::JobSpec| f(s.request.as_mut().unwrap()))
    };
    let neg = prost_types::Duration {
        seconds: -1,
        nanos: 0,
    };
    let cases: Vec<(&str, proto::JobSpec, &str)> = vec![
        ("no request", with(&|s| s.request = None), "job.request"),
        ("no url", request(&|r| r.url.clear()), "job.request.url"),
        (
            "unparsable url",
            request(&|r| r.url = "http//nope".into()),
            "job.request.url",
        ),
        (
            "relative url",
            request(&|r| r.url = "/just/a/path".into()),
            "job.request.url",
        ),
        (
            "ftp",
            request(&|r| r.url = "ftp://h/x".into()),
            "job.request.url",
        ),
        (
            "file",
            request(&|r| r.url = "file:///etc/passwd".into()),
            "job.request.url",
        ),
        (
            "method",
            request(&|r| r.method = "FETCH".into()),
            "job.request.method",
        ),
        (
            "header name",
            request(&|r| {
                r.headers.insert("bad name".into(), "v".into());
            }),
            "job.request.headers[\"bad name\"]",
        ),
        (
            "header value",
            request(&|r| {
                r.headers.insert("x-ok".into(), "a\r\nb".into());
            }),
            "job.request.headers[\"x-ok\"]",
        ),
        (
            "big body",
            request(&|r| r.body = Some(proto::http_request::Body::Raw(vec![0; 2048]))),
            "job.request.raw",
        ),
        (
            "zero timeout",
            with(&|s| s.timeout = Some(ms(0))),
            "job.timeout",
        ),
        (
            "negative timeout",
            with(&|s| s.timeout = Some(neg)),
            "job.timeout",
        ),
        (
            "huge timeout",
            with(&|s| s.timeout = Some(ms(61_000))),
            "job.timeout",
        ),
        (
            "zero attempts",
            with(&|s| s.max_attempts = Some(0)),
            "job.max_attempts",
        ),
        (
            "negative attempts",
            with(&|s| s.max_attempts = Some(-1)),
            "job.max_attempts",
        ),
        (
            "too many attempts",
            with(&|s| s.max_attempts = Some(101)),
            "job.max_attempts",
        ),
        (
            "negative base",
            with(&|s| {
                s.backoff = Some(proto::Backoff {
                    base_delay: Some(neg),
                    ..Default::default()
                })
            }),
            "job.backoff.base_delay",
        ),
        (
            "negative cap",
            with(&|s| {
                s.backoff = Some(proto::Backoff {
                    max_delay: Some(neg),
                    ..Default::default()
                })
            }),
            "job.backoff.max_delay",
        ),
        (
            "strategy",
            with(&|s| {
                s.backoff = Some(proto::Backoff {
                    strategy: 42,
                    ..Default::default()
                })
            }),
            "job.backoff.strategy",
        ),
        ("negative ttl", with(&|s| s.ttl = Some(neg)), "job.ttl"),
        (
            "queue",
            with(&|s| s.queue = "No Spaces".into()),
            "job.queue",
        ),
        (
            "empty tag",
            with(&|s| s.tags = vec![String::new()]),
            "job.tags[0]",
        ),
        (
            "too many tags",
            with(&|s| s.tags = (0..33).map(|i| format!("t{i}")).collect()),
            "job.tags",
        ),
        (
            "long tag",
            with(&|s| s.tags = vec!["t".repeat(129)]),
            "job.tags[0]",
        ),
        (
            "too many headers",
            request(&|r| {
                r.headers = (0..65).map(|i| (format!("x-h{i}"), "v".into())).collect();
            }),
            "job.request.headers",
        ),
        (
            "long header value",
            request(&|r| {
                r.headers.insert("x-big".into(), "v".repeat(8193));
            }),
            "job.request.headers[\"x-big\"]",
        ),
        (
            "headers too big together",
            request(&|r| {
                r.headers = (0..3)
                    .map(|i| (format!("x-h{i}"), "v".repeat(6000)))
                    .collect();
            }),
            "job.request.headers",
        ),
        (
            "a header the client sets",
            request(&|r| {
                r.headers.insert("Content-Length".into(), "5".into());
            }),
            "job.request.headers[\"Content-Length\"]",
        ),
        (
            "a connection header",
            request(&|r| {
                r.headers
                    .insert("Transfer-Encoding".into(), "chunked".into());
            }),
            "job.request.headers[\"Transfer-Encoding\"]",
        ),
        (
            "one header twice",
            request(&|r| {
                r.headers.insert("X-Trace".into(), "1".into());
                r.headers.insert("x-trace".into(), "2".into());
            }),
            "job.request.headers[\"x-trace\"]",
        ),
        (
            "long url",
            request(&|r| r.url = format!("http://127.0.0.1:9/{}", "p".repeat(8200))),
            "job.request.url",
        ),
        (
            "long with its params",
            request(&|r| {
                r.params.insert("q".into(), "v".repeat(8000));
                r.params.insert("r".into(), "w".repeat(500));
            }),
            "job.request.url",
        ),
        (
            "too many params",
            request(&|r| {
                r.params = (0..65).map(|i| (format!("p{i}"), "v".into())).collect();
            }),
            "job.request.params",
        ),
        (
            "empty param name",
            request(&|r| {
                r.params.insert(String::new(), "v".into());
            }),
            "job.request.params[\"\"]",
        ),
        (
            "param name with a control character",
            request(&|r| {
                r.params.insert("a\u{7}b".into(), "v".into());
            }),
            "job.request.params[\"a\\u{7}b\"]",
        ),
    ];
    for (name, spec, field) in cases {
        let err = client
            .submit_job(proto::SubmitJobRequest { job: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert_eq!(bad_fields(&err), [field], "{name}: {}", err.message());
        assert!(
            err.message().starts_with(field),
            "{name}: message names the field: {}",
            err.message()
        );
    }
    let err = client
        .submit_job(proto::SubmitJobRequest { job: None })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["job"]);
    let list = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 0, "no refused job was stored");

    for id in ["", "x", "j_", "j_not-a-ulid", "01ARZ3NDEKTSV4RRFFQ69G5FAV"] {
        let err = client
            .get_job(proto::GetJobRequest { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "id {id:?}");
        assert_eq!(bad_fields(&err), ["id"]);
    }
    let unknown = "j_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string();
    let err = client
        .get_job(proto::GetJobRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_job_result(proto::GetJobResultRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .retry_job(proto::RetryJobRequest { id: unknown })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving() {
    let server = Server::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "jobqueue.v1.JobService"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_through_another_process_aborts_the_call_where_it_runs() {
    let target = Target::start().await.unwrap();
    // On PostgreSQL polls come every 30 s here, so only the announcement can do it.
    let postgres = std::env::var("JOBQUEUE_TEST_DB").is_ok_and(|v| v == "postgres");
    let running_here = Server::start_with(|c| {
        if postgres {
            c.poll_interval = Duration::from_secs(30);
        }
    })
    .await;
    let elsewhere = Server::start_beside(&running_here, |_| {}).await;
    let mut client = running_here.client.clone();
    let mut spec = get(target.url("/slow?delay_ms=20000"));
    spec.timeout = Some(ms(30_000));
    // Claimed in the commit that stores it, by the process that took it.
    let id = submit(&mut client, spec).await;
    assert!(target.wait_for(1, SOON).await);
    let started = std::time::Instant::now();
    let mut other = elsewhere.client.clone();
    let job = other
        .cancel_job(proto::CancelJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, JobStatus::Canceled as i32);
    // The process running the call hears of it (an announcement on PostgreSQL, its
    // next poll on SQLite) and drops the call.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while target.open_connections() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(target.open_connections(), 0, "the call was not aborted");
    eprintln!("aborted {:?} after the cancel", started.elapsed());
    let result = wait_until_attempts(&mut client, &id, 1).await;
    assert_eq!(
        result.attempts[0].error_class,
        proto::ErrorClass::Canceled as i32
    );
    assert_eq!(
        get_job(&mut client, &id).await.status,
        JobStatus::Canceled as i32
    );
    elsewhere.stop().await;
    running_here.stop().await;
}
