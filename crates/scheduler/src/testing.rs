//! Test helpers: a fluent builder for cluster views, shared by this crate's tests, the
//! simulator and the server's tests.
//!
//! ```
//! use meridian_scheduler::testing::ClusterBuilder;
//! let view = ClusterBuilder::new().zones(3).nodes(9).shards(24).build();
//! assert_eq!(view.nodes().len(), 9);
//! assert_eq!(view.domain_violations(), 0);
//! ```

use crate::copyset::CopysetFamily;
use crate::placement::place_shards;
use crate::view::{ClusterView, NodeView, ShardView};
use meridian_model::{
    ClusterConfig, IsolationLevel, NodeId, NodeLabels, NodeState, PlacementMode, ShardId,
};
use std::sync::Arc;

/// Node `i` (id `i`) in zone `z{(i-1) % zones}`, on its own rack and host.
pub fn node_view(i: u64, zones: usize) -> NodeView {
    let zone = (i.saturating_sub(1)) % zones.max(1) as u64;
    NodeView::new(
        NodeId(i),
        NodeLabels {
            zone: format!("z{zone}"),
            rack: format!("r{i}"),
            host: format!("h{i}"),
        },
    )
}

/// Builds a [`ClusterView`]: nodes spread round-robin over zones, shards placed by the real
/// placement code, every follower in sync unless told otherwise.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    zones: usize,
    nodes: usize,
    empty_nodes: usize,
    shards: u32,
    replication: u32,
    isolation: IsolationLevel,
    placement: PlacementMode,
    seed: u64,
    table_counts: Vec<u32>,
    loads: Vec<(u32, f64)>,
    states: Vec<(NodeId, NodeState, u64)>,
    in_sync: bool,
    shared_storage: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterBuilder {
    /// Three zones, three nodes, eight shards, RF 3, zone isolation, spread placement.
    pub fn new() -> Self {
        Self {
            zones: 3,
            nodes: 3,
            empty_nodes: 0,
            shards: 8,
            replication: 3,
            isolation: IsolationLevel::Zone,
            placement: PlacementMode::Spread,
            seed: 1,
            table_counts: Vec::new(),
            loads: Vec::new(),
            states: Vec::new(),
            in_sync: true,
            shared_storage: false,
        }
    }

    /// Number of zones.
    pub fn zones(mut self, n: usize) -> Self {
        self.zones = n;
        self
    }

    /// Number of nodes holding the initial placement.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Nodes added after placement (empty, as after an expansion).
    pub fn empty_nodes(mut self, n: usize) -> Self {
        self.empty_nodes = n;
        self
    }

    /// Number of shards.
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = n;
        self
    }

    /// Replication factor.
    pub fn replication(mut self, rf: u32) -> Self {
        self.replication = rf;
        self
    }

    /// Isolation level.
    pub fn isolation(mut self, level: IsolationLevel) -> Self {
        self.isolation = level;
        self
    }

    /// Copyset placement with this scatter width.
    pub fn copyset(mut self, scatter_width: u32) -> Self {
        self.placement = PlacementMode::Copyset { scatter_width };
        self
    }

    /// Placement seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Table counts of shards 0, 1, ...
    pub fn table_counts(mut self, counts: &[u32]) -> Self {
        self.table_counts = counts.to_vec();
        self
    }

    /// Read + write load of shard `shard` (split evenly between reads and writes).
    pub fn shard_load(mut self, shard: u32, units_per_sec: f64) -> Self {
        self.loads.push((shard, units_per_sec));
        self
    }

    /// Sets a node's state, as of `since_ms`.
    pub fn node_state(mut self, node: NodeId, state: NodeState, since_ms: u64) -> Self {
        self.states.push((node, state, since_ms));
        self
    }

    /// No follower is in sync (as right after a Meridian restart, before any report).
    pub fn no_in_sync(mut self) -> Self {
        self.in_sync = false;
        self
    }

    /// Whether the cluster keeps its data on shared storage (`ClusterConfig::shared_storage`).
    pub fn shared_storage(mut self, on: bool) -> Self {
        self.shared_storage = on;
        self
    }

    /// The configuration the view gets.
    pub fn config(&self) -> ClusterConfig {
        ClusterConfig {
            shard_count: self.shards,
            replication_factor: self.replication,
            min_nodes: self.replication,
            isolation: self.isolation,
            placement: self.placement,
            shared_storage: self.shared_storage,
            ..ClusterConfig::default_cluster()
        }
    }

    /// Builds the parts of the view.
    ///
    /// # Panics
    /// If placement fails (fewer nodes than the replication factor): a test set-up error.
    pub fn build_parts(&self) -> (ClusterConfig, Vec<NodeView>, Vec<ShardView>) {
        let (config, nodes, shards, _) = self.build_all();
        (config, nodes, shards)
    }

    fn build_all(
        &self,
    ) -> (
        ClusterConfig,
        Vec<NodeView>,
        Vec<ShardView>,
        Option<Arc<CopysetFamily>>,
    ) {
        let config = self.config();
        let mut nodes: Vec<NodeView> = (1..=self.nodes as u64)
            .map(|i| node_view(i, self.zones))
            .collect();
        let ids: Vec<ShardId> = (0..self.shards).map(ShardId).collect();
        let placement = match place_shards(&nodes, &ids, &config, self.seed) {
            Ok(p) => p,
            Err(e) => panic!("ClusterBuilder: placement failed: {e}"),
        };
        let family = placement.copysets.map(Arc::new);
        let first_empty = self.nodes as u64 + 1;
        nodes.extend(
            (first_empty..first_empty + self.empty_nodes as u64).map(|i| node_view(i, self.zones)),
        );
        for &(id, state, since) in &self.states {
            if let Some(n) = nodes.iter_mut().find(|n| n.id == id) {
                n.state = state;
                n.state_since_ms = since;
            }
        }
        let shards: Vec<ShardView> = placement
            .shards
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let mut sv = if self.in_sync {
                    ShardView::all_in_sync(s)
                } else {
                    ShardView::new(s)
                };
                sv.table_count = self.table_counts.get(i).copied().unwrap_or(0);
                for &(_, load) in self.loads.iter().filter(|(s, _)| *s as usize == i) {
                    sv.stats.read_units_per_sec = load / 2.0;
                    sv.stats.write_units_per_sec = load / 2.0;
                }
                sv
            })
            .collect();
        (config, nodes, shards, family)
    }

    /// Builds the view; in copyset mode with the family placement drew (as the server
    /// persists it), so the schedulers keep shards in copysets.
    pub fn build(&self) -> ClusterView {
        let (config, nodes, shards, family) = self.build_all();
        ClusterView::new(config, nodes, shards).with_copysets(family)
    }
}

/// Rebuilds `view` after `change` edits its nodes and shards (e.g. to kill a node); the
/// copyset family, if any, is kept.
pub fn modify(
    view: ClusterView,
    change: impl FnOnce(&mut Vec<NodeView>, &mut Vec<ShardView>),
) -> ClusterView {
    let family = view.copysets().cloned();
    let (config, mut nodes, mut shards) = view.into_parts();
    change(&mut nodes, &mut shards);
    ClusterView::new(config, nodes, shards).with_copysets(family)
}
