//! `copyset-loss`: the probability that 1% of nodes failing at once loses data, for random
//! placement and for copyset placement (Cidon et al., ATC 2013). No clock: Monte Carlo over
//! failure sets against real placements.
//!
//! Random placement is modelled the way the paper does, as many independently placed
//! replica sets (one random node in each of three zones, so it also respects zone
//! isolation): 6000 replicas per node at full size, enough for data loss to be nearly
//! certain at 5000 nodes, as in the paper (the CI size uses 200k sets). Copyset placement goes through the real
//! `place_shards` in `PlacementMode::Copyset`, with twice as many shards as copysets so
//! every copyset holds data; more shards would not add replica sets, which is the point.
//!
//! The `sequence` figures follow one cluster through the simulator (real schedulers,
//! controller and the family maintenance the server runs): first placement, then a whole
//! zone killed for good and repaired, then expansion by a third more nodes. At each stage
//! they give the distinct replica sets, the shards outside every copyset and the loss
//! probability when 1% of the live nodes (at least 3) fail at once, for copyset placement
//! with the persisted family, for copyset placement whose family the schedulers never see
//! (repair and balance by spread rules, as before the family was persisted), and for
//! spread placement.

use super::world::{Sim, SimParams};
use super::{ScenarioOptions, ScenarioReport, SimError};
use meridian_model::{ClusterConfig, IsolationLevel, NodeId, PlacementMode, ShardId};
use meridian_scheduler::copyset::{analytic_loss_probability, permutations, LossModel};
use meridian_scheduler::testing::node_view;
use meridian_scheduler::{place_shards, ClusterView, NodeView, ShardView, Spread};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;

const FAILED_FRACTION: f64 = 0.01;
const REPLICATION: usize = 3;
const ZONES: usize = 3;
/// Scatter widths compared: S = 4 (2 permutations) and S = 10 (5), the latter the value
/// the paper quotes for HDFS.
const SCATTER_WIDTHS: [u32; 2] = [4, 10];

/// One row of the result.
#[derive(Debug, Clone, Serialize)]
struct SizeRow {
    nodes: usize,
    scatter_width: u32,
    random_loss_prob: f64,
    copyset_loss_prob: f64,
    random_analytic: f64,
    copyset_analytic: f64,
    random_replica_sets: usize,
    copysets: usize,
    copyset_shards: usize,
    random_trials: u32,
    copyset_trials: u32,
}

/// `copyset-loss` for 1000 and 5000 nodes (or `opts.nodes`).
pub(super) fn copyset_loss(opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let node_counts = match opts.nodes {
        Some(n) if n < 100 => {
            return Err(SimError::InvalidOptions(format!(
                "copyset-loss needs at least 100 nodes so 1% is a whole node, got {n}"
            )))
        }
        Some(n) => vec![n],
        None => vec![1000, 5000],
    };
    // CI size: a fixed 200k random sets (loss still ~15%, far above copysets) keeps the
    // debug build fast; full size: 6000 replicas per node, as dense as the paper's chunks.
    let (replicas_per_node, random_trials, copyset_trials) = if opts.small {
        (None, 200, 4_000)
    } else {
        (Some(6_000), 2_000, 50_000)
    };
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut rows = Vec::new();
    let mut violations = 0;
    for &n in &node_counts {
        let failed = ((n as f64) * FAILED_FRACTION).round() as usize;
        let random_sets = match (opts.shards, replicas_per_node) {
            (Some(s), _) => s,
            (None, Some(per_node)) => n * per_node / REPLICATION,
            (None, None) => 200_000,
        };
        let random = random_placement(n, random_sets, &mut rng)?;
        let random_est = random.estimate(FAILED_FRACTION, random_trials, &mut rng);
        let random_analytic = analytic_loss_probability(random.len(), n, REPLICATION, failed);
        drop(random);
        let nodes: Vec<NodeView> = (1..=n as u64).map(|i| node_view(i, ZONES)).collect();
        let ids: Vec<NodeId> = nodes.iter().map(|v| v.id).collect();
        for s in SCATTER_WIDTHS {
            let config = ClusterConfig {
                replication_factor: REPLICATION as u32,
                isolation: IsolationLevel::Zone,
                placement: PlacementMode::Copyset { scatter_width: s },
                ..ClusterConfig::default_cluster()
            };
            let shard_count = 2 * permutations(s, REPLICATION) * n.div_ceil(REPLICATION);
            let shard_ids: Vec<ShardId> = (0..shard_count as u32).map(ShardId).collect();
            let placement = place_shards(&nodes, &shard_ids, &config, opts.seed ^ u64::from(s))?;
            let copysets = placement.copysets.as_ref().map_or(0, |c| c.len());
            let view = ClusterView::new(
                config,
                nodes.clone(),
                placement
                    .shards
                    .iter()
                    .cloned()
                    .map(ShardView::new)
                    .collect(),
            );
            violations += view.domain_violations();
            let model = LossModel::from_node_ids(
                &ids,
                placement
                    .shards
                    .iter()
                    .map(|sh| sh.replicas.iter().map(|r| r.node).collect::<Vec<_>>()),
            )?;
            let est = model.estimate(FAILED_FRACTION, copyset_trials, &mut rng);
            rows.push(SizeRow {
                nodes: n,
                scatter_width: s,
                random_loss_prob: random_est.probability,
                copyset_loss_prob: est.probability,
                random_analytic: round6(random_analytic),
                copyset_analytic: round6(analytic_loss_probability(
                    model.len(),
                    n,
                    REPLICATION,
                    failed,
                )),
                random_replica_sets: random_est.replica_sets,
                copysets: model.len().max(copysets),
                copyset_shards: shard_count,
                random_trials,
                copyset_trials,
            });
        }
    }
    let first_placement_ok = rows
        .iter()
        .all(|r| r.random_loss_prob > 0.0 && r.copyset_loss_prob * 10.0 <= r.random_loss_prob)
        && violations == 0;
    let sequence = run_sequences(opts)?;
    let sequence_ok = sequence_passes(&sequence);
    let pass = first_placement_ok && sequence_ok;
    let sizes = serde_json::to_value(&rows).unwrap_or_default();
    let sequence_json = serde_json::to_value(&sequence).unwrap_or_default();
    let mut extra = BTreeMap::new();
    extra.insert("sizes".to_string(), sizes.clone());
    extra.insert("sequence".to_string(), sequence_json.clone());
    Ok(ScenarioReport {
        scenario: "copyset-loss".into(),
        seed: opts.seed,
        pass,
        criterion: format!(
            "R = 3 over 3 zones, {}% of nodes fail at once: for every size and scatter width \
             (S = 4, 10), copyset placement's Monte Carlo loss probability is at most a tenth \
             of random placement's ({}), and copysets span 3 zones (no domain violation). \
             Then, on the simulated cluster ({}), a kill-zone / repair / expansion sequence: \
             with the persisted family every shard stays inside a copyset after each stage, \
             every stage ends fully replicated, and the loss probability after the sequence \
             stays below that of the same sequence without it (copyset placement whose \
             family the schedulers never see, the behaviour before it was persisted)",
            FAILED_FRACTION * 100.0,
            match replicas_per_node {
                Some(p) => format!("{p} replicas per node placed at random"),
                None => "200k random replica sets".to_string(),
            },
            sequence_sizes(opts)
                .map(|(n, s)| format!("{n} nodes, {s} shards"))
                .unwrap_or_default(),
        ),
        sim_seconds: 0.0,
        wall_ms: 0,
        time_to_recover_ms: None,
        max_leaderless_ms_per_shard: 0,
        total_leaderless_ms: 0,
        moves: Default::default(),
        final_spread: Spread::default(),
        domain_violations: violations,
        details: serde_json::json!({
            "sizes": sizes,
            "sequence": sequence_json,
            "failed_fraction": FAILED_FRACTION,
            "random_replicas_per_node": replicas_per_node,
        }),
        extra,
    })
}

/// `count` random replica sets, one uniformly random node per zone (node i is in zone
/// i % 3, as `node_view` labels them).
fn random_placement(n: usize, count: usize, rng: &mut SmallRng) -> Result<LossModel, SimError> {
    let per_zone = |z: usize| (n - z).div_ceil(ZONES);
    let sets = (0..count).map(|_| {
        let mut set = [0u32; REPLICATION];
        for (z, slot) in set.iter_mut().enumerate() {
            // Node index z + k * ZONES is in zone z.
            let k = rng.random_range(0..per_zone(z));
            *slot = (z + k * ZONES) as u32;
        }
        set
    });
    Ok(LossModel::from_indices(n, sets)?)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Shards, nodes and trials of the kill-zone / repair / expansion sequence.
fn sequence_sizes(opts: &ScenarioOptions) -> Option<(usize, u32)> {
    Some(if opts.small { (30, 150) } else { (60, 300) })
}

/// Simulated time the sequence lets each stage take before it gives up.
const STAGE_LIMIT_MS: u64 = 2 * 3_600_000;

/// Figures of one placement at one stage.
#[derive(Debug, Clone, Serialize)]
struct StageRow {
    stage: &'static str,
    live_nodes: usize,
    /// Whether every shard had three replicas on live nodes and nothing ran.
    healthy: bool,
    distinct_replica_sets: usize,
    shards_outside_copysets: u32,
    domain_violations: u32,
    failed_nodes: usize,
    loss_prob: f64,
    analytic: f64,
    trials: u32,
}

/// One placement through the whole sequence.
#[derive(Debug, Clone, Serialize)]
struct SequenceRow {
    placement: &'static str,
    scatter_width: Option<u32>,
    nodes: usize,
    shards: u32,
    /// Copysets in the family at the end (persisted family only).
    copysets: Option<usize>,
    operators: u64,
    stages: Vec<StageRow>,
}

fn run_sequences(opts: &ScenarioOptions) -> Result<Vec<SequenceRow>, SimError> {
    let Some((n, shards)) = sequence_sizes(opts) else {
        return Ok(Vec::new());
    };
    let trials = if opts.small { 2_000 } else { 20_000 };
    let widths: &[u32] = if opts.small { &[4] } else { &SCATTER_WIDTHS };
    let mut rows = Vec::new();
    for &s in widths {
        for (label, keep) in [("copysets", true), ("copysets-unpersisted", false)] {
            let placement = PlacementMode::Copyset { scatter_width: s };
            rows.push(sequence(
                label, n, shards, placement, keep, opts.seed, trials,
            )?);
        }
    }
    rows.push(sequence(
        "spread",
        n,
        shards,
        PlacementMode::Spread,
        false,
        opts.seed,
        trials,
    )?);
    Ok(rows)
}

/// Persisted copysets: inside copysets and healthy at every stage, and after the sequence
/// a lower loss probability than the unpersisted family with the same scatter width.
fn sequence_passes(rows: &[SequenceRow]) -> bool {
    let last = |r: &SequenceRow| r.stages.last().map_or(1.0, |st| st.analytic);
    rows.iter().filter(|r| r.placement == "copysets").all(|r| {
        let kept = r
            .stages
            .iter()
            .all(|st| st.healthy && st.shards_outside_copysets == 0);
        let better = rows
            .iter()
            .filter(|b| b.placement == "copysets-unpersisted" && b.scatter_width == r.scatter_width)
            .all(|b| last(r) < last(b));
        kept && better
    })
}

fn sequence(
    placement_label: &'static str,
    n: usize,
    shards: u32,
    placement: PlacementMode,
    keep_copysets: bool,
    seed: u64,
    trials: u32,
) -> Result<SequenceRow, SimError> {
    let mut params = SimParams::new(n, ZONES, shards, seed);
    params.placement = placement;
    params.keep_copysets = keep_copysets;
    let mut sim = Sim::new(params)?;
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5e9);
    sim.run_until(10_000);
    let mut stages = vec![measure(&sim, "initial", trials, &mut rng)?];
    // A whole zone dies for good; wait for failover and repair.
    let victims = sim.nodes_in_zone("z0");
    for &v in &victims {
        sim.kill(v);
    }
    let t0 = sim.now;
    sim.run_until_cond(t0 + STAGE_LIMIT_MS, 1_000, |s| {
        s.healthy()
            && s.routes()
                .iter()
                .all(|r| victims.iter().all(|v| !r.has_replica_on(*v)))
    });
    settle(&mut sim);
    stages.push(measure(&sim, "after_kill_zone_repair", trials, &mut rng)?);
    // Expansion: a third more nodes, round-robin over the zones (z0 comes back).
    sim.add_nodes(n / ZONES);
    settle(&mut sim);
    stages.push(measure(&sim, "after_expansion", trials, &mut rng)?);
    Ok(SequenceRow {
        placement: placement_label,
        scatter_width: match placement {
            PlacementMode::Copyset { scatter_width } => Some(scatter_width),
            PlacementMode::Spread => None,
        },
        nodes: n,
        shards,
        copysets: sim.copysets().map(|f| f.len()),
        operators: sim.moves.succeeded,
        stages,
    })
}

/// Runs until a minute passes healthy with no operator started, or the stage limit.
fn settle(sim: &mut Sim) {
    let deadline = sim.now + STAGE_LIMIT_MS;
    while sim.now < deadline {
        let before = sim.moves.operators;
        let next = sim.now + 60_000;
        sim.run_until(next);
        if sim.healthy() && sim.moves.operators == before {
            return;
        }
    }
}

fn measure(
    sim: &Sim,
    stage: &'static str,
    trials: u32,
    rng: &mut SmallRng,
) -> Result<StageRow, SimError> {
    let view = sim.view();
    let live: Vec<NodeId> = view
        .nodes()
        .iter()
        .filter(|n| !n.is_down())
        .map(|n| n.id)
        .collect();
    let sets: Vec<Vec<NodeId>> = sim
        .routes()
        .iter()
        .map(|s| {
            s.replicas
                .iter()
                .map(|r| r.node)
                .filter(|n| live.contains(n))
                .collect()
        })
        .collect();
    // Against the family in use, or for the unpersisted baseline the one first placed.
    let outside = sim
        .copysets()
        .or(sim.placed_copysets())
        .map_or(0, |f| sets.iter().filter(|s| !f.covers(s)).count() as u32);
    let model = LossModel::from_node_ids(&live, &sets)?;
    let failed = ((live.len() as f64 * FAILED_FRACTION).round() as usize).max(REPLICATION);
    let fraction = failed as f64 / live.len().max(1) as f64;
    let est = model.estimate(fraction, trials, rng);
    Ok(StageRow {
        stage,
        live_nodes: live.len(),
        healthy: sim.healthy(),
        distinct_replica_sets: model.len(),
        shards_outside_copysets: outside,
        domain_violations: view.domain_violations(),
        failed_nodes: est.failed_nodes,
        loss_prob: est.probability,
        analytic: round6(analytic_loss_probability(
            model.len(),
            live.len(),
            REPLICATION,
            est.failed_nodes,
        )),
        trials,
    })
}
