//! `meridian sim-node`: one simulated database node in its own process, for trying
//! failover by killing a real process (and for the real-process tests).

use super::server::wait_for_signal;
use super::CmdResult;
use clap::Args;
use meridian_client::NodeAgentConfig;
use meridian_model::NodeLabels;
use meridian_sim::node::SimNode;

/// Flags of `meridian sim-node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Meridian gRPC address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    meta: String,
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
}

/// Runs the node until Ctrl-C / SIGTERM (or SIGKILL, which is the point).
pub async fn run(args: NodeArgs) -> CmdResult {
    let mut config = NodeAgentConfig::new(args.meta, args.name.clone(), args.endpoint);
    config.cluster = args.cluster;
    config.labels = NodeLabels {
        zone: args.zone,
        rack: args.rack,
        host: args.host,
    };
    config.config_fingerprint = args.fingerprint;
    let node = SimNode::start(config);
    match node
        .agent
        .registered(std::time::Duration::from_secs(30))
        .await
    {
        Some(id) => eprintln!("sim-node {} registered as node-{id}", args.name),
        None => eprintln!(
            "sim-node {}: not registered yet ({:?}); retrying in the background",
            args.name,
            node.agent.status().last_error
        ),
    }
    wait_for_signal().await;
    node.agent.stop().await;
    Ok(std::process::ExitCode::SUCCESS)
}
