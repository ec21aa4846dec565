//! `meridian example-node`: the worked example database node (crate `meridian-example`) in
//! its own process. It keeps rows in memory, so a killed node comes back empty and is filled
//! again by its shards' leaders.
//!
//! Its data plane listens on `--endpoint` (the address Meridian routes clients to); the
//! requests are documented in `meridian_example::wire` and docs/integration.md.

use super::node::{await_registration, bind_data_plane, JoinArgs};
use super::server::wait_for_signal;
use super::CmdResult;
use clap::Args;
use meridian_example::ExampleNode;

/// Flags of `meridian example-node`.
#[derive(Args, Debug)]
pub struct ExampleNodeArgs {
    #[command(flatten)]
    join: JoinArgs,
}

/// Runs the node until Ctrl-C / SIGTERM; exits with status 2 if Meridian keeps refusing its
/// registration.
pub async fn run(args: ExampleNodeArgs) -> CmdResult {
    let config = args.join.agent_config()?;
    let who = format!("example-node {}", config.name);
    // Listen before joining: Meridian may route clients here as soon as it registers.
    let listener = bind_data_plane(&config.endpoint).await?;
    let node = ExampleNode::start(config, listener)?;
    eprintln!("{who}: data plane on http://{}", node.addr);
    if let Err(code) = await_registration(&node.agent, &who).await {
        node.stop().await;
        return Ok(code);
    }
    wait_for_signal().await;
    node.stop().await;
    Ok(std::process::ExitCode::SUCCESS)
}
