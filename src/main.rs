use std::process::ExitCode;

// Allocation is a large share of the per-job cost; mimalloc measured faster than the
// system allocator in the load generator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;

use clap::Parser;
use jobqueue::cli;
use jobqueue::config::{Cli, Command, HostsCommand, KeyCommand, LogFormat, SecretsCommand};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        Command::Serve(config) => config,
        Command::Key(KeyCommand::New) => {
            println!("{}", jobqueue::auth::key::generate().1);
            return ExitCode::SUCCESS;
        }
        Command::Secrets(SecretsCommand::NewKey { id }) => {
            return match jobqueue::secret::Keyring::new_key(&id) {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("jobqueue: --id: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Secrets(SecretsCommand::Rekey(config)) => return rekey(config).await,
        Command::Hosts(command) => return hosts(command).await,
        Command::Job { client, command } => {
            return cli::run(client, cli::Target::Job(command)).await;
        }
        Command::Queue { client, command } => {
            return cli::run(client, cli::Target::Queue(command)).await;
        }
        Command::Schedule { client, command } => {
            return cli::run(client, cli::Target::Schedule(command)).await;
        }
    };
    // A filter that does not parse stops the start, as any bad setting does.
    let filter = match std::env::var("JOBQUEUE_LOG") {
        Ok(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => filter,
            Err(error) => {
                eprintln!(
                    "jobqueue: JOBQUEUE_LOG: {error}; expected a filter such as info or jobqueue=debug,warn"
                );
                return ExitCode::FAILURE;
            }
        },
        Err(_) => EnvFilter::new("info"),
    };
    let terminal = std::io::stderr().is_terminal();
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => log.json().init(),
        LogFormat::Auto if !terminal => log.json().init(),
        // Colours only for a person at a terminal: collectors get plain bytes.
        _ => log.with_ansi(terminal).init(),
    }
    let telemetry = match jobqueue::telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("jobqueue: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = serve(config).await;
    if let Some(telemetry) = telemetry {
        // The exporter's last batch, sent before the process ends.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, naming the setting at fault.
            eprintln!("jobqueue: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: jobqueue::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "JOBQUEUE_LISTEN_ADDR: cannot listen on {}: {e}",
                config.listen_addr
            )
        })?;
    let concurrency = config.concurrency;
    // Tests and scripts read this line to find a port chosen by the system; it comes
    // once the database is open and calls are served.
    let ready = move |addr: std::net::SocketAddr| {
        println!("jobqueue listening on {addr}");
        tracing::info!(%addr, concurrency, "serving");
    };
    jobqueue::server::run_then(listener, config, shutdown_signal(), ready).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn rekey(config: jobqueue::config::Config) -> ExitCode {
    let Some(keyring) = config.keyring() else {
        eprintln!(
            "jobqueue: no keys to seal with: set JOBQUEUE_SECRET_KEYS or JOBQUEUE_SECRET_KEYS_FILE"
        );
        return ExitCode::FAILURE;
    };
    let store = match jobqueue::store::Store::connect_with(&config.db_url, config.db_timeout).await
    {
        Ok(store) => store,
        Err(error) => {
            eprintln!("jobqueue: JOBQUEUE_DB_URL: {error}");
            return ExitCode::FAILURE;
        }
    };
    match jobqueue::secret::rekey::rekey(&store, &keyring).await {
        Ok(done) => {
            println!(
                "{} rows read, {} sealed again with key {}, {} could not be opened",
                done.read,
                done.sealed,
                keyring.active(),
                done.failed
            );
            if done.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("jobqueue: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn hosts(command: HostsCommand) -> ExitCode {
    let (config, reset) = match command {
        HostsCommand::List(config) => (config, None),
        HostsCommand::Reset { host, config } => (config, Some(host.to_ascii_lowercase())),
    };
    let store = match jobqueue::store::Store::connect_with(&config.db_url, config.db_timeout).await
    {
        Ok(store) => store,
        Err(error) => {
            eprintln!("jobqueue: JOBQUEUE_DB_URL: {error}");
            return ExitCode::FAILURE;
        }
    };
    let now = jobqueue::now_ms();
    if let Some(host) = reset {
        return match store.reset_host(&host, now).await {
            Ok(true) => {
                println!("{host}: circuit closed, failures and Retry-After forgotten");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                eprintln!(
                    "jobqueue: no state is kept for the host {host:?} (see `jobqueue hosts list`)"
                );
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("jobqueue: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match store.hosts().await {
        Ok(hosts) => {
            println!("{:<40} {:>8} {:>8}  circuit", "host", "running", "failures");
            for h in hosts {
                let circuit = match (h.open_until, &h.probe) {
                    (None, _) => "closed".to_string(),
                    (Some(_), Some(_)) => "half open, probe out".to_string(),
                    (Some(until), None) if until > now => {
                        format!("open for {}s more", (until - now + 999) / 1000)
                    }
                    (Some(_), None) => "half open".to_string(),
                };
                let slowed = h
                    .slow_until
                    .filter(|u| *u > now)
                    .map(|u| format!(", asked for {}s more", (u - now + 999) / 1000))
                    .unwrap_or_default();
                println!(
                    "{:<40} {:>8} {:>8}  {circuit}{slowed}",
                    h.host, h.running, h.failures
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jobqueue: {error}");
            ExitCode::FAILURE
        }
    }
}
