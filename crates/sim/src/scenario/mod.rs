//! Scheduling scenarios on a simulated cluster, each with a stated pass criterion.
//!
//! Deterministic: the same name, seed and options give the same report (except `wall_ms`).
//! `small: true` sizes each scenario for CI (well under a few seconds in a debug build);
//! the full sizes are those quoted in each scenario's criterion.
//!
//! | name | what happens |
//! |---|---|
//! | `add-nodes` | expansion: the cluster doubles; balance must end even with near-minimal moves |
//! | `kill-node` | one node dies for good: failover, then re-replication |
//! | `kill-zone` | one of three zones dies: every shard keeps or regains a leader |
//! | `hot-shard` | a few shards on one node get hot: the load spreads out |
//! | `rolling-restart` | every node restarted in turn: short leaderless windows only |
//! | `rolling-restart-graceful` | the same, each node's leaders evicted first: transfers only |
//! | `drain` | one node drained: emptied, leaders first |
//! | `lagging-follower` | a shard's only follower lags when its leader dies: failover waits, then promotes it once caught up |
//! | `copyset-loss` | no clock: data-loss probability of random vs copyset placement |

mod copyset_loss;
mod expansion;
mod failures;
mod hot;
mod lagging;
mod world;

use meridian_scheduler::{OperatorKind, SchedulerError, Spread};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Options for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScenarioOptions {
    /// Seed of every random choice (latencies, placement, failures).
    pub seed: u64,
    /// Overrides the scenario's node count (for `add-nodes`: the count before expansion).
    pub nodes: Option<usize>,
    /// Overrides the scenario's shard count.
    pub shards: Option<usize>,
    /// CI-sized run.
    pub small: bool,
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No scenario has this name.
    #[error("unknown scenario {0:?} (known: {known})", known = scenario_names().join(", "))]
    UnknownScenario(String),
    /// The options make no sense for the scenario.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The scheduler crate refused (e.g. too few nodes to place shards).
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// Operators and steps executed during the measured part of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoveStats {
    /// Operators admitted by the controller.
    pub operators: u64,
    /// Proposals the controller rejected (limits, busy shard); proposed again later.
    pub rejected: u64,
    /// Operators that succeeded.
    pub succeeded: u64,
    /// Operators that failed.
    pub failed: u64,
    /// Operators that timed out.
    pub timed_out: u64,
    /// Operators cancelled or preempted.
    pub cancelled: u64,
    /// Steps started.
    pub steps: u64,
    /// `AddFollower` steps (replica copies).
    pub replicas_added: u64,
    /// `RemoveReplica` steps.
    pub replicas_removed: u64,
    /// `TransferLeader` steps.
    pub leader_transfers: u64,
    /// `PromoteFollower` steps (failover fast path).
    pub promotions: u64,
    /// `ReopenShard` steps (failover slow path).
    pub reopens: u64,
    /// Instructions sent to reconcile a node's report with the metadata.
    pub reconciliations: u64,
    /// Succeeded operators by kind.
    pub by_kind: BTreeMap<String, u64>,
}

impl MoveStats {
    /// Succeeded operators of one kind.
    pub fn of_kind(&self, kind: OperatorKind) -> u64 {
        self.by_kind.get(kind.name()).copied().unwrap_or(0)
    }
}

/// The result of one scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Whether the criterion held.
    pub pass: bool,
    /// The pass criterion, in words, with the bounds used.
    pub criterion: String,
    /// Simulated time covered.
    pub sim_seconds: f64,
    /// Wall-clock time the run took.
    pub wall_ms: u64,
    /// Time from the disturbance until the scenario's recovery condition held.
    pub time_to_recover_ms: Option<u64>,
    /// Max over shards of each shard's total leaderless time.
    pub max_leaderless_ms_per_shard: u64,
    /// Leaderless time summed over shards.
    pub total_leaderless_ms: u64,
    /// Operators and steps executed.
    pub moves: MoveStats,
    /// Final max - min replicas and leaders per node (over nodes that can receive).
    pub final_spread: Spread,
    /// Final failure-domain violations.
    pub domain_violations: u32,
    /// Scenario-specific figures.
    pub details: serde_json::Value,
    /// Fields flattened into the top level of the JSON object (copyset-loss: `sizes`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ScenarioReport {
    /// A multi-line human summary.
    pub fn render_human(&self) -> String {
        let mut out = format!(
            "scenario {}  seed {}  {}\n  criterion: {}\n  simulated {:.1} s in {} ms wall\n",
            self.scenario,
            self.seed,
            if self.pass { "PASS" } else { "FAIL" },
            self.criterion,
            self.sim_seconds,
            self.wall_ms
        );
        if let Some(t) = self.time_to_recover_ms {
            out += &format!("  time to recover: {t} ms\n");
        }
        out += &format!(
            "  leaderless: max {} ms per shard, {} ms in total\n",
            self.max_leaderless_ms_per_shard, self.total_leaderless_ms
        );
        let m = &self.moves;
        out += &format!(
            "  operators: {} admitted, {} succeeded, {} failed, {} timed out, {} cancelled, \
             {} rejected proposals\n  steps: {} ({} replicas added, {} removed, {} leader \
             transfers, {} promotions, {} reopens)\n",
            m.operators,
            m.succeeded,
            m.failed,
            m.timed_out,
            m.cancelled,
            m.rejected,
            m.steps,
            m.replicas_added,
            m.replicas_removed,
            m.leader_transfers,
            m.promotions,
            m.reopens
        );
        out += &format!(
            "  final spread: {} replicas, {} leaders; domain violations: {}\n",
            self.final_spread.shards_max_minus_min,
            self.final_spread.leaders_max_minus_min,
            self.domain_violations
        );
        if let Ok(d) = serde_json::to_string_pretty(&self.details) {
            for line in d.lines() {
                out += &format!("  {line}\n");
            }
        }
        out
    }
}

/// Every scenario, in the order a full run prints them.
pub fn scenario_names() -> &'static [&'static str] {
    &[
        "add-nodes",
        "kill-node",
        "kill-zone",
        "hot-shard",
        "rolling-restart",
        "rolling-restart-graceful",
        "drain",
        "copyset-loss",
        "lagging-follower",
    ]
}

/// Runs one scenario by name.
pub fn run_scenario(name: &str, opts: &ScenarioOptions) -> Result<ScenarioReport, SimError> {
    let started = Instant::now();
    let mut report = match name {
        "add-nodes" => expansion::add_nodes(opts),
        "kill-node" => failures::kill_node(opts),
        "kill-zone" => failures::kill_zone(opts),
        "hot-shard" => hot::hot_shard(opts),
        "rolling-restart" => failures::rolling_restart(opts),
        "rolling-restart-graceful" => failures::rolling_restart_graceful(opts),
        "drain" => expansion::drain(opts),
        "copyset-loss" => copyset_loss::copyset_loss(opts),
        "lagging-follower" => lagging::lagging_follower(opts),
        _ => Err(SimError::UnknownScenario(name.to_string())),
    }?;
    report.wall_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A report filled from a finished simulation; the scenario adds its verdict and details.
fn base_report(
    name: &str,
    opts: &ScenarioOptions,
    sim: &world::Sim,
    from_ms: u64,
) -> ScenarioReport {
    let view = sim.view();
    let leaderless = sim.leaderless();
    ScenarioReport {
        scenario: name.to_string(),
        seed: opts.seed,
        pass: false,
        criterion: String::new(),
        sim_seconds: sim.now.saturating_sub(from_ms) as f64 / 1000.0,
        wall_ms: 0,
        time_to_recover_ms: None,
        max_leaderless_ms_per_shard: leaderless.max_per_shard_ms,
        total_leaderless_ms: leaderless.total_ms,
        moves: sim.moves.clone(),
        final_spread: view.spread(),
        domain_violations: view.domain_violations(),
        details: serde_json::Value::Null,
        extra: BTreeMap::new(),
    }
}

/// The node count and shard count for a scenario, from its full / small defaults and
/// the options' overrides.
fn sizes(
    opts: &ScenarioOptions,
    full: (usize, u32),
    small: (usize, u32),
) -> Result<(usize, u32), SimError> {
    let (n, s) = if opts.small { small } else { full };
    let n = opts.nodes.unwrap_or(n);
    let s = match opts.shards {
        Some(s) => u32::try_from(s).map_err(|_| SimError::InvalidOptions(format!("{s} shards")))?,
        None => s,
    };
    if n < 3 || s == 0 {
        return Err(SimError::InvalidOptions(format!(
            "need at least 3 nodes and 1 shard, got {n} nodes and {s} shards"
        )));
    }
    Ok((n, s))
}

/// Per-zone max - min replica count over nodes that can receive (zone isolation makes
/// zones of unequal size unequal in replicas per node, so evenness is judged per zone).
fn zone_spread(view: &meridian_scheduler::ClusterView) -> u32 {
    let mut by_zone: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for n in view.nodes().iter().filter(|n| n.is_balance_member()) {
        by_zone
            .entry(n.labels.zone.as_str())
            .or_default()
            .push(view.replica_count(n.id));
    }
    by_zone
        .values()
        .map(|c| c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0))
        .max()
        .unwrap_or(0)
}
