//! Signed requests through the real service, verified by an independent
//! implementation (the Standard Webhooks reference library for Python): a
//! queue's signing and a job's own, a retry under the same id, a rotation with
//! two secrets, a tampered body and a wrong secret refused; secrets never read
//! back nor stored in the clear; bad secrets refused, naming the field.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::db::database_bytes;
use common::*;
use jobqueue::proto::{self, JobStatus};
use prost::Message;
use testkit::Received;
use tonic::Code;

/// A fresh Standard Webhooks secret.
fn secret() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn signing(secrets: &[&str]) -> Option<proto::Signing> {
    Some(proto::Signing {
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        fingerprints: Vec::new(),
    })
}

fn post(url: String, body: serde_json::Value) -> proto::JobSpec {
    let mut spec = get(url);
    let request = spec.request.as_mut().unwrap();
    request.method = "POST".into();
    request.body = Some(proto::http_request::Body::Json(
        jobqueue::api::convert::value_from_json(body),
    ));
    spec
}

/// One request to check with `secret`; `tamper` changes a byte of its body.
fn case(secret: &str, received: &Received, tamper: bool) -> serde_json::Value {
    let mut body = received.body.clone();
    if tamper {
        body.push(b' ');
    }
    let headers: serde_json::Map<String, serde_json::Value> = received
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("webhook-"))
        .map(|(name, value)| (name.clone(), value.clone().into()))
        .collect();
    serde_json::json!({"secret": secret, "headers": headers, "body_b64": STANDARD.encode(body)})
}

/// The reference library's verdict on each case.
fn verdicts(cases: &[serde_json::Value]) -> Vec<String> {
    use std::io::Write;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/verify_webhooks.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_verify_with_the_reference_library() {
    if !tool_available(
        Command::new("python3").args(["-c", "import standardwebhooks"]),
        "Python standardwebhooks",
    ) {
        return;
    }
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.secret_keys = Some(test_keyring())).await;
    let mut client = connect(server.addr).await;
    let mut queues = queues(server.addr).await;
    let (queue_secret, old, new, later) = (secret(), secret(), secret(), secret());
    let created = queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "signed".into(),
                signing: signing(&[&queue_secret]),
                ..Default::default()
            }),
        })
        .await
        .expect("a signed queue")
        .into_inner();
    let body = serde_json::json!({"order": 12345678901234567891u64, "note": "é"});

    // Signed by its queue, retried once: two requests, one id.
    let mut retried = post(target.url("/queue?fail=1"), body.clone());
    retried.queue = "signed".into();
    retried.backoff = backoff(proto::BackoffStrategy::Fixed, 10);
    let by_queue = submit(&mut client, retried).await;
    // Its own signing, two secrets (a rotation): the queue's is not used.
    let mut own = post(target.url("/own"), body.clone());
    own.queue = "signed".into();
    own.signing = signing(&[&old, &new]);
    let by_job = submit(&mut client, own).await;
    // Unsigned.
    let plain = submit(&mut client, post(target.url("/plain"), body.clone())).await;
    for id in [&by_queue, &by_job, &plain] {
        wait_status(
            &mut client,
            id,
            JobStatus::Succeeded,
            Duration::from_secs(10),
        )
        .await;
    }

    let attempts = target.received_on("/queue");
    assert_eq!(attempts.len(), 2);
    for request in &attempts {
        assert_eq!(request.header("webhook-id"), Some(by_queue.as_str()));
        let at: i64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!((at - jobqueue::now_ms() / 1000).abs() < 60, "{at}");
    }
    let own = &target.received_on("/own")[0];
    assert_eq!(
        own.header("webhook-signature").unwrap().split(' ').count(),
        2,
        "one signature per secret"
    );
    assert_eq!(
        target.received_on("/plain")[0].header("webhook-signature"),
        None
    );

    let cases = [
        (case(&queue_secret, &attempts[0], false), true),
        (case(&queue_secret, &attempts[1], false), true),
        (case(&queue_secret, &attempts[0], true), false),
        (case(&secret(), &attempts[0], false), false),
        (case(&old, own, false), true),
        (case(&new, own, false), true),
        (case(&new, own, true), false),
        (case(&queue_secret, own, false), false),
    ];
    let said = verdicts(&cases.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    for (i, ((_, valid), verdict)) in cases.iter().zip(&said).enumerate() {
        assert_eq!(verdict == "valid", *valid, "case {i}: {verdict}");
    }

    // The queue rotates: a second secret beside the first, then its jobs carry both.
    queues
        .update_queue(proto::UpdateQueueRequest {
            queue: Some(proto::Queue {
                name: "signed".into(),
                signing: signing(&[&later, &queue_secret]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["signing".into()],
            }),
        })
        .await
        .unwrap();
    let mut rotated = post(target.url("/rotated"), body.clone());
    rotated.queue = "signed".into();
    let id = submit(&mut client, rotated).await;
    wait_status(
        &mut client,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let request = &target.received_on("/rotated")[0];
    let said = verdicts(&[
        case(&later, request, false),
        case(&queue_secret, request, false),
    ]);
    assert_eq!(said, ["valid", "valid"]);

    // Read back by fingerprint only; never stored in the clear.
    let queue = queues
        .get_queue(proto::GetQueueRequest {
            name: "signed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let shown = queue.signing.clone().unwrap();
    assert!(shown.secrets.is_empty());
    assert_eq!(shown.fingerprints.len(), 2);
    assert!(
        shown
            .fingerprints
            .iter()
            .all(|f| f.starts_with("whsec_") && f.len() == 14)
    );
    let job = get_job(&mut client, &by_job).await;
    let mine = job.signing.clone().unwrap();
    assert!(mine.secrets.is_empty() && mine.fingerprints.len() == 2);
    assert_eq!(get_job(&mut client, &plain).await.signing, None);
    let every = [&queue_secret, &old, &new, &later];
    // The base64 of each key: what a leak would show.
    let keys: Vec<&str> = every.iter().map(|s| &s["whsec_".len()..]).collect();
    for (what, bytes) in [
        ("CreateQueue", created.encode_to_vec()),
        ("GetQueue", queue.encode_to_vec()),
        ("GetJob", job.encode_to_vec()),
        ("the database", database_bytes(&server.db.url).await),
    ] {
        for key in &keys {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{what} holds a signing secret"
            );
        }
    }
}

#[tokio::test]
async fn bad_signing_is_refused_naming_the_field() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.secret_keys = Some(test_keyring())).await;
    let mut client = connect(server.addr).await;
    let short = format!("whsec_{}", STANDARD.encode([1u8; 8]));
    let five: Vec<String> = (0..5).map(|_| secret()).collect();
    let cases: Vec<(Option<proto::Signing>, Vec<&str>)> = vec![
        (signing(&[]), vec!["job.signing.secrets"]),
        (
            signing(&["abc", &secret(), &short, "whsec_!!"]),
            vec![
                "job.signing.secrets[0]",
                "job.signing.secrets[2]",
                "job.signing.secrets[3]",
            ],
        ),
        (
            signing(&five.iter().map(String::as_str).collect::<Vec<_>>()),
            vec!["job.signing.secrets"],
        ),
    ];
    for (signing, fields) in cases {
        let mut spec = get(target.url("/x"));
        spec.signing = signing;
        let refused = client
            .submit_job(proto::SubmitJobRequest { job: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&refused), fields, "{refused:?}");
    }
    let mut queues = queues(server.addr).await;
    let refused = queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "q".into(),
                signing: signing(&["whsec_"]),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&refused), ["queue.signing.secrets[0]"]);
    let mut scheduled = get(target.url("/x"));
    scheduled.signing = signing(&[&secret()]);
    let refused = schedules(server.addr)
        .await
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "s".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Interval(ms(60_000))),
                job: Some(scheduled),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&refused), ["schedule.job.signing"]);
    assert!(all_jobs(&mut client).await.is_empty(), "nothing was kept");

    // Without keys, secrets cannot be kept: refused, naming the setting.
    let open = Server::start().await;
    let mut spec = get(target.url("/x"));
    spec.signing = signing(&[&secret()]);
    let refused = connect(open.addr)
        .await
        .submit_job(proto::SubmitJobRequest { job: Some(spec) })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&refused), ["job.signing.secrets"]);
    assert!(refused.message().contains("JOBQUEUE_SECRET_KEYS"));
    assert_eq!(target.count(), 0);
}
