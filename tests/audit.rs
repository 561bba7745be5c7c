//! The audit log through the real server: a scripted sequence of changes by two
//! keys, read back exactly (who, from where, what, to which object, how it
//! ended), filtered by action, key, object and time; reads, malformed requests
//! and calls without the scope leave no entry; entries stay in their namespace;
//! reading the log needs `audit.read`; entries go once older than the retention.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::keys::EVERY_SCOPE;
use common::*;
use jobqueue::auth::key;
use jobqueue::proto::{
    self, audit_service_client::AuditServiceClient, key_service_client::KeyServiceClient,
    queue_service_client::QueueServiceClient, schedule_service_client::ScheduleServiceClient,
};
use tonic::Code;

struct Key {
    id: String,
    key: String,
}

fn new_key() -> Key {
    let (id, key) = key::generate();
    Key { id, key }
}

fn keys_file(keys: &[(&Key, &str, &[&str])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(k, namespace, scopes)| {
            serde_json::json!({"key": k.key, "namespace": namespace, "scopes": scopes})
        })
        .collect();
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    (dir, path)
}

fn as_key<T>(message: T, key: &Key) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", key.key).parse().unwrap(),
    );
    request
}

async fn entries(
    audit: &mut AuditServiceClient<tonic::transport::Channel>,
    key: &Key,
    filter: proto::ListAuditEntriesRequest,
) -> Result<Vec<proto::AuditEntry>, tonic::Status> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = audit
            .list_audit_entries(as_key(
                proto::ListAuditEntriesRequest {
                    page_size: 3,
                    page_token,
                    ..filter.clone()
                },
                key,
            ))
            .await?
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_sequence_is_logged_exactly_and_read_back_by_filter() {
    let target = Target::start().await.unwrap();
    let (admin, submitter, outsider) = (new_key(), new_key(), new_key());
    let (_dir, file) = keys_file(&[
        (&admin, "default", EVERY_SCOPE),
        (&submitter, "default", &["submit"]),
        (&outsider, "other", EVERY_SCOPE),
    ]);
    let server = Server::start_with(|c| c.keys_file = Some(file)).await;
    let url = format!("http://{}", server.addr);
    let mut jobs = server.client.clone();
    let mut queues = QueueServiceClient::connect(url.clone()).await.unwrap();
    let mut schedules = ScheduleServiceClient::connect(url.clone()).await.unwrap();
    let mut keys = KeyServiceClient::connect(url.clone()).await.unwrap();
    let mut audit = AuditServiceClient::connect(url).await.unwrap();
    let started = std::time::SystemTime::now();

    let queue = |name: &str| proto::CreateQueueRequest {
        queue: Some(proto::Queue {
            name: name.into(),
            ..Default::default()
        }),
    };
    queues
        .create_queue(as_key(queue("audited"), &admin))
        .await
        .unwrap();
    queues
        .pause_queue(as_key(
            proto::PauseQueueRequest {
                name: "audited".into(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let job = jobs
        .submit_job(as_key(
            proto::SubmitJobRequest {
                job: Some(proto::JobSpec {
                    queue: "audited".into(),
                    ..get(target.url("/a"))
                }),
            },
            &submitter,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let cancel = || as_key(proto::CancelJobRequest { id: job.clone() }, &admin);
    jobs.cancel_job(cancel()).await.unwrap();
    let again = jobs.cancel_job(cancel()).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    jobs.retry_job(as_key(proto::RetryJobRequest { id: job.clone() }, &admin))
        .await
        .unwrap();
    queues
        .purge_queue(as_key(
            proto::PurgeQueueRequest {
                name: "audited".into(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let schedule = proto::CreateScheduleRequest {
        schedule_id: "nightly".into(),
        schedule: Some(proto::Schedule {
            timetable: Some(proto::schedule::Timetable::Cron("0 3 * * *".into())),
            job: Some(get(target.url("/nightly"))),
            ..Default::default()
        }),
    };
    schedules
        .create_schedule(as_key(schedule, &admin))
        .await
        .unwrap();
    let delete = || {
        as_key(
            proto::DeleteScheduleRequest {
                id: "nightly".into(),
            },
            &admin,
        )
    };
    schedules.delete_schedule(delete()).await.unwrap();
    let gone = schedules.delete_schedule(delete()).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let made = keys
        .create_key(as_key(
            proto::CreateKeyRequest {
                description: "for a robot".into(),
                scopes: vec!["read".into()],
                ttl: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap()
        .id;
    keys.revoke_key(as_key(proto::RevokeKeyRequest { id: made.clone() }, &admin))
        .await
        .unwrap();

    // None of these is an entry: a read, a malformed change, a key without the
    // scope, no key at all.
    jobs.list_jobs(as_key(proto::ListJobsRequest::default(), &admin))
        .await
        .unwrap();
    let malformed = queues
        .create_queue(as_key(queue("Not A Name"), &admin))
        .await;
    assert_eq!(malformed.unwrap_err().code(), Code::InvalidArgument);
    let denied = jobs
        .cancel_job(as_key(
            proto::CancelJobRequest { id: job.clone() },
            &submitter,
        ))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let anonymous = queues.create_queue(queue("anonymous")).await;
    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);

    let mut logged = entries(&mut audit, &admin, Default::default())
        .await
        .unwrap();
    logged.reverse();
    let got: Vec<(String, String, String, String)> = logged
        .iter()
        .map(|e| {
            (
                e.key_id.clone(),
                e.action.clone(),
                e.object.clone(),
                e.outcome.clone(),
            )
        })
        .collect();
    let row = |key: &Key, action: &str, object: &str, outcome: &str| {
        (
            key.id.clone(),
            action.to_string(),
            object.to_string(),
            outcome.to_string(),
        )
    };
    assert_eq!(
        got,
        vec![
            row(&admin, "queue.create", "audited", "OK"),
            row(&admin, "queue.pause", "audited", "OK"),
            row(&submitter, "job.submit", &job, "OK"),
            row(&admin, "job.cancel", &job, "OK"),
            row(&admin, "job.cancel", &job, "FAILED_PRECONDITION"),
            row(&admin, "job.retry", &job, "OK"),
            row(&admin, "queue.purge", "audited", "OK"),
            row(&admin, "schedule.create", "nightly", "OK"),
            row(&admin, "schedule.delete", "nightly", "OK"),
            row(&admin, "schedule.delete", "nightly", "NOT_FOUND"),
            row(&admin, "key.create", &made, "OK"),
            row(&admin, "key.revoke", &made, "OK"),
        ]
    );
    for e in &logged {
        assert_eq!(e.namespace, "default");
        assert!(e.peer.starts_with("127.0.0.1:"), "{e:?}");
        let at = e.commit_time.as_ref().unwrap();
        let at = std::time::UNIX_EPOCH + Duration::new(at.seconds as u64, at.nanos as u32);
        assert!(at + Duration::from_secs(1) >= started, "{e:?}");
    }
    assert!(logged[4].detail.contains("canceled"), "{:?}", logged[4]);
    assert_eq!(logged[6].detail, "1 jobs canceled");

    // Filters.
    let by = |filter: proto::ListAuditEntriesRequest| filter;
    let cancels = entries(
        &mut audit,
        &admin,
        by(proto::ListAuditEntriesRequest {
            action: "job.cancel".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(cancels.len(), 2);
    let submitters = entries(
        &mut audit,
        &admin,
        proto::ListAuditEntriesRequest {
            key_id: submitter.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        submitters
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        vec!["job.submit"]
    );
    let of_job = entries(
        &mut audit,
        &admin,
        proto::ListAuditEntriesRequest {
            object: job.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(of_job.len(), 4);
    let later = entries(
        &mut audit,
        &admin,
        proto::ListAuditEntriesRequest {
            start_time: Some(prost_types::Timestamp::from(
                std::time::SystemTime::now() + Duration::from_secs(60),
            )),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(later.is_empty());
    let before_start = entries(
        &mut audit,
        &admin,
        proto::ListAuditEntriesRequest {
            end_time: Some(prost_types::Timestamp::from(
                started - Duration::from_secs(60),
            )),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(before_start.is_empty());
    let bad = entries(
        &mut audit,
        &admin,
        proto::ListAuditEntriesRequest {
            action: "job.explode".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Reading needs its scope, and shows only the reader's namespace.
    let refused = entries(&mut audit, &submitter, Default::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("audit.read"), "{refused:?}");
    queues
        .create_queue(as_key(queue("theirs"), &outsider))
        .await
        .unwrap();
    let theirs = entries(&mut audit, &outsider, Default::default())
        .await
        .unwrap();
    assert_eq!(
        theirs
            .iter()
            .map(|e| (e.namespace.as_str(), e.action.as_str(), e.object.as_str()))
            .collect::<Vec<_>>(),
        vec![("other", "queue.create", "theirs")]
    );
    let ours = entries(&mut audit, &admin, Default::default())
        .await
        .unwrap();
    assert_eq!(
        ours.len(),
        logged.len(),
        "the other namespace's entry is not ours"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_go_once_older_than_the_retention() {
    let server = Server::start_with(|c| c.audit_retention = Duration::from_secs(1)).await;
    let url = format!("http://{}", server.addr);
    let mut queues = QueueServiceClient::connect(url.clone()).await.unwrap();
    let mut audit = AuditServiceClient::connect(url).await.unwrap();
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "brief".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // Open: no key, the default namespace.
    let listed = audit
        .list_audit_entries(proto::ListAuditEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_id, "", "open: no key");
    assert_eq!(listed[0].action, "queue.create");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = audit
            .list_audit_entries(proto::ListAuditEntriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "still kept: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}
