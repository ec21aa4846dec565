//! Every scenario, CI-sized, must pass its own criterion.

use meridian_sim::scenario::{run_scenario, scenario_names, ScenarioOptions};

fn small(seed: u64) -> ScenarioOptions {
    ScenarioOptions {
        seed,
        small: true,
        ..ScenarioOptions::default()
    }
}

#[test]
fn every_scenario_passes_small() {
    for name in scenario_names() {
        let report = run_scenario(name, &small(7)).expect("scenario runs");
        assert!(report.pass, "{}", report.render_human());
        println!("{}", report.render_human());
    }
}

#[test]
fn scenarios_are_deterministic_for_a_seed() {
    let a = run_scenario("kill-node", &small(3)).unwrap();
    let b = run_scenario("kill-node", &small(3)).unwrap();
    assert_eq!(a.moves, b.moves);
    assert_eq!(a.total_leaderless_ms, b.total_leaderless_ms);
    assert_eq!(a.time_to_recover_ms, b.time_to_recover_ms);
}

#[test]
fn copyset_loss_report_has_sizes_at_the_top_level() {
    let r = run_scenario("copyset-loss", &small(1)).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let sizes = json["sizes"].as_array().expect("flattened sizes");
    assert!(!sizes.is_empty());
    for key in [
        "nodes",
        "random_loss_prob",
        "copyset_loss_prob",
        "scatter_width",
    ] {
        assert!(sizes[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["details"]["sizes"], json["sizes"]);
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let err = run_scenario("nope", &small(1)).unwrap_err();
    assert!(err.to_string().contains("add-nodes"), "{err}");
}
