//! Scenarios with faults between nodes and Meridian, checked against write leases:
//! `partition`, `stall`, `lossy`.
//!
//! One fault at a time: a random node is partitioned from Meridian (both ways) or stalled
//! (its process stopped) for 1-10 s, then healed; the next fault comes once every shard is
//! writable again and the cluster had time to settle. Node clocks drift by up to 2%,
//! heartbeats and acks take 1-20 ms; in `lossy` every kind of message is also lost at
//! random (5%).
//!
//! Pass: the two-writers audit (after every simulated event: per shard, at most one live
//! node holds an unexpired lease while leading it) never fires, and after each fault
//! clears every shard is writable again (a running node holds its lease) within
//! `leader_lease_ms + offline_after_ms` (lease + detection). In `lossy` a lost instruction
//! waits for the operator controller's resend, so the bound there allows the waits of
//! three resends of one instruction on top ([`resend_allowance_ms`]: 500 + 1,000 + 2,000 ms
//! with the controller's default backoff).

use super::net::{Fault, FaultKind, Loss, NetParams};
use super::world::{Sim, SimParams};
use super::{base_report, sizes, ScenarioOptions, ScenarioReport, SimError};
use meridian_scheduler::ControllerConfig;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

const WARM_UP_MS: u64 = 10_000;
/// Quiet time after every shard is writable again, before the next fault.
const SETTLE_MS: u64 = 10_000;
/// Fault durations, uniform.
const FAULT_MS: (u64, u64) = (1_000, 10_000);
/// Node clocks run fast or slow by up to this (2%; the lease's drift margin covers 6%).
const DRIFT_PPM: u64 = 20_000;

/// Which faults a scenario injects.
#[derive(Debug, Clone, Copy)]
enum Mix {
    Only(FaultKind),
    Alternate,
}

/// One injected fault and how long after it cleared every shard was writable again.
#[derive(Debug, Clone, Serialize)]
struct FaultRecord {
    node: u64,
    kind: FaultKind,
    from_ms: u64,
    duration_ms: u64,
    /// Leaders the node held (in the metadata) when the fault began.
    leading: usize,
    /// From the fault's end until every shard was writable; `None`: not within the wait.
    writable_after_clear_ms: Option<u64>,
}

/// What the recovery bound of `lossy` allows for lost instructions: the waits before the
/// first three resends of one instruction (`resend_wait_ms(0..3)`, 3,500 ms by default).
///
/// Why three. After a fault clears, some 50-100 required instructions (the failover's
/// promotions, then leader balance's transfers back) are in flight, each lost with
/// probability p = 5%. That some instruction is lost three times in a row is likely over
/// a run (about N p^3 = 1% per fault, 20 faults), four times is not (N p^4 < 0.1% per
/// fault). The bound used to be `2 * resend_interval_ms` (10 s: two resends at a flat 5 s,
/// when the first resend came 5 s after a loss and a second loss ran into the 10 s step
/// timeout); with the backoff three resends take 3.5 s, so the bound went from 14,850 to
/// 8,350 ms.
fn resend_allowance_ms(controller: &ControllerConfig) -> u64 {
    (0..3).map(|i| controller.resend_wait_ms(i)).sum()
}

/// `partition`: nodes cut off from Meridian for 1-10 s each.
pub(super) fn partition(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    run("partition", opts, Mix::Only(FaultKind::Partition), 0.0)
}

/// `stall`: node processes stopped for 1-10 s each.
pub(super) fn stall(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    run("stall", opts, Mix::Only(FaultKind::Stall), 0.0)
}

/// `lossy`: partitions and stalls in turn, over links that lose 5% of every kind of
/// message.
pub(super) fn lossy(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    run("lossy", opts, Mix::Alternate, 0.05)
}

fn run(
    name: &str,
    opts: &ScenarioOptions,
    mix: Mix,
    loss: f64,
) -> Result<ScenarioReport, SimError> {
    let (n, s) = sizes(opts, (12, 600), (6, 48))?;
    let count = if opts.small { 4 } else { 20 };
    let mut params = SimParams::new(n, 3, s, opts.seed);
    params.net = NetParams {
        control_delay_ms: (1, 20),
        loss: Loss::all(loss),
        max_drift_ppm: DRIFT_PPM,
        fifo: true,
    };
    let mut sim = Sim::new(params)?;
    let lease = sim.params.liveness.leader_lease_ms();
    let detection = sim.params.liveness.offline_after_ms;
    let resends = if loss > 0.0 {
        resend_allowance_ms(&sim.params.controller)
    } else {
        0
    };
    let bound = lease + detection + resends;
    let mut rng = SmallRng::seed_from_u64(opts.seed ^ 0x6661_756c_7473);
    sim.run_until(WARM_UP_MS);
    sim.reset_measurements();
    let mut records = Vec::new();
    for i in 0..count {
        let kind = match mix {
            Mix::Only(k) => k,
            Mix::Alternate if i % 2 == 0 => FaultKind::Partition,
            Mix::Alternate => FaultKind::Stall,
        };
        let ids = sim.node_ids();
        let node = rng.random_range(0..ids.len());
        let id = ids[node];
        let leading = sim
            .routes()
            .iter()
            .filter(|r| r.leader() == Some(id))
            .count();
        let from_ms = sim.now + 1;
        let duration_ms = rng.random_range(FAULT_MS.0..=FAULT_MS.1);
        let until_ms = from_ms + duration_ms;
        sim.inject(Fault {
            node,
            kind,
            from_ms,
            until_ms,
        });
        sim.run_until(until_ms);
        let writable =
            sim.run_until_cond(until_ms + 120_000, 10, |s| s.leases().unwritable_now() == 0);
        records.push(FaultRecord {
            node: id.0,
            kind,
            from_ms,
            duration_ms,
            leading,
            writable_after_clear_ms: writable.map(|t| t - until_ms),
        });
        sim.run_until(sim.now + SETTLE_MS);
    }
    let leases = sim.leases();
    let two_writers = leases.violation_count;
    let max_leaderless_ms = leases.max_unwritable_ms(sim.now);
    let slowest = records
        .iter()
        .map(|r| r.writable_after_clear_ms)
        .try_fold(0u64, |acc, t| t.map(|t| acc.max(t)));
    let mut r = base_report(name, opts, &sim, WARM_UP_MS);
    r.criterion = format!(
        "{n} nodes (3 zones), {s} shards RF 3, {count} faults ({}) of 1-10 s on random nodes, \
         one at a time, {:.0}% random loss of every message kind, clocks drifting up to \
         {:.0}%: never two writers for a shard (audited after every event), and every shard \
         writable again within lease + detection (+ three instruction resends if messages are \
         lost) = {lease} + {detection} + {resends} = {bound} ms after each fault clears",
        match mix {
            Mix::Only(FaultKind::Partition) => "partitions",
            Mix::Only(FaultKind::Stall) => "stalls",
            Mix::Alternate => "partitions and stalls in turn",
        },
        loss * 100.0,
        DRIFT_PPM as f64 / 10_000.0,
    );
    r.pass = two_writers == 0 && slowest.is_some_and(|t| t <= bound);
    r.time_to_recover_ms = slowest;
    r.extra.insert("two_writers".into(), json!(two_writers));
    r.extra
        .insert("max_leaderless_ms".into(), json!(max_leaderless_ms));
    r.details = json!({
        "bound_ms": bound,
        "resend_allowance_ms": resends,
        "leader_lease_ms": lease,
        "offline_after_ms": detection,
        "two_writers": two_writers,
        "two_writers_seen": leases.violations,
        "max_leaderless_ms": max_leaderless_ms,
        "slowest_writable_after_clear_ms": slowest,
        "lease_grants": leases.granted,
        "lease_grants_refused_by_book": leases.denied,
        "lease_grants_refused_by_node": leases.stale_acks,
        "messages_lost": sim.drops(),
        "faults": records,
    });
    Ok(r)
}
