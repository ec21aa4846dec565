//! The subcommands.

pub mod backup;
pub mod bench;
pub mod chaos;
pub mod ctl;
pub mod demo;
pub mod example_node;
pub mod node;
pub mod progress;
pub mod server;
pub mod sim;
pub mod takeover;

use serde_json::Value;

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

/// Every entry of a paged admin list: `get_page` fetches `path` (which may carry a query
/// already) with `limit` and `page_token` added, and the pages are followed to the end.
/// The answer is the first page with `key` holding every entry (its other fields, such as
/// `history` beside `operators`, as that page had them).
pub async fn get_all<F, Fut, E>(path: &str, key: &str, mut get_page: F) -> Result<Value, E>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Value, E>>,
{
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut first: Option<Value> = None;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = get_page(format!("{path}{sep}limit=10000&page_token={token}")).await?;
        all.extend(page[key].as_array().cloned().unwrap_or_default());
        token = page["next_page_token"].as_str().unwrap_or("").to_string();
        first.get_or_insert(page);
        if token.is_empty() {
            break;
        }
    }
    let mut answer = match first {
        Some(Value::Object(page)) => Value::Object(page),
        _ => Value::Object(Default::default()),
    };
    answer[key] = Value::Array(all);
    if let Some(o) = answer.as_object_mut() {
        o.remove("next_page_token");
    }
    Ok(answer)
}

/// `GET url` with `client`, its body as JSON (whatever the status: an error's body holds
/// no list), within 10 s.
pub async fn get_json(client: &reqwest::Client, url: String) -> Result<Value, reqwest::Error> {
    client
        .get(url)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await?
        .json()
        .await
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
