//! Who may call, through the real server: with a keys file every call but health
//! presents a key (missing, malformed, unknown, wrong, expired and revoked ones
//! are refused alike), every RPC needs exactly the scope its doc comment in
//! `proto/` names (checked over every RPC the protos declare, so a new one
//! without its scope fails here), keys made and revoked through `KeyService`
//! (a revocation through one process refused at once by another), and a start
//! without keys refused anywhere but loopback.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use jobqueue::auth::{Needed, Scope, key, needed};
use jobqueue::proto::{self, key_service_client::KeyServiceClient};
use tonic::Code;
use tonic::transport::Channel;

type Keys = KeyServiceClient<Channel>;

/// A key of the keys file: the whole key, its namespace and scopes.
struct FileKey {
    key: String,
    namespace: &'static str,
    scopes: Vec<&'static str>,
    expires: Option<&'static str>,
}

fn file_key(namespace: &'static str, scopes: &[&'static str]) -> FileKey {
    FileKey {
        key: key::generate().1,
        namespace,
        scopes: scopes.to_vec(),
        expires: None,
    }
}

/// Writes a keys file; the folder lives as long as the answer.
fn keys_file(keys: &[&FileKey]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut v = serde_json::json!({
                "key": k.key, "namespace": k.namespace, "scopes": k.scopes,
                "description": "a test key",
            });
            if let Some(expires) = k.expires {
                v["expires"] = expires.into();
            }
            v
        })
        .collect();
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    (dir, path)
}

fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

async fn keys_client(addr: std::net::SocketAddr) -> Keys {
    Keys::connect(format!("http://{addr}")).await.unwrap()
}

fn all_scopes() -> Vec<&'static str> {
    Scope::ALL.iter().map(|s| s.as_str()).collect()
}

/// Every RPC the protos declare, with the scope its doc comment names.
fn rpcs_and_their_documented_scopes() -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/jobqueue/v1");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut service = String::new();
        let mut comment = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches(" {").trim().to_string();
            }
            if let Some(text) = line.strip_prefix("//") {
                comment.push_str(text);
                comment.push(' ');
                continue;
            }
            if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                let scope = comment
                    .split("Scope: `")
                    .nth(1)
                    .and_then(|s| s.split('`').next())
                    .map(str::to_string);
                found.push((format!("/jobqueue.v1.{service}/{method}"), scope));
            }
            comment.clear();
        }
    }
    found
}

/// The status of calling `path` with an empty request and `key`: the first
/// status the server answers with (a stream's, from its headers).
async fn call_status(channel: Channel, path: &str, key: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    let streaming = path.path().ends_with("/WatchJobs") || path.path().ends_with("/WatchChain");
    if streaming {
        match grpc.server_streaming(with_key((), key), path, codec).await {
            Ok(mut stream) => match tokio::time::timeout(
                std::time::Duration::from_millis(300),
                stream.get_mut().message(),
            )
            .await
            {
                Ok(Err(status)) => status.code(),
                _ => Code::Ok,
            },
            Err(status) => status.code(),
        }
    } else {
        match grpc.unary(with_key((), key), path, codec).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    }
}

#[test]
fn every_rpc_documents_the_scope_the_service_asks_for() {
    let rpcs = rpcs_and_their_documented_scopes();
    assert!(rpcs.len() > 40, "{rpcs:?}");
    for (path, documented) in rpcs {
        let documented = documented.unwrap_or_else(|| panic!("{path}: no `Scope:` in its comment"));
        let scope = Scope::parse(&documented)
            .unwrap_or_else(|| panic!("{path}: documents {documented:?}, no scope"));
        assert_eq!(needed(&path), Needed::Scope(scope), "{path}");
    }
    assert_eq!(needed("/jobqueue.v1.JobService/Nothing"), Needed::Unknown);
    assert_eq!(needed("/grpc.health.v1.Health/Check"), Needed::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_a_key_without_its_scope_and_serves_one_with_it() {
    // One key per scope holding every scope but that one, and one holding only it.
    let mut without = BTreeMap::new();
    let mut only = BTreeMap::new();
    let mut keys = Vec::new();
    for scope in Scope::ALL {
        let others: Vec<&'static str> = Scope::ALL
            .iter()
            .filter(|s| **s != scope)
            .map(|s| s.as_str())
            .collect();
        let w = file_key("default", &others);
        let o = file_key("default", &[scope.as_str()]);
        without.insert(scope, w.key.clone());
        only.insert(scope, o.key.clone());
        keys.push(w);
        keys.push(o);
    }
    let (_dir, path) = keys_file(&keys.iter().collect::<Vec<_>>());
    let server = Server::start_with(|c| c.keys_file = Some(path)).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for (path, _) in rpcs_and_their_documented_scopes() {
        let Needed::Scope(scope) = needed(&path) else {
            panic!("{path} needs no scope")
        };
        let refused = call_status(channel.clone(), &path, &without[&scope]).await;
        assert_eq!(refused, Code::PermissionDenied, "{path} without {scope}");
        let served = call_status(channel.clone(), &path, &only[&scope]).await;
        assert!(
            !matches!(served, Code::PermissionDenied | Code::Unauthenticated),
            "{path} with only {scope}: {served:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_good_key_is_unauthenticated_and_health_needs_none() {
    let good = file_key("default", &all_scopes());
    let expired = FileKey {
        expires: Some("2020-01-01T00:00:00Z"),
        ..file_key("default", &all_scopes())
    };
    let (_dir, path) = keys_file(&[&good, &expired]);
    let target = Target::start().await.unwrap();
    // connect() waits on the health check, which presents no key.
    let server = Server::start_with(|c| c.keys_file = Some(path)).await;
    let mut client = server.client.clone();
    let spec = || proto::SubmitJobRequest {
        job: Some(get(target.url("/x"))),
    };

    let none = client.submit_job(spec()).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    assert!(none.message().contains("Bearer"), "{none:?}");
    let presented = key::parse(&good.key).unwrap();
    let wrong_secret = format!("jq_{}_{}", presented.id, "0".repeat(64));
    let unknown_id = key::generate().1;
    for bad in [
        "",
        "jq_",
        "not a key",
        &good.key[..good.key.len() - 2],
        &wrong_secret,
        &unknown_id,
        &expired.key,
    ] {
        let refused = client.submit_job(with_key(spec(), bad)).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{bad:?}: {refused:?}"
        );
        assert_eq!(
            refused.message(),
            none.message(),
            "one message for every bad key"
        );
    }
    let mut basic = tonic::Request::new(spec());
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(
        client.submit_job(basic).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // Nothing refused was stored.
    let listed = client
        .list_jobs(with_key(proto::ListJobsRequest::default(), &good.key))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty(), "{listed:?}");
    let accepted = client
        .submit_job(with_key(spec(), &good.key))
        .await
        .unwrap();
    assert!(!accepted.into_inner().id.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_made_listed_and_revoked_and_a_revocation_holds_at_once_everywhere() {
    let admin = file_key("default", &all_scopes());
    let partial = file_key("default", &["keys.admin", "read"]);
    let other = file_key("elsewhere", &all_scopes());
    let (_dir, path) = keys_file(&[&admin, &partial, &other]);
    let first = Server::start_with(|c| c.keys_file = Some(path.clone())).await;
    let second = Server::start_beside(&first, |c| c.keys_file = Some(path)).await;
    let mut keys_first = keys_client(first.addr).await;
    let mut jobs_second = second.client.clone();

    let created = keys_first
        .create_key(with_key(
            proto::CreateKeyRequest {
                description: "a reader".into(),
                scopes: vec!["read".into()],
                ttl: None,
            },
            &admin.key,
        ))
        .await
        .expect("key created")
        .into_inner();
    let made = created.key.unwrap();
    assert!(created.secret.starts_with(&format!("jq_{}_", made.id)));
    assert_eq!(made.scopes, ["read"]);
    assert_eq!(made.namespace, "default");
    assert_eq!(made.source, "api");
    let list = || proto::ListJobsRequest::default();
    jobs_second
        .list_jobs(with_key(list(), &created.secret))
        .await
        .expect("the new key works on the other process");

    // Listed without secrets, the file's keys with the others.
    let listed = keys_first
        .list_keys(with_key(proto::ListKeysRequest::default(), &admin.key))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.keys.iter().map(|k| k.id.as_str()).collect();
    assert!(ids.contains(&made.id.as_str()), "{ids:?}");
    assert!(ids.contains(&key::parse(&admin.key).unwrap().id), "{ids:?}");
    assert!(
        !ids.contains(&key::parse(&other.key).unwrap().id),
        "another namespace's key"
    );
    let shown = format!("{listed:?}");
    for secret in [&created.secret, &admin.key, &partial.key] {
        assert!(!shown.contains(key::parse(secret).unwrap().secret));
    }

    // Revoked through the first process, refused by the second at once.
    let revoked = keys_first
        .revoke_key(with_key(
            proto::RevokeKeyRequest {
                id: made.id.clone(),
            },
            &admin.key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    let refused = jobs_second
        .list_jobs(with_key(list(), &created.secret))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A key may grant only what its maker holds.
    let beyond = keys_first
        .create_key(with_key(
            proto::CreateKeyRequest {
                scopes: vec!["read".into(), "submit".into()],
                ..Default::default()
            },
            &partial.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::PermissionDenied, "{beyond:?}");
    assert!(beyond.message().contains("submit"), "{beyond:?}");
    // Bad requests name their fields.
    let bad = keys_first
        .create_key(with_key(
            proto::CreateKeyRequest {
                scopes: vec!["fly".into()],
                ttl: Some(ms(1000)),
                ..Default::default()
            },
            &admin.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&bad), ["scopes[0]", "ttl"]);
    // Another namespace's key is not found, and stays good.
    let foreign = keys_first
        .revoke_key(with_key(
            proto::RevokeKeyRequest {
                id: key::parse(&admin.key).unwrap().id.to_string(),
            },
            &other.key,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    jobs_second
        .list_jobs(with_key(list(), &admin.key))
        .await
        .expect("still good");
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_service_serves_without_keys_and_has_none_to_manage() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = server.client.clone();
    submit(&mut client, get(target.url("/open"))).await;
    let refused = keys_client(server.addr)
        .await
        .create_key(proto::CreateKeyRequest {
            scopes: vec!["read".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("JOBQUEUE_KEYS_FILE"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_open_beyond_loopback_is_refused_unless_asked_for() {
    let db = TestDb::new().await;
    // Listening on every interface: nothing is sent anywhere.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = jobqueue::server::run(listener, test_config(&db.url), async {})
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("JOBQUEUE_INSECURE_OPEN"),
        "{refused}"
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut config = test_config(&db.url);
    config.insecure_open = true;
    jobqueue::server::run(listener, config, async {})
        .await
        .expect("asked for, it serves (and stops at once)");
}
