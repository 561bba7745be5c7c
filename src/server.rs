//! The gRPC server: the job, queue and schedule services, health and reflection on
//! one listener.
//! [`run`] is what `main` calls and what the tests call: it connects the store,
//! starts the engine, serves until `shutdown` resolves, then drains.

use std::future::Future;

use futures::future::Either;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::admit::AdmitLayer;
use crate::api::audit::AuditApi;
use crate::api::chains::ChainApi;
use crate::api::contracts::ContractApi;
use crate::api::convert::Limits;
use crate::api::jobs::JobApi;
use crate::api::keys::KeyApi;
use crate::api::queues::QueueApi;
use crate::api::schedules::ScheduleApi;
use crate::api::templates::TemplateApi;
use crate::auth::layer::Gate;
use crate::config::Config;
use crate::engine::{Engine, EngineError, KeyChange};
use crate::health::Health;
use crate::overload;
use crate::proto::audit_service_server::AuditServiceServer;
use crate::proto::chain_service_server::ChainServiceServer;
use crate::proto::contract_service_server::ContractServiceServer;
use crate::proto::job_service_server::JobServiceServer;
use crate::proto::key_service_server::KeyServiceServer;
use crate::proto::queue_service_server::QueueServiceServer;
use crate::proto::schedule_service_server::ScheduleServiceServer;
use crate::proto::template_service_server::TemplateServiceServer;
use crate::store::{Store, StoreError};
use crate::tls::Tls;

/// How much longer than the shutdown grace open calls may take to drain.
const DRAIN_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// Largest request message: a full `SubmitJobs` batch of large bodies fits.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("JOBQUEUE_DB_URL={url}: cannot open the database: {source}")]
    Store {
        /// The URL, its password masked.
        url: String,
        source: StoreError,
    },
    #[error("starting the engine: {0}")]
    Engine(#[from] EngineError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Keys(String),
    #[error(
        "refusing to serve open on {addr}: with no keys file (JOBQUEUE_KEYS_FILE) anyone who \
         reaches the port could do anything; set a keys file, listen on a loopback address, \
         or set JOBQUEUE_INSECURE_OPEN=true"
    )]
    Open { addr: std::net::SocketAddr },
    #[error("JOBQUEUE_METRICS_ADDR: cannot listen on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("JOBQUEUE_HEALTH_ADDR: cannot listen on {addr}: {source}")]
    HealthPort {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS (JOBQUEUE_TLS_CERT, JOBQUEUE_TLS_KEY, JOBQUEUE_TLS_CLIENT_CA): {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves on `listener` until `shutdown` resolves. Then it stops taking calls and
/// claims, lets running jobs finish within the shutdown grace, requeues the rest,
/// and returns once everything is written.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_then(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` with the address once the database is open and
/// migrated and the engine runs: from then on calls are served.
pub async fn run_then(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServerError> {
    if let Some(start) = config.clock_start {
        crate::set_clock(start);
        tracing::warn!(
            now = crate::now_ms(),
            "the wall clock is set by JOBQUEUE_CLOCK_START"
        );
    }
    let keys = gate_keys(&listener, &config)?;
    let tls = match config.tls_files() {
        Some(files) => Some(std::sync::Arc::new(Tls::load(files)?)),
        None => None,
    };
    let health_listener = match config.health_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::HealthPort { addr, source })?,
        ),
        None => None,
    };
    let store = Store::connect_with(&config.db_url, config.db_timeout)
        .await
        .map_err(|source| ServerError::Store {
            url: crate::store::masked_url(&config.db_url),
            source,
        })?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        role = ?config.role,
        database = store.name(),
        kind = store.kind(),
        "database open and migrated"
    );
    let stopping = CancellationToken::new();
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let (engine, writer) = Engine::start(store, &config, stopping.clone()).await?;
    let gate = match keys {
        Some(rows) => {
            let count = rows.len();
            engine.change_keys(KeyChange::Save(rows)).await?;
            tracing::info!(keys = count, "keys file loaded: every call presents a key");
            Gate::Keys(engine.store().clone())
        }
        None => Gate::Open,
    };
    let keys_on = matches!(gate, Gate::Keys(_));
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving metrics");
        }
        tokio::spawn(crate::metrics::serve(
            listener,
            engine.metrics().clone(),
            engine.store().clone(),
            stopping.clone(),
        ));
    }

    // Kept until serving ends: a worker serves no API to hold the engine, and the
    // writer stops once no handle is left.
    let held = engine.clone();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let api_services = match config.role.serves_api() {
        true => vec![
            <JobServiceServer<JobApi> as tonic::server::NamedService>::NAME,
            <QueueServiceServer<QueueApi> as tonic::server::NamedService>::NAME,
            <ScheduleServiceServer<ScheduleApi> as tonic::server::NamedService>::NAME,
            <ContractServiceServer<ContractApi> as tonic::server::NamedService>::NAME,
            <ChainServiceServer<ChainApi> as tonic::server::NamedService>::NAME,
            <TemplateServiceServer<TemplateApi> as tonic::server::NamedService>::NAME,
            <KeyServiceServer<KeyApi> as tonic::server::NamedService>::NAME,
            <AuditServiceServer<AuditApi> as tonic::server::NamedService>::NAME,
        ],
        false => Vec::new(),
    };
    let health = Health::new(reporter, api_services).await;
    tokio::spawn(
        health
            .clone()
            .watch_database(engine.store().clone(), stopping.clone()),
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // So grpcurl can show the google.rpc.BadRequest details of a refusal.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let queues = QueueServiceServer::new(QueueApi::new(engine.clone(), Limits::from(&config)));
    let schedules =
        ScheduleServiceServer::new(ScheduleApi::new(engine.clone(), Limits::from(&config)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let contracts = ContractServiceServer::new(ContractApi::new(engine.clone()));
    let templates =
        TemplateServiceServer::new(TemplateApi::new(engine.clone(), Limits::from(&config)));
    let chains = ChainServiceServer::new(ChainApi::new(engine.clone(), Limits::from(&config)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let keys = KeyServiceServer::new(KeyApi::new(engine.clone(), keys_on));
    let audit = AuditServiceServer::new(AuditApi::new(engine.clone()));
    let observe = crate::observe::ObserveLayer::new(engine.metrics().clone());
    let jobs = JobServiceServer::new(JobApi::new(engine, Limits::from(&config)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let signal = {
        let stopping = stopping.clone();
        let health = health.clone();
        let delay = config.shutdown_delay;
        async move {
            shutdown.await;
            // Not ready first, still serving: load balancers drop this process
            // before its listener closes.
            health.stopping().await;
            tracing::info!(
                ?delay,
                "shutdown requested: not ready; still serving for the delay"
            );
            tokio::time::sleep(delay).await;
            stopping.cancel();
        }
    };
    // A worker serves health (for probes) and nothing a client could submit to.
    let (jobs, queues, schedules, contracts, chains, templates, keys, audit) =
        match config.role.serves_api() {
            true => (
                Some(jobs),
                Some(queues),
                Some(schedules),
                Some(contracts),
                Some(chains),
                Some(templates),
                Some(keys),
                Some(audit),
            ),
            false => {
                // Dropped now, with their engine handles, or the writer would wait on
                // them at shutdown.
                drop((
                    jobs, queues, schedules, contracts, chains, templates, keys, audit,
                ));
                (None, None, None, None, None, None, None, None)
            }
        };
    if let Some(listener) = health_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving health alone, in plaintext");
        }
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service.clone())
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stopping.clone().cancelled_owned(),
                ),
        );
    }
    if let Ok(addr) = listener.local_addr() {
        ready(addr);
    }
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Pings keep idle watch streams open through proxies and find dead peers.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .layer(observe)
        .layer(AdmitLayer::new(gate))
        .layer(AdmitLayer::new(overload::Limits::new(
            config.max_in_flight,
            config.key_rate as u32,
        )))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(jobs)
        .add_optional_service(queues)
        .add_optional_service(schedules)
        .add_optional_service(contracts)
        .add_optional_service(chains)
        .add_optional_service(templates)
        .add_optional_service(keys)
        .add_optional_service(audit);
    let serving = match tls {
        Some(tls) => {
            tracing::info!(
                client_certificates = tls.asks_client_certificates(),
                "TLS on the API port"
            );
            tokio::spawn(
                tls.clone()
                    .watch(config.tls_reload_interval, stopping.clone()),
            );
            let incoming = crate::tls::incoming(listener, tls, stopping.clone());
            Either::Left(router.serve_with_incoming_shutdown(incoming, signal))
        }
        None => Either::Right(
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal),
        ),
    };
    // Draining waits for open calls; a client that never reads its stream must not
    // keep the process alive past the grace.
    let drain_deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(config.shutdown_grace + DRAIN_SLACK).await;
    };
    tokio::select! {
        served = serving => served?,
        _ = drain_deadline => tracing::warn!("calls still open after the shutdown grace; closing them"),
    }
    // The services (and their engine handles) are gone; the writer ends once the
    // running calls have finished or been requeued.
    drop(held);
    stopping.cancel();
    if writer.await.is_err() {
        tracing::error!("the writer thread ended without finishing its work");
    }
    Ok(())
}

/// The keys of the keys file, or `None` to serve open: allowed on a loopback
/// address, and elsewhere only with JOBQUEUE_INSECURE_OPEN, said at every start.
fn gate_keys(
    listener: &TcpListener,
    config: &Config,
) -> Result<Option<Vec<crate::store::api_keys::Model>>, ServerError> {
    if let Some(path) = &config.keys_file {
        return crate::auth::file::load(path, crate::now_ms())
            .map(Some)
            .map_err(ServerError::Keys);
    }
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Keys(format!("the listener has no address: {e}")))?;
    if addr.ip().is_loopback() {
        tracing::info!(%addr, "open, without keys: every call acts in the default namespace (set JOBQUEUE_KEYS_FILE to ask for keys)");
        return Ok(None);
    }
    if !config.insecure_open {
        return Err(ServerError::Open { addr });
    }
    tracing::warn!(%addr, "INSECURE: open, without keys, on an address others can reach (JOBQUEUE_INSECURE_OPEN=true): anyone who reaches the port may do anything");
    Ok(None)
}
