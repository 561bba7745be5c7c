//! The guard on calls out, tried as an attacker would: jobs aimed at loopback,
//! private, shared, link-local and cloud metadata addresses, in every spelling
//! the URL parser accepts and inside IPv6, at names that resolve to them (alone,
//! or beside an allowed address), and through a redirect. Only 127.0.0.1 is
//! allowed, by name, as an operator would allow it: the guard is never off.
//!
//! The test runs itself again inside a network namespace of its own (loopback
//! alone: a packet to any other address cannot leave, and fails as unreachable,
//! which the test never counts as refused) with a hosts file of its own for the
//! names. Each refusal is checked as the guard's: INVALID_ARGUMENT on the URL at
//! submit, or the attempt's DESTINATION_REFUSED class, never retried. A listener
//! on every local address at one port counts what reached it: 127.0.0.2 never is.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jobqueue::outbound::address::RuleList;
use jobqueue::proto::{self, ErrorClass, JobStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Set in the copy of this test that runs inside the namespace.
const INSIDE: &str = "JOBQUEUE_TEST_IN_NETNS";
const TEST: &str = "calls_out_reach_only_what_the_guard_allows";

/// Names and the addresses the namespace's hosts file gives them.
const HOSTS: &str = "\
127.0.0.1 ok.test
10.0.0.1 internal.test
169.254.169.254 metadata.test
127.0.0.2 loopback.test
127.0.0.1 mixed.test
127.0.0.2 mixed.test
::ffff:10.0.0.1 mapped.test
127.0.0.1 x.denied.test
";

#[test]
fn calls_out_reach_only_what_the_guard_allows() {
    if std::env::var_os(INSIDE).is_some() {
        tokio::runtime::Runtime::new().unwrap().block_on(inside());
        return;
    }
    // Can this machine make a namespace? (root and util-linux's unshare.)
    let probe = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "--", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        let why = "unshare -n -m is not available here (needs root and util-linux)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}: the guard's tests cannot run");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, HOSTS).unwrap();
    let script = format!(
        "ip link set lo up && mount --bind {} /etc/hosts && exec \"$0\" --exact {TEST} --nocapture",
        hosts.display()
    );
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(&script)
        .arg(&exe)
        .env(INSIDE, "1")
        // PostgreSQL is outside the namespace; the guard does not touch storage.
        .env_remove("JOBQUEUE_TEST_DB")
        .status()
        .expect("run the test inside a network namespace");
    assert!(status.success(), "the test inside the namespace failed");
}

/// A listener on every local address at one port (dual stack), answering 200,
/// or at `/redirect` a redirect to 127.0.0.2, at `/redirect-away` to `ok.test`
/// (another host), at `/redirect-here` to a path of the same origin. It counts
/// connections by the local address they reached, and keeps each request's
/// path and whether it carried credentials.
struct Listener {
    port: u16,
    reached: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Listener {
    async fn start() -> Listener {
        let socket = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let reached = Arc::new(Mutex::new(BTreeMap::new()));
        let counts = reached.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                let local = stream.local_addr().unwrap().ip().to_canonical();
                *counts.lock().unwrap().entry(local).or_insert(0) += 1;
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let head = head.to_ascii_lowercase();
                    let credentials =
                        head.contains("\r\nauthorization:") || head.contains("\r\nx-signature:");
                    seen.lock().unwrap().push((path.clone(), credentials));
                    let location = match path.as_str() {
                        "/redirect" => Some(format!("http://127.0.0.2:{port}/landed")),
                        "/redirect-away" => Some(format!("http://ok.test:{port}/landed-away")),
                        "/redirect-here" => Some("/landed-here".to_string()),
                        _ => None,
                    };
                    let answer = if let Some(location) = location {
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\n\
                             Content-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                            .to_string()
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Listener {
            port,
            reached,
            requests,
        }
    }

    /// Whether the request for `path` came, and with credentials.
    fn credentials_on(&self, path: &str) -> Option<bool> {
        let requests = self.requests.lock().unwrap();
        requests.iter().find(|(p, _)| p == path).map(|(_, c)| *c)
    }

    /// How many requests for `path` came.
    fn count(&self, path: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|(p, _)| p == path).count()
    }

    fn reached(&self, ip: &str) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        self.reached.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

fn finished(job: &proto::Job) -> bool {
    job.finish_time.is_some()
}

fn rules(text: &str) -> RuleList {
    RuleList::parse(text).unwrap()
}

fn job(url: String) -> proto::JobSpec {
    proto::JobSpec {
        max_attempts: Some(3),
        backoff: backoff(proto::BackoffStrategy::Fixed, 50),
        ..get(url)
    }
}

async fn inside() {
    // Only loopback is here: a connect to 10.0.0.1 cannot leave.
    let unreachable = tokio::net::TcpStream::connect("10.0.0.1:80").await;
    assert!(
        unreachable.is_err(),
        "the namespace must not reach 10.0.0.1"
    );

    let listener = Listener::start().await;
    let port = listener.port;
    let mut server = Server::start_with(|c| {
        c.outbound_allow = rules("127.0.0.1");
        c.outbound_deny = rules(".denied.test");
        c.secret_keys = Some(test_keyring());
    })
    .await;
    let client = &mut server.client;

    // What the URL alone shows is refused at submit, naming the setting.
    let refused_at_submit = [
        ("http://10.0.0.1/".to_string(), "private"),
        ("http://172.16.5.4/".to_string(), "private"),
        ("http://192.168.0.1/".to_string(), "private"),
        ("http://100.64.0.1/".to_string(), "shared address space"),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "cloud metadata",
        ),
        ("http://100.100.100.200/".to_string(), "cloud metadata"),
        ("http://169.254.10.1/".to_string(), "link-local"),
        ("http://0.0.0.0/".to_string(), "unspecified"),
        ("http://0.1.2.3/".to_string(), "this-network"),
        ("http://198.18.0.1/".to_string(), "benchmarking"),
        ("http://224.0.0.1/".to_string(), "multicast"),
        ("http://240.0.0.1/".to_string(), "reserved"),
        ("http://255.255.255.255/".to_string(), "broadcast"),
        // 127.0.0.2 in each spelling the URL parser reads as it: loopback, and not
        // the one address allowed.
        (format!("http://127.0.0.2:{port}/"), "loopback"),
        (format!("http://2130706434:{port}/"), "loopback"),
        (format!("http://0177.0.0.2:{port}/"), "loopback"),
        (format!("http://0x7f.2:{port}/"), "loopback"),
        (format!("http://127.2:{port}/"), "loopback"),
        (format!("http://[::1]:{port}/"), "loopback"),
        (format!("http://[::ffff:127.0.0.2]:{port}/"), "loopback"),
        ("http://[::ffff:10.0.0.1]/".to_string(), "private"),
        ("http://[::10.0.0.1]/".to_string(), "private"),
        ("http://[64:ff9b::a00:1]/".to_string(), "private"),
        ("http://[2002:a00:1::]/".to_string(), "private"),
        (
            "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/".to_string(),
            "private",
        ),
        (
            "http://[::ffff:169.254.169.254]/".to_string(),
            "cloud metadata",
        ),
        ("http://[fd00:ec2::254]/".to_string(), "cloud metadata"),
        ("http://[fd12::1]/".to_string(), "unique-local"),
        ("http://[fe80::1]/".to_string(), "link-local"),
        ("http://[fec0::1]/".to_string(), "site-local"),
        ("http://[ff02::1]/".to_string(), "multicast"),
    ];
    for (url, class) in &refused_at_submit {
        let status = client
            .submit_job(proto::SubmitJobRequest {
                job: Some(job(url.clone())),
            })
            .await
            .expect_err(url);
        assert_eq!(status.code(), Code::InvalidArgument, "{url}: {status:?}");
        assert_eq!(bad_fields(&status), ["job.request.url"], "{url}");
        let message = status.message();
        assert!(
            message.contains(class) && message.contains("JOBQUEUE_OUTBOUND_ALLOW"),
            "{url}: the refusal names the class {class:?} and the setting: {message}"
        );
    }
    // The same holds wherever a call is written: a schedule's job, a chain's
    // step, a template's call (references standing in the path only).
    let refused_call = |status: tonic::Status, what: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("private")
                && status.message().contains("JOBQUEUE_OUTBOUND_ALLOW"),
            "{what}: {}",
            status.message()
        );
    };
    let mut schedules = schedules(server.addr).await;
    let status = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "inward".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Interval(ms(60_000))),
                job: Some(get("http://10.0.0.1/nightly")),
                ..Default::default()
            }),
        })
        .await
        .expect_err("a schedule calling a private address");
    refused_call(status, "a schedule's job");
    let mut chains = common::chains::chains(server.addr).await;
    let spec = common::chains::chain(
        vec![common::chains::step(
            "a",
            "GET",
            "http://10.0.0.1/{{ input.path }}".into(),
        )],
        serde_json::json!({"path": "x"}),
    );
    let status = chains
        .submit_chain(proto::SubmitChainRequest { chain: Some(spec) })
        .await
        .expect_err("a chain step calling a private address");
    refused_call(status, "a chain's step");
    let mut templates = proto::template_service_client::TemplateServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    let status = templates
        .create_template(proto::CreateTemplateRequest {
            template: Some(proto::Template {
                name: "inward".into(),
                request: Some(proto::HttpRequest {
                    method: "GET".into(),
                    url: "http://10.0.0.1/{{ input.path }}".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect_err("a template calling a private address");
    refused_call(status, "a template's call");

    // A deny rule by name is refused at submit too, though its address is allowed.
    let status = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(job(format!("http://x.denied.test:{port}/"))),
        })
        .await
        .expect_err("a denied name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("the host rule .denied.test"),
        "{status:?}"
    );

    // Names are judged by every address they resolve to, at the attempt: the
    // job is taken, and its one attempt is refused before anything is sent.
    let allowed = submit(client, job(format!("http://ok.test:{port}/allowed"))).await;
    let redirected = submit(client, job(format!("http://127.0.0.1:{port}/redirect"))).await;
    let by_name = [
        ("internal.test", "10.0.0.1", "private"),
        ("metadata.test", "169.254.169.254", "cloud metadata"),
        ("loopback.test", "127.0.0.2", "loopback"),
        ("mixed.test", "127.0.0.2", "loopback"),
        ("mapped.test", "10.0.0.1", "private"),
    ];
    let mut refused = Vec::new();
    for (name, _, _) in &by_name {
        refused.push(submit(client, job(format!("http://{name}:{port}/x"))).await);
    }
    let ok = wait_job(client, &allowed, Duration::from_secs(10), finished).await;
    assert_eq!(
        status_of(&ok),
        JobStatus::Succeeded,
        "a name the rules allow is called"
    );
    for ((name, address, class), id) in by_name.iter().zip(&refused) {
        let done = wait_job(client, id, Duration::from_secs(10), finished).await;
        assert_eq!(status_of(&done), JobStatus::Failed, "{name}");
        assert_eq!(
            done.last_error_class,
            ErrorClass::DestinationRefused as i32,
            "{name}: the guard's own class"
        );
        assert_eq!(
            done.attempt, 1,
            "{name}: a refused destination is not retried"
        );
        let attempt = result(client, id).await.final_attempt.expect("an attempt");
        assert!(
            attempt.error_message.contains(name)
                && attempt.error_message.contains(address)
                && attempt.error_message.contains(class),
            "{name}: the refusal names the name, the address and its class: {}",
            attempt.error_message
        );
    }

    // A redirect is the attempt's outcome, not followed to where it points.
    let done = wait_job(client, &redirected, Duration::from_secs(10), finished).await;
    assert_eq!(done.last_status_code, 302);
    assert_eq!(done.attempt, 1);

    // A queue that follows redirects judges each hop as the first call, and
    // leaves credentials behind when the host changes.
    let mut queues = queues(server.addr).await;
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "follows".into(),
                follow_redirects: 3,
                ..Default::default()
            }),
        })
        .await
        .expect("a queue that follows redirects");
    let with_credentials = |path: &str| {
        let mut spec = job(format!("http://127.0.0.1:{port}{path}"));
        spec.queue = "follows".into();
        spec.request
            .as_mut()
            .unwrap()
            .headers
            .insert("Authorization".into(), "Bearer not-for-others".into());
        // A header the job marks secret is held back as the credentials are.
        let request = spec.request.as_mut().unwrap();
        request.headers.insert("X-Signature".into(), "sig".into());
        request.secret_headers = vec!["X-Signature".into()];
        spec
    };
    let inward = submit(client, with_credentials("/redirect")).await;
    let away = submit(client, with_credentials("/redirect-away")).await;
    let here = submit(client, with_credentials("/redirect-here")).await;
    let done = wait_job(client, &inward, Duration::from_secs(10), finished).await;
    assert_eq!(
        (status_of(&done), done.last_error_class, done.attempt),
        (JobStatus::Failed, ErrorClass::DestinationRefused as i32, 1),
        "a hop to 127.0.0.2 is refused as a first call to it would be"
    );
    for id in [&away, &here] {
        let done = wait_job(client, id, Duration::from_secs(10), finished).await;
        assert_eq!(status_of(&done), JobStatus::Succeeded, "{done:?}");
    }
    assert_eq!(listener.credentials_on("/redirect-away"), Some(true));
    assert_eq!(
        listener.credentials_on("/landed-away"),
        Some(false),
        "credentials are not sent on to another host"
    );
    assert_eq!(
        listener.credentials_on("/landed-here"),
        Some(true),
        "the same origin keeps them"
    );

    assert_eq!(
        listener.reached("127.0.0.2"),
        0,
        "nothing ever reached 127.0.0.2: {:?}",
        listener.reached
    );
    assert_eq!(
        listener.reached("127.0.0.1"),
        7,
        "ok.test, the redirect, and the following queue's five requests reached 127.0.0.1"
    );

    // A job opts in itself, in a queue that follows none; or out, in one that does.
    let mut opts_in = job(format!("http://127.0.0.1:{port}/redirect-here"));
    opts_in.max_attempts = Some(1);
    opts_in.follow_redirects = Some(2);
    let opted_in = submit(client, opts_in).await;
    let mut opts_out = job(format!("http://127.0.0.1:{port}/redirect-here"));
    opts_out.max_attempts = Some(1);
    opts_out.queue = "follows".into();
    opts_out.follow_redirects = Some(0);
    let opted_out = submit(client, opts_out).await;
    let done = wait_job(client, &opted_in, Duration::from_secs(10), finished).await;
    assert_eq!(
        (status_of(&done), done.last_status_code),
        (JobStatus::Succeeded, 200)
    );
    assert_eq!(done.follow_redirects, Some(2));
    let done = wait_job(client, &opted_out, Duration::from_secs(10), finished).await;
    assert_eq!(
        done.last_status_code, 302,
        "its own 0 wins over the queue's 3"
    );
    let too_many = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(proto::JobSpec {
                follow_redirects: Some(11),
                ..job(format!("http://127.0.0.1:{port}/"))
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&too_many), ["job.follow_redirects"]);

    // A queue holds its calls to its destinations: within what the service
    // allows, never beyond it.
    let bad = queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "narrow".into(),
                destinations: "10.0.0.0/33".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&bad), ["queue.destinations"]);
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "narrow".into(),
                destinations: "127.0.0.1, 127.0.0.2".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let narrow = |url: String| proto::JobSpec {
        queue: "narrow".into(),
        max_attempts: Some(1),
        follow_redirects: Some(3),
        ..job(url)
    };
    let elsewhere = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(narrow(format!("http://ok.test:{port}/"))),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&elsewhere), ["job.request.url"]);
    assert!(
        elsewhere.message().contains("destinations of queue narrow"),
        "{elsewhere:?}"
    );
    let widened = client
        .submit_job(proto::SubmitJobRequest {
            job: Some(narrow(format!("http://127.0.0.2:{port}/"))),
        })
        .await
        .unwrap_err();
    assert!(
        widened.message().contains("JOBQUEUE_OUTBOUND_ALLOW"),
        "a queue's destinations do not widen what the service allows: {widened:?}"
    );
    let landed_away = listener.count("/landed-away");
    let inside = submit(client, narrow(format!("http://127.0.0.1:{port}/"))).await;
    let hop_out = submit(
        client,
        narrow(format!("http://127.0.0.1:{port}/redirect-away")),
    )
    .await;
    let done = wait_job(client, &inside, Duration::from_secs(10), finished).await;
    assert_eq!(status_of(&done), JobStatus::Succeeded);
    let done = wait_job(client, &hop_out, Duration::from_secs(10), finished).await;
    assert_eq!(
        (status_of(&done), done.last_error_class),
        (JobStatus::Failed, ErrorClass::DestinationRefused as i32),
        "a redirect to a host outside the queue's destinations"
    );
    let attempt = &result(client, &hop_out).await.attempts[0];
    assert!(
        attempt
            .error_message
            .contains("ok.test is not among the destinations"),
        "{}",
        attempt.error_message
    );
    assert_eq!(
        listener.count("/landed-away"),
        landed_away,
        "nothing sent there"
    );
    server.stop().await;

    // A deny rule wins over an allow rule.
    let mut strict = Server::start_with(|c| {
        c.outbound_allow = rules("127.0.0.0/8");
        c.outbound_deny = rules("127.0.0.1");
    })
    .await;
    let status = strict
        .client
        .submit_job(proto::SubmitJobRequest {
            job: Some(job(format!("http://127.0.0.1:{port}/"))),
        })
        .await
        .expect_err("denied though allowed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("the network rule 127.0.0.1/32"),
        "{status:?}"
    );
    let allowed = submit(&mut strict.client, job(format!("http://127.0.0.3:{port}/"))).await;
    let done = wait_job(
        &mut strict.client,
        &allowed,
        Duration::from_secs(10),
        finished,
    )
    .await;
    assert_eq!(
        status_of(&done),
        JobStatus::Succeeded,
        "the rest of 127.0.0.0/8 is allowed"
    );
    strict.stop().await;
}
