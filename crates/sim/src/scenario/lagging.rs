//! `lagging-follower`: a shard's only follower falls behind, then its leader dies. Failover
//! must wait (no promotion of the stale follower, no reopen) until the follower has applied
//! what the dead leader last reported committed, then promote it.

use super::world::{Sim, SimParams};
use super::{base_report, sizes, ScenarioOptions, ScenarioReport, SimError};
use meridian_model::ShardId;
use meridian_scheduler::Step;
use serde_json::json;

const WARM_UP_MS: u64 = 10_000;
/// How long the follower's replication is stalled before the leader dies.
const LAG_MS: u64 = 5_000;
/// How long the shard is watched waiting after its leader went Offline.
const WAIT_MS: u64 = 10_000;

/// Runs the scenario: RF 2, the follower of one shard stalled, its leader killed.
pub(super) fn lagging_follower(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (9, 60), (3, 6))?;
    let mut params = SimParams::new(n, 3, s, opts.seed);
    params.replication = 2;
    let mut sim = Sim::new(params)?;
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let shard = sim.routes()[0].clone();
    let (Some(leader), Some(follower)) = (shard.leader(), shard.followers().next()) else {
        return Err(SimError::InvalidOptions("shard 0 has no follower".into()));
    };
    let id = shard.id;
    // The follower stops applying; the leader keeps writing; then the leader dies.
    sim.stall_replication(follower, true);
    sim.run_until(sim.now + LAG_MS);
    sim.kill(leader);
    let killed_at = sim.now;
    let offline_after = sim.params.liveness.offline_after_ms;
    sim.run_until(killed_at + offline_after + WAIT_MS);
    let waiting = sim.waiting();
    let waited = waiting.iter().find(|w| w.shard == id).cloned();
    let still_led_by_dead = sim.routes()[id.0 as usize].leader() == Some(leader);
    let promotions_while_lagging = promotions_of(&sim, id);
    // The follower catches up (applies what it heard), and failover proceeds.
    sim.stall_replication(follower, false);
    let resumed_at = sim.now;
    let bound = sim.params.liveness.heartbeat_interval_ms
        + 2 * sim.params.tick_ms
        + 2 * sim.params.latency_ms.1;
    let recovered = sim.run_until_cond(resumed_at + 60_000, sim.params.tick_ms, |s| {
        s.is_available(id)
    });
    let new_leader = sim.routes()[id.0 as usize].leader();
    let mut r = base_report("lagging-follower", opts, &sim, WARM_UP_MS);
    let after = recovered.map(|t| t - resumed_at);
    r.time_to_recover_ms = after;
    r.criterion = format!(
        "{n} nodes, {s} shards RF 2; shard {}'s follower {follower} stalled {LAG_MS} ms, then \
         its leader {leader} killed: the shard waits for an in-sync follower (no promotion, no \
         reopen) for {WAIT_MS} ms after the leader went Offline, and once the follower \
         catches up it leads within heartbeat + 2 ticks + 2 latencies = {bound} ms",
        id.0
    );
    r.pass = waited.is_some()
        && still_led_by_dead
        && promotions_while_lagging == 0
        && sim.moves.reopens == 0
        && new_leader == Some(follower)
        && after.is_some_and(|t| t <= bound);
    r.details = json!({
        "shard": id.0,
        "leader_killed": leader.0,
        "follower": follower.0,
        "waiting": waited.as_ref().map(|w| json!({
            "committed": w.committed,
            "best_follower": w.best_follower.map(|(n, a)| json!({"node": n.0, "applied": a})),
            "reason": w.reason,
        })),
        "waiting_shards": waiting.len(),
        "promoted_after_catch_up_ms": after,
        "new_leader": new_leader.map(|n| n.0),
    });
    Ok(r)
}

/// Promotions of `shard` started so far in the measured period.
fn promotions_of(sim: &Sim, shard: ShardId) -> usize {
    sim.controller
        .running()
        .chain(sim.controller.history())
        .filter(|o| o.shard == shard)
        .filter(|o| {
            o.steps
                .iter()
                .any(|s| matches!(s, Step::PromoteFollower { .. } | Step::ReopenShard { .. }))
        })
        .count()
}
