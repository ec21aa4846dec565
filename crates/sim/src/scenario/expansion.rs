//! Scenarios that change the node set on purpose: expansion (`add-nodes`) and `drain`.

use super::world::{Sim, SimParams};
use super::{base_report, sizes, zone_spread, ScenarioOptions, ScenarioReport, SimError};
use meridian_model::{NodeId, ReplicaRole};
use serde_json::json;

const WARM_UP_MS: u64 = 10_000;
const HOUR_MS: u64 = 3_600_000;
/// How long a finished scenario keeps running to show nothing else moves.
const SETTLE_MS: u64 = 60_000;

/// Fewest moves that take `counts` to an even spread over `nodes` nodes (the missing nodes
/// hold zero): final counts are floor or ceil of the mean, and giving the ceil slots to the
/// fullest nodes minimises what must leave them.
pub(crate) fn min_moves(mut counts: Vec<u64>, nodes: usize) -> u64 {
    let total: u64 = counts.iter().sum();
    counts.resize(nodes.max(counts.len()), 0);
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let n = counts.len() as u64;
    let (floor, extra) = (total / n, total % n);
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| c.saturating_sub(floor + u64::from((i as u64) < extra)))
        .sum()
}

fn per_node(sim: &Sim, role: Option<ReplicaRole>) -> Vec<u64> {
    let ids = sim.node_ids();
    let mut counts = vec![0u64; ids.len()];
    for s in sim.routes() {
        for r in &s.replicas {
            if role.is_none_or(|want| r.role == want) {
                counts[(r.node.0 - 1) as usize] += 1;
            }
        }
    }
    counts
}

/// `add-nodes`: N nodes in 5 zones hold the shards; N more arrive at once.
pub(super) fn add_nodes(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (10, 1000), (5, 100))?;
    let params = SimParams::new(n, 5, s, opts.seed);
    let mut sim = Sim::new(params)?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let replica_lb = min_moves(per_node(&sim, None), 2 * n);
    let leader_lb = min_moves(per_node(&sim, Some(ReplicaRole::Leader)), 2 * n);
    sim.add_nodes(n);
    let balanced = |sim: &Sim| {
        let spread = sim.view().spread();
        sim.controller.running_count() == 0
            && spread.shards_max_minus_min <= 1
            && spread.leaders_max_minus_min <= 1
            && sim.healthy()
    };
    let done_at = sim.run_until_cond(WARM_UP_MS + HOUR_MS, 1_000, balanced);
    let ops_at_balance = sim.moves.operators;
    sim.run_until(sim.now + SETTLE_MS);
    let ops_after = sim.moves.operators - ops_at_balance;

    let mut r = base_report("add-nodes", opts, &sim, WARM_UP_MS);
    let m = &sim.moves;
    let replica_moves = m.replicas_added;
    let leader_changes = m.leader_transfers + m.promotions;
    let longest = sim.leaderless().longest_interval_ms;
    let move_bound = replica_lb + replica_lb / 10 + 1;
    r.criterion = format!(
        "{n} -> {} nodes (5 zones), {s} shards RF 3: within an hour replicas and leaders per \
         node end within 1 of each other, no domain violation, every operator succeeds, \
         replica moves <= 1.1 x the lower bound ({replica_lb}) + 1 = {move_bound}, no operator \
         in the {} s after, and no shard leaderless for more than 1 s at a time",
        2 * n,
        SETTLE_MS / 1000
    );
    r.pass = done_at.is_some()
        && r.final_spread.shards_max_minus_min <= 1
        && r.final_spread.leaders_max_minus_min <= 1
        && r.domain_violations == 0
        && sim.unsuccessful_operators() == 0
        && replica_moves <= move_bound
        && ops_after == 0
        && longest <= 1_000;
    r.time_to_recover_ms = done_at.map(|t| t - WARM_UP_MS);
    r.details = json!({
        "nodes_before": n,
        "nodes_after": 2 * n,
        "shards": s,
        "replica_moves": replica_moves,
        "replica_moves_lower_bound": replica_lb,
        "replica_moves_over_lower_bound": ratio(replica_moves, replica_lb),
        "leader_changes": leader_changes,
        "leader_changes_lower_bound": leader_lb,
        "expansion_operators": m.of_kind(meridian_scheduler::OperatorKind::Expansion),
        "operators_after_balanced": ops_after,
        "longest_leaderless_interval_ms": longest,
    });
    Ok(r)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 1000.0).round() / 1000.0
    }
}

/// `drain`: one node of 21 (3 zones) is drained until empty.
pub(super) fn drain(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (21, 1000), (9, 60))?;
    let params = SimParams::new(n, 3, s, opts.seed);
    let mut sim = Sim::new(params)?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let target = NodeId(1);
    let held = sim
        .routes()
        .iter()
        .filter(|s| s.has_replica_on(target))
        .count();
    let led = sim
        .routes()
        .iter()
        .filter(|s| s.leader() == Some(target))
        .count();
    sim.set_draining(target);
    // When the node stops leading anything, and when its last replica leaves.
    let mut leaders_gone_at = None;
    let done_at = sim.run_until_cond(WARM_UP_MS + HOUR_MS, 500, |sim| {
        let routes = sim.routes();
        if leaders_gone_at.is_none() && routes.iter().all(|s| s.leader() != Some(target)) {
            leaders_gone_at = Some(sim.now);
        }
        routes.iter().all(|s| !s.has_replica_on(target)) && sim.healthy()
    });
    sim.run_until(sim.now + SETTLE_MS / 2);

    let mut r = base_report("drain", opts, &sim, WARM_UP_MS);
    let view = sim.view();
    let zone_spread = zone_spread(&view);
    let longest = sim.leaderless().longest_interval_ms;
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards RF 3, {target} drained: it ends with no replica, \
         every shard healthy, no domain violation, replicas per node within 1 inside each \
         zone, every operator succeeds, no shard leaderless for more than 1 s at a time"
    );
    r.pass = done_at.is_some()
        && r.domain_violations == 0
        && zone_spread <= 1
        && sim.unsuccessful_operators() == 0
        && longest <= 1_000;
    r.time_to_recover_ms = done_at.map(|t| t - WARM_UP_MS);
    r.details = json!({
        "drained_node": target.0,
        "replicas_before": held,
        "leaders_before": led,
        "leaders_off_after_ms": leaders_gone_at.map(|t| t - WARM_UP_MS),
        "empty_after_ms": done_at.map(|t| t - WARM_UP_MS),
        "zone_spread": zone_spread,
        "longest_leaderless_interval_ms": longest,
    });
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::min_moves;

    #[test]
    fn lower_bound_counts_what_must_leave_the_fullest_nodes() {
        // 3000 replicas from 10 nodes onto 20: 150 each, so 150 leave each old node.
        assert_eq!(min_moves(vec![300; 10], 20), 1500);
        // 7 over 3 nodes: 3, 2, 2 is even; from [7, 0, 0] that takes 4 moves.
        assert_eq!(min_moves(vec![7], 3), 4);
        assert_eq!(min_moves(vec![3, 2, 2], 3), 0);
    }
}
