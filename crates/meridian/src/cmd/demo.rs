//! `meridian demo`: a server plus six simulated nodes in three zones, a few tables, and
//! (unless `--no-failover`) a node that dies and comes back every minute, so a failover
//! can be watched with `meridian ctl`.

use super::server::{wait_for_signal, ServerArgs};
use super::CmdResult;
use clap::Args;
use meridian_client::{MetaClient, NodeAgentConfig};
use meridian_model::{NodeLabels, PartitionRule, TableName};
use meridian_server::Server;
use meridian_sim::node::SimNode;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `meridian demo`: the server's, plus the demo's own.
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Number of simulated nodes (spread over 3 zones).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Do not kill and restart a node periodically.
    #[arg(long)]
    no_failover: bool,
    /// Seconds between simulated node crashes.
    #[arg(long, default_value_t = 60)]
    failover_every: u64,
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> CmdResult {
    let mut server_args = args.server.clone();
    if server_args.data_dir.is_none() && std::env::var_os("MERIDIAN_DATA_DIR").is_none() {
        server_args.data_dir = Some(PathBuf::from("meridian-demo-data"));
    }
    let config = server_args.load()?;
    let server = Server::start(config).await?;
    let grpc = server.grpc_addr.to_string();
    let http = format!("http://{}", server.http_addr);
    let zones = ["zone-a", "zone-b", "zone-c"];
    let node_config = |i: usize| {
        let mut c = NodeAgentConfig::new(
            grpc.clone(),
            format!("sim-{i}"),
            format!("127.0.0.1:{}", 9100 + i),
        );
        c.labels = NodeLabels {
            zone: zones[i % 3].into(),
            rack: format!("rack-{}", i % 3),
            host: format!("host-{i}"),
        };
        c
    };
    let mut nodes: Vec<Option<SimNode>> = (0..args.nodes)
        .map(|i| Some(SimNode::start(node_config(i))))
        .collect();
    for n in nodes.iter().flatten() {
        n.agent.registered(Duration::from_secs(10)).await;
    }
    let client = MetaClient::connect(std::slice::from_ref(&grpc), "default").await?;
    // Shards are created once the default cluster has its minimum of 3 nodes.
    let mut created = 0;
    for (i, (name, rule)) in [
        (
            "metrics",
            PartitionRule::Hash {
                count: 4,
                columns: vec!["host".into()],
            },
        ),
        (
            "logs",
            PartitionRule::Range {
                column: "ts".into(),
                bounds: vec!["2026-01".into(), "2026-07".into()],
            },
        ),
        ("users", PartitionRule::None),
        (
            "orders",
            PartitionRule::Hash {
                count: 2,
                columns: vec!["id".into()],
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let table = TableName::new("default", "public", name)?;
        for attempt in 0..50 {
            match client.create_table(&table, &rule, true).await {
                Ok(_) => {
                    created += 1;
                    break;
                }
                Err(e) if attempt < 49 => {
                    tracing::debug!("create {name} (try {i}): {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => eprintln!("could not create {name}: {e}"),
            }
        }
    }
    println!(
        "Meridian demo is running: {} simulated nodes in 3 zones, {created} tables.",
        args.nodes
    );
    println!();
    println!("  gRPC  {grpc}");
    println!("  HTTP  {http}   (JSON API under /api/v1, Prometheus metrics at /metrics)");
    println!();
    println!("Open the dashboard: {http}/");
    println!();
    println!("Or look at it from the command line:");
    println!("  meridian ctl --addr {http} nodes");
    println!("  meridian ctl --addr {http} shards");
    println!("  meridian ctl --addr {http} tables");
    println!("  meridian ctl --addr {http} route metrics");
    println!("  meridian ctl --addr {http} operators --history");
    println!("  meridian ctl --grpc {grpc} watch-routes     # route changes as they are pushed");
    println!("  curl {http}/api/v1/clusters");
    if !args.no_failover {
        println!();
        println!(
            "Every {}s a node crashes (its heartbeats stop) and comes back 30s later: watch its leaders move with `ctl shards` and `ctl operators --history`.",
            args.failover_every
        );
    }
    println!("Ctrl-C stops the demo.");

    let chaos = async {
        if args.no_failover || nodes.is_empty() {
            return std::future::pending::<()>().await;
        }
        let mut victim = 0usize;
        loop {
            tokio::time::sleep(Duration::from_secs(args.failover_every)).await;
            if let Some(node) = nodes[victim].take() {
                println!("[demo] crashing {} (no more heartbeats)", node.name);
                node.agent.kill();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            println!(
                "[demo] restarting sim-{victim} (empty: Meridian tells it what to open or close)"
            );
            nodes[victim] = Some(SimNode::start(node_config(victim)));
            victim = (victim + 1) % nodes.len();
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = chaos => {}
    }
    println!("stopping");
    server.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}
