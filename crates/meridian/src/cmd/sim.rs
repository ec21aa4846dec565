//! `meridian sim SCENARIO`: the real scheduler and operator code against simulated nodes
//! on a simulated clock; deterministic for a `--seed`.

use super::progress::Progress;
use super::CmdResult;
use clap::Args;
use meridian_sim::scenario::{run_scenario, scenario_names, ScenarioOptions};
use std::process::ExitCode;

/// Flags of `meridian sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// Scenario name, or `all`.
    scenario: String,
    /// Random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Override the number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Override the number of shards.
    #[arg(long)]
    shards: Option<usize>,
    /// The small (CI-sized) version.
    #[arg(long)]
    small: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Print no progress on stderr (which scenario runs, how it ended).
    #[arg(long)]
    quiet: bool,
}

/// Runs one scenario (or all); exit status 0 only if every criterion passed.
pub fn run(args: SimArgs) -> CmdResult {
    let names: Vec<&str> = if args.scenario == "all" {
        scenario_names().to_vec()
    } else if scenario_names().contains(&args.scenario.as_str()) {
        vec![args.scenario.as_str()]
    } else {
        return Err(format!(
            "unknown scenario {:?}; known: {}",
            args.scenario,
            scenario_names().join(", ")
        )
        .into());
    };
    let opts = ScenarioOptions {
        seed: args.seed,
        nodes: args.nodes,
        shards: args.shards,
        small: args.small,
    };
    let mut all_pass = true;
    let mut reports = Vec::new();
    let total = names.len();
    let progress = Progress::new(args.quiet);
    for (i, name) in names.into_iter().enumerate() {
        // Progress on stderr: stdout stays the reports (and the JSON line).
        progress.say(format!("[{}/{total}] simulating {name}...", i + 1));
        let started = std::time::Instant::now();
        let report = run_scenario(name, &opts)?;
        progress.say(format!(
            "[{}/{total}] {name}: {} in {:.1} s",
            i + 1,
            if report.pass { "pass" } else { "FAIL" },
            started.elapsed().as_secs_f64()
        ));
        all_pass &= report.pass;
        println!("{}", report.render_human());
        reports.push(report);
    }
    if args.json {
        let value = if reports.len() == 1 {
            serde_json::to_value(&reports[0])?
        } else {
            serde_json::json!({ "pass": all_pass, "scenarios": reports })
        };
        println!("{}", serde_json::to_string(&value)?);
    }
    Ok(if all_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
