//! Every scenario, CI-sized, must pass its own criterion.

use meridian_sim::scenario::{run_scenario, scenario_names, ScenarioOptions};

fn small(seed: u64) -> ScenarioOptions {
    ScenarioOptions {
        seed,
        small: true,
        ..ScenarioOptions::default()
    }
}

fn passes(name: &str) {
    let report = run_scenario(name, &small(7)).expect("scenario runs");
    println!("{}", report.render_human());
    assert!(report.pass, "{}", report.render_human());
}

#[test]
fn add_nodes_passes() {
    passes("add-nodes");
}

#[test]
fn kill_node_passes() {
    passes("kill-node");
}

#[test]
fn kill_zone_passes() {
    passes("kill-zone");
}

#[test]
fn hot_shard_passes() {
    passes("hot-shard");
}

#[test]
fn rolling_restart_passes() {
    passes("rolling-restart");
}

#[test]
fn rolling_restart_graceful_passes() {
    passes("rolling-restart-graceful");
}

#[test]
fn drain_passes() {
    passes("drain");
}

#[test]
fn copyset_loss_passes() {
    passes("copyset-loss");
}

#[test]
fn lagging_follower_passes() {
    passes("lagging-follower");
}

#[test]
fn partition_passes() {
    passes("partition");
}

#[test]
fn stall_passes() {
    passes("stall");
}

#[test]
fn lossy_passes() {
    passes("lossy");
}

/// Issue #6 item 10: over links that lose 5% of messages, a lost instruction is sent again
/// within about a second (the controller's backoff: 500 ms, 1 s, 2 s...), not after a flat
/// 5 s. With the flat resend this run (12 nodes, 240 shards, 20 faults) took 16,270 ms to
/// make every shard writable again after one fault, and 3 leader steps timed out because
/// both their sends were lost; the CI-sized `lossy` is too small to show it.
#[test]
fn lossy_at_a_larger_size_recovers_within_its_bound_and_no_step_times_out() {
    let opts = ScenarioOptions {
        seed: 3,
        nodes: Some(12),
        shards: Some(240),
        small: false,
    };
    let r = run_scenario("lossy", &opts).expect("scenario runs");
    println!("{}", r.render_human());
    assert!(r.pass, "{}", r.render_human());
    assert_eq!(
        r.moves.timed_out,
        0,
        "a lost instruction waited for its step's timeout: {}",
        r.render_human()
    );
}

#[test]
fn fault_scenarios_report_two_writers_and_leaderless_time_at_the_top_level() {
    let r = run_scenario("stall", &small(5)).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["two_writers"], 0);
    assert!(json["max_leaderless_ms"].as_u64().is_some());
    let faults = json["details"]["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 4);
    // Some stall outlasted detection: the scenario does exercise failover under leases.
    assert!(
        r.moves.promotions + r.moves.reopens > 0,
        "{}",
        r.render_human()
    );
}

#[test]
fn every_scenario_has_a_test_above() {
    assert_eq!(
        scenario_names(),
        [
            "add-nodes",
            "kill-node",
            "kill-zone",
            "hot-shard",
            "rolling-restart",
            "rolling-restart-graceful",
            "drain",
            "copyset-loss",
            "lagging-follower",
            "partition",
            "stall",
            "lossy"
        ]
    );
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
fn copysets_stay_copysets_through_kill_zone_repair_and_expansion() {
    let r = run_scenario("copyset-loss", &small(1)).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let rows = json["sequence"]
        .as_array()
        .expect("sequence at the top level");
    let row = |placement: &str| {
        rows.iter()
            .find(|r| r["placement"] == placement)
            .unwrap_or_else(|| panic!("no {placement} row"))
    };
    let kept = row("copysets");
    let stages: Vec<&str> = kept["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["initial", "after_kill_zone_repair", "after_expansion"]
    );
    for st in kept["stages"].as_array().unwrap() {
        assert_eq!(st["shards_outside_copysets"], 0, "{st}");
        assert_eq!(st["healthy"], true, "{st}");
    }
    // Without the persisted family, repair and balance leave the copysets behind.
    let lost = row("copysets-unpersisted");
    let last = |r: &serde_json::Value| r["stages"][2].clone();
    assert!(last(lost)["shards_outside_copysets"].as_u64().unwrap() > 0);
    assert!(
        last(kept)["analytic"].as_f64().unwrap() < last(lost)["analytic"].as_f64().unwrap(),
        "{} vs {}",
        last(kept),
        last(lost)
    );
    assert!(
        last(kept)["distinct_replica_sets"].as_u64().unwrap()
            < last(lost)["distinct_replica_sets"].as_u64().unwrap()
    );
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let err = run_scenario("nope", &small(1)).unwrap_err();
    assert!(err.to_string().contains("add-nodes"), "{err}");
}

// Full-size runs are not tests (minutes in debug): `meridian sim SCENARIO --json` or
// `cargo run --release -p meridian-sim --example scenarios` records them.
