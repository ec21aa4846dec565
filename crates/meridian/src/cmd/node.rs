//! `meridian sim-node`: one simulated database node in its own process, for trying
//! failover by killing a real process (and for the real-process tests and `meridian chaos`).
//!
//! Its data plane listens on `--endpoint` (the address Meridian routes clients to):
//! `POST /write` with `{"shard", "table", "key"}` answers 200 with
//! `{"node", "shard", "version", "accepted_ns"}` when the node holds the shard's write
//! lease, or 503 with `{"error": "not_leader", "message", "node", "shard", "retryable": true}`.

use super::server::wait_for_signal;
use super::CmdResult;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Args;
use meridian_client::{LeaseLog, NodeAgentConfig, ShardLeases};
use meridian_model::NodeLabels;
use meridian_sim::node::SimNode;
use meridian_sim::write::WriteRequest;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Who a node is and which Meridian it joins: the flags `sim-node` and `example-node`
/// share.
#[derive(Args, Debug)]
pub struct JoinArgs {
    /// Meridian gRPC addresses, comma-separated (several servers: the node finds the
    /// leader and follows it).
    #[arg(long, default_value = "127.0.0.1:7700", value_delimiter = ',')]
    meta: Vec<String>,
    /// Cluster to join.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Node name (its identity).
    #[arg(long)]
    name: String,
    /// Endpoint advertised to clients.
    #[arg(long)]
    endpoint: String,
    /// Zone label.
    #[arg(long, default_value = "")]
    zone: String,
    /// Rack label.
    #[arg(long, default_value = "")]
    rack: String,
    /// Host label.
    #[arg(long, default_value = "")]
    host: String,
    /// Config fingerprint presented at registration.
    #[arg(long, default_value = "")]
    fingerprint: String,
    /// Token for a server run with `--tokens` (role node).
    #[arg(long, env = "MERIDIAN_TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: super::ClientTlsArgs,
}

impl JoinArgs {
    /// The agent's configuration these flags describe.
    pub fn agent_config(&self) -> Result<NodeAgentConfig, meridian_client::ClientError> {
        let mut config = NodeAgentConfig::new("", self.name.clone(), self.endpoint.clone());
        config.meta_addrs = self.meta.clone();
        config.cluster = self.cluster.clone();
        config.labels = NodeLabels {
            zone: self.zone.clone(),
            rack: self.rack.clone(),
            host: self.host.clone(),
        };
        config.config_fingerprint = self.fingerprint.clone();
        config.token = self.token.clone();
        config.tls = self.tls.client_tls()?;
        Ok(config)
    }
}

/// Flags of `meridian sim-node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Append one JSON line per writable interval of a shard to this file (see
    /// `meridian_client::LeaseLog`).
    #[arg(long)]
    lease_log: Option<PathBuf>,
}

/// Registrations refused in a row after which `sim-node` exits with status 2.
const REFUSALS_BEFORE_EXIT: u32 = 5;

/// Runs the node until Ctrl-C / SIGTERM (or SIGKILL, which is the point); exits with status
/// 2 if Meridian keeps refusing its registration.
pub async fn run(args: NodeArgs) -> CmdResult {
    let config = args.join.agent_config()?;
    let name = args.join.name.clone();
    let log = match &args.lease_log {
        Some(path) => Some(
            LeaseLog::open(path)
                .map_err(|e| format!("cannot open the lease log {}: {e}", path.display()))?,
        ),
        None => None,
    };
    // Listen before joining: Meridian may route clients here as soon as it registers. A
    // node whose endpoint is taken still joins (as it did before it had a data plane),
    // and says so: its writes will fail at the client, never be accepted unleased.
    let listener = bind_data_plane(&args.join.endpoint).await;
    let leases = ShardLeases::new(name.clone(), log);
    let node = Arc::new(SimNode::start_with_leases(config, None, leases));
    let data_plane = match listener {
        Ok(listener) => {
            let app = Router::new()
                .route("/write", post(write))
                .with_state(node.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("sim-node data plane stopped: {e}");
                }
            }))
        }
        Err(e) => {
            eprintln!("sim-node {name}: no data plane: {e}");
            None
        }
    };
    let who = format!("sim-node {name}");
    if let Err(code) = await_registration(&node.agent, &who).await {
        return Ok(code);
    }
    wait_for_signal().await;
    if let Some(data_plane) = data_plane {
        data_plane.abort();
        let _ = data_plane.await;
    }
    match Arc::try_unwrap(node) {
        Ok(node) => node.agent.stop().await,
        Err(_) => eprintln!("sim-node {name}: a write still running at exit"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Waits for `agent` to register, saying so on stderr as `who`; gives up (exit status 2)
/// once Meridian has refused it [`REFUSALS_BEFORE_EXIT`] times in a row: a wrong
/// fingerprint or a name alive elsewhere does not fix itself, and retrying forever in
/// silence hides it. Not registered after 30 s: goes on retrying in the background.
pub(crate) async fn await_registration(
    agent: &meridian_client::NodeAgent,
    who: &str,
) -> Result<(), std::process::ExitCode> {
    let registering = async {
        loop {
            let status = agent.status();
            if status.node_id.is_some() {
                return Ok(status.node_id);
            }
            if status.refusals >= REFUSALS_BEFORE_EXIT {
                return Err(status.last_error.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), registering).await {
        Ok(Ok(id)) => eprintln!("{who} registered as node-{}", id.unwrap_or_default()),
        Ok(Err(why)) => {
            eprintln!(
                "{who}: Meridian refused the registration {REFUSALS_BEFORE_EXIT} times: {why}"
            );
            return Err(std::process::ExitCode::from(2));
        }
        Err(_) => eprintln!(
            "{who}: not registered yet ({:?}); retrying in the background",
            agent.status().last_error
        ),
    }
    Ok(())
}

/// Binds the data plane's address, retrying for a few seconds: a node restarted at once
/// after a crash may find its port still held by the dying process.
pub(crate) async fn bind_data_plane(
    endpoint: &str,
) -> Result<tokio::net::TcpListener, Box<dyn std::error::Error + Send + Sync>> {
    let mut last = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(endpoint).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("cannot listen on {endpoint}: {e}").into()),
        }
    }
    Err(format!(
        "cannot listen on {endpoint}: {}",
        last.map_or_else(|| "address in use".to_string(), |e| e.to_string())
    )
    .into())
}

/// `POST /write`: accepted under the shard's lease (200), or refused as not leader (503).
async fn write(State(node): State<Arc<SimNode>>, Json(req): Json<WriteRequest>) -> Response {
    match node.write(&req) {
        Ok(ack) => (StatusCode::OK, Json(ack)).into_response(),
        Err(refused) => (StatusCode::SERVICE_UNAVAILABLE, Json(refused)).into_response(),
    }
}
