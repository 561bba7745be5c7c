//! The connection a client command makes: address, TLS and API key.

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::args::ClientArgs;
use super::fail::Failure;
use crate::proto::job_service_client::JobServiceClient;
use crate::proto::queue_service_client::QueueServiceClient;
use crate::proto::schedule_service_client::ScheduleServiceClient;

/// Adds the API key to every call.
#[derive(Clone)]
pub struct Key(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Key {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Conn = InterceptedService<Channel, Key>;

/// The service's clients, over one connection.
pub struct Clients {
    pub jobs: JobServiceClient<Conn>,
    pub queues: QueueServiceClient<Conn>,
    pub schedules: ScheduleServiceClient<Conn>,
}

/// Connects as `args` say; a failure names the flag at fault.
pub async fn connect(args: &ClientArgs) -> Result<Clients, Failure> {
    let tls = args.tls_ca.is_some() || args.address.starts_with("https://");
    let url = if args.address.contains("://") {
        args.address.clone()
    } else if tls {
        format!("https://{}", args.address)
    } else {
        format!("http://{}", args.address)
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::usage(format!("--address {url}: {e}")))?;
    if tls {
        let mut config = ClientTlsConfig::new();
        let Some(ca) = &args.tls_ca else {
            return Err(Failure::usage(
                "--tls-ca: an https:// address needs the CA that signs the service's certificate",
            ));
        };
        let pem = std::fs::read(ca)
            .map_err(|e| Failure::usage(format!("--tls-ca {}: {e}", ca.display())))?;
        config = config.ca_certificate(Certificate::from_pem(pem));
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let read = |path: &std::path::PathBuf, flag: &str| {
                std::fs::read(path)
                    .map_err(|e| Failure::usage(format!("{flag} {}: {e}", path.display())))
            };
            config = config.identity(Identity::from_pem(
                read(cert, "--tls-cert")?,
                read(key, "--tls-key")?,
            ));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| Failure::usage(format!("--tls-ca: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Failure::unreachable(format!("cannot reach the service at {url}: {e}")))?;
    let key = match &args.api_key {
        None => Key(None),
        Some(key) => Key(Some(format!("Bearer {key}").parse().map_err(|_| {
            Failure::usage("--api-key: not a key (jq_<id>_<secret>)")
        })?)),
    };
    let conn = InterceptedService::new(channel, key);
    Ok(Clients {
        jobs: JobServiceClient::new(conn.clone()),
        queues: QueueServiceClient::new(conn.clone()),
        schedules: ScheduleServiceClient::new(conn),
    })
}
