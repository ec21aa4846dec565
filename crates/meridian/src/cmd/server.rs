//! `meridian server`.

use super::CmdResult;
use clap::Args;
use meridian_server::{Server, ServerConfig, StoreKind};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags shared by `server` and `demo`; each overrides the config file and environment.
#[derive(Args, Clone, Default, Debug)]
pub struct ServerArgs {
    /// Directory of the embedded store [env: MERIDIAN_DATA_DIR] [default: ./meridian-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [env: MERIDIAN_GRPC_ADDR] [default: 127.0.0.1:7700]
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address [env: MERIDIAN_HTTP_ADDR] [default: 127.0.0.1:7701]
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// TOML config file (see docs/configuration.md)
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Keep metadata in memory only (nothing survives a restart)
    #[arg(long)]
    pub memory: bool,
}

impl ServerArgs {
    /// File, then environment, then these flags.
    pub fn load(&self) -> Result<ServerConfig, meridian_server::config::ConfigError> {
        let mut config = ServerConfig::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = self.grpc_addr {
            config.grpc_addr = a;
        }
        if let Some(a) = self.http_addr {
            config.http_addr = a;
        }
        if self.memory {
            config.store = StoreKind::Memory;
        }
        Ok(config)
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> CmdResult {
    let config = args.load()?;
    let store = match config.store {
        StoreKind::Redb => format!(
            "redb at {}",
            config.data_dir.join("meridian.redb").display()
        ),
        StoreKind::Memory => "memory".into(),
    };
    let server = Server::start(config).await?;
    eprintln!(
        "meridian serving: gRPC {} | dashboard and API http://{}/ | store: {store}",
        server.grpc_addr, server.http_addr
    );
    wait_for_signal().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
