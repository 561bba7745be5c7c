//! TLS on the API port, as clients meet it: a certificate renewed on disk while a
//! client stays connected (new connections get the new one, the open one goes
//! on), a renewal that does not load leaving the certificate in use, mTLS refusing
//! clients without a certificate or with one from another CA, plaintext refused,
//! health served alone in plaintext for probes, and files that do not load
//! refused at start with the file named.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use jobqueue::proto::{self, job_service_client::JobServiceClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A CA that signs certificates for tests.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` and its key, both PEM.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes through a temporary file and a rename, as the kubelet swaps a mounted
/// Secret, so the server never reads half a file.
fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new(ca: &Ca) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: dir.path().join("clients.crt"),
            _dir: dir,
        };
        files.renew(ca);
        files
    }

    fn renew(&self, ca: &Ca) {
        let (cert, key) = ca.sign(&["localhost"]);
        put(&self.key, &key);
        put(&self.cert, &cert);
    }
}

struct TlsServer {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), jobqueue::server::ServerError>>,
    _db: TestDb,
}

impl TlsServer {
    /// Starts a server; one whose health port (a free port found beforehand) was
    /// taken meanwhile by another test is started again on another.
    async fn start_with_health(
        tweak: impl Fn(&mut jobqueue::config::Config),
    ) -> (TlsServer, std::net::SocketAddr) {
        for _ in 0..3 {
            let health = free_port();
            match Self::try_start(|c| {
                tweak(c);
                c.health_addr = Some(health);
            })
            .await
            {
                Ok(server) => return (server, health),
                Err(error) if error.contains("in use") => continue,
                Err(error) => panic!("the server did not start: {error}"),
            }
        }
        panic!("no free health port in three tries");
    }

    /// A server with `files`' certificate that asks every client for one
    /// `clients_ca` signed.
    async fn mtls(files: &Files, clients_ca: &Ca) -> TlsServer {
        put(&files.client_ca, &clients_ca.pem());
        Self::start(|c| {
            c.tls_cert = Some(files.cert.clone());
            c.tls_key = Some(files.key.clone());
            c.tls_client_ca = Some(files.client_ca.clone());
        })
        .await
    }

    async fn start(tweak: impl FnOnce(&mut jobqueue::config::Config)) -> TlsServer {
        Self::try_start(tweak)
            .await
            .unwrap_or_else(|error| panic!("the server did not start: {error}"))
    }

    async fn try_start(
        tweak: impl FnOnce(&mut jobqueue::config::Config),
    ) -> Result<TlsServer, String> {
        let db = TestDb::new().await;
        let mut config = test_config(&db.url);
        config.tls_reload_interval = Duration::from_millis(100);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(jobqueue::server::run_then(
            listener,
            config,
            async move {
                let _ = stopped.await;
            },
            move |_| {
                let _ = ready_tx.send(());
            },
        ));
        let ready = tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("ready within 20 s");
        if ready.is_err() {
            // It ended before it was ready: say why.
            return Err(match task.await {
                Ok(Err(error)) => error.to_string(),
                other => format!("{other:?}"),
            });
        }
        Ok(TlsServer {
            addr,
            stop: Some(stop),
            task,
            _db: db,
        })
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap().unwrap();
    }
}

/// A channel to the server over TLS, trusting `ca`, presenting `identity`.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// A call any caller may make, or why it failed.
async fn call(channel: Channel) -> Result<(), tonic::Status> {
    JobServiceClient::new(channel)
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .map(|_| ())
}

/// Whether a fresh TLS connection trusting `ca` gets served.
async fn served_trusting(addr: std::net::SocketAddr, ca: &Ca) -> bool {
    match tls_channel(addr, ca, None).await {
        Ok(channel) => call(channel).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_new_connections_while_an_open_one_goes_on() {
    let (first_ca, second_ca) = (Ca::new("first"), Ca::new("second"));
    let files = Files::new(&first_ca);
    let (server, health_addr) = TlsServer::start_with_health(|c| {
        c.tls_cert = Some(files.cert.clone());
        c.tls_key = Some(files.key.clone());
    })
    .await;

    let open = tls_channel(server.addr, &first_ca, None)
        .await
        .expect("TLS with the first certificate");
    call(open.clone()).await.expect("served over TLS");
    assert!(!served_trusting(server.addr, &second_ca).await);

    // Plaintext is not served on the TLS port.
    let plain = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(plain) = plain {
        call(plain)
            .await
            .expect_err("a plaintext call on the TLS port");
    }

    // Health alone, in plaintext, without a key, for probes.
    let health = Channel::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the health port");
    let answer = HealthClient::new(health.clone())
        .check(HealthCheckRequest {
            service: "jobqueue.v1.JobService".into(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
    let other = call(health).await.expect_err("only health on that port");
    assert_eq!(other.code(), tonic::Code::Unimplemented, "{other:?}");

    // A renewal that does not load leaves the certificate in use.
    put(&files.cert, "not a certificate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(served_trusting(server.addr, &first_ca).await);

    // The renewal: new connections get the new certificate...
    files.renew(&second_ca);
    let until = Instant::now() + Duration::from_secs(10);
    while !served_trusting(server.addr, &second_ca).await {
        assert!(
            Instant::now() < until,
            "the renewed certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !served_trusting(server.addr, &first_ca).await,
        "a new connection still got the old certificate"
    );
    // ...and the connection made before it goes on.
    for _ in 0..3 {
        call(open.clone())
            .await
            .expect("the open connection is still served");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_serves_only_clients_with_a_certificate_its_ca_signed() {
    let server_ca = Ca::new("server");
    let (clients_ca, stranger_ca) = (Ca::new("clients"), Ca::new("stranger"));
    let files = Files::new(&server_ca);
    let server = TlsServer::mtls(&files, &clients_ca).await;

    let refused = |result: Result<Channel, tonic::transport::Error>| async move {
        match result {
            Err(_) => true,
            Ok(channel) => call(channel).await.is_err(),
        }
    };
    assert!(
        refused(tls_channel(server.addr, &server_ca, None).await).await,
        "a client without a certificate was served"
    );
    assert!(
        refused(tls_channel(server.addr, &server_ca, Some(stranger_ca.sign(&["client"]))).await)
            .await,
        "a client with another CA's certificate was served"
    );
    let known = tls_channel(server.addr, &server_ca, Some(clients_ca.sign(&["client"])))
        .await
        .expect("a known client connects");
    call(known).await.expect("a known client is served");

    // grpcurl, as the README shows it: with the client's certificate, and without.
    if tool_available(
        std::process::Command::new("grpcurl").arg("-version"),
        "grpcurl",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = clients_ca.sign(&["client"]);
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (ca, cert, key) = (
            file("ca.crt", &server_ca.pem()),
            file("client.crt", &cert),
            file("client.key", &key),
        );
        let target = format!("localhost:{}", server.addr.port());
        let run = |args: &[&str]| {
            let out = std::process::Command::new("grpcurl")
                .args(args)
                .output()
                .expect("grpcurl runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (ok, listed) = run(&[
            "-cacert", &ca, "-cert", &cert, "-key", &key, &target, "list",
        ]);
        assert!(ok && listed.contains("jobqueue.v1.JobService"), "{listed}");
        let (ok, _) = run(&["-cacert", &ca, &target, "list"]);
        assert!(!ok, "grpcurl without a client certificate was served");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_that_do_not_load_are_refused_at_start_naming_the_file() {
    let ca = Ca::new("ca");
    let broken = Files::new(&ca);
    put(&broken.key, "-----BEGIN NOTHING-----\n");
    let good = Files::new(&ca);
    let missing = good.cert.with_extension("missing");
    for (cert, key, client_ca, named) in [
        (broken.cert.clone(), broken.key.clone(), None, &broken.key),
        (good.cert.clone(), missing.clone(), None, &missing),
        // The client CA file was never written.
        (
            good.cert.clone(),
            good.key.clone(),
            Some(good.client_ca.clone()),
            &good.client_ca,
        ),
    ] {
        let db = TestDb::new().await;
        let mut config = test_config(&db.url);
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.tls_client_ca = client_ca;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = tokio::time::timeout(
            Duration::from_secs(20),
            jobqueue::server::run(listener, config, std::future::pending()),
        )
        .await
        .expect("refused at once")
        .expect_err("the server started with TLS files that do not load")
        .to_string();
        assert!(
            error.contains(&named.display().to_string()) && error.contains("TLS"),
            "{error}"
        );
    }
}

/// `jobqueue ARGS` (the command line as a client); its exit code and error output.
async fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobqueue"))
        .args(args)
        .env_remove("JOBQUEUE_ADDRESS")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_speaks_tls_and_presents_a_client_certificate() {
    let ca = Ca::new("server ca");
    let clients_ca = Ca::new("clients ca");
    let files = Files::new(&ca);
    let server = TlsServer::mtls(&files, &clients_ca).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let server_ca = path("ca.pem", &ca.pem());
    let (cert, key) = clients_ca.sign(&["worker"]);
    let (cert, key) = (path("client.pem", &cert), path("client.key", &key));
    let address = format!("https://localhost:{}", server.addr.port());
    let base = ["queue", "list", "--address", &address];

    let with_cert = [
        &base[..],
        &[
            "--tls-ca",
            &server_ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    ]
    .concat();
    let (code, err) = cli(&with_cert).await;
    assert_eq!(
        code,
        Some(0),
        "trusting the CA, presenting a certificate: {err}"
    );

    let without_cert = [&base[..], &["--tls-ca", &server_ca]].concat();
    let (code, _) = cli(&without_cert).await;
    assert_eq!(code, Some(1), "mTLS refuses a client without a certificate");

    let other_ca = path("other.pem", &Ca::new("another").pem());
    let distrusting = [
        &base[..],
        &[
            "--tls-ca",
            &other_ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    ]
    .concat();
    let (code, _) = cli(&distrusting).await;
    assert_eq!(
        code,
        Some(1),
        "a server certificate the CA did not sign is refused"
    );

    let (code, err) = cli(&base).await;
    assert_eq!(code, Some(2), "https without a CA: {err}");
    assert!(err.contains("--tls-ca"), "{err}");

    let plaintext = [
        "queue",
        "list",
        "--address",
        &format!("127.0.0.1:{}", server.addr.port()),
    ];
    let (code, _) = cli(&plaintext).await;
    assert_eq!(code, Some(1), "plaintext to a TLS port fails");
    server.stop().await;
}
