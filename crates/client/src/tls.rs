//! TLS towards servers run with `[tls]`: the CA that signed their certificates and, where
//! they require client certificates (`client_ca_file`), this client's own.

use crate::ClientError;
use std::path::Path;

/// How a client reaches servers that speak TLS. Addresses without a scheme then mean
/// `https://`.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Trusts the CA certificate(s) in `ca_pem`.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Presents this certificate chain and key (PEM) to servers that ask for one.
    pub fn with_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Reads the CA and, when both are given, this client's certificate and key. A
    /// certificate without its key (or the reverse) is an error.
    pub fn from_files(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                ClientError::Tls(format!("cannot read the {what} {}: {e}", path.display()))
            })
        };
        let tls = Self::new(read("CA certificate", ca)?);
        match (cert, key) {
            (Some(cert), Some(key)) => {
                Ok(tls.with_identity(read("client certificate", cert)?, read("client key", key)?))
            }
            (None, None) => Ok(tls),
            _ => Err(ClientError::Tls(
                "a client certificate needs its key, and a key its certificate".into(),
            )),
        }
    }

    /// The trusted CA certificate(s), PEM.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// This client's certificate chain and key, PEM, if it has them.
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
    }

    /// tonic's configuration.
    pub(crate) fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}
