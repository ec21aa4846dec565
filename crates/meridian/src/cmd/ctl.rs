//! `meridian ctl`: an admin client over the HTTP API (like pd-ctl). Readable tables by
//! default; `--json` prints the server's JSON answer as is.
//!
//! This file holds the flags, the list of commands and the path every command takes:
//! ask (`request`), then print the answer or the failure, with the exit code. What each
//! command asks and how its answer reads is in the module of its kind:
//!
//! - [`http`]: reaching the servers, paged lists, failures and exit codes;
//! - [`output`]: table cells, aligned tables, node names for ids;
//! - [`clusters`]: `servers`, `clusters`, `create-cluster`;
//! - [`nodes`]: `nodes`, `node show`, `drain`, `cordon`, `remove`...;
//! - [`shards`]: `shards`, `shard show`, manual operators, `operators`;
//! - [`catalog`]: tables, routes, `locate`, `describe` and DDL;
//! - [`admin`]: `check`, schedulers, `maintenance`, `config`, `set-fingerprint`;
//! - [`events`]: `events` (`--follow`) and `watch-routes`.

mod admin;
mod catalog;
mod clusters;
mod events;
mod http;
mod nodes;
mod output;
mod shards;

use super::CmdResult;
use clap::{Args, Subcommand};
use http::{Answer, Http};
use serde_json::Value;
use std::process::ExitCode;

/// Flags of `meridian ctl`.
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Meridian HTTP addresses, comma-separated (the first that answers; a follower
    /// redirects to the leader)
    #[arg(
        long,
        env = "MERIDIAN_HTTP",
        default_value = "127.0.0.1:7701",
        global = true
    )]
    addr: String,
    /// Cluster to act on
    #[arg(long, default_value = "default", global = true)]
    cluster: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Meridian gRPC addresses, comma-separated (for `watch-routes`)
    #[arg(
        long,
        env = "MERIDIAN_GRPC",
        default_value = "127.0.0.1:7700",
        global = true
    )]
    grpc: String,
    /// Token for a server run with `--tokens` (role reader for reads, admin for changes)
    #[arg(long, env = "MERIDIAN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: super::ClientTlsArgs,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Every Meridian server named in --addr: reachable or not, its role (leader or
    /// follower), term, and the leader it names (from each server's /health).
    Servers,
    /// List clusters.
    Clusters,
    /// Create a cluster.
    CreateCluster(clusters::CreateCluster),
    /// List nodes with state, shard and leader counts.
    Nodes,
    /// One node: `node show NODE` (a name, an id or node-4).
    Node {
        #[command(subcommand)]
        action: nodes::NodeCmd,
    },
    /// One shard: `shard show SHARD` (3 or shard-3).
    Shard {
        #[command(subcommand)]
        action: shards::ShardCmd,
    },
    /// List shards with leader, followers, version, committed log position and health
    /// (`ok`, or its problems: see `check`).
    Shards,
    /// Shards with problems, by problem, with what to do (like `pd-ctl region check`):
    /// leaderless, waiting_for_in_sync_follower, replica_down, under_replicated,
    /// domain_violation.
    Check(admin::Check),
    /// List tables.
    Tables(catalog::Tables),
    /// Show where a table's partitions live.
    Route(catalog::TableArg),
    /// Create a schema.
    CreateSchema(catalog::CreateSchema),
    /// Change a table's definition: one of --add-column, --drop-column, --set-option /
    /// --unset-option.
    AlterTable(catalog::AlterTable),
    /// Drop a schema (refused while it holds tables, unless --cascade).
    DropSchema(catalog::DropSchema),
    /// Drop a catalog (every schema in it).
    DropCatalog(catalog::DropCatalog),
    /// Where a row lives: its partition (by the documented function), shard, leader and
    /// followers.
    Locate(catalog::Locate),
    /// Show a table: its definition, and where each partition lives.
    Describe(catalog::TableArg),
    /// Create a table.
    CreateTable(catalog::CreateTable),
    /// Drop a table.
    DropTable(catalog::DropTable),
    /// List running operators (and recent history with --history).
    Operators(shards::Operators),
    /// Cancel a running operator.
    CancelOperator(shards::CancelOperator),
    /// List schedulers and whether they are paused.
    Schedulers,
    /// Pause a scheduler by name.
    PauseScheduler(admin::PauseScheduler),
    /// Resume a scheduler by name.
    ResumeScheduler(admin::ResumeScheduler),
    /// Set the config fingerprint nodes must present to join the cluster ("" accepts any).
    /// Registered nodes are checked when they next register.
    SetFingerprint(admin::SetFingerprint),
    /// Runtime settings (scheduler tuning, operator limits, liveness timeouts), like
    /// `pd-ctl config`: stored, kept across restarts, applied at once.
    Config {
        #[command(subcommand)]
        action: admin::ConfigAction,
    },
    /// Maintenance mode: only failover and repair run.
    Maintenance(admin::Maintenance),
    /// Move a shard's leadership to another node holding a replica.
    TransferLeader(shards::TransferLeader),
    /// Promote a follower of a shard whose leader is down although it is behind the
    /// shard's committed log (for a shard waiting for an in-sync follower): what it has not
    /// applied is lost. Logged and kept in the operator history.
    ForcePromote(shards::ForcePromote),
    /// Move a shard's replica from one node to another.
    MoveShard(shards::MoveShard),
    /// Split a shard: half of its partitions go to a new shard on other nodes.
    SplitShard(shards::SplitShard),
    /// Merge shard `from` into shard `into` (`from` is deleted).
    MergeShards(shards::MergeShards),
    /// The event log: node state changes, refused registrations, operators, DDL, admin
    /// actions, with times (newest last).
    Events(events::Events),
    /// Follow route changes as Meridian pushes them (leader moves, new and dropped tables).
    WatchRoutes(events::WatchRoutes),
    /// Move every replica off a node.
    Drain(nodes::Drain),
    /// Stop new placements on a node.
    Cordon(nodes::NodeName),
    /// Allow placements on a node again.
    Uncordon(nodes::NodeName),
    /// Move every leadership off a node (before a planned restart); it keeps its followers.
    EvictLeaders(nodes::NodeName),
    /// Let a node lead again after `evict-leaders`.
    UnevictLeaders(nodes::NodeName),
    /// Remove a drained node from the cluster.
    Remove(nodes::NodeName),
}

/// Runs one ctl command.
pub async fn run(args: CtlArgs) -> CmdResult {
    let http = Http::new(&args)?;
    let c = &args.cluster;
    // The streams print as they go.
    match &args.command {
        CtlCommand::WatchRoutes(watch) => return watch.run(&args).await,
        CtlCommand::Events(events) => return events.run(&http, c, args.json).await,
        _ => {}
    }
    let mut value = match args.command.request(&http, c, args.json).await? {
        Ok(v) => v,
        Err(e) => return Ok(http::print_failure(&e, args.json)),
    };
    // `check` answers whether something is wrong in its exit code too, for scripts.
    let code = match &args.command {
        CtlCommand::Check(_) if admin::has_problems(&value) => ExitCode::from(http::EXIT_PROBLEMS),
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(code);
    }
    // People read node names where the API has ids.
    if matches!(
        &args.command,
        CtlCommand::Shards
            | CtlCommand::Node { .. }
            | CtlCommand::Shard { .. }
            | CtlCommand::Operators(_)
            | CtlCommand::Describe(_)
            | CtlCommand::Check(_)
    ) {
        if let Ok(names) = nodes::node_names(&http, c).await {
            output::name_nodes(&mut value, &names);
        }
    }
    args.command.print(&value);
    Ok(code)
}

impl CtlCommand {
    /// Asks the server (`quiet`: no progress on stderr, for `--json`).
    async fn request(&self, http: &Http, c: &str, quiet: bool) -> Answer {
        Ok(match self {
            CtlCommand::Servers => Ok(clusters::servers(http).await),
            CtlCommand::Clusters => clusters::list(http).await,
            CtlCommand::CreateCluster(a) => a.request(http).await,
            CtlCommand::Nodes => nodes::list(http, c).await,
            CtlCommand::Node { action } => action.request(http, c).await,
            CtlCommand::Shard { action } => action.request(http, c).await,
            CtlCommand::Shards => shards::list(http, c).await,
            CtlCommand::Check(a) => a.request(http, c).await,
            CtlCommand::Tables(a) => a.request(http, c).await,
            CtlCommand::Route(a) => a.route(http, c).await,
            CtlCommand::CreateSchema(a) => a.request(http, c).await,
            CtlCommand::AlterTable(a) => a.request(http, c).await,
            CtlCommand::DropSchema(a) => a.request(http, c).await,
            CtlCommand::DropCatalog(a) => a.request(http, c).await,
            CtlCommand::Locate(a) => a.request(http, c).await,
            CtlCommand::Describe(a) => a.describe(http, c).await,
            CtlCommand::CreateTable(a) => a.request(http, c).await,
            CtlCommand::DropTable(a) => a.request(http, c).await,
            CtlCommand::Operators(a) => a.request(http, c).await,
            CtlCommand::CancelOperator(a) => a.request(http, c).await,
            CtlCommand::Schedulers => admin::schedulers(http, c).await,
            CtlCommand::PauseScheduler(a) => a.request(http, c).await,
            CtlCommand::ResumeScheduler(a) => a.request(http, c).await,
            CtlCommand::SetFingerprint(a) => a.request(http, c).await,
            CtlCommand::Config { action } => action.request(http, c).await,
            CtlCommand::Maintenance(a) => a.request(http, c).await,
            CtlCommand::TransferLeader(a) => a.request(http, c).await,
            CtlCommand::ForcePromote(a) => a.request(http, c).await,
            CtlCommand::MoveShard(a) => a.request(http, c).await,
            CtlCommand::SplitShard(a) => a.request(http, c).await,
            CtlCommand::MergeShards(a) => a.request(http, c).await,
            CtlCommand::Drain(a) => a.request(http, c, quiet).await,
            CtlCommand::Cordon(a) => a.request(http, c, "cordon").await,
            CtlCommand::Uncordon(a) => a.request(http, c, "uncordon").await,
            CtlCommand::EvictLeaders(a) => a.request(http, c, "evict-leaders").await,
            CtlCommand::UnevictLeaders(a) => a.request(http, c, "unevict-leaders").await,
            CtlCommand::Remove(a) => a.request(http, c, "remove").await,
            CtlCommand::Events(_) | CtlCommand::WatchRoutes(_) => {
                return Err("events and watch-routes print as they go".into())
            }
        })
    }

    /// Prints the answer for people: a table, a few lines, or one line saying what a
    /// mutating command did (`--json` prints the server's answer instead).
    fn print(&self, v: &Value) {
        let line = match self {
            CtlCommand::Servers => return clusters::print_servers(v),
            CtlCommand::Clusters => return clusters::print_list(v),
            CtlCommand::Nodes => return nodes::print_list(v),
            CtlCommand::Node { .. } => return nodes::print_node(v),
            CtlCommand::Shard { .. } => return shards::print_shard(v),
            CtlCommand::Shards => return shards::print_list(v),
            CtlCommand::Check(_) => return admin::print_check(v),
            CtlCommand::Tables(_) => return catalog::print_tables(v),
            CtlCommand::Route(_) => return catalog::print_route(v),
            CtlCommand::Locate(_) => return catalog::print_locate(v),
            CtlCommand::Describe(_) => return catalog::print_describe(v),
            CtlCommand::Operators(_) => return shards::print_operators(v),
            CtlCommand::Schedulers => return admin::print_schedulers(v),
            CtlCommand::Config { action } => return action.print(v),
            CtlCommand::CreateCluster(a) => a.summary(v),
            CtlCommand::CreateSchema(a) => a.summary(v),
            CtlCommand::CreateTable(a) => a.summary(v),
            CtlCommand::AlterTable(a) => a.summary(v),
            CtlCommand::DropTable(a) => a.summary(v),
            CtlCommand::DropSchema(a) => a.summary(v),
            CtlCommand::DropCatalog(a) => a.summary(v),
            CtlCommand::CancelOperator(a) => a.summary(),
            CtlCommand::PauseScheduler(_) | CtlCommand::ResumeScheduler(_) => {
                admin::scheduler_summary(v)
            }
            CtlCommand::SetFingerprint(_) => admin::SetFingerprint::summary(v),
            CtlCommand::Maintenance(_) => admin::Maintenance::summary(v),
            CtlCommand::TransferLeader(_)
            | CtlCommand::ForcePromote(_)
            | CtlCommand::MoveShard(_)
            | CtlCommand::SplitShard(_)
            | CtlCommand::MergeShards(_) => shards::started_summary(v),
            CtlCommand::Drain(_)
            | CtlCommand::Cordon(_)
            | CtlCommand::Uncordon(_)
            | CtlCommand::EvictLeaders(_)
            | CtlCommand::UnevictLeaders(_)
            | CtlCommand::Remove(_) => nodes::action_summary(v),
            CtlCommand::Events(_) | CtlCommand::WatchRoutes(_) => {
                serde_json::to_string_pretty(v).unwrap_or_default()
            }
        };
        println!("{line}");
    }
}
