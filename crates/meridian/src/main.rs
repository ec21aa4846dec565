//! `meridian`: the metadata and scheduling service of a sharded, replicated database.
//!
//! Thin: parses flags and hands over to the crates that do the work.

mod cmd;
mod procs;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Meridian: metadata and scheduling for sharded, replicated database clusters.
#[derive(Parser)]
#[command(name = "meridian", version, about)]
struct Cli {
    /// Log format on stderr: text (coloured only on a terminal) or json (one object per
    /// line, for a log collector)
    #[arg(long, global = true, env = "MERIDIAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Meridian server (default: embedded store in ./meridian-data, gRPC :7700, HTTP :7701).
    Server(cmd::server::ServerArgs),
    /// Admin client, like pd-ctl: clusters, nodes, shards, tables, routes, operators.
    Ctl(cmd::ctl::CtlArgs),
    /// A server plus simulated nodes in 3 zones: a live cluster to look at.
    Demo(cmd::demo::DemoArgs),
    /// Benchmarks against a real server over loopback.
    Bench(cmd::bench::BenchArgs),
    /// Run a scheduling scenario on the deterministic simulator.
    Sim(cmd::sim::SimArgs),
    /// Run one simulated database node in this process (joins a running Meridian).
    SimNode(cmd::node::NodeArgs),
    /// Write a consistent snapshot of a running server's metadata to a file.
    Backup(cmd::backup::BackupArgs),
    /// Load a backup into a new data dir or an empty etcd namespace.
    Restore(cmd::backup::RestoreArgs),
    /// Run the worked example database node (rows in memory, replicated, leased writes).
    ExampleNode(cmd::example_node::ExampleNodeArgs),
    /// Fault harness: a server and sim-node processes under kills, stalls and partitions,
    /// then a check that no two nodes ever accepted writes for one shard.
    Chaos(cmd::chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or(Command::Server(cmd::server::ServerArgs::default()));
    let quiet = matches!(
        &command,
        Command::Ctl(_) | Command::Bench(_) | Command::Sim(_) | Command::Chaos(_)
    );
    if matches!(&command, Command::Ctl(_)) {
        // `meridian ctl shards | head`: a reader that stops early ends ctl quietly, as it
        // ends any Unix tool, instead of a "broken pipe" panic. Only ctl: it holds no
        // connection whose peer could close it and kill the process.
        // SAFETY: at start, before any thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cmd::init_tracing(quiet, cli.log_format == "json");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Server(a) => cmd::server::run(a).await,
            Command::Ctl(a) => cmd::ctl::run(a).await,
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Sim(a) => cmd::sim::run(a),
            Command::SimNode(a) => cmd::node::run(a).await,
            Command::Chaos(a) => cmd::chaos::run(a).await,
            Command::ExampleNode(a) => cmd::example_node::run(a).await,
            Command::Backup(a) => cmd::backup::backup(a).await,
            Command::Restore(a) => cmd::backup::restore(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
