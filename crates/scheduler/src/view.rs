//! The scheduler's picture of one cluster at one instant, and the indexes schedulers need.
//!
//! The executor builds a [`ClusterView`] every tick from what it holds: the persisted nodes
//! with their liveness state (from `LivenessTracker`), the current shard metadata (the
//! routes), and what nodes reported (kept in a [`ReportBook`]). Adding the running operators
//! ([`ClusterView::with_operators`]) lets schedulers count replicas where they *will* be once
//! those operators finish, so a tick never re-plans a move already under way.

use crate::copyset::CopysetFamily;
use crate::domain::{self, IsolationDomains};
use crate::operator::{Operator, Priority};
use meridian_model::{
    ClusterConfig, LogPosition, Node, NodeId, NodeLabels, NodeState, NodeStats, OperatorId,
    PlacementMode, ReplicaRole, Shard, ShardId, ShardReport, ShardStats, ShardStatus, ShardVersion,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A fast, deterministic hasher for integer ids (multiply-rotate, as in rustc's FxHash).
/// Views are rebuilt every tick and looked up per replica, so SipHash showed up first in
/// profiles; ids are not attacker-chosen here.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by ids, with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A node as the schedulers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Failure-domain labels.
    pub labels: NodeLabels,
    /// Liveness (from the liveness tracker) or Removed.
    pub state: NodeState,
    /// When `state` last changed (caller's monotonic ms): repair waits on how long a node
    /// has been Offline, so a restart does not trigger a full re-replication.
    pub state_since_ms: u64,
    /// No new placements, but it keeps what it has.
    pub cordoned: bool,
    /// Everything is being moved off it.
    pub draining: bool,
    /// Every leadership is being moved off it and it gets none (before a planned restart);
    /// it keeps, and may still receive, follower replicas.
    pub evict_leaders: bool,
    /// Last reported load.
    pub stats: NodeStats,
}

impl NodeView {
    /// An Online, schedulable node with no load, since time 0.
    pub fn new(id: NodeId, labels: NodeLabels) -> Self {
        Self {
            id,
            labels,
            state: NodeState::Online,
            state_since_ms: 0,
            cordoned: false,
            draining: false,
            evict_leaders: false,
            stats: NodeStats::default(),
        }
    }

    /// The view of a persisted node with its in-memory liveness and load.
    /// A node flagged removed is `Removed` whatever the liveness tracker says.
    pub fn from_node(node: &Node, state: NodeState, state_since_ms: u64, stats: NodeStats) -> Self {
        Self {
            id: node.id,
            labels: node.labels.clone(),
            state: if node.removed {
                NodeState::Removed
            } else {
                state
            },
            state_since_ms,
            cordoned: node.cordoned,
            draining: node.draining,
            evict_leaders: node.evict_leaders,
            stats,
        }
    }

    /// Whether the node may receive new replicas or leaderships.
    pub fn can_receive(&self) -> bool {
        self.state.is_schedulable() && !self.cordoned && !self.draining
    }

    /// Whether the node may receive a leadership: it may receive, and its leaders are not
    /// being evicted. Every scheduler that picks a new leader asks this (failover falls back
    /// to a node that cannot lead only when no other in-sync follower is alive).
    pub fn can_lead(&self) -> bool {
        self.can_receive() && !self.evict_leaders
    }

    /// Whether the node is declared dead (Offline) or gone (Removed).
    pub fn is_down(&self) -> bool {
        matches!(self.state, NodeState::Offline | NodeState::Removed)
    }

    /// Whether balance counts this node: it can receive, so it also may give.
    /// Cordoned and draining nodes are left out, or their fixed counts would keep the
    /// spread wide forever.
    pub fn is_balance_member(&self) -> bool {
        self.can_receive()
    }

    /// Whether leader balance (and the hot line, which averages leader load) counts this
    /// node: it can lead. A node whose leaders are being evicted still counts for replicas
    /// ([`NodeView::is_balance_member`]) but not here, or its falling leader count would
    /// widen the leader spread and balance would fight the eviction.
    pub fn is_leader_balance_member(&self) -> bool {
        self.can_lead()
    }
}

/// A shard as the schedulers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardView {
    /// Current metadata (the route).
    pub shard: Shard,
    /// Tables placed on it (new tables go to the shard with the fewest).
    pub table_count: u32,
    /// The leader's reported load.
    pub stats: ShardStats,
    /// Followers that reported Ready as followers at the current version: the candidates
    /// for a new leader. Failover also compares their log positions
    /// ([`ShardView::caught_up`]); leader transfers need the old leader's consent, so they
    /// use this set as it is.
    pub in_sync: Vec<NodeId>,
    /// The last log position each replica in the metadata reported (zero: none reported).
    pub positions: Vec<(NodeId, LogPosition)>,
    /// The shard's last known committed log position: the highest `committed` any replica
    /// reported ([`CommittedMark`]), the dead leader's last report included. Zero: unknown.
    pub committed: u64,
    /// The shard's load averaged over recent history ([`ClusterView::with_load_trend`]);
    /// `None`: only the last report is known.
    pub load_trend: Option<f64>,
}

impl ShardView {
    /// A shard with no tables, no load, and no follower known to be in sync.
    pub fn new(shard: Shard) -> Self {
        Self {
            shard,
            table_count: 0,
            stats: ShardStats::default(),
            in_sync: Vec::new(),
            positions: Vec::new(),
            committed: 0,
            load_trend: None,
        }
    }

    /// A shard whose followers are all in sync (tests, fresh placement).
    pub fn all_in_sync(shard: Shard) -> Self {
        let in_sync = shard.followers().collect();
        Self {
            in_sync,
            ..Self::new(shard)
        }
    }

    /// Read plus write units per second: the load figure balancing uses; its recent
    /// average when known, else the last report.
    pub fn load(&self) -> f64 {
        self.load_trend.unwrap_or(self.reported_load())
    }

    /// Read plus write units per second in the leader's last report.
    pub fn reported_load(&self) -> f64 {
        self.stats.read_units_per_sec + self.stats.write_units_per_sec
    }

    /// Whether `node` holds an in-sync follower.
    pub fn is_in_sync(&self, node: NodeId) -> bool {
        self.in_sync.contains(&node)
    }

    /// The log position `node` last reported (zero if it reported none).
    pub fn position(&self, node: NodeId) -> LogPosition {
        self.positions
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, p)| *p)
            .unwrap_or_default()
    }

    /// Whether any replica of the shard ever reported a log position. A database that
    /// reports none (every position zero) is judged by `in_sync` alone: positions are
    /// ignored for its shards.
    pub fn positions_known(&self) -> bool {
        self.committed > 0
            || self
                .positions
                .iter()
                .any(|(_, p)| *p != LogPosition::default())
    }

    /// How far `node`'s applied position is behind the shard's last known committed
    /// position.
    pub fn lag(&self, node: NodeId) -> u64 {
        self.committed.saturating_sub(self.position(node).applied)
    }

    /// Whether `node` may become leader without losing committed writes (within
    /// `max_lag` log positions): it is an in-sync follower and, when the shard's positions
    /// are known, it reported a non-zero applied position at most `max_lag` behind the
    /// last known committed one. A zero position among known ones counts as unknown, so
    /// not caught up.
    pub fn caught_up(&self, node: NodeId, max_lag: u64) -> bool {
        if !self.is_in_sync(node) {
            return false;
        }
        if !self.positions_known() {
            return true;
        }
        let applied = self.position(node).applied;
        applied > 0 && self.lag(node) <= max_lag
    }
}

/// How uneven the cluster is: max minus min over balance members (leaders: over leader
/// balance members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Spread {
    /// Replicas per node, max - min.
    pub shards_max_minus_min: u32,
    /// Leaders per node, max - min.
    pub leaders_max_minus_min: u32,
}

/// The scheduler's picture of one cluster, with indexes.
///
/// Counts (`replica_count`, `leader_count`, `leader_load`) are *projected*: for a shard with
/// a running operator they count the replica set the operator will leave behind.
#[derive(Debug, Clone)]
pub struct ClusterView {
    config: ClusterConfig,
    nodes: Vec<NodeView>,
    shards: Vec<ShardView>,
    node_pos: IdMap<NodeId, usize>,
    shard_pos: IdMap<ShardId, usize>,
    domains: IsolationDomains,
    domain_of: Vec<usize>,
    available_domains: usize,
    busy: IdMap<ShardId, (OperatorId, Priority)>,
    replicas: Vec<u32>,
    leaders: Vec<u32>,
    load: Vec<f64>,
    ops: Vec<u32>,
    node_op_limit: Option<u32>,
    on_node: Vec<Vec<usize>>,
    copysets: Option<Arc<CopysetFamily>>,
    /// Copysets (indices into the family) holding each node.
    copysets_of: IdMap<NodeId, Vec<u32>>,
}

impl ClusterView {
    /// Builds the view and its indexes. Nodes and shards keep the given order, which makes
    /// every scheduler's output deterministic for a given input.
    pub fn new(config: ClusterConfig, nodes: Vec<NodeView>, shards: Vec<ShardView>) -> Self {
        let node_pos: IdMap<NodeId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let shard_pos = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.shard.id, i))
            .collect();
        let mut domains = IsolationDomains::new(config.isolation);
        let domain_of: Vec<usize> = nodes
            .iter()
            .map(|n| domains.intern(&n.labels, n.id))
            .collect();
        let mut alive: Vec<usize> = nodes
            .iter()
            .zip(&domain_of)
            .filter(|(n, _)| !n.is_down())
            .map(|(_, &d)| d)
            .collect();
        alive.sort_unstable();
        alive.dedup();
        let n = nodes.len();
        let mut on_node = vec![Vec::new(); n];
        for (si, sv) in shards.iter().enumerate() {
            for r in &sv.shard.replicas {
                if let Some(&i) = node_pos.get(&r.node) {
                    on_node[i].push(si);
                }
            }
        }
        let mut view = Self {
            config,
            nodes,
            shards,
            node_pos,
            shard_pos,
            domains,
            domain_of,
            available_domains: alive.len(),
            busy: IdMap::default(),
            replicas: vec![0; n],
            leaders: vec![0; n],
            load: vec![0.0; n],
            ops: vec![0; n],
            node_op_limit: None,
            on_node,
            copysets: None,
            copysets_of: IdMap::default(),
        };
        view.count(&IdMap::default());
        view
    }

    /// Judges each shard's load by `trend` (its recent average, e.g.
    /// [`crate::history::History::mean_over`]) where it knows one, instead of the last
    /// report. Call before [`ClusterView::with_operators`].
    pub fn with_load_trend(mut self, trend: impl Fn(&ShardView) -> Option<f64>) -> Self {
        for sv in &mut self.shards {
            sv.load_trend = trend(sv);
        }
        self.count(&IdMap::default());
        self
    }

    /// Adds the running operators: their shards become busy (with their priority), counts are
    /// projected to where those operators leave replicas, and each node's number of running
    /// operators is checked against `per_node_limit` when choosing targets.
    pub fn with_operators<'a>(
        mut self,
        running: impl IntoIterator<Item = &'a Operator>,
        per_node_limit: Option<u32>,
    ) -> Self {
        let mut projected = IdMap::default();
        self.ops = vec![0; self.nodes.len()];
        self.busy.clear();
        for op in running {
            if op.state.is_finished() {
                continue;
            }
            self.busy.insert(op.shard, (op.id, op.priority));
            if op.priority != Priority::Failover {
                for node in op.workers() {
                    if let Some(&i) = self.node_pos.get(&node) {
                        self.ops[i] += 1;
                    }
                }
            }
            if let Some(sv) = self.shard(op.shard) {
                if let Some(p) = op.projected(&sv.shard) {
                    projected.insert(op.shard, p);
                }
            }
        }
        self.node_op_limit = per_node_limit;
        self.count(&projected);
        self
    }

    /// Adds the cluster's persisted copyset family. In copyset mode every scheduler then
    /// keeps replica sets inside copysets of `family` (repair, drain and failover choose
    /// targets that complete a copyset, balance moves only within one, repair moves a shard
    /// that left its copyset back step by step). Ignored in spread mode or with `None`.
    pub fn with_copysets(mut self, family: Option<Arc<CopysetFamily>>) -> Self {
        self.copysets_of.clear();
        self.copysets = None;
        if !matches!(self.config.placement, PlacementMode::Copyset { .. }) {
            return self;
        }
        let Some(family) = family else {
            return self;
        };
        for (i, set) in family.sets().iter().enumerate() {
            for &n in set {
                self.copysets_of.entry(n).or_default().push(i as u32);
            }
        }
        self.copysets = Some(family);
        self
    }

    /// The copyset family the schedulers keep shards in (copyset mode only).
    pub fn copysets(&self) -> Option<&Arc<CopysetFamily>> {
        self.copysets.as_ref()
    }

    /// The copysets (as slices of the family) that hold `node`.
    pub(crate) fn copysets_with(&self, node: NodeId) -> impl Iterator<Item = &[NodeId]> + '_ {
        let sets = self.copysets.as_ref().map(|f| f.sets()).unwrap_or_default();
        self.copysets_of
            .get(&node)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(move |&i| sets.get(i as usize).map(Vec::as_slice))
    }

    /// Whether `nodes` lie inside one copyset of the family; always true without a family
    /// (spread mode) and for the empty set.
    pub fn inside_copyset(&self, nodes: &[NodeId]) -> bool {
        if self.copysets.is_none() {
            return true;
        }
        let Some(&first) = nodes.first() else {
            return true;
        };
        self.copysets_with(first)
            .any(|set| nodes.iter().all(|n| set.contains(n)))
    }

    /// Whether `shard`'s replica set, after replacing `remove` by `add`, lies inside a
    /// copyset (true without a family).
    pub fn inside_copyset_after(&self, shard: &Shard, remove: &[NodeId], add: NodeId) -> bool {
        if self.copysets.is_none() {
            return true;
        }
        let nodes: Vec<NodeId> = shard
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| !remove.contains(n))
            .chain(std::iter::once(add))
            .collect();
        self.inside_copyset(&nodes)
    }

    /// Shards whose replica set lies in no copyset of the family (0 without one): the
    /// open degradation of copyset mode, as [`ClusterView::domain_violations`] is of
    /// isolation. Repair after a loss with no fitting copyset, or a move in progress (RF + 1
    /// replicas for a moment), counts here until the shard is back inside one.
    pub fn copyset_violations(&self) -> u32 {
        if self.copysets.is_none() {
            return 0;
        }
        self.shards
            .iter()
            .filter(|sv| {
                let nodes: Vec<NodeId> = sv.shard.replicas.iter().map(|r| r.node).collect();
                !self.inside_copyset(&nodes)
            })
            .count() as u32
    }

    /// [`ClusterView::with_operators`] with the controller's running operators and per-node
    /// limit: what the executor calls every tick.
    pub fn with_controller(self, controller: &crate::controller::OperatorController) -> Self {
        let limit = controller.config().limits.per_node;
        self.with_operators(controller.running(), Some(limit))
    }

    fn count(&mut self, projected: &IdMap<ShardId, Shard>) {
        self.replicas.iter_mut().for_each(|c| *c = 0);
        self.leaders.iter_mut().for_each(|c| *c = 0);
        self.load.iter_mut().for_each(|c| *c = 0.0);
        for sv in &self.shards {
            let load = sv.load();
            let shard = projected.get(&sv.shard.id).unwrap_or(&sv.shard);
            for r in &shard.replicas {
                if let Some(&i) = self.node_pos.get(&r.node) {
                    self.replicas[i] += 1;
                    if r.role == ReplicaRole::Leader {
                        self.leaders[i] += 1;
                        self.load[i] += load;
                    }
                }
            }
        }
    }

    /// Takes the view apart (tests rebuild a changed cluster this way).
    pub fn into_parts(self) -> (ClusterConfig, Vec<NodeView>, Vec<ShardView>) {
        (self.config, self.nodes, self.shards)
    }

    /// The cluster's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// All nodes, in the order given.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// All shards, in the order given.
    pub fn shards(&self) -> &[ShardView] {
        &self.shards
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.node_pos.get(&id).map(|&i| &self.nodes[i])
    }

    /// One shard.
    pub fn shard(&self, id: ShardId) -> Option<&ShardView> {
        self.shard_pos.get(&id).map(|&i| &self.shards[i])
    }

    /// Position of a node in [`ClusterView::nodes`].
    pub fn node_index(&self, id: NodeId) -> Option<usize> {
        self.node_pos.get(&id).copied()
    }

    /// Shards with a replica on `node` in the current metadata, in shard order.
    pub fn shards_on(&self, node: NodeId) -> impl Iterator<Item = &ShardView> + '_ {
        self.node_index(node)
            .map(|i| self.on_node[i].as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&s| &self.shards[s])
    }

    /// Replicas on `node` (projected).
    pub fn replica_count(&self, node: NodeId) -> u32 {
        self.node_index(node).map_or(0, |i| self.replicas[i])
    }

    /// Leaders on `node` (projected).
    pub fn leader_count(&self, node: NodeId) -> u32 {
        self.node_index(node).map_or(0, |i| self.leaders[i])
    }

    /// Read + write units of the shards `node` leads (projected). The leader serves the
    /// writes and most reads, so this is the load that moves with leadership.
    pub fn leader_load(&self, node: NodeId) -> f64 {
        self.node_index(node).map_or(0.0, |i| self.load[i])
    }

    /// Running non-failover operators doing work on `node`.
    pub fn running_ops_on(&self, node: NodeId) -> u32 {
        self.node_index(node).map_or(0, |i| self.ops[i])
    }

    /// The priority of the operator running on `shard`, if any.
    pub fn busy(&self, shard: ShardId) -> Option<Priority> {
        self.busy.get(&shard).map(|&(_, p)| p)
    }

    /// Whether an operator of priority `p` may be proposed for `shard`: it is idle, or the
    /// running operator has a lower priority and will be preempted.
    pub fn may_propose(&self, shard: ShardId, p: Priority) -> bool {
        self.busy(shard).is_none_or(|running| running < p)
    }

    /// Dense failure-domain index of `node` at the configured isolation level.
    pub fn domain_of(&self, node: NodeId) -> Option<usize> {
        self.node_index(node).map(|i| self.domain_of[i])
    }

    /// The key of a domain index (for messages).
    pub fn domain_key(&self, domain: usize) -> &str {
        self.domains.key(domain).unwrap_or("?")
    }

    /// Domains that hold at least one node that is not down: how many a shard can span.
    pub fn available_domains(&self) -> usize {
        self.available_domains
    }

    /// Domain violations of one replica set (see `domain::violations`). Replicas on nodes
    /// unknown to the view are ignored.
    pub fn shard_violations(&self, shard: &Shard) -> u32 {
        domain::violations_of(
            shard.replicas.iter().filter_map(|r| self.domain_of(r.node)),
            self.available_domains,
        )
    }

    /// Domain violations over all shards (current metadata).
    pub fn domain_violations(&self) -> u32 {
        self.shards
            .iter()
            .map(|s| self.shard_violations(&s.shard))
            .sum()
    }

    /// Max - min replicas per node over balance members, and leaders per node over leader
    /// balance members (projected).
    pub fn spread(&self) -> Spread {
        let range = |counts: &[u32], member: fn(&NodeView) -> bool| {
            let members = || {
                self.nodes
                    .iter()
                    .enumerate()
                    .filter(move |(_, n)| member(n))
                    .map(|(i, _)| counts[i])
            };
            let min = members().min().unwrap_or(0);
            let max = members().max().unwrap_or(0);
            max - min
        };
        Spread {
            shards_max_minus_min: range(&self.replicas, NodeView::is_balance_member),
            leaders_max_minus_min: range(&self.leaders, NodeView::is_leader_balance_member),
        }
    }

    /// A digest of everything a balancer's search depends on (node states and flags,
    /// shard versions, running operators). Equal digests mean a search that found nothing
    /// would find nothing again, so balancers skip it (a zone-constrained cluster can stay
    /// uneven forever with no legal move, and the search is the expensive part of a tick).
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for n in &self.nodes {
            (n.id, n.state, n.cordoned, n.draining, n.evict_leaders).hash(&mut h);
        }
        for s in &self.shards {
            (s.shard.id, s.shard.version, s.in_sync.len()).hash(&mut h);
        }
        self.ops.hash(&mut h);
        // A new family (expansion, removal) opens new moves: the server and the simulator
        // replace the `Arc` on every change, so its address and size identify it.
        self.copysets
            .as_ref()
            .map(|f| (Arc::as_ptr(f) as usize, f.len()))
            .hash(&mut h);
        let mut busy: Vec<_> = self.busy.keys().collect();
        busy.sort();
        busy.hash(&mut h);
        h.finish()
    }

    /// Working counts a scheduler updates as it plans within one tick.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            replicas: self.replicas.clone(),
            leaders: self.leaders.clone(),
            load: self.load.clone(),
            ops: self.ops.clone(),
            limit: self.node_op_limit,
        }
    }

    /// Position-indexed domain of every node.
    pub(crate) fn domains_by_index(&self) -> &[usize] {
        &self.domain_of
    }
}

/// Per-node counts a scheduler updates while it plans, so two operators of one tick do not
/// both pick the same "least loaded" node. Indexed by node position in the view.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub replicas: Vec<u32>,
    pub leaders: Vec<u32>,
    pub load: Vec<f64>,
    pub ops: Vec<u32>,
    pub limit: Option<u32>,
}

impl Tally {
    /// Whether one more operator may work on node `i`.
    pub fn has_capacity(&self, i: usize) -> bool {
        self.limit.is_none_or(|l| self.ops[i] < l)
    }

    /// Records an operator working on nodes `is`.
    pub fn add_op(&mut self, is: &[usize]) {
        for &i in is {
            self.ops[i] += 1;
        }
    }
}

/// The highest committed log position reported for one shard, kept when the replica
/// that reported it goes away (a dead leader's last report is what failover must not lose).
///
/// Versions are compared, never assumed: a report from an older shard version than the
/// newest seen cannot raise the mark, so a leader that was forced out (its log abandoned,
/// [`CommittedMark::reset`]) and comes back does not make every follower look behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommittedMark {
    /// Newest shard version a report carried.
    pub version: ShardVersion,
    /// Highest committed position reported at `version` or carried over from before.
    pub committed: u64,
}

impl CommittedMark {
    /// Takes a report into account.
    pub fn observe(&mut self, report: &ShardReport) {
        if report.version < self.version {
            return;
        }
        self.version = report.version;
        self.committed = self.committed.max(report.log.committed);
    }

    /// Forgets everything above `committed` as of `version`: an admin promoted a follower
    /// that had applied only `committed`, so the rest of the old leader's log is abandoned.
    pub fn reset(&mut self, version: ShardVersion, committed: u64) {
        self.version = self.version.max(version);
        self.committed = committed;
    }
}

/// The failover candidates of `shard` and the positions of its replicas, from the latest
/// report of each replica (`report_of`). One function for the server and the simulator.
///
/// A follower is in sync when it reported Ready, as a follower, at the shard's current
/// version.
pub fn replica_progress<'a>(
    shard: &Shard,
    report_of: impl Fn(NodeId) -> Option<&'a ShardReport>,
) -> (Vec<NodeId>, Vec<(NodeId, LogPosition)>) {
    let mut in_sync = Vec::new();
    let mut positions = Vec::with_capacity(shard.replicas.len());
    for r in &shard.replicas {
        let Some(report) = report_of(r.node) else {
            continue;
        };
        positions.push((r.node, report.log));
        if r.role == ReplicaRole::Follower
            && report.version == shard.version
            && report.status == ShardStatus::Ready
            && report.role == ReplicaRole::Follower
        {
            in_sync.push(r.node);
        }
    }
    (in_sync, positions)
}

/// The latest report of every replica, for in-sync sets, log positions and shard load.
///
/// Versions are compared, never assumed: a report older than the one held for the same
/// replica is ignored.
#[derive(Debug, Clone, Default)]
pub struct ReportBook {
    by_shard: IdMap<ShardId, Vec<(NodeId, ShardReport)>>,
    committed: IdMap<ShardId, CommittedMark>,
}

impl ReportBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a report; returns false (and records nothing) if it is older than the one held.
    pub fn on_report(&mut self, node: NodeId, report: &ShardReport) -> bool {
        let entries = self.by_shard.entry(report.shard).or_default();
        let accepted = match entries.iter_mut().find(|(n, _)| *n == node) {
            Some((_, held)) if held.version > report.version => false,
            Some((_, held)) => {
                *held = *report;
                true
            }
            None => {
                entries.push((node, *report));
                true
            }
        };
        if accepted {
            self.committed
                .entry(report.shard)
                .or_default()
                .observe(report);
        }
        accepted
    }

    /// Forgets everything `node` reported: call when it goes Offline, so a returning node
    /// counts as in sync only after it reports again. The shards' committed marks stay.
    pub fn forget_node(&mut self, node: NodeId) {
        for entries in self.by_shard.values_mut() {
            entries.retain(|(n, _)| *n != node);
        }
    }

    /// The report `node` last sent for `shard`.
    pub fn get(&self, shard: ShardId, node: NodeId) -> Option<&ShardReport> {
        self.by_shard
            .get(&shard)?
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, r)| r)
    }

    /// Followers of `shard` that reported Ready as followers at its current version.
    pub fn in_sync(&self, shard: &Shard) -> Vec<NodeId> {
        replica_progress(shard, |n| self.get(shard.id, n)).0
    }

    /// The shard's last known committed position (see [`CommittedMark`]).
    pub fn committed(&self, shard: ShardId) -> u64 {
        self.committed.get(&shard).map_or(0, |m| m.committed)
    }

    /// Lowers the shard's committed mark after a forced promotion (see
    /// [`CommittedMark::reset`]).
    pub fn reset_committed(&mut self, shard: ShardId, version: ShardVersion, committed: u64) {
        self.committed
            .entry(shard)
            .or_default()
            .reset(version, committed);
    }

    /// The shard's load: what its leader reports as leader; right after a leadership change,
    /// until the new leader's first report as leader, the last figures a leader reported
    /// (otherwise the shard would look idle for a heartbeat and attract more load).
    pub fn leader_stats(&self, shard: &Shard) -> ShardStats {
        let leader = shard.leader();
        let Some(entries) = self.by_shard.get(&shard.id) else {
            return ShardStats::default();
        };
        entries
            .iter()
            .filter(|(_, r)| r.role == ReplicaRole::Leader)
            .max_by_key(|(n, r)| (Some(*n) == leader, r.version))
            .map(|(_, r)| r.stats)
            .unwrap_or_default()
    }

    /// The scheduler's view of `shard`, from what its replicas reported.
    pub fn shard_view(&self, shard: Shard, table_count: u32) -> ShardView {
        let (in_sync, positions) = replica_progress(&shard, |n| self.get(shard.id, n));
        ShardView {
            table_count,
            stats: self.leader_stats(&shard),
            in_sync,
            positions,
            committed: self.committed(shard.id),
            load_trend: None,
            shard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ClusterBuilder;
    use meridian_model::ShardVersion;

    #[test]
    fn stale_reports_are_ignored() {
        let mut book = ReportBook::new();
        let mut r = ShardReport {
            shard: ShardId(1),
            version: ShardVersion(5),
            role: ReplicaRole::Follower,
            status: ShardStatus::Ready,
            stats: ShardStats::default(),
            log: Default::default(),
            leased: false,
        };
        assert!(book.on_report(NodeId(1), &r));
        r.version = ShardVersion(4);
        assert!(!book.on_report(NodeId(1), &r));
        assert_eq!(
            book.get(ShardId(1), NodeId(1)).unwrap().version,
            ShardVersion(5)
        );
    }

    #[test]
    fn the_committed_mark_keeps_a_dead_leaders_last_report() {
        use meridian_model::{LogPosition, Replica};
        let shard = Shard {
            id: ShardId(1),
            version: ShardVersion(5),
            replicas: vec![
                Replica {
                    node: NodeId(1),
                    role: ReplicaRole::Leader,
                },
                Replica {
                    node: NodeId(2),
                    role: ReplicaRole::Follower,
                },
            ],
        };
        let report = |role, applied, committed, version| ShardReport {
            shard: ShardId(1),
            version: ShardVersion(version),
            role,
            status: ShardStatus::Ready,
            stats: ShardStats::default(),
            log: LogPosition { applied, committed },
            leased: false,
        };
        let mut book = ReportBook::new();
        book.on_report(NodeId(1), &report(ReplicaRole::Leader, 100, 100, 5));
        book.on_report(NodeId(2), &report(ReplicaRole::Follower, 90, 95, 5));
        book.forget_node(NodeId(1));
        let sv = book.shard_view(shard.clone(), 0);
        assert_eq!(sv.committed, 100);
        assert_eq!(sv.lag(NodeId(2)), 10);
        assert_eq!(sv.in_sync, vec![NodeId(2)]);
        assert!(sv.caught_up(NodeId(2), 10) && !sv.caught_up(NodeId(2), 9));
        // After a forced promotion the old log is abandoned: a report from the old version
        // (the old leader back) cannot raise the mark again.
        book.reset_committed(ShardId(1), ShardVersion(6), 90);
        book.on_report(NodeId(1), &report(ReplicaRole::Leader, 100, 100, 5));
        assert_eq!(book.committed(ShardId(1)), 90);
        book.on_report(NodeId(2), &report(ReplicaRole::Leader, 120, 120, 6));
        assert_eq!(book.committed(ShardId(1)), 120);
    }

    #[test]
    fn counts_are_indexed_per_node() {
        let view = ClusterBuilder::new().zones(3).nodes(6).shards(12).build();
        let total: u32 = view.nodes().iter().map(|n| view.replica_count(n.id)).sum();
        assert_eq!(total, 36);
        let leaders: u32 = view.nodes().iter().map(|n| view.leader_count(n.id)).sum();
        assert_eq!(leaders, 12);
    }
}
