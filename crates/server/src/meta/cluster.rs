//! One managed cluster: its nodes, shards and catalog in memory, mirrored to the store.
//!
//! The store is the source of truth; memory is a cache loaded at start and updated only
//! after a write to the store succeeded, so anything acknowledged is durable. Reads
//! (routes, listings) are served from memory.

use super::reconcile::{due_orders, Resend, StateContext};
use super::session::{InstructionOutcome, Sessions};
use crate::error::{Result, ServerError};
use meridian_model::{
    ClusterConfig, ClusterId, Node, NodeId, NodeState, NodeStats, Partition, PartitionRule,
    ReplicaRole, Shard, ShardId, ShardReport, ShardStats, ShardStatus, Table, TableId, TableName,
};
use meridian_proto as pb;
use meridian_scheduler::LeaseBook;
use meridian_scheduler::{InstructionKind, NodeInstruction, NodeView, ShardView};
use meridian_store::{keys, KvBackend, SequenceAllocator, Txn, WriteOp};
use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Default catalog and schema, created with every cluster.
pub const DEFAULT_CATALOG: &str = "default";
/// See [`DEFAULT_CATALOG`].
pub const DEFAULT_SCHEMA: &str = "public";

/// What Meridian knows of a node: the persisted record plus live state (memory only).
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// Persisted record.
    pub node: Node,
    /// Liveness state, maintained by the scheduling loop.
    pub state: NodeState,
    /// Last reported load.
    pub stats: NodeStats,
    /// Monotonic ms of the last heartbeat, if any since Meridian started.
    pub last_heartbeat_ms: Option<u64>,
    /// Last report per shard held by the node.
    pub reports: HashMap<ShardId, ShardReport>,
    /// Fixes sent to the node per shard (close, demote, open, promote), to send again
    /// with backoff while the disagreement lasts.
    pub reconciling: HashMap<ShardId, Resend>,
}

/// A shard with what hangs off it.
#[derive(Debug, Clone)]
pub struct ShardEntry {
    /// Persisted placement.
    pub shard: Shard,
    /// Table partitions living in it.
    pub partitions: BTreeSet<(TableId, u32)>,
    /// Partitions promised to creates in flight (counted for placement).
    pub reserved: u32,
}

#[derive(Default)]
pub(super) struct ClusterState {
    pub(super) nodes: BTreeMap<NodeId, NodeEntry>,
    pub(super) node_by_name: HashMap<String, NodeId>,
    pub(super) shards: BTreeMap<ShardId, ShardEntry>,
    pub(super) tables: HashMap<TableId, Table>,
    pub(super) table_by_name: HashMap<TableName, TableId>,
    pub(super) schemas: BTreeSet<(String, String)>,
    /// Names of tables whose create is in flight.
    pub(super) creating: HashSet<TableName>,
    /// Shards being created by a split: opened on nodes, not committed yet. Reports of
    /// them are not "unknown shards" to close.
    pub(super) splitting: HashSet<ShardId>,
    /// Shards with a running operator (set by the scheduling loop): the reconcile path
    /// leaves their repairs to the operator.
    pub(super) busy: HashSet<ShardId>,
}

/// One managed cluster.
pub struct Cluster {
    /// Its id.
    pub id: ClusterId,
    config: RwLock<ClusterConfig>,
    pub(super) state: RwLock<ClusterState>,
    store: Arc<dyn KvBackend>,
    node_ids: SequenceAllocator,
    table_ids: SequenceAllocator,
    routes: broadcast::Sender<pb::RouteEvent>,
    /// Streams of connected nodes and instructions in flight.
    pub sessions: Sessions,
    init_lock: tokio::sync::Mutex<()>,
    instruction_timeout: Duration,
    /// Who holds each shard's write lease, and until when.
    pub(super) leases: parking_lot::Mutex<LeaseBook>,
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ServerError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v)
        .map_err(|e| ServerError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))
}

/// Milliseconds since the Unix epoch, for creation stamps.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Serializable view of a node for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// Id.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Endpoint.
    pub endpoint: String,
    /// Labels.
    pub labels: meridian_model::NodeLabels,
    /// Liveness state.
    pub state: NodeState,
    /// Whether a heartbeat stream is open.
    pub connected: bool,
    /// Cordoned: no new placements.
    pub cordoned: bool,
    /// Draining: replicas being moved off.
    pub draining: bool,
    /// Leaders being moved off (before a planned restart); it gets none.
    pub evict_leaders: bool,
    /// Binary version.
    pub version: String,
    /// Replicas held (by metadata).
    pub shards: usize,
    /// Leaders held (by metadata).
    pub leaders: usize,
    /// Last reported load.
    pub stats: NodeStats,
}

/// Serializable view of a shard for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    /// Id.
    pub id: ShardId,
    /// Version (epoch).
    pub version: u64,
    /// Leader node, if any.
    pub leader: Option<NodeId>,
    /// Follower nodes.
    pub followers: Vec<NodeId>,
    /// Table partitions in it.
    pub partitions: usize,
    /// Leader's last reported load.
    pub stats: ShardStats,
}

impl Cluster {
    /// Loads a cluster's state from the store.
    pub async fn load(
        store: Arc<dyn KvBackend>,
        id: ClusterId,
        config: ClusterConfig,
        instruction_timeout: Duration,
        leases: LeaseBook,
    ) -> Result<Arc<Self>> {
        let mut state = ClusterState::default();
        for kv in store.range(&keys::nodes_prefix(id), 0).await? {
            let node: Node = decode(&kv.key, &kv.value)?;
            state.node_by_name.insert(node.name.clone(), node.id);
            state.nodes.insert(
                node.id,
                NodeEntry {
                    // Not heard from since this server started: presumed alive during the
                    // liveness grace period, like the tracker presumes it (`track`); if it
                    // does not reconnect in time, the tracker declares it Offline.
                    state: if node.removed {
                        NodeState::Removed
                    } else {
                        NodeState::Online
                    },
                    node,
                    stats: NodeStats::default(),
                    last_heartbeat_ms: None,
                    reports: HashMap::new(),
                    reconciling: HashMap::new(),
                },
            );
        }
        for kv in store.range(&keys::shards_prefix(id), 0).await? {
            let shard: Shard = decode(&kv.key, &kv.value)?;
            state.shards.insert(
                shard.id,
                ShardEntry {
                    shard,
                    partitions: BTreeSet::new(),
                    reserved: 0,
                },
            );
        }
        for kv in store.range(&all_schemas_prefix(id), 0).await? {
            let (catalog, schema): (String, String) = decode(&kv.key, &kv.value)?;
            state.schemas.insert((catalog, schema));
        }
        for kv in store.range(&keys::tables_prefix(id), 0).await? {
            let table: Table = decode(&kv.key, &kv.value)?;
            for p in &table.partitions {
                if let Some(s) = state.shards.get_mut(&p.shard) {
                    s.partitions.insert((table.id, p.index));
                }
            }
            state.table_by_name.insert(table.name.clone(), table.id);
            state.tables.insert(table.id, table);
        }
        let (routes, _) = broadcast::channel(4096);
        Ok(Arc::new(Self {
            id,
            config: RwLock::new(config),
            state: RwLock::new(state),
            node_ids: SequenceAllocator::new(store.clone(), keys::node_id_sequence(id), 16),
            table_ids: SequenceAllocator::new(store.clone(), keys::table_id_sequence(id), 1000),
            store,
            routes,
            sessions: Sessions::default(),
            init_lock: tokio::sync::Mutex::new(()),
            instruction_timeout,
            leases: parking_lot::Mutex::new(leases),
        }))
    }

    /// Creates the default catalog and schema if missing.
    pub async fn ensure_default_schema(&self) -> Result<()> {
        self.create_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA, true)
            .await
            .map(|_| ())
    }

    /// The cluster's configuration.
    pub fn config(&self) -> ClusterConfig {
        self.config.read().clone()
    }

    /// The store behind this cluster.
    pub fn store(&self) -> &Arc<dyn KvBackend> {
        &self.store
    }

    /// How long nodes get to answer instructions.
    pub fn instruction_timeout(&self) -> Duration {
        self.instruction_timeout
    }

    /// Subscribes to route changes.
    pub fn subscribe_routes(&self) -> broadcast::Receiver<pb::RouteEvent> {
        self.routes.subscribe()
    }

    /// Runs `f` under the read lock of the state (for sibling modules).
    pub(super) fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> Result<T>) -> Result<T> {
        f(&self.state.read())
    }

    /// Runs `f` under the write lock of the state (for sibling modules).
    pub(super) fn with_state_mut(&self, f: impl FnOnce(&mut ClusterState)) {
        f(&mut self.state.write())
    }

    /// Publishes a shard's new route.
    pub(super) fn publish_shard(&self, shard: &Shard) {
        self.publish(pb::route_event::Event::ShardChanged(
            self.shard_route_of(shard),
        ));
    }

    /// Publishes a table's new route.
    pub(super) fn publish_table(&self, table: &Table) {
        if let Some(route) = self.table_route(table) {
            self.publish(pb::route_event::Event::TableChanged(route));
        }
    }

    fn publish(&self, event: pb::route_event::Event) {
        // No subscriber is fine: routes are also served on request.
        let _ = self.routes.send(pb::RouteEvent { event: Some(event) });
    }

    // ----------------------------------------------------------------------------------
    // Nodes
    // ----------------------------------------------------------------------------------

    /// Registers a node from its first heartbeat. Refuses a name alive at another endpoint
    /// and a config fingerprint that differs from the cluster's.
    pub async fn register(&self, req: &pb::RegisterNode, now_ms: u64) -> Result<NodeId> {
        meridian_model::validate_name("node", &req.name)?;
        if req.endpoint.is_empty() || req.endpoint.len() > 256 {
            return Err(ServerError::InvalidArgument(
                "node endpoint must be 1..=256 bytes (host:port)".into(),
            ));
        }
        let labels = req.labels.clone().unwrap_or_default();
        for (what, value) in [
            ("zone label", &labels.zone),
            ("rack label", &labels.rack),
            ("host label", &labels.host),
            ("version", &req.version),
            ("config_fingerprint", &req.config_fingerprint),
        ] {
            if value.len() > 256 {
                return Err(ServerError::InvalidArgument(format!(
                    "{what} longer than 256 bytes"
                )));
            }
        }
        let adopted_fingerprint = {
            let config = self.config.read();
            if config.config_fingerprint.is_empty() {
                true
            } else if config.config_fingerprint != req.config_fingerprint {
                return Err(ServerError::FailedPrecondition(format!(
                    "config fingerprint {:?} differs from cluster {:?}'s {:?}: \
                     the node's cluster-wide settings do not match",
                    req.config_fingerprint, config.name, config.config_fingerprint
                )));
            } else {
                false
            }
        };
        if adopted_fingerprint && !req.config_fingerprint.is_empty() {
            let mut config = self.config();
            config.config_fingerprint = req.config_fingerprint.clone();
            self.store
                .batch(vec![WriteOp::put(
                    keys::cluster_config(self.id),
                    encode(&config)?,
                )])
                .await?;
            *self.config.write() = config;
        }

        let existing = {
            let state = self.state.read();
            state
                .node_by_name
                .get(&req.name)
                .and_then(|id| state.nodes.get(id))
                .cloned()
        };
        let labels: meridian_model::NodeLabels = labels.into();
        let capacity: meridian_model::NodeCapacity = req.capacity.unwrap_or_default().into();
        let node = match existing {
            Some(entry) => {
                if entry.node.removed {
                    return Err(ServerError::FailedPrecondition(format!(
                        "node {:?} ({}) was removed from the cluster; register under a new name",
                        req.name, entry.node.id
                    )));
                }
                let alive = self.sessions.session_of(entry.node.id).is_some()
                    && matches!(entry.state, NodeState::Online | NodeState::Suspect);
                if alive && entry.node.endpoint != req.endpoint {
                    return Err(ServerError::AlreadyExists(format!(
                        "node name {:?} is already alive at {} (this one says {})",
                        req.name, entry.node.endpoint, req.endpoint
                    )));
                }
                let mut node = entry.node.clone();
                node.endpoint = req.endpoint.clone();
                node.labels = labels;
                node.capacity = capacity;
                node.version = req.version.clone();
                if node != entry.node {
                    self.persist_node(&node).await?;
                }
                node
            }
            None => {
                let id = NodeId(self.node_ids.next().await?);
                let node = Node {
                    cluster: self.id,
                    id,
                    name: req.name.clone(),
                    endpoint: req.endpoint.clone(),
                    labels,
                    capacity,
                    version: req.version.clone(),
                    cordoned: false,
                    draining: false,
                    removed: false,
                    evict_leaders: false,
                };
                let txn = Txn::new()
                    .when_absent(keys::node_name(self.id, &node.name))
                    .then(WriteOp::put(
                        keys::node_name(self.id, &node.name),
                        id.0.to_string().into_bytes(),
                    ))
                    .then(WriteOp::put(keys::node(self.id, id), encode(&node)?));
                if !self.store.txn(txn).await?.succeeded {
                    return Err(ServerError::Aborted(format!(
                        "node name {:?} was registered concurrently; retry",
                        req.name
                    )));
                }
                node
            }
        };
        let id = node.id;
        let mut state = self.state.write();
        state.node_by_name.insert(node.name.clone(), id);
        let entry = state.nodes.entry(id).or_insert_with(|| NodeEntry {
            node: node.clone(),
            state: NodeState::Online,
            stats: NodeStats::default(),
            last_heartbeat_ms: None,
            reports: HashMap::new(),
            reconciling: HashMap::new(),
        });
        entry.node = node;
        entry.state = NodeState::Online;
        entry.last_heartbeat_ms = Some(now_ms);
        entry.reports.clear();
        entry.reconciling.clear();
        Ok(id)
    }

    async fn persist_node(&self, node: &Node) -> Result<()> {
        self.store
            .batch(vec![WriteOp::put(
                keys::node(self.id, node.id),
                encode(node)?,
            )])
            .await?;
        Ok(())
    }

    /// Records a heartbeat: load and shard reports. Returns what the node must be told
    /// because its report disagrees with the metadata (the one reconcile path,
    /// `meridian_scheduler::reconcile_node`): close a shard it lost while away (invariant
    /// 5), step down from a leadership it lost, reopen or promote a replica in the wrong
    /// role or at an old version unless an operator owns the shard. Each fix is sent again
    /// with backoff while the report still disagrees (see `meta::reconcile`), not on
    /// every heartbeat.
    pub fn on_report(
        &self,
        node: NodeId,
        stats: Option<NodeStats>,
        reports: &[ShardReport],
        now_ms: u64,
    ) -> Vec<NodeInstruction> {
        let mut state = self.state.write();
        let state = &mut *state;
        let Some(entry) = state.nodes.get_mut(&node) else {
            return Vec::new();
        };
        entry.last_heartbeat_ms = Some(now_ms);
        if let Some(stats) = stats {
            entry.stats = stats;
        }
        let mut seen = HashSet::with_capacity(reports.len());
        for report in reports {
            seen.insert(report.shard);
            if let Some(e) = state.shards.get(&report.shard) {
                if report.version < e.shard.version {
                    metrics::counter!("meridian_stale_shard_reports_total").increment(1);
                }
            }
            if let Some(prev) = entry.reports.get(&report.shard) {
                if report.version < prev.version {
                    // Older than what the node itself told us before: ignore it.
                    continue;
                }
            }
            entry.reports.insert(report.shard, *report);
        }
        if entry.reports.len() != seen.len() {
            entry.reports.retain(|s, _| seen.contains(s));
        }
        // The one reconcile path, for the replicas this report names (those it does not
        // name are the sweep's: see `reconcile_sweep`).
        let orders = meridian_scheduler::reconcile_node(
            node,
            reports,
            std::iter::empty(),
            &StateContext {
                state,
                leases: &self.leases.lock(),
                now_ms,
            },
        );
        let ordered: HashSet<ShardId> = orders.iter().map(|o| o.shard).collect();
        let Some(entry) = state.nodes.get_mut(&node) else {
            return Vec::new();
        };
        entry
            .reconciling
            .retain(|s, _| !seen.contains(s) || ordered.contains(s));
        due_orders(&mut entry.reconciling, orders, now_ms, false)
    }

    /// Carries out one instruction for a node and waits for its answer. Opening carries the
    /// shard's tables; promotion is an open as leader, so it also works on a node that
    /// restarted and lost its follower copy.
    pub async fn execute(&self, i: &NodeInstruction) -> InstructionOutcome {
        let kind = match i.kind {
            InstructionKind::OpenShard { role } => {
                return self.open_shard_on(i.shard, i.node, role).await
            }
            InstructionKind::Promote => {
                return self
                    .open_shard_on(i.shard, i.node, ReplicaRole::Leader)
                    .await
            }
            InstructionKind::CloseShard => pb::instruction::Kind::CloseShard(pb::CloseShard {}),
            InstructionKind::Demote => pb::instruction::Kind::ChangeRole(pb::ChangeRole {
                role: pb::Role::Follower as i32,
            }),
        };
        let instruction = pb::Instruction {
            operator_id: i.op.map(|o| o.0).unwrap_or(0),
            shard_id: i.shard.0,
            shard_version: i.version.0,
            kind: Some(kind),
            ..Default::default()
        };
        let session = self.sessions.session_of(i.node);
        let outcome = self
            .sessions
            .instruct(i.node, instruction, self.instruction_timeout)
            .await;
        if outcome == InstructionOutcome::Done {
            // The node confirmed it no longer leads the shard: its lease is over.
            if let Some(session) = session {
                self.leases.lock().release(i.shard, i.node, session);
            }
        }
        outcome
    }

    /// Sends one instruction about `shard` at `version` to `node` and waits for its answer.
    pub(super) async fn send_instruction(
        &self,
        node: NodeId,
        shard: ShardId,
        version: meridian_model::ShardVersion,
        kind: pb::instruction::Kind,
    ) -> InstructionOutcome {
        let instruction = pb::Instruction {
            shard_id: shard.0,
            shard_version: version.0,
            kind: Some(kind),
            ..Default::default()
        };
        self.sessions
            .instruct(node, instruction, self.instruction_timeout)
            .await
    }

    /// Marks the liveness state of nodes; returns the nodes whose state changed.
    pub fn set_node_states(&self, changes: &[(NodeId, NodeState)]) {
        let mut state = self.state.write();
        for (id, s) in changes {
            if let Some(e) = state.nodes.get_mut(id) {
                if e.state != NodeState::Removed {
                    e.state = *s;
                }
            }
        }
    }

    /// Updates a node's administrative flags (cordon, drain, remove) durably.
    pub async fn update_node_flags(
        &self,
        id: NodeId,
        f: impl FnOnce(&mut Node) -> Result<()>,
    ) -> Result<Node> {
        let mut node = self
            .state
            .read()
            .nodes
            .get(&id)
            .map(|e| e.node.clone())
            .ok_or_else(|| {
                ServerError::NotFound(format!("{id} not found in cluster {}", self.id))
            })?;
        f(&mut node)?;
        self.persist_node(&node).await?;
        let mut state = self.state.write();
        if let Some(e) = state.nodes.get_mut(&id) {
            if node.removed {
                e.state = NodeState::Removed;
            }
            e.node = node.clone();
        }
        Ok(node)
    }

    /// Looks a node up by id or name.
    pub fn find_node(&self, key: &str) -> Option<NodeEntry> {
        let state = self.state.read();
        let id = key
            .strip_prefix("node-")
            .unwrap_or(key)
            .parse::<u64>()
            .ok()
            .map(NodeId)
            .filter(|id| state.nodes.contains_key(id))
            .or_else(|| state.node_by_name.get(key).copied())?;
        state.nodes.get(&id).cloned()
    }

    /// Every node, as stored plus live state.
    pub fn node_entries(&self) -> Vec<NodeEntry> {
        self.state.read().nodes.values().cloned().collect()
    }

    /// Snapshot of shards with their partitions.
    pub fn shard_entries(&self) -> Vec<ShardEntry> {
        self.state.read().shards.values().cloned().collect()
    }

    /// One shard.
    pub fn shard(&self, id: ShardId) -> Option<Shard> {
        self.state.read().shards.get(&id).map(|s| s.shard.clone())
    }

    /// Admin view of nodes.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        let state = self.state.read();
        let mut counts: HashMap<NodeId, (usize, usize)> = HashMap::new();
        for s in state.shards.values() {
            for r in &s.shard.replicas {
                let c = counts.entry(r.node).or_default();
                c.0 += 1;
                if r.role == ReplicaRole::Leader {
                    c.1 += 1;
                }
            }
        }
        state
            .nodes
            .values()
            .map(|e| {
                let (shards, leaders) = counts.get(&e.node.id).copied().unwrap_or_default();
                NodeInfo {
                    id: e.node.id,
                    name: e.node.name.clone(),
                    endpoint: e.node.endpoint.clone(),
                    labels: e.node.labels.clone(),
                    state: e.state,
                    connected: self.sessions.session_of(e.node.id).is_some(),
                    cordoned: e.node.cordoned,
                    draining: e.node.draining,
                    evict_leaders: e.node.evict_leaders,
                    version: e.node.version.clone(),
                    shards,
                    leaders,
                    stats: e.stats,
                }
            })
            .collect()
    }

    /// Admin view of shards.
    pub fn shard_infos(&self) -> Vec<ShardInfo> {
        let state = self.state.read();
        state
            .shards
            .values()
            .map(|s| {
                let leader = s.shard.leader();
                let stats = leader
                    .and_then(|l| state.nodes.get(&l))
                    .and_then(|n| n.reports.get(&s.shard.id))
                    .map(|r| r.stats)
                    .unwrap_or_default();
                ShardInfo {
                    id: s.shard.id,
                    version: s.shard.version.0,
                    leader,
                    followers: s.shard.followers().collect(),
                    partitions: s.partitions.len(),
                    stats,
                }
            })
            .collect()
    }

    // ----------------------------------------------------------------------------------
    // Shards
    // ----------------------------------------------------------------------------------

    /// Whether the cluster's shards exist yet.
    pub fn has_shards(&self) -> bool {
        !self.state.read().shards.is_empty()
    }

    /// Creates the cluster's shards once it first has `min_nodes` online nodes: places them
    /// with the scheduler's placement, persists them, then tells every replica to open.
    pub async fn maybe_create_shards(self: &Arc<Self>) -> Result<bool> {
        let _guard = self.init_lock.lock().await;
        let config = self.config();
        let nodes = {
            let state = self.state.read();
            if !state.shards.is_empty() {
                return Ok(false);
            }
            let online = state
                .nodes
                .values()
                .filter(|e| e.state == NodeState::Online && !e.node.removed)
                .count();
            if online < config.min_nodes as usize {
                return Ok(false);
            }
            state
                .nodes
                .values()
                .map(|e| NodeView::from_node(&e.node, e.state, 0, e.stats))
                .collect::<Vec<_>>()
        };
        let shard_ids: Vec<ShardId> = (1..=config.shard_count).map(ShardId).collect();
        let placement =
            meridian_scheduler::place_shards(&nodes, &shard_ids, &config, u64::from(self.id.0))
                .map_err(|e| {
                    ServerError::FailedPrecondition(format!("cannot place shards: {e}"))
                })?;
        for w in &placement.warnings {
            tracing::warn!(cluster = %self.id, "{}", w.message);
            metrics::counter!("meridian_domain_violations_total").increment(1);
        }
        let mut ops = Vec::with_capacity(placement.shards.len());
        for shard in &placement.shards {
            ops.push(WriteOp::put(keys::shard(self.id, shard.id), encode(shard)?));
        }
        self.store.batch(ops).await?;
        {
            let mut state = self.state.write();
            for shard in &placement.shards {
                state.shards.insert(
                    shard.id,
                    ShardEntry {
                        shard: shard.clone(),
                        partitions: BTreeSet::new(),
                        reserved: 0,
                    },
                );
            }
        }
        tracing::info!(cluster = %self.id, shards = placement.shards.len(), "created shards");
        for shard in &placement.shards {
            self.publish(pb::route_event::Event::ShardChanged(
                self.shard_route_of(shard),
            ));
            for replica in &shard.replicas {
                let this = self.clone();
                let (shard_id, node, role) = (shard.id, replica.node, replica.role);
                tokio::spawn(async move { this.open_shard_on(shard_id, node, role).await });
            }
        }
        Ok(true)
    }

    /// Tells `node` to open `shard` in `role`, with the tables the shard holds.
    pub async fn open_shard_on(
        &self,
        shard: ShardId,
        node: NodeId,
        role: ReplicaRole,
    ) -> InstructionOutcome {
        let Some((version, tables)) = self.shard_tables(shard) else {
            return InstructionOutcome::Failed(format!("{shard} does not exist"));
        };
        let open = pb::instruction::Kind::OpenShard(pb::OpenShard {
            role: pb::Role::from(role) as i32,
            tables,
        });
        self.send_instruction(node, shard, version, open).await
    }

    fn shard_tables(
        &self,
        shard: ShardId,
    ) -> Option<(meridian_model::ShardVersion, Vec<pb::TableOnShard>)> {
        let state = self.state.read();
        let entry = state.shards.get(&shard)?;
        let tables = entry
            .partitions
            .iter()
            .filter_map(|(tid, p)| state.tables.get(tid).map(|t| table_on_shard(t, *p)))
            .collect();
        Some((entry.shard.version, tables))
    }

    /// Replaces a shard's placement if its version is still `expected` (compare-and-swap,
    /// durable first), then publishes the new route. Returns false if the version moved.
    pub async fn swap_shard(
        &self,
        expected: meridian_model::ShardVersion,
        next: Shard,
    ) -> Result<bool> {
        next.check().map_err(ServerError::InvalidArgument)?;
        let current = {
            let state = self.state.read();
            state.shards.get(&next.id).map(|s| s.shard.clone())
        };
        let Some(current) = current else {
            return Err(ServerError::NotFound(format!("{} not found", next.id)));
        };
        if current.version != expected || next.version <= current.version {
            return Ok(false);
        }
        let key = keys::shard(self.id, next.id);
        let txn = Txn::new()
            .when_equals(key.clone(), encode(&current)?)
            .then(WriteOp::put(key, encode(&next)?));
        if !self.store.txn(txn).await?.succeeded {
            return Ok(false);
        }
        {
            let mut state = self.state.write();
            match state.shards.get_mut(&next.id) {
                Some(e) if e.shard.version == expected => e.shard = next.clone(),
                _ => return Ok(false),
            }
        }
        self.publish(pb::route_event::Event::ShardChanged(
            self.shard_route_of(&next),
        ));
        Ok(true)
    }

    // ----------------------------------------------------------------------------------
    // Catalog and DDL
    // ----------------------------------------------------------------------------------

    /// Creates a schema (and its catalog implicitly). Returns whether it was created.
    pub async fn create_schema(
        &self,
        catalog: &str,
        schema: &str,
        if_not_exists: bool,
    ) -> Result<bool> {
        meridian_model::validate_name("catalog", catalog)?;
        meridian_model::validate_name("schema", schema)?;
        let pair = (catalog.to_string(), schema.to_string());
        if self.state.read().schemas.contains(&pair) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(ServerError::AlreadyExists(format!(
                    "schema {catalog}.{schema} already exists"
                )))
            };
        }
        let key = keys::schema(self.id, catalog, schema);
        let txn = Txn::new()
            .when_absent(key.clone())
            .then(WriteOp::put(key, encode(&pair)?));
        let created = self.store.txn(txn).await?.succeeded;
        self.state.write().schemas.insert(pair);
        if !created && !if_not_exists {
            return Err(ServerError::AlreadyExists(format!(
                "schema {catalog}.{schema} already exists"
            )));
        }
        Ok(created)
    }

    /// Schemas of a catalog.
    pub fn list_schemas(&self, catalog: &str) -> Vec<String> {
        self.state
            .read()
            .schemas
            .iter()
            .filter(|(c, _)| c == catalog)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn check_schema(&self, name: &TableName) -> Result<()> {
        if self
            .state
            .read()
            .schemas
            .contains(&(name.catalog.clone(), name.schema.clone()))
        {
            Ok(())
        } else {
            Err(ServerError::NotFound(format!(
                "schema {}.{} not found",
                name.catalog, name.schema
            )))
        }
    }

    /// Creates a table: reserves its name, allocates its id, picks the least loaded shard
    /// for each partition, has each shard's leader create it, persists the metadata, and
    /// only then answers. Returns the table and whether it was created (false when
    /// `if_not_exists` found it).
    pub async fn create_table(
        self: &Arc<Self>,
        name: TableName,
        rule: PartitionRule,
        if_not_exists: bool,
    ) -> Result<(Table, bool)> {
        rule.validate()?;
        self.check_schema(&name)?;
        let count = rule.partition_count();
        // Reserve the name and the shards under one lock, so concurrent creates spread.
        let shards = {
            let mut state = self.state.write();
            if let Some(id) = state.table_by_name.get(&name) {
                let table = state.tables.get(id).cloned();
                return match (table, if_not_exists) {
                    (Some(t), true) => Ok((t, false)),
                    _ => Err(ServerError::AlreadyExists(format!(
                        "table {name} already exists"
                    ))),
                };
            }
            if state.shards.is_empty() {
                let min = self.config.read().min_nodes;
                return Err(ServerError::FailedPrecondition(format!(
                    "cluster {} has no shards yet: it needs {min} online nodes first",
                    self.id
                )));
            }
            if !state.creating.insert(name.clone()) {
                return Err(ServerError::Aborted(format!(
                    "table {name} is being created concurrently"
                )));
            }
            let picked = pick_shards(&state, count as usize);
            match picked {
                Some(p) => {
                    for s in &p {
                        if let Some(e) = state.shards.get_mut(s) {
                            e.reserved += 1;
                        }
                    }
                    p
                }
                None => {
                    state.creating.remove(&name);
                    return Err(ServerError::Unavailable(format!(
                        "no shard of cluster {} has an online leader",
                        self.id
                    )));
                }
            }
        };
        // The rest runs in its own task: if the client goes away mid-create, the create
        // still completes or fails cleanly, and the reservations above are always released.
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = this.create_table_reserved(&name, rule, &shards).await;
            this.finish_create(&name, &shards, result)
        });
        let (table, versions) = task
            .await
            .map_err(|e| ServerError::Unavailable(format!("create task failed: {e}")))??;
        // A leader change that raced with the create opened the new leader with the table
        // list from before this table was in memory: tell the new leader too (creates are
        // idempotent). Any later open includes the table.
        for (p, used) in table.partitions.iter().zip(versions) {
            if self.shard(p.shard).is_some_and(|s| s.version != used) {
                let this = self.clone();
                let kind = pb::instruction::Kind::CreateTable(pb::CreateTableOnShard {
                    table: Some(table_on_shard(&table, p.index)),
                });
                let shard = p.shard;
                tokio::spawn(async move {
                    if let Err(e) = this.instruct_leader(shard, kind).await {
                        tracing::warn!(%shard, "re-creating a table on a new leader: {e}");
                    }
                });
            }
        }
        self.publish_table(&table);
        metrics::counter!("meridian_tables_created_total").increment(1);
        Ok((table, true))
    }

    /// Releases a create's reservations and, if it succeeded, makes the table visible.
    fn finish_create(
        &self,
        name: &TableName,
        shards: &[ShardId],
        result: Result<(Table, Vec<meridian_model::ShardVersion>)>,
    ) -> Result<(Table, Vec<meridian_model::ShardVersion>)> {
        let mut state = self.state.write();
        state.creating.remove(name);
        for s in shards {
            if let Some(e) = state.shards.get_mut(s) {
                e.reserved = e.reserved.saturating_sub(1);
            }
        }
        if let Ok((table, _)) = &result {
            state.table_by_name.insert(table.name.clone(), table.id);
            for p in &table.partitions {
                if let Some(e) = state.shards.get_mut(&p.shard) {
                    e.partitions.insert((table.id, p.index));
                }
            }
            state.tables.insert(table.id, table.clone());
        }
        result
    }

    async fn create_table_reserved(
        self: &Arc<Self>,
        name: &TableName,
        rule: PartitionRule,
        shards: &[ShardId],
    ) -> Result<(Table, Vec<meridian_model::ShardVersion>)> {
        let id = TableId(self.table_ids.next().await?);
        let table = Table {
            id,
            name: name.clone(),
            rule,
            partitions: shards
                .iter()
                .enumerate()
                .map(|(i, s)| Partition {
                    index: i as u32,
                    shard: *s,
                })
                .collect(),
            created_at_ms: wall_ms(),
        };
        // The procedure record goes first: if this server dies from here until the commit,
        // the next start finds it and rolls the create back on the nodes (invariant 3).
        let procedure = keys::create_table_procedure(self.id, id);
        self.store
            .batch(vec![WriteOp::put(procedure.clone(), encode(&table)?)])
            .await?;
        // Every partition's shard leader must create it before we say ok.
        let creates = table.partitions.iter().map(|p| {
            let kind = pb::instruction::Kind::CreateTable(pb::CreateTableOnShard {
                table: Some(table_on_shard(&table, p.index)),
            });
            self.instruct_leader(p.shard, kind)
        });
        let outcomes = futures::future::join_all(creates).await;
        let mut versions = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Ok(v) => versions.push(v),
                Err(err) => {
                    self.roll_back_create(&table);
                    return Err(err);
                }
            }
        }
        let name_key = keys::table_name(self.id, name);
        let txn = Txn::new()
            .when_absent(name_key.clone())
            .then(WriteOp::put(name_key, id.0.to_string().into_bytes()))
            .then(WriteOp::put(keys::table(self.id, id), encode(&table)?))
            .then(WriteOp::delete(procedure));
        match self.store.txn(txn).await {
            Ok(r) if r.succeeded => Ok((table, versions)),
            Ok(_) => {
                self.roll_back_create(&table);
                Err(ServerError::AlreadyExists(format!(
                    "table {name} already exists"
                )))
            }
            Err(e) => {
                self.roll_back_create(&table);
                Err(e.into())
            }
        }
    }

    /// Sends an instruction to a shard's current leader and waits for its answer. If the
    /// leader refuses or is lost while the shard's placement changed under it (a transfer or
    /// failover raced with us: the node rightly refuses our older version), it is retried
    /// with the new leader. Returns the shard version the leader carried it out at.
    async fn instruct_leader(
        &self,
        shard: ShardId,
        kind: pb::instruction::Kind,
    ) -> Result<meridian_model::ShardVersion> {
        let current = || -> Result<(NodeId, meridian_model::ShardVersion)> {
            let state = self.state.read();
            let e = state
                .shards
                .get(&shard)
                .ok_or_else(|| ServerError::NotFound(format!("{shard} not found")))?;
            let leader = e.shard.leader().ok_or_else(|| {
                ServerError::Unavailable(format!("{shard} has no leader (failover in progress)"))
            })?;
            Ok((leader, e.shard.version))
        };
        let mut attempt = 0;
        loop {
            let (leader, version) = current()?;
            let outcome = self
                .send_instruction(leader, shard, version, kind.clone())
                .await;
            let (error, refused) = match outcome {
                InstructionOutcome::Done => return Ok(version),
                InstructionOutcome::Failed(why) => (
                    ServerError::Unavailable(format!(
                        "{leader}, leader of {shard}, refused: {why}"
                    )),
                    true,
                ),
                InstructionOutcome::Lost(why) => (ServerError::Unavailable(why), false),
            };
            attempt += 1;
            let moved = current()
                .map(|now| now != (leader, version))
                .unwrap_or(false);
            // A refusal without a move is usually a leader that has not yet been told it
            // leads (a transfer's promotion is in flight): give it a moment.
            if !(moved || refused) || attempt >= 5 {
                return Err(error);
            }
            if !moved {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            tracing::debug!(%shard, "instruction to the leader failed; retrying: {error}");
        }
    }

    /// Rolls a failed (or interrupted) create back: tells each partition's shard leader to
    /// drop it, retrying until every leader confirmed (or the shard is gone), then deletes
    /// the create's procedure record. Runs in the background; if this server stops first,
    /// the record is still there and the next start resumes the rollback.
    fn roll_back_create(self: &Arc<Self>, table: &Table) {
        let this = self.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
            let mut pending: Vec<u32> = table.partitions.iter().map(|p| p.index).collect();
            while !pending.is_empty() && std::time::Instant::now() < deadline {
                let mut left = Vec::new();
                for index in pending {
                    let Some(p) = table.partitions.iter().find(|p| p.index == index) else {
                        continue;
                    };
                    if this.shard(p.shard).is_none() {
                        continue;
                    }
                    let drop = drop_partition(&table, p.index);
                    if let Err(e) = this.instruct_leader(p.shard, drop).await {
                        tracing::debug!(table = %table.name, "rolling back a create, will retry: {e}");
                        left.push(index);
                    }
                }
                pending = left;
                if !pending.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            if !pending.is_empty() {
                tracing::warn!(table = %table.name, "create rollback unfinished; the next start resumes it");
                return;
            }
            let key = keys::create_table_procedure(this.id, table.id);
            match this.store.batch(vec![WriteOp::delete(key)]).await {
                Ok(()) => {
                    tracing::info!(table = %table.name, id = %table.id, "rolled back a create")
                }
                Err(e) => {
                    tracing::warn!(table = %table.name, "deleting a rolled-back create's record: {e}")
                }
            }
        });
    }

    /// Resumes the create procedures a previous server left behind: a committed table only
    /// needs its record deleted; an uncommitted one is rolled back on the nodes.
    pub async fn resume_procedures(self: &Arc<Self>) -> Result<usize> {
        let records = self
            .store
            .range(&keys::create_table_procedures_prefix(self.id), 0)
            .await?;
        let mut resumed = 0;
        for kv in records {
            let table: Table = decode(&kv.key, &kv.value)?;
            if self.state.read().tables.contains_key(&table.id) {
                self.store.batch(vec![WriteOp::delete(kv.key)]).await?;
            } else {
                tracing::info!(table = %table.name, id = %table.id, "rolling back a create interrupted by a restart");
                self.roll_back_create(&table);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Drops a table: durable first, then memory and routes, then the nodes (best effort).
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let table = {
            let state = self.state.read();
            state
                .table_by_name
                .get(name)
                .and_then(|id| state.tables.get(id))
                .cloned()
        };
        let Some(table) = table else {
            self.check_schema(name)?;
            return if if_exists {
                Ok(false)
            } else {
                Err(ServerError::NotFound(format!("table {name} not found")))
            };
        };
        let name_key = keys::table_name(self.id, name);
        let txn = Txn::new()
            .when_equals(name_key.clone(), table.id.0.to_string().into_bytes())
            .then(WriteOp::delete(name_key))
            .then(WriteOp::delete(keys::table(self.id, table.id)));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} changed concurrently; retry"
            )));
        }
        {
            let mut state = self.state.write();
            state.table_by_name.remove(name);
            state.tables.remove(&table.id);
            for p in &table.partitions {
                if let Some(e) = state.shards.get_mut(&p.shard) {
                    e.partitions.remove(&(table.id, p.index));
                }
            }
        }
        self.publish(pb::route_event::Event::TableDropped(pb::TableDropped {
            table_id: table.id.0,
            catalog: name.catalog.clone(),
            schema: name.schema.clone(),
            table: name.table.clone(),
        }));
        for p in &table.partitions {
            if let Err(e) = self
                .instruct_leader(p.shard, drop_partition(&table, p.index))
                .await
            {
                tracing::warn!(table = %name, "drop on node failed (metadata is dropped): {e}");
            }
        }
        metrics::counter!("meridian_tables_dropped_total").increment(1);
        Ok(true)
    }

    /// Renames a table within its schema.
    pub async fn rename_table(&self, name: &TableName, new_name: &str) -> Result<Table> {
        let new = TableName::new(&name.catalog, &name.schema, new_name)?;
        let table = self
            .get_table(name)
            .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?;
        if self.get_table(&new).is_some() {
            return Err(ServerError::AlreadyExists(format!(
                "table {new} already exists"
            )));
        }
        let mut renamed = table.clone();
        renamed.name = new.clone();
        let old_key = keys::table_name(self.id, name);
        let new_key = keys::table_name(self.id, &new);
        let txn = Txn::new()
            .when_equals(old_key.clone(), table.id.0.to_string().into_bytes())
            .when_absent(new_key.clone())
            .then(WriteOp::delete(old_key))
            .then(WriteOp::put(new_key, table.id.0.to_string().into_bytes()))
            .then(WriteOp::put(
                keys::table(self.id, table.id),
                encode(&renamed)?,
            ));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} changed concurrently; retry"
            )));
        }
        {
            let mut state = self.state.write();
            state.table_by_name.remove(name);
            state.table_by_name.insert(new.clone(), table.id);
            state.tables.insert(table.id, renamed.clone());
        }
        self.publish(pb::route_event::Event::TableDropped(pb::TableDropped {
            table_id: table.id.0,
            catalog: name.catalog.clone(),
            schema: name.schema.clone(),
            table: name.table.clone(),
        }));
        if let Some(route) = self.table_route(&renamed) {
            self.publish(pb::route_event::Event::TableChanged(route));
        }
        Ok(renamed)
    }

    /// A table by name.
    pub fn get_table(&self, name: &TableName) -> Option<Table> {
        let state = self.state.read();
        state
            .table_by_name
            .get(name)
            .and_then(|id| state.tables.get(id))
            .cloned()
    }

    /// Tables of a schema (or all, when both are empty), ordered by name.
    pub fn list_tables(&self, catalog: &str, schema: &str) -> Vec<Table> {
        let state = self.state.read();
        let mut tables: Vec<Table> = state
            .tables
            .values()
            .filter(|t| {
                (catalog.is_empty() || t.name.catalog == catalog)
                    && (schema.is_empty() || t.name.schema == schema)
            })
            .cloned()
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// Number of tables.
    pub fn table_count(&self) -> usize {
        self.state.read().tables.len()
    }

    // ----------------------------------------------------------------------------------
    // Routes
    // ----------------------------------------------------------------------------------

    /// Routes for a batch of tables of one schema, from memory.
    pub fn route_tables(
        &self,
        catalog: &str,
        schema: &str,
        tables: &[String],
    ) -> pb::RouteTablesResponse {
        let state = self.state.read();
        let mut resp = pb::RouteTablesResponse {
            routes: Vec::with_capacity(tables.len()),
            not_found: Vec::new(),
        };
        let mut key = TableName {
            catalog: catalog.into(),
            schema: schema.into(),
            table: String::new(),
        };
        for t in tables {
            key.table.clone_from(t);
            match state
                .table_by_name
                .get(&key)
                .and_then(|id| state.tables.get(id))
            {
                Some(table) => resp.routes.push(route_of(&state, table)),
                None => resp.not_found.push(t.clone()),
            }
        }
        resp
    }

    fn table_route(&self, table: &Table) -> Option<pb::TableRoute> {
        let state = self.state.read();
        Some(route_of(&state, table))
    }

    /// The route of one shard.
    pub fn shard_route_of(&self, shard: &Shard) -> pb::ShardRoute {
        shard_route(&self.state.read(), shard)
    }

    /// Nodes as the scheduler sees them; `since(node)` gives when its state last changed.
    pub fn node_views(&self, since: impl Fn(NodeId) -> u64) -> Vec<NodeView> {
        self.state
            .read()
            .nodes
            .values()
            .map(|e| NodeView::from_node(&e.node, e.state, since(e.node.id), e.stats))
            .collect()
    }

    /// Shards as the scheduler sees them: tables per shard, the leader's load, and the
    /// followers that reported Ready at the current version (the failover candidates).
    pub fn shard_views(&self) -> Vec<ShardView> {
        let state = self.state.read();
        state
            .shards
            .values()
            .map(|e| {
                let report = |node: NodeId| {
                    state
                        .nodes
                        .get(&node)
                        .and_then(|n| n.reports.get(&e.shard.id))
                };
                let stats = e
                    .shard
                    .leader()
                    .and_then(report)
                    .map(|r| r.stats)
                    .unwrap_or_default();
                let in_sync = e
                    .shard
                    .followers()
                    .filter(|f| {
                        report(*f).is_some_and(|r| {
                            r.version == e.shard.version && r.status == ShardStatus::Ready
                        })
                    })
                    .collect();
                ShardView {
                    shard: e.shard.clone(),
                    table_count: (e.partitions.len() as u32).saturating_add(e.reserved),
                    stats,
                    in_sync,
                }
            })
            .collect()
    }

    /// The latest report of every node holding `shard`.
    pub fn shard_reports(&self, shard: ShardId) -> Vec<(NodeId, ShardReport)> {
        self.state
            .read()
            .nodes
            .values()
            .filter_map(|n| n.reports.get(&shard).map(|r| (n.node.id, *r)))
            .collect()
    }

    /// Last heartbeat time of every node not removed.
    pub fn heartbeats(&self) -> Vec<(NodeId, Option<u64>, NodeState)> {
        self.state
            .read()
            .nodes
            .values()
            .map(|e| (e.node.id, e.last_heartbeat_ms, e.state))
            .collect()
    }
}

/// The instruction to drop partition `partition` of `t` from its shard.
pub(super) fn drop_partition(t: &Table, partition: u32) -> pb::instruction::Kind {
    pb::instruction::Kind::DropTable(pb::DropTableOnShard {
        table: Some(table_on_shard(t, partition)),
    })
}

/// Every schema of every catalog of a cluster.
fn all_schemas_prefix(id: ClusterId) -> Vec<u8> {
    let mut prefix = keys::cluster_prefix(id);
    prefix.extend_from_slice(b"schemas/");
    prefix
}

pub(super) fn table_on_shard(t: &Table, partition: u32) -> pb::TableOnShard {
    pb::TableOnShard {
        table_id: t.id.0,
        catalog: t.name.catalog.clone(),
        schema: t.name.schema.clone(),
        table: t.name.table.clone(),
        partition,
    }
}

/// Picks `count` shards for a new table's partitions: fewest partitions (counting creates
/// in flight), then least write load; only shards whose leader is online. Partitions of
/// one table go to distinct shards while there are enough.
fn pick_shards(state: &ClusterState, count: usize) -> Option<Vec<ShardId>> {
    let mut candidates: Vec<(usize, u64, ShardId)> = state
        .shards
        .values()
        .filter_map(|e| {
            let leader = e.shard.leader()?;
            let node = state.nodes.get(&leader)?;
            if node.state != NodeState::Online {
                return None;
            }
            let load = node
                .reports
                .get(&e.shard.id)
                .map(|r| (r.stats.write_units_per_sec + r.stats.read_units_per_sec) as u64)
                .unwrap_or(0);
            Some((e.partitions.len() + e.reserved as usize, load, e.shard.id))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        candidates.sort_unstable();
        let take = (count - picked.len()).min(candidates.len());
        for c in candidates.iter_mut().take(take) {
            picked.push(c.2);
            c.0 += 1;
        }
    }
    Some(picked)
}

fn address(state: &ClusterState, node: NodeId) -> pb::NodeAddress {
    pb::NodeAddress {
        node_id: node.0,
        endpoint: state
            .nodes
            .get(&node)
            .map(|n| n.node.endpoint.clone())
            .unwrap_or_default(),
    }
}

fn shard_route(state: &ClusterState, shard: &Shard) -> pb::ShardRoute {
    pb::ShardRoute {
        shard_id: shard.id.0,
        version: shard.version.0,
        leader: shard.leader().map(|l| address(state, l)),
        followers: shard.followers().map(|f| address(state, f)).collect(),
    }
}

fn route_of(state: &ClusterState, table: &Table) -> pb::TableRoute {
    pb::TableRoute {
        table_id: table.id.0,
        catalog: table.name.catalog.clone(),
        schema: table.name.schema.clone(),
        table: table.name.table.clone(),
        partitions: table
            .partitions
            .iter()
            .map(|p| pb::PartitionRoute {
                index: p.index,
                shard: state
                    .shards
                    .get(&p.shard)
                    .map(|s| shard_route(state, &s.shard)),
            })
            .collect(),
    }
}
