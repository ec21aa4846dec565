//! Scenarios where nodes die: `kill-node`, `kill-zone`, `rolling-restart`,
//! `rolling-restart-graceful`.

use super::world::{Sim, SimParams};
use super::{base_report, sizes, ScenarioOptions, ScenarioReport, SimError};
use meridian_model::NodeId;
use meridian_scheduler::OperatorKind;
use serde_json::json;

const WARM_UP_MS: u64 = 10_000;
const HOUR_MS: u64 = 3_600_000;
const SETTLE_MS: u64 = 30_000;

/// Kills `victims` at once, then waits for every shard to have a leader again and for the
/// replicas on the victims to be replaced. Returns (time all led, time repaired) after the
/// kill.
fn kill_and_recover(sim: &mut Sim, victims: &[NodeId]) -> (Option<u64>, Option<u64>) {
    let t0 = sim.now;
    for &v in victims {
        sim.kill(v);
    }
    let led = sim.run_until_cond(t0 + HOUR_MS, sim.params.tick_ms, |s| {
        s.leaderless_now() == 0
    });
    let repaired = sim.run_until_cond(t0 + HOUR_MS, 1_000, |s| {
        s.routes()
            .iter()
            .all(|r| victims.iter().all(|v| !r.has_replica_on(*v)))
            && s.healthy()
    });
    (led.map(|t| t - t0), repaired.map(|t| t - t0))
}

/// `kill-node`: one node of 30 (3 zones) dies for good.
pub(super) fn kill_node(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (30, 1000), (9, 60))?;
    let mut sim = Sim::new(SimParams::new(n, 3, s, opts.seed))?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let victim = NodeId(1);
    let led = sim
        .routes()
        .iter()
        .filter(|r| r.leader() == Some(victim))
        .count();
    let held = sim
        .routes()
        .iter()
        .filter(|r| r.has_replica_on(victim))
        .count();
    let (all_led, repaired) = kill_and_recover(&mut sim, &[victim]);
    sim.run_until(sim.now + SETTLE_MS);
    let bound = sim.params.failover_bound_ms();
    let repair_bound = sim.params.scheduler.repair_delay_ms + 600_000;
    let longest = sim.leaderless().longest_interval_ms;
    let mut r = base_report("kill-node", opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards RF 3, {victim} killed: every shard it led has a \
         leader again within offline_after + tick + max latency = {bound} ms, its replicas \
         are re-created within repair_delay + 10 min = {repair_bound} ms, no domain \
         violation, every operator succeeds"
    );
    r.pass = all_led.is_some()
        && longest <= bound
        && repaired.is_some_and(|t| t <= repair_bound)
        && r.domain_violations == 0
        && sim.unsuccessful_operators() == 0;
    r.time_to_recover_ms = all_led;
    r.details = json!({
        "killed": victim.0,
        "shards_led_by_killed": led,
        "replicas_on_killed": held,
        "failover_bound_ms": bound,
        "longest_leaderless_interval_ms": longest,
        "time_to_full_replication_ms": repaired,
        "repair_delay_ms": sim.params.scheduler.repair_delay_ms,
    });
    Ok(r)
}

/// `kill-zone`: one of three zones (a third of the nodes) dies for good.
pub(super) fn kill_zone(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (30, 1000), (9, 60))?;
    let mut sim = Sim::new(SimParams::new(n, 3, s, opts.seed))?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let victims = sim.nodes_in_zone("z2");
    let led = sim
        .routes()
        .iter()
        .filter(|r| r.leader().is_some_and(|l| victims.contains(&l)))
        .count();
    let (all_led, repaired) = kill_and_recover(&mut sim, &victims);
    sim.run_until(sim.now + SETTLE_MS);
    let bound = sim.params.failover_bound_ms();
    let longest = sim.leaderless().longest_interval_ms;
    let mut r = base_report("kill-zone", opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes in 3 zones, {s} shards RF 3 (one replica per zone), zone z2 ({} nodes) \
         killed: every shard keeps or regains a leader within {bound} ms, then gets 3 live \
         replicas again within an hour (two per surviving zone pair: with 2 zones left that \
         is no violation), every operator succeeds",
        victims.len()
    );
    r.pass = all_led.is_some()
        && longest <= bound
        && repaired.is_some()
        && r.domain_violations == 0
        && sim.unsuccessful_operators() == 0;
    r.time_to_recover_ms = all_led;
    r.details = json!({
        "killed_zone": "z2",
        "killed_nodes": victims.len(),
        "shards_led_in_zone": led,
        "failover_bound_ms": bound,
        "longest_leaderless_interval_ms": longest,
        "time_to_full_replication_ms": repaired,
    });
    Ok(r)
}

/// How long each node is down in `rolling-restart`: past `offline_after` (so its leaders
/// fail over) but within `repair_delay` (so no data is copied).
const DOWNTIME_MS: u64 = 10_000;

/// `rolling-restart`: every node is stopped for 10 s and restarted in turn; the next goes
/// once the cluster is healthy and leaders are even again.
pub(super) fn rolling_restart(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (12, 600), (6, 48))?;
    let mut sim = Sim::new(SimParams::new(n, 3, s, opts.seed))?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let mut slowest_recovery = Some(0u64);
    for id in sim.node_ids() {
        sim.kill(id);
        sim.run_until(sim.now + DOWNTIME_MS);
        sim.restart(id);
        let t0 = sim.now;
        let back = sim.run_until_cond(t0 + 600_000, 500, |s| {
            s.healthy() && s.view().spread().leaders_max_minus_min <= 1
        });
        slowest_recovery = match (slowest_recovery, back) {
            (Some(a), Some(b)) => Some(a.max(b - t0)),
            _ => None,
        };
        sim.run_until(sim.now + 5_000);
        if std::env::var("SIM_DEBUG").is_ok() {
            let v = sim.view();
            for n in v.nodes() {
                eprintln!(
                    "{} leaders {} load {:.1} state {:?}",
                    n.id,
                    v.leader_count(n.id),
                    v.leader_load(n.id),
                    n.state
                );
            }
            eprintln!(
                "healthy {} running {}",
                sim.healthy(),
                sim.controller.running_count()
            );
        }
    }
    let bound = sim.params.failover_bound_ms();
    let leaderless = sim.leaderless();
    let mut r = base_report("rolling-restart", opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards RF 3, each node down {} s then restarted, one at a \
         time: no shard leaderless longer than {bound} ms at a time, no replica copied (the \
         downtime is under repair_delay), leaders even again after each restart, every \
         operator succeeds",
        DOWNTIME_MS / 1000
    );
    r.pass = slowest_recovery.is_some()
        && leaderless.longest_interval_ms <= bound
        && sim.moves.replicas_added == 0
        && sim.unsuccessful_operators() == 0
        && r.final_spread.leaders_max_minus_min <= 1;
    r.time_to_recover_ms = slowest_recovery;
    r.details = json!({
        "restarts": n,
        "downtime_ms": DOWNTIME_MS,
        "failover_bound_ms": bound,
        "longest_leaderless_interval_ms": leaderless.longest_interval_ms,
        "shards_ever_leaderless": leaderless.shards_affected,
        "slowest_restart_to_healthy_ms": slowest_recovery,
    });
    Ok(r)
}

/// How long `rolling-restart-graceful` waits for a flagged node to lead nothing before it
/// stops the node anyway.
const EVICT_WAIT_MS: u64 = 30_000;

/// The longest a shard may be leaderless at a time in `rolling-restart-graceful`: a leader
/// transfer (the demotion and its acknowledgement, a tick, the promotion) takes a few
/// latencies and one tick, far below the lease-bound failover of `rolling-restart`.
const GRACEFUL_BOUND_MS: u64 = 1_000;

/// `rolling-restart-graceful`: `rolling-restart` with the evict-leaders flag. Before each
/// node is stopped its flag is set and the run waits (at most 30 s) until it leads nothing;
/// then it is down for 10 s, restarted with the flag cleared, and the next node goes once
/// the cluster is healthy and leaders are even again.
pub(super) fn rolling_restart_graceful(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (12, 600), (6, 48))?;
    let mut sim = Sim::new(SimParams::new(n, 3, s, opts.seed))?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let tick = sim.params.tick_ms;
    let mut slowest_recovery = Some(0u64);
    let mut slowest_eviction = Some(0u64);
    for id in sim.node_ids() {
        sim.set_evict_leaders(id, true);
        let t0 = sim.now;
        let evicted = sim.run_until_cond(t0 + EVICT_WAIT_MS, tick, |s| !s.leads_anything(id));
        slowest_eviction = match (slowest_eviction, evicted) {
            (Some(a), Some(b)) => Some(a.max(b - t0)),
            _ => None,
        };
        sim.kill(id);
        sim.run_until(sim.now + DOWNTIME_MS);
        sim.restart(id);
        sim.set_evict_leaders(id, false);
        let t0 = sim.now;
        // Its replicas are current (the transfers bumped versions while it was up), so the
        // cluster looks healthy at once: wait until it counts for leader balance again.
        let back = sim.run_until_cond(t0 + 600_000, 500, |s| {
            let v = s.view();
            v.node(id).is_some_and(|n| n.is_leader_balance_member())
                && s.healthy()
                && v.spread().leaders_max_minus_min <= 1
        });
        slowest_recovery = match (slowest_recovery, back) {
            (Some(a), Some(b)) => Some(a.max(b - t0)),
            _ => None,
        };
        sim.run_until(sim.now + 5_000);
    }
    let leaderless = sim.leaderless();
    let crash = rolling_restart(opts)?;
    let mut r = base_report("rolling-restart-graceful", opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards RF 3, one at a time: evict-leaders set, the node \
         leads nothing within {} s, is down {} s, restarted and unflagged: no shard \
         leaderless longer than {GRACEFUL_BOUND_MS} ms at a time (a transfer, not a \
         failover), no replica copied, leaders even again after each restart, every \
         operator succeeds",
        EVICT_WAIT_MS / 1000,
        DOWNTIME_MS / 1000
    );
    r.pass = slowest_eviction.is_some()
        && slowest_recovery.is_some()
        && leaderless.longest_interval_ms <= GRACEFUL_BOUND_MS
        && sim.moves.replicas_added == 0
        && sim.moves.promotions == 0
        && sim.unsuccessful_operators() == 0
        && r.final_spread.leaders_max_minus_min <= 1;
    r.time_to_recover_ms = slowest_recovery;
    r.details = json!({
        "restarts": n,
        "downtime_ms": DOWNTIME_MS,
        "leaderless_bound_ms": GRACEFUL_BOUND_MS,
        "longest_leaderless_interval_ms": leaderless.longest_interval_ms,
        "total_leaderless_ms": leaderless.total_ms,
        "shards_ever_leaderless": leaderless.shards_affected,
        "slowest_eviction_ms": slowest_eviction,
        "slowest_restart_to_healthy_ms": slowest_recovery,
        "evict_leader_operators": sim.moves.of_kind(OperatorKind::EvictLeader),
        "failover_promotions": sim.moves.promotions,
        "crash_style_rolling_restart": {
            "pass": crash.pass,
            "longest_leaderless_interval_ms": crash.details["longest_leaderless_interval_ms"],
            "total_leaderless_ms": crash.total_leaderless_ms,
            "shards_ever_leaderless": crash.details["shards_ever_leaderless"],
            "failover_promotions": crash.moves.promotions,
        },
    });
    Ok(r)
}
