//! The server under test: started in this process, spawned as a child process, or
//! an already running one; and the client connection to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use jobqueue::proto::job_service_client::JobServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::Args;
use crate::proc_stats::{read_cpu_ticks, read_peak_rss_kb};
use crate::report::json_string;

pub(crate) type Client = JobServiceClient<Keyed>;

/// A channel whose calls present the run's API key, if it has one.
pub(crate) type Keyed = tonic::service::interceptor::InterceptedService<Channel, WithKey>;

/// The key every call presents (`--api-key`), as the `authorization` value.
static API_KEY: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

/// Adds the run's key to each call.
#[derive(Clone, Copy)]
pub(crate) struct WithKey;

impl tonic::service::Interceptor for WithKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = API_KEY.get() {
            request.metadata_mut().insert("authorization", key.clone());
        }
        Ok(request)
    }
}

/// `channel`, its calls presenting the run's key.
pub(crate) fn keyed(channel: Channel) -> Keyed {
    tonic::service::interceptor::InterceptedService::new(channel, WithKey)
}

/// Writes a keys file holding one key with every scope into `dir` and makes it
/// the run's key; the file's path.
fn api_key_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let (_, key) = jobqueue::auth::key::generate();
    let scopes: Vec<&str> = jobqueue::auth::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let path = dir.join("keys.json");
    std::fs::write(
        &path,
        serde_json::json!({"keys": [{"key": key, "scopes": scopes}]}).to_string(),
    )
    .context("writing the keys file")?;
    let value = format!("Bearer {key}")
        .parse()
        .context("the key as a header value")?;
    let _ = API_KEY.set(value);
    Ok(path)
}

/// The database the server uses instead of a scratch SQLite file (`--db-url`).
pub(crate) static DB_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A fresh directory for the database, removed when dropped.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(crate) fn create() -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("jobqueue-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("creating scratch directory {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    /// `--db-url` when given, else a SQLite file here.
    fn db_url(&self) -> String {
        match DB_URL.get() {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/jobqueue.db?mode=rwc", self.0.display()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {error}", self.0.display());
        }
    }
}

pub(crate) enum ServerKind {
    /// `jobqueue::server::run` on this process's runtime.
    InProcess {
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), jobqueue::server::ServerError>>,
    },
    /// A child process running `jobqueue serve`.
    Spawned {
        child: tokio::process::Child,
        pid: u32,
        log: PathBuf,
    },
    /// Started by someone else; its pid, when given, is only read from.
    External { pid: Option<u32> },
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    /// Where a server this benchmark started serves its metrics, when asked to
    /// (`--scrape-every-ms`).
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) kind: ServerKind,
    pub(crate) description: String,
    /// How the server ran, as JSON fields added to every mode's line.
    pub(crate) json_fields: Vec<(&'static str, String)>,
}

/// Where the server's /proc figures (peak RSS, CPU time) are read from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServerProc {
    /// The server shares this process: its figures include the load generator.
    OwnProcess,
    Pid(u32),
    Unknown,
}

impl ServerProc {
    /// Whose resources a server figure covers.
    pub(crate) fn scope(self) -> &'static str {
        match self {
            ServerProc::OwnProcess => "bench+server",
            _ => "server",
        }
    }
}

impl Server {
    pub(crate) fn server_proc(&self) -> ServerProc {
        match &self.kind {
            ServerKind::InProcess { .. } => ServerProc::OwnProcess,
            ServerKind::Spawned { pid, .. } => ServerProc::Pid(*pid),
            ServerKind::External { pid: Some(pid) } => ServerProc::Pid(*pid),
            ServerKind::External { pid: None } => ServerProc::Unknown,
        }
    }

    /// Stops a server this benchmark started and waits until it has.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        match &mut self.kind {
            ServerKind::InProcess { stop, task } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                (&mut *task)
                    .await
                    .context("the in-process server task panicked")?
                    .context("the in-process server stopped with an error")?;
            }
            ServerKind::Spawned { child, pid, log } => {
                let signalled = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .context("running kill -TERM")?;
                ensure!(signalled.success(), "kill -TERM {pid} failed");
                // The server drains within its shutdown grace (30s by default).
                let status = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await
                {
                    Ok(status) => status.context("waiting for the server")?,
                    Err(_) => {
                        child.kill().await.context("killing the server")?;
                        bail!("the server did not stop within 60s of SIGTERM; killed it");
                    }
                };
                if !status.success() {
                    bail!(
                        "the server exited with {status}; its log ends with:\n{}",
                        log_tail(log)
                    );
                }
            }
            ServerKind::External { .. } => {}
        }
        Ok(())
    }
}

/// Starts (or finds) the server; a spawned one exports traces to `otlp` when
/// given, sampled at `--trace-sample-ratio`.
pub(crate) async fn start_server(
    args: &Args,
    scratch: Option<&ScratchDir>,
    otlp: Option<SocketAddr>,
) -> anyhow::Result<Server> {
    if let Some(addr) = args.server {
        if let Some(pid) = args.server_pid {
            read_peak_rss_kb(ServerProc::Pid(pid))
                .with_context(|| format!("--server-pid {pid}: cannot read its memory use"))?;
            read_cpu_ticks(&format!("/proc/{pid}"))
                .with_context(|| format!("--server-pid {pid}: cannot read its CPU time"))?;
        }
        return Ok(Server {
            addr,
            metrics_addr: None,
            kind: ServerKind::External {
                pid: args.server_pid,
            },
            description: format!("external at {addr} (its own settings apply)"),
            json_fields: vec![("server", json_string("external"))],
        });
    }
    let scratch = scratch.context("no scratch directory for the database")?;
    let metrics_addr = match args.scrape_every_ms {
        0 => None,
        _ => Some(free_port()?),
    };
    let mut server = match &args.spawn_server {
        Some(binary) => {
            let mut env = Vec::new();
            if let (Some(otlp), Some(ratio)) = (otlp, args.trace_sample_ratio) {
                env = vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
                    (
                        "OTEL_TRACES_SAMPLER",
                        "parentbased_traceidratio".to_string(),
                    ),
                    ("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()),
                    ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
                ];
            }
            if args.api_key {
                let file = api_key_file(scratch.path())?;
                env.push(("JOBQUEUE_KEYS_FILE", file.display().to_string()));
            }
            spawn_server(binary, args.concurrency, scratch, metrics_addr, &env).await?
        }
        None => start_in_process(args.concurrency, scratch, metrics_addr).await?,
    };
    server
        .json_fields
        .push(("scrape_every_ms", args.scrape_every_ms.to_string()));
    if let Some(ratio) = args.trace_sample_ratio {
        server
            .json_fields
            .push(("trace_sample_ratio", ratio.to_string()));
    }
    Ok(server)
}

/// What the server's calls may reach: the loopback target (calls out reach only
/// public addresses unless allowed).
const TARGETS: &str = "127.0.0.1";

/// A loopback port nobody listens on now.
fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

async fn start_in_process(
    concurrency: usize,
    scratch: &ScratchDir,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<Server> {
    let mut config = jobqueue::config::Config::with_db_url(scratch.db_url());
    config.concurrency = concurrency;
    config.metrics_addr = metrics_addr;
    config.outbound_allow =
        jobqueue::outbound::address::RuleList::parse(TARGETS).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the server's listener")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(jobqueue::server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        addr,
        metrics_addr,
        kind: ServerKind::InProcess {
            stop: Some(stop),
            task,
        },
        description: format!("in-process at {addr}, concurrency {concurrency}"),
        json_fields: vec![
            ("server", json_string("in-process")),
            ("concurrency", concurrency.to_string()),
        ],
    })
}

async fn spawn_server(
    binary: &Path,
    concurrency: usize,
    scratch: &ScratchDir,
    metrics_addr: Option<SocketAddr>,
    env: &[(&str, String)],
) -> anyhow::Result<Server> {
    let log = scratch.path().join("server.log");
    let log_file = std::fs::File::create(&log).context("creating the server log")?;
    let mut command = tokio::process::Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("JOBQUEUE_OUTBOUND_ALLOW", TARGETS)
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--db-url"])
        .arg(scratch.db_url())
        .args(["--concurrency", &concurrency.to_string()]);
    if let Some(metrics) = metrics_addr {
        command.args(["--metrics-addr", &metrics.to_string()]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    let pid = child.id().context("the spawned server has no pid")?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let mut lines = BufReader::new(stdout).lines();

    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("jobqueue listening on ") {
                return Ok(Some(addr.trim().to_string()));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let addr = match announced {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!(
            "the server exited before listening; its log ends with:\n{}",
            log_tail(&log)
        ),
        Ok(Err(error)) => bail!("reading the server's stdout: {error}"),
        Err(_) => bail!("the server did not announce its address within 30s"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("the server announced an address that does not parse: {addr}"))?;
    // Keep reading so a later line can never block the server on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    Ok(Server {
        addr,
        metrics_addr,
        kind: ServerKind::Spawned { child, pid, log },
        description: format!(
            "spawned {} (pid {pid}) at {addr}, concurrency {concurrency}",
            binary.display()
        ),
        json_fields: vec![
            ("server", json_string("spawned")),
            ("concurrency", concurrency.to_string()),
        ],
    })
}

/// The last lines of a server log, for error messages.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            Ok(channel) => return Ok(JobServiceClient::new(keyed(channel))),
            Err(error) if Instant::now() > deadline => {
                bail!("the server at {addr} never answered: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Scrapes `/metrics` at `addr` every `every` until dropped, as a Prometheus
/// server would; counts the scrapes that answered.
pub(crate) struct Scraper {
    task: tokio::task::JoinHandle<()>,
    scrapes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Scraper {
    pub(crate) fn start(addr: SocketAddr, every: Duration) -> Scraper {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = scrapes.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let scrape = async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    stream
                        .write_all(
                            b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\
                              Accept: application/openmetrics-text; version=1.0.0\r\n\
                              Connection: close\r\n\r\n",
                        )
                        .await?;
                    let mut page = Vec::new();
                    stream.read_to_end(&mut page).await?;
                    Ok::<_, std::io::Error>(page.starts_with(b"HTTP/1.1 200"))
                };
                if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(5), scrape).await {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Scraper { task, scrapes }
    }

    /// Scrapes answered so far.
    pub(crate) fn scrapes(&self) -> usize {
        self.scrapes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
