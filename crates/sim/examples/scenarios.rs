//! Prints every scenario's report, full size unless `--small`.
//!
//! `cargo run --release -p meridian-sim --example scenarios [-- --small] [--json] [--seed N] [name...]`

use meridian_sim::scenario::{run_scenario, scenario_names, ScenarioOptions};

fn main() {
    let mut opts = ScenarioOptions {
        seed: 1,
        ..ScenarioOptions::default()
    };
    let mut json = false;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--small" => opts.small = true,
            "--json" => json = true,
            "--seed" => opts.seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            other => names.push(other.to_string()),
        }
    }
    if names.is_empty() {
        names = scenario_names().iter().map(|s| s.to_string()).collect();
    }
    let mut failed = false;
    for name in names {
        match run_scenario(&name, &opts) {
            Ok(r) => {
                failed |= !r.pass;
                if json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    println!("{}", r.render_human());
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{name}: {e}");
            }
        }
    }
    std::process::exit(i32::from(failed));
}
