//! The subcommands.

pub mod backup;
pub mod bench;
pub mod chaos;
pub mod ctl;
pub mod demo;
pub mod example_node;
pub mod node;
pub mod server;
pub mod sim;
pub mod takeover;

/// Errors of the binary: plain messages for the terminal.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error + Send + Sync>>;

/// How a client command reaches servers run with `[tls]`: with `--ca`, addresses without
/// a scheme mean `https://`, and `--cert`/`--key` answer servers that require client
/// certificates.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// CA certificate (PEM) that signed the servers' certificates: speak TLS
    #[arg(id = "tls_ca", long = "ca", env = "MERIDIAN_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for servers that require one (with --key)
    #[arg(id = "tls_cert", long = "cert", env = "MERIDIAN_CERT", global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// This client's private key (PEM), with --cert
    #[arg(id = "tls_key", long = "key", env = "MERIDIAN_KEY", global = true)]
    pub key: Option<std::path::PathBuf>,
}

impl ClientTlsArgs {
    /// The TLS settings these flags describe, or none without `--ca`.
    pub fn client_tls(
        &self,
    ) -> Result<Option<meridian_client::ClientTls>, meridian_client::ClientError> {
        match &self.ca {
            Some(ca) => meridian_client::ClientTls::from_files(
                ca,
                self.cert.as_deref(),
                self.key.as_deref(),
            )
            .map(Some),
            None if self.cert.is_some() || self.key.is_some() => {
                Err(meridian_client::ClientError::Tls(
                    "--cert and --key need --ca, the CA that signed the servers' certificates"
                        .into(),
                ))
            }
            None => Ok(None),
        }
    }

    /// A reqwest client builder that trusts `--ca` and presents `--cert`/`--key`.
    pub fn http_client(
        &self,
    ) -> Result<reqwest::ClientBuilder, Box<dyn std::error::Error + Send + Sync>> {
        let builder = reqwest::Client::builder();
        let Some(tls) = self.client_tls()? else {
            return Ok(builder);
        };
        let mut builder = builder.tls_built_in_root_certs(false).use_rustls_tls();
        for ca in reqwest::Certificate::from_pem_bundle(tls.ca_pem())? {
            builder = builder.add_root_certificate(ca);
        }
        if let Some((cert, key)) = tls.identity_pem() {
            builder = builder.identity(reqwest::Identity::from_pem(&[cert, b"\n", key].concat())?);
        }
        Ok(builder)
    }

    /// `host:port` as a URL: `https://` with `--ca`, else `http://`; a URL as it is.
    pub fn url(&self, addr: &str) -> String {
        let addr = addr.trim_end_matches('/');
        if addr.contains("://") {
            addr.to_string()
        } else if self.ca.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        }
    }
}

/// Every entry of a paged admin list: `GET url` (which may carry a query already), its
/// pages followed to the end, the entries under `key` joined.
pub async fn get_all(
    client: &reqwest::Client,
    url: &str,
    key: &str,
) -> Result<Vec<serde_json::Value>, reqwest::Error> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page: serde_json::Value = client
            .get(format!("{url}{sep}limit=10000&page_token={token}"))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await?
            .json()
            .await?;
        all.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return Ok(all),
        }
    }
}

/// Logs to stderr, as text or one JSON object per line; `RUST_LOG` overrides the level.
pub fn init_tracing(quiet: bool, json: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        // Colours only for a person at a terminal: a log file or a collector gets plain
        // text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.with_ansi(ansi).try_init()
    };
}
