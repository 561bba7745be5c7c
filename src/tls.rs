//! TLS on the gRPC port. The certificate and key come from files and are read
//! again when they change (cert-manager renews a Secret in place and the kubelet
//! swaps the mounted files), so a renewal needs no restart: connections made after
//! it get the new certificate, open ones keep theirs. With a client CA every
//! client must present a certificate that CA signed (mTLS); without one, none is
//! asked for. A file that changes into something unreadable is logged and the
//! certificate in use stays.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 256;

/// Where the TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs whose client certificates are accepted; every client must
    /// present one when set.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {what}")]
    Content { path: PathBuf, what: String },
    #[error("the TLS settings do not fit together: {0}")]
    Config(#[from] rustls::Error),
    #[error("the client CA: {0}")]
    ClientCa(String),
}

/// The TLS files' bytes as last read: a change to any of them is a reload.
#[derive(PartialEq, Eq)]
struct Seen {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The server's TLS settings, reloaded as their files change.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, Seen)>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })
}

fn content(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::Content {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Tls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let (config, seen) = Self::read(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new((config, seen)),
        })
    }

    fn read(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Seen), TlsError> {
        let seen = Seen {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            client_ca: files.client_ca.as_ref().map(read).transpose()?,
        };
        let chain = certificates(&files.cert, &seen.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&seen.key)
            .map_err(|e| content(&files.key, format!("no PEM private key: {e}")))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match (&files.client_ca, &seen.client_ca) {
            (Some(path), Some(pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(path, pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| content(path, format!("not a CA certificate: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok((Arc::new(config), seen))
    }

    /// Whether clients must present a certificate.
    pub fn asks_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(current.0.clone())
    }

    /// Reads the files again if they changed: true when new settings took over.
    /// A change that does not load is logged and changes nothing.
    pub fn reload(&self) -> bool {
        let unchanged = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            let now = Seen {
                cert: std::fs::read(&self.files.cert).unwrap_or_default(),
                key: std::fs::read(&self.files.key).unwrap_or_default(),
                client_ca: self
                    .files
                    .client_ca
                    .as_ref()
                    .map(|p| std::fs::read(p).unwrap_or_default()),
            };
            now == current.1
        };
        if unchanged {
            return false;
        }
        match Self::read(&self.files) {
            Ok(next) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
                tracing::info!(cert = %self.files.cert.display(), "TLS files changed: new connections get the new certificate");
                true
            }
            Err(error) => {
                tracing::error!(%error, "TLS files changed but do not load; the certificate in use stays");
                false
            }
        }
    }

    /// Looks at the files every `every` until `stopping`.
    pub async fn watch(self: Arc<Self>, every: Duration, stopping: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let tls = self.clone();
                    // File reads off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
                }
                _ = stopping.cancelled() => return,
            }
        }
    }
}

/// The connections `listener` accepts, each handshaken with the TLS settings of
/// the moment in a task of its own (a slow or broken client holds up nobody),
/// until `stopping`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    stopping: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause, then go on.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopping.cancelled() => return,
                _ = tx.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => refused(peer, &error.to_string()),
                    Err(_) => refused(peer, "no handshake within 10 s"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn refused(peer: SocketAddr, why: &str) {
    tracing::info!(%peer, why, "TLS handshake refused");
}
