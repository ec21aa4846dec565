//! The subcommands.

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

/// Logs to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
