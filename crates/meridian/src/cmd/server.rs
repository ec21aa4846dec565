//! `meridian server`.

use super::CmdResult;
use clap::Args;
use meridian_server::{HaServer, Server, ServerConfig, StoreKind};
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
    /// Where metadata lives: redb (embedded, one server) or etcd (several servers, one
    /// elected leader; see docs/deploy.md) [default: redb]
    #[arg(long, value_parser = ["redb", "memory", "etcd"])]
    pub store: Option<String>,
    /// etcd client addresses, comma-separated (with --store etcd) [default: 127.0.0.1:2379]
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// This server's name in logs, /health and the election [default: meridian-<grpc port>]
    #[arg(long)]
    pub name: Option<String>,
    /// gRPC address that clients and other servers use to reach this one [default: --grpc-addr]
    #[arg(long)]
    pub advertise_grpc_addr: Option<String>,
    /// HTTP address that clients and other servers use to reach this one [default: --http-addr]
    #[arg(long)]
    pub advertise_http_addr: Option<String>,
    /// A file of `ROLE TOKEN` lines (node, reader, admin): every call then needs a token of
    /// a role allowed to make it [default: none, everything open]
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC and HTTP over TLS (with --tls-key)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: every client must then present a certificate it signed (mutual TLS)
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
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
        match self.store.as_deref() {
            Some("redb") => config.store = StoreKind::Redb,
            Some("memory") => config.store = StoreKind::Memory,
            Some("etcd") => config.store = StoreKind::Etcd,
            _ => {}
        }
        if let Some(e) = &self.etcd_endpoints {
            config.etcd.endpoints = e.clone();
        }
        if let Some(n) = &self.name {
            config.name = n.clone();
        }
        if let Some(a) = &self.advertise_grpc_addr {
            config.advertise_grpc_addr = Some(a.clone());
        }
        if let Some(a) = &self.advertise_http_addr {
            config.advertise_http_addr = Some(a.clone());
        }
        if let Some(t) = &self.tokens {
            config.tokens_file = Some(t.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(meridian_server::TlsConfig {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: self.tls_client_ca.clone(),
            });
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
        StoreKind::Etcd => {
            let endpoints = config.etcd.endpoints.join(",");
            let server = HaServer::start(config).await?;
            eprintln!(
                "meridian started: gRPC {} | HTTP http://{}/ | store: etcd at {endpoints} \
                 (campaigning: one server leads, the others follow)",
                server.grpc_addr, server.http_addr
            );
            wait_for_signal().await;
            eprintln!("shutting down (resigning if leader)");
            server.shutdown().await;
            return Ok(std::process::ExitCode::SUCCESS);
        }
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
