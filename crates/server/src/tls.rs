//! TLS on both ports, with optional client-certificate verification.
//!
//! - gRPC: tonic's own TLS ([`tonic::transport::ServerTlsConfig`]), which also requires a
//!   client certificate signed by `client_ca_file` when one is given.
//! - HTTP: a [`TlsListener`] for `axum::serve`; handshakes run in their own tasks so one
//!   slow or silent client cannot hold up the others.
//! - A follower forwarding to the leader ([`ServerTls::forward_config`]) presents its own
//!   certificate and trusts `client_ca_file` (the CA every server and client of one
//!   deployment share) or, without one, the issuer in its own certificate chain.
//!
//! ring is the one crypto provider: aws-lc would need cmake and a C build.

use crate::{Result, ServerError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[tls]` section: certificate and key files, and the CA whose client certificates
/// are required (mutual TLS) when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain this server presents (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificate(s): when set, every gRPC and HTTP client must present a
    /// certificate they signed.
    pub client_ca_file: Option<PathBuf>,
}

/// Loaded TLS material, checked at start.
#[derive(Clone)]
pub(crate) struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    http: Arc<rustls::ServerConfig>,
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        ServerError::InvalidArgument(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    })
}

fn certificates(what: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ServerError::InvalidArgument(format!("the TLS {what} {}: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ServerError::InvalidArgument(format!(
            "the TLS {what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Reads and checks the files; every problem names its file.
    pub(crate) fn load(config: &TlsConfig) -> Result<Self> {
        let cert_pem = read("certificate", &config.cert_file)?;
        let key_pem = read("key", &config.key_file)?;
        let chain = certificates("certificate", &config.cert_file, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            ServerError::InvalidArgument(format!(
                "the TLS key {} holds no usable PEM private key: {e}",
                config.key_file.display()
            ))
        })?;
        let client_ca_pem = match &config.client_ca_file {
            Some(path) => Some((path.clone(), read("client CA", path)?)),
            None => None,
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::InvalidArgument(format!("TLS: {e}")))?;
        let builder = match &client_ca_pem {
            Some((path, pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in certificates("client CA", path, pem)? {
                    roots.add(ca).map_err(|e| {
                        ServerError::InvalidArgument(format!(
                            "the TLS client CA {}: {e}",
                            path.display()
                        ))
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| {
                    ServerError::InvalidArgument(format!(
                        "the TLS client CA {}: {e}",
                        path.display()
                    ))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut http = builder.with_single_cert(chain, key).map_err(|e| {
            ServerError::InvalidArgument(format!(
                "the TLS certificate {} and key {} do not go together: {e}",
                config.cert_file.display(),
                config.key_file.display()
            ))
        })?;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            cert_pem,
            key_pem,
            client_ca_pem: client_ca_pem.map(|(_, pem)| pem),
            http: Arc::new(http),
        })
    }

    /// Whether clients must present a certificate.
    pub(crate) fn requires_client_certificates(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// tonic's configuration for the gRPC port.
    pub(crate) fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }

    /// How a follower reaches the leader's gRPC port: as a client with this server's own
    /// certificate, trusting the deployment's CA.
    pub(crate) fn forward_config(&self) -> tonic::transport::ClientTlsConfig {
        let ca = match &self.client_ca_pem {
            Some(ca) => ca.clone(),
            // Without a client CA, the issuer at the end of our own chain (the chain itself
            // when the certificate is self-signed and shared by every server).
            None => last_pem_block(&self.cert_pem),
        };
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
    }

    /// A listener for `axum::serve` that hands over connections once their handshake is
    /// done.
    pub(crate) fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener::spawn(tcp, TlsAcceptor::from(self.http.clone()))
    }
}

/// The last `-----BEGIN CERTIFICATE-----` block of a PEM chain.
fn last_pem_block(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    match text.rfind("-----BEGIN CERTIFICATE-----") {
        Some(at) => text[at..].as_bytes().to_vec(),
        None => pem.to_vec(),
    }
}

/// TLS connections whose handshake succeeded, accepted in a background task.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = tcp.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!("HTTP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTP TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (its listener failed for good): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
