//! `hot-shard`: a few shards led by one node become many times hotter than the rest.

use super::world::{Sim, SimParams};
use super::{base_report, sizes, ScenarioOptions, ScenarioReport, SimError};
use meridian_scheduler::OperatorKind;
use serde_json::json;
use std::collections::BTreeMap;

const WARM_UP_MS: u64 = 10_000;
/// How long the heat lasts (the CI size cools down in about 90 s; it runs 5 minutes).
const RUN_MS: u64 = 600_000;
const SMALL_RUN_MS: u64 = 300_000;
/// How many times the mean base load a hot shard carries: hot enough that its node is far
/// over the line, not so hot that one shard alone exceeds it (that needs a split).
const HEAT: f64 = 8.0;

fn max_and_mean(sim: &Sim) -> (f64, f64) {
    let loads = sim.leader_loads();
    let max = loads.iter().map(|l| l.1).fold(0.0, f64::max);
    let mean = loads.iter().map(|l| l.1).sum::<f64>() / loads.len().max(1) as f64;
    (max, mean)
}

/// `hot-shard`: 20 nodes (3 zones), 500 shards; five shards led by one node get 8x hot.
pub(super) fn hot_shard(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (20, 500), (9, 60))?;
    let hot_count = if opts.small { 3 } else { 5 };
    let mut sim = Sim::new(SimParams::new(n, 3, s, opts.seed))?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let threshold = sim.params.scheduler.hot_threshold;
    let base_mean = {
        let (lo, hi) = sim.params.base_load;
        (lo + hi) / 2.0
    };
    let hot_node = sim.routes()[0].leader();
    let hot: Vec<_> = sim
        .routes()
        .iter()
        .filter(|r| r.leader() == hot_node)
        .map(|r| r.id)
        .take(hot_count)
        .collect();
    for &id in &hot {
        sim.set_load(id, HEAT * base_mean);
    }
    let (max_before, mean) = max_and_mean(&sim);
    let line = mean * (1.0 + threshold);
    let t0 = sim.now;
    let run_ms = if opts.small { SMALL_RUN_MS } else { RUN_MS };
    let cooled = sim.run_until_cond(t0 + run_ms, 1_000, |sim| {
        let (max, mean) = max_and_mean(sim);
        max <= mean * (1.0 + threshold)
    });
    sim.run_until(t0 + run_ms);
    let (max_after, mean_after) = max_and_mean(&sim);
    let mut moves_per_shard: BTreeMap<u32, u32> = BTreeMap::new();
    for op in sim.controller.history() {
        if op.kind == OperatorKind::HotShard {
            *moves_per_shard.entry(op.shard.0).or_default() += 1;
        }
    }
    let most_moves = moves_per_shard.values().copied().max().unwrap_or(0);
    let mut r = base_report("hot-shard", opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards; {hot_count} shards led by one node get {HEAT}x the \
         mean load: within {} min the hottest node serves at most (1 + hot_threshold) = {:.2} \
         x the mean leader load and stays there, no shard is moved for load more than twice \
         (no ping-pong), every operator succeeds",
        run_ms / 60_000,
        1.0 + threshold
    );
    r.pass = cooled.is_some()
        && max_after <= mean_after * (1.0 + threshold)
        && most_moves <= 2
        && sim.unsuccessful_operators() == 0;
    r.time_to_recover_ms = cooled.map(|t| t - t0);
    r.details = json!({
        "hot_node": hot_node.map(|n| n.0),
        "hot_shards": hot.iter().map(|s| s.0).collect::<Vec<_>>(),
        "mean_leader_load": round(mean),
        "hot_line": round(line),
        "max_leader_load_before": round(max_before),
        "max_leader_load_after": round(max_after),
        "max_over_mean_after": round(max_after / mean_after.max(f64::MIN_POSITIVE)),
        "hot_shard_operators": sim.moves.of_kind(OperatorKind::HotShard),
        "most_load_moves_of_one_shard": most_moves,
    });
    Ok(r)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
