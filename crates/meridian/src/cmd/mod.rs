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

/// Logs to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
