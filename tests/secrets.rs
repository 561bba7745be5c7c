//! Secret headers through the real service: a unique value for each secret
//! header reaches the target and nowhere else (no read, watch, result, log line,
//! metric, nor byte of the database); without keys they are refused; a sealed
//! value moved to another row does not open; rekeying moves every value to a new
//! key so the old one can go.

mod common;

use std::time::Duration;

use common::db::{database_bytes, execute, stored_column, stored_headers};
use common::*;
use jobqueue::proto::{self, JobStatus, template_service_client::TemplateServiceClient};
use prost::Message;
use tonic::Code;

/// The keys tests seal with: two fixed keys, so one can replace the other.
const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn unique(what: &str) -> String {
    format!("{what}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A job whose request carries `Authorization`, a `Cookie`, a header it marks
/// secret and a plain one.
fn with_secrets(url: String, token: &str, cookie: &str, signature: &str) -> proto::JobSpec {
    let mut spec = get(url);
    let request = spec.request.as_mut().unwrap();
    request
        .headers
        .insert("Authorization".into(), format!("Bearer {token}"));
    request
        .headers
        .insert("Cookie".into(), format!("session={cookie}"));
    request
        .headers
        .insert("X-Signature".into(), signature.into());
    request.headers.insert("X-Plain".into(), "shown".into());
    request.secret_headers = vec!["x-signature".into()];
    spec
}

/// Where the bytes of a message contain none of `secrets`.
fn assert_clean(what: &str, bytes: &[u8], secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} holds the secret {secret}"
        );
    }
}

fn assert_masked(request: &proto::HttpRequest) {
    let mut secret = request.secret_headers.clone();
    secret.sort();
    assert_eq!(secret, ["Authorization", "Cookie", "X-Signature"]);
    assert_eq!(
        request.headers,
        std::collections::HashMap::from([("X-Plain".to_string(), "shown".to_string())])
    );
}

#[tokio::test]
async fn a_secret_reaches_the_target_and_no_read_log_metric_or_stored_byte() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let metrics = free_port();
    let server = Process::start_with_env(
        &db.url,
        &["--metrics-addr", &metrics.to_string()],
        &[
            ("JOBQUEUE_SECRET_KEYS", K1),
            // Everything the service would say about a call, said.
            ("JOBQUEUE_LOG", "debug"),
        ],
    );
    let mut client = connect(server.addr).await;
    let (token, cookie, signature) = (unique("tok"), unique("cookie"), unique("sig"));
    let secrets = [token.as_str(), cookie.as_str(), signature.as_str()];

    // A job.
    let id = submit(
        &mut client,
        with_secrets(target.url("/job"), &token, &cookie, &signature),
    )
    .await;
    let done = wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let received = target.received_on("/job");
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        received[0].header("cookie"),
        Some(format!("session={cookie}").as_str())
    );
    assert_eq!(received[0].header("x-signature"), Some(signature.as_str()));
    assert_eq!(received[0].header("x-plain"), Some("shown"));

    // Every read of it.
    assert_masked(done.request.as_ref().unwrap());
    assert_clean("GetJob", &done.encode_to_vec(), &secrets);
    let listed = client
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_masked(listed.jobs[0].request.as_ref().unwrap());
    assert_clean("ListJobs", &listed.encode_to_vec(), &secrets);
    let result = client
        .get_job_result(proto::GetJobResultRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_clean("GetJobResult", &result.encode_to_vec(), &secrets);
    // Its snapshot, and its changes replayed from the start of the log.
    for (snapshot, cursor) in [(true, ""), (false, "0")] {
        let mut watch = client
            .watch_jobs(proto::WatchJobsRequest {
                ids: vec![id.clone()],
                snapshot,
                cursor: cursor.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_millis(500), watch.message()).await
        {
            let done = event.status == JobStatus::Succeeded as i32;
            seen.push(event);
            if done {
                break;
            }
        }
        assert!(
            seen.iter()
                .any(|e| e.job_id == id && e.status == JobStatus::Succeeded as i32),
            "{seen:?}"
        );
        for event in &seen {
            assert_clean("WatchJobs", &event.encode_to_vec(), &secrets);
        }
    }

    // A schedule's job, and its run.
    let mut schedules = schedules(server.addr).await;
    let (s_token, s_cookie, s_signature) = (unique("tok"), unique("cookie"), unique("sig"));
    let created = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "nightly".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Interval(
                    prost_types::Duration {
                        seconds: 86_400,
                        nanos: 0,
                    },
                )),
                start_time: Some(timestamp(jobqueue::now_ms() + 3_600_000)),
                job: Some(with_secrets(
                    target.url("/scheduled"),
                    &s_token,
                    &s_cookie,
                    &s_signature,
                )),
                ..Default::default()
            }),
        })
        .await
        .expect("a schedule with secret headers")
        .into_inner();
    let s_secrets = [s_token.as_str(), s_cookie.as_str(), s_signature.as_str()];
    assert_masked(created.job.as_ref().unwrap().request.as_ref().unwrap());
    let run = schedules
        .trigger_schedule(proto::TriggerScheduleRequest {
            id: "nightly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(target.wait_for(2, Duration::from_secs(10)).await);
    let received = target.received_on("/scheduled");
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Bearer {s_token}").as_str())
    );
    assert_eq!(
        received[0].header("x-signature"),
        Some(s_signature.as_str())
    );
    let got = schedules
        .get_schedule(proto::GetScheduleRequest {
            id: "nightly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_masked(got.job.as_ref().unwrap().request.as_ref().unwrap());
    let all = schedules
        .list_schedules(proto::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    for (what, bytes) in [
        ("CreateSchedule", created.encode_to_vec()),
        ("TriggerSchedule", run.encode_to_vec()),
        ("GetSchedule", got.encode_to_vec()),
        ("ListSchedules", all.encode_to_vec()),
    ] {
        assert_clean(what, &bytes, &s_secrets);
    }

    // A job made from a template adds its own secret; the template keeps none.
    let mut templates = TemplateServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let mut template = proto::Template {
        name: "ping".into(),
        request: Some(proto::HttpRequest {
            url: target.url("/templated"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut with_credential = template.clone();
    with_credential
        .request
        .as_mut()
        .unwrap()
        .headers
        .insert("X-Api-Key".into(), "kept-in-the-clear".into());
    let refused = templates
        .create_template(proto::CreateTemplateRequest {
            template: Some(with_credential),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&refused)
            .iter()
            .any(|f| f.ends_with(r#"request.headers["X-Api-Key"]"#)),
        "{refused:?}"
    );
    template.description = "pings".into();
    templates
        .create_template(proto::CreateTemplateRequest {
            template: Some(template),
        })
        .await
        .unwrap();
    let t_token = unique("tok");
    let mut from_template = proto::JobSpec {
        template: Some(proto::TemplateCall {
            name: "ping".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    from_template.request = Some(proto::HttpRequest {
        headers: [("Authorization".to_string(), format!("Bearer {t_token}"))].into(),
        ..Default::default()
    });
    let t_id = submit(&mut client, from_template).await;
    let t_done = wait_status(
        &mut client,
        &t_id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        target.received_on("/templated")[0].header("authorization"),
        Some(format!("Bearer {t_token}").as_str())
    );
    assert_eq!(
        t_done.request.as_ref().unwrap().secret_headers,
        ["Authorization"]
    );
    assert_clean(
        "GetJob of a template's job",
        &t_done.encode_to_vec(),
        &[&t_token],
    );

    // The metrics, the log, and every byte the database keeps.
    let every: Vec<&str> = secrets
        .iter()
        .chain(&s_secrets)
        .copied()
        .chain([t_token.as_str()])
        .collect();
    assert_clean("/metrics", metrics_page(metrics).await.as_bytes(), &every);
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains(&format!("127.0.0.1:{}", target.addr.port())),
        "the log speaks of the calls"
    );
    assert_clean("the log", log.as_bytes(), &every);
    assert_clean("the database", &database_bytes(&db.url).await, &every);
}

#[tokio::test]
async fn without_keys_a_secret_header_is_refused_and_nothing_is_stored() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| {
        c.secret_keys = None;
        c.secret_keys_file = None;
    })
    .await;
    let mut client = connect(server.addr).await;
    let refused = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(with_secrets(target.url("/x"), "t", "c", "s")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        bad_fields(&refused),
        [r#"job.request.headers["Authorization"]"#]
    );
    assert!(
        refused.message().contains("JOBQUEUE_SECRET_KEYS"),
        "{}",
        refused.message()
    );
    // A header marked secret is held to the same rule.
    let mut marked = get(target.url("/x"));
    let request = marked.request.as_mut().unwrap();
    request.headers.insert("X-Token".into(), "t".into());
    request.secret_headers = vec!["X-TOKEN".into()];
    let refused = client
        .submit_jobs(proto::SubmitJobsRequest {
            jobs: vec![get(target.url("/plain")), marked],
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&refused),
        [r#"jobs[1].request.headers["X-Token"]"#]
    );
    // A mark must name a header the request sets, once.
    let mut stray = get(target.url("/x"));
    let request = stray.request.as_mut().unwrap();
    request.headers.insert("X-A".into(), "1".into());
    request.secret_headers = vec!["X-B".into(), "x-a".into(), "X-A".into()];
    let refused = client
        .submit_job(proto::SubmitJobRequest { job: Some(stray) })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&refused),
        [
            "job.request.secret_headers[0]",
            "job.request.secret_headers[2]"
        ]
    );
    let mut schedules = schedules(server.addr).await;
    let refused = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "s".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Interval(ms(60_000))),
                job: Some(with_secrets(target.url("/x"), "t", "c", "s")),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&refused),
        [r#"schedule.job.request.headers["Authorization"]"#]
    );
    // Nothing of any of it was kept; a plain job still runs.
    assert!(all_jobs(&mut client).await.is_empty());
    let id = submit(&mut client, get(target.url("/plain"))).await;
    wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(target.count(), 1);
}

#[tokio::test]
async fn a_sealed_value_copied_to_another_job_does_not_open() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| {
        c.secret_keys = Some(test_keyring());
    })
    .await;
    let mut client = connect(server.addr).await;
    let mut queues = queues(server.addr).await;
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "held".into(),
                paused: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let job = |path: &str, token: &str| {
        let mut spec = get_in("held", target.url(path));
        spec.request
            .as_mut()
            .unwrap()
            .headers
            .insert("Authorization".into(), format!("Bearer {token}"));
        spec
    };
    let theirs = unique("theirs");
    let victim = submit(&mut client, job("/victim", &theirs)).await;
    let thief = submit(&mut client, job("/thief", "mine")).await;
    let sealed = stored_headers(&server.db.url, "jobs", &victim).await;
    assert!(sealed.contains("\"sealed\":\"test."), "{sealed}");
    assert!(!sealed.contains(&theirs));
    // On PostgreSQL `jobs` is a view; the request is kept in job_definitions.
    let table = if server.db.url.starts_with("postgres") {
        "job_definitions"
    } else {
        "jobs"
    };
    execute(
        &server.db.url,
        format!(
            "UPDATE {table} SET headers = '{}' WHERE id = '{thief}'",
            sealed.replace('\'', "''")
        ),
    )
    .await;
    queues
        .resume_queue(proto::ResumeQueueRequest {
            name: "held".into(),
        })
        .await
        .unwrap();
    wait_status(
        &mut client,
        &victim,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let failed = wait_status(
        &mut client,
        &thief,
        JobStatus::Failed,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(failed.attempt, 1, "not retried");
    let attempt = &result(&mut client, &thief).await.attempts[0];
    assert!(
        attempt
            .error_message
            .contains("Authorization cannot be opened"),
        "{}",
        attempt.error_message
    );
    assert!(target.received_on("/thief").is_empty());
    assert_eq!(
        target.received_on("/victim")[0].header("authorization"),
        Some(format!("Bearer {theirs}").as_str())
    );
}

// Several threads: the process is stopped by a blocking wait, while the client's
// connections close on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekeying_moves_every_secret_to_the_new_key_so_the_old_one_can_go() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let (job_token, schedule_token) = (unique("job"), unique("schedule"));

    // Sealed with k1: a job held in a paused queue, and a schedule.
    let before = Process::start_with_env(&db.url, &[], &[("JOBQUEUE_SECRET_KEYS", K1)]);
    let mut client = connect(before.addr).await;
    let mut queues = queues(before.addr).await;
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "held".into(),
                paused: true,
                // Its jobs signed with a secret sealed as headers are.
                signing: Some(proto::Signing {
                    secrets: vec![format!(
                        "whsec_{}",
                        "c2lnbmluZy1zZWNyZXQtb2YtMzItYnl0ZXMtbG9uZyE="
                    )],
                    fingerprints: Vec::new(),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut spec = get_in("held", target.url("/job"));
    spec.request
        .as_mut()
        .unwrap()
        .headers
        .insert("X-Api-Key".into(), job_token.clone());
    let id = submit(&mut client, spec).await;
    let mut schedules = schedules(before.addr).await;
    let mut run = get(target.url("/schedule"));
    run.request
        .as_mut()
        .unwrap()
        .headers
        .insert("Cookie".into(), schedule_token.clone());
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "s".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Interval(ms(86_400_000))),
                start_time: Some(timestamp(jobqueue::now_ms() + 3_600_000)),
                job: Some(run),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    drop((client, queues, schedules));
    tokio::task::spawn_blocking(move || before.stop())
        .await
        .unwrap();

    // k2 becomes the active key, k1 still read; the rekey seals both again.
    let rekey = |keys: Option<String>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"));
        command.args(["secrets", "rekey", "--db-url", &db.url]);
        match keys {
            Some(keys) => command.env("JOBQUEUE_SECRET_KEYS", keys),
            None => command.env_remove("JOBQUEUE_SECRET_KEYS"),
        };
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said, errors) = rekey(Some(format!("{K2},{K1}")));
    assert!(ok, "{said}{errors}");
    assert!(said.contains("3 sealed again with key k2"), "{said}");
    for (table, row) in [("jobs", id.as_str()), ("schedules", "s")] {
        let kept = stored_headers(&db.url, table, row).await;
        assert!(kept.contains("\"k2.") && !kept.contains("\"k1."), "{kept}");
    }
    let signing = stored_column(&db.url, "SELECT signing FROM queues WHERE name = 'held'").await;
    assert!(
        signing.contains("\"k2.") && !signing.contains("\"k1."),
        "{signing}"
    );
    let (ok, said, _) = rekey(Some(format!("{K2},{K1}")));
    assert!(ok && said.contains("0 sealed again"), "{said}");
    // Without keys there is nothing to seal with.
    let (ok, _, errors) = rekey(None);
    assert!(!ok && errors.contains("JOBQUEUE_SECRET_KEYS"), "{errors}");

    // Served with k2 alone, both still reach the target.
    let after = Process::start_with_env(&db.url, &[], &[("JOBQUEUE_SECRET_KEYS", K2)]);
    let mut client = connect(after.addr).await;
    queues = common::queues(after.addr).await;
    queues
        .resume_queue(proto::ResumeQueueRequest {
            name: "held".into(),
        })
        .await
        .unwrap();
    wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let mut schedules = common::schedules(after.addr).await;
    schedules
        .trigger_schedule(proto::TriggerScheduleRequest { id: "s".into() })
        .await
        .unwrap();
    assert!(target.wait_for(2, Duration::from_secs(10)).await);
    let job = &target.received_on("/job")[0];
    assert_eq!(job.header("x-api-key"), Some(job_token.as_str()));
    assert!(
        job.header("webhook-signature").is_some(),
        "signed with the rekeyed secret"
    );
    assert_eq!(
        target.received_on("/schedule")[0].header("cookie"),
        Some(schedule_token.as_str())
    );
}
