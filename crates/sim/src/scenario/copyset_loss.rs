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
    let pass = rows
        .iter()
        .all(|r| r.random_loss_prob > 0.0 && r.copyset_loss_prob * 10.0 <= r.random_loss_prob)
        && violations == 0;
    let sizes = serde_json::to_value(&rows).unwrap_or_default();
    let mut extra = BTreeMap::new();
    extra.insert("sizes".to_string(), sizes.clone());
    Ok(ScenarioReport {
        scenario: "copyset-loss".into(),
        seed: opts.seed,
        pass,
        criterion: format!(
            "R = 3 over 3 zones, {}% of nodes fail at once: for every size and scatter width \
             (S = 4, 10), copyset placement's Monte Carlo loss probability is at most a tenth \
             of random placement's ({}), and copysets span 3 zones (no domain violation)",
            FAILED_FRACTION * 100.0,
            match replicas_per_node {
                Some(p) => format!("{p} replicas per node placed at random"),
                None => "200k random replica sets".to_string(),
            }
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
