//! One managed cluster: its nodes, shards and catalog in memory, mirrored to the store.
//!
//! The store is the source of truth; memory is a cache loaded at start and updated only
//! after a write to the store succeeded, so anything acknowledged is durable. Reads
//! (routes, listings) are served from memory.
//!
//! This module holds the node side (registration, reports, instructions, shard placement);
//! the catalog is in [`super::catalog`], routes in [`super::routes`], and every DDL or
//! reshard change is a persisted procedure under [`super::procedure`].

use super::catalog::{all_schemas_prefix, table_on_shard};
use super::reconcile::{due_orders, Resend, StateContext};
use super::revision::Guarded;
use super::session::{InstructionOutcome, Sessions};
use crate::error::{Result, ServerError};
use meridian_model::{
    ClusterConfig, ClusterId, Node, NodeId, NodeState, NodeStats, ReplicaRole, Shard, ShardId,
    ShardReport, ShardStats, Table, TableId, TableName,
};
use meridian_proto as pb;
use meridian_scheduler::LeaseBook;
use meridian_scheduler::{CommittedMark, InstructionKind, NodeInstruction, NodeView, ShardView};
use meridian_store::{keys, KvBackend, SequenceAllocator, Txn, WriteOp};
use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

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
    /// Ordered, so lists page by name (`meta::paging`).
    pub(super) table_by_name: BTreeMap<TableName, TableId>,
    pub(super) schemas: BTreeSet<(String, String)>,
    /// Names of tables whose create is in flight.
    pub(super) creating: HashSet<TableName>,
    /// Shards being created by a split: opened on nodes, not committed yet. Reports of
    /// them are not "unknown shards" to close.
    pub(super) splitting: HashSet<ShardId>,
    /// Per shard, the highest committed log position its replicas reported, kept when the
    /// reporter goes away (memory only, like the reports): failover promotes only a
    /// follower that applied it.
    pub(super) committed: HashMap<ShardId, CommittedMark>,
    /// Shards with a running operator (set by the scheduling loop): the reconcile path
    /// leaves their repairs to the operator.
    pub(super) busy: HashSet<ShardId>,
}

/// One managed cluster.
pub struct Cluster {
    /// Its id.
    pub id: ClusterId,
    pub(super) config: RwLock<ClusterConfig>,
    pub(super) state: RwLock<ClusterState>,
    pub(super) store: Arc<dyn KvBackend>,
    node_ids: SequenceAllocator,
    pub(super) table_ids: SequenceAllocator,
    pub(super) routes: broadcast::Sender<pb::RouteEvent>,
    /// Streams of connected nodes and instructions in flight.
    pub sessions: Sessions,
    init_lock: tokio::sync::Mutex<()>,
    /// Set once this server knows every initial shard exists (no `create_shards` record
    /// is left): registrations then skip the store read.
    shards_complete: std::sync::atomic::AtomicBool,
    instruction_timeout: Duration,
    /// Who holds each shard's write lease, and until when. Lock order: `state` first,
    /// then `leases`.
    pub(super) leases: parking_lot::Mutex<LeaseBook>,
    /// The copyset family (copyset mode): see `meta::copysets`.
    pub(super) copyset_family: super::copysets::ClusterCopysets,
    /// Procedures in flight: the catalog commit lock, merges, failpoints.
    pub(super) procedures: super::procedure::Procedures,
    /// The server's event log (DDL and admin actions of this cluster go there).
    pub events: Arc<crate::events::EventLog>,
    /// Counts behind the history's rates (heartbeats, DDL per second).
    pub activity: Activity,
}

/// Running counts of what a cluster's history shows as rates.
#[derive(Debug, Default)]
pub struct Activity {
    /// Heartbeats answered.
    pub heartbeats: std::sync::atomic::AtomicU64,
    /// DDL statements done (tables and schemas created, altered, renamed, dropped).
    pub ddl: std::sync::atomic::AtomicU64,
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ServerError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v)
        .map_err(|e| ServerError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))
}

/// Why a node's registration was refused (the `reason` label of
/// `meridian_registrations_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A malformed request (name, endpoint or label).
    InvalidRequest,
    /// The node's config fingerprint differs from the cluster's.
    FingerprintMismatch,
    /// The name belongs to a node removed from the cluster.
    NodeRemoved,
    /// The name is alive at another endpoint.
    NameInUse,
    /// Another registration of the same name won a race.
    ConcurrentRegistration,
    /// The store could not record the node.
    StoreError,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 6] = [
        Refusal::InvalidRequest,
        Refusal::FingerprintMismatch,
        Refusal::NodeRemoved,
        Refusal::NameInUse,
        Refusal::ConcurrentRegistration,
        Refusal::StoreError,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::InvalidRequest => "invalid_request",
            Refusal::FingerprintMismatch => "fingerprint_mismatch",
            Refusal::NodeRemoved => "node_removed",
            Refusal::NameInUse => "name_in_use",
            Refusal::ConcurrentRegistration => "concurrent_registration",
            Refusal::StoreError => "store_error",
        }
    }

    /// Tags an error with this reason (for `map_err`).
    fn tag<E: Into<ServerError>>(self) -> impl FnOnce(E) -> (Refusal, ServerError) {
        move |e| (self, e.into())
    }
}

/// Serializable view of a node for the admin API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// The shard's last known committed log position (0: none reported).
    pub committed: u64,
    /// The last log position each replica reported, leader first.
    pub positions: Vec<ReplicaPosition>,
    /// Its leader is down and no follower is caught up: failover waits for one (or for
    /// `ctl force-promote`). Filled in by the admin API from the scheduler's last pass.
    pub waiting_for_in_sync_follower: bool,
    /// What is wrong with it, worst first (empty: healthy). Filled in by the admin API
    /// (`meridian_scheduler::shard_problems`).
    pub health: Vec<meridian_scheduler::ShardProblem>,
}

/// The last log position one replica reported, for the admin API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplicaPosition {
    /// The replica's node.
    pub node: NodeId,
    /// Highest position it applied (0: none reported).
    pub applied: u64,
    /// Highest position it heard was committed.
    pub committed: u64,
}

impl Cluster {
    /// Records an event of this cluster.
    pub fn event(&self, kind: &str, message: impl Into<String>, about: crate::events::About) {
        if kind == "ddl" {
            self.activity
                .ddl
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.events
            .record(&self.config.read().name, kind, message, about);
    }

    /// Loads a cluster's state from the store.
    pub async fn load(
        store: Arc<dyn KvBackend>,
        id: ClusterId,
        config: ClusterConfig,
        instruction_timeout: Duration,
        leases: LeaseBook,
        events: Arc<crate::events::EventLog>,
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
        let copyset_family =
            super::copysets::load(&store, id, &config, state.shards.values().map(|e| &e.shard))
                .await?;
        crate::metrics::register_cluster(&config.name);
        let sessions = Sessions::new(&config.name);
        Ok(Arc::new(Self {
            id,
            config: RwLock::new(config),
            state: RwLock::new(state),
            node_ids: SequenceAllocator::new(store.clone(), keys::node_id_sequence(id), 16),
            table_ids: SequenceAllocator::new(store.clone(), keys::table_id_sequence(id), 1000),
            store,
            routes,
            sessions,
            init_lock: tokio::sync::Mutex::new(()),
            shards_complete: std::sync::atomic::AtomicBool::new(false),
            instruction_timeout,
            leases: parking_lot::Mutex::new(leases),
            copyset_family,
            procedures: Default::default(),
            events,
            activity: Activity::default(),
        }))
    }

    /// The cluster's name (the `cluster` label of its metrics).
    pub fn name(&self) -> String {
        self.config.read().name.clone()
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

    /// Runs `f` under the read lock of the state (for sibling modules).
    pub(super) fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> Result<T>) -> Result<T> {
        f(&self.state.read())
    }

    /// Runs `f` under the write lock of the state (for sibling modules).
    pub(super) fn with_state_mut(&self, f: impl FnOnce(&mut ClusterState)) {
        f(&mut self.state.write())
    }

    // ----------------------------------------------------------------------------------
    // Nodes
    // ----------------------------------------------------------------------------------

    /// Sets the config fingerprint nodes must present to join (empty: any), durably.
    /// Nodes already registered are not re-checked until they register again.
    pub async fn set_fingerprint(&self, fingerprint: &str) -> Result<()> {
        if fingerprint.len() > 256 {
            return Err(ServerError::InvalidArgument(
                "config_fingerprint longer than 256 bytes".into(),
            ));
        }
        let _guard = self.init_lock.lock().await;
        let mut config = self.config();
        config.config_fingerprint = fingerprint.to_string();
        self.store
            .batch(vec![WriteOp::put(
                keys::cluster_config(self.id),
                encode(&config)?,
            )])
            .await?;
        *self.config.write() = config;
        tracing::info!(cluster = %self.id, fingerprint, "config fingerprint set");
        Ok(())
    }

    /// Registers a node from its first heartbeat. Refuses a name alive at another endpoint
    /// and a config fingerprint that differs from the cluster's (when it has one).
    /// Every refusal is counted by reason (`meridian_registrations_refused_total`).
    pub async fn register(&self, req: &pb::RegisterNode, now_ms: u64) -> Result<NodeId> {
        self.admit(req, now_ms).await.map_err(|(reason, e)| {
            metrics::counter!("meridian_registrations_refused_total", "cluster" => self.name(), "reason" => reason.name())
                .increment(1);
            e
        })
    }

    /// [`Cluster::register`], with the reason of a refusal.
    async fn admit(
        &self,
        req: &pb::RegisterNode,
        now_ms: u64,
    ) -> std::result::Result<NodeId, (Refusal, ServerError)> {
        use Refusal::*;
        meridian_model::validate_name("node", &req.name).map_err(InvalidRequest.tag())?;
        if req.endpoint.is_empty() || req.endpoint.len() > 256 {
            return Err((
                InvalidRequest,
                ServerError::InvalidArgument(
                    "node endpoint must be 1..=256 bytes (host:port)".into(),
                ),
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
                return Err((
                    InvalidRequest,
                    ServerError::InvalidArgument(format!("{what} longer than 256 bytes")),
                ));
            }
        }
        // The expected fingerprint is set explicitly (create-cluster, `ctl
        // set-fingerprint`), never taken from a joining node: one misconfigured node must
        // not lock every other node out.
        {
            let config = self.config.read();
            if !config.config_fingerprint.is_empty()
                && config.config_fingerprint != req.config_fingerprint
            {
                return Err((
                    FingerprintMismatch,
                    ServerError::FailedPrecondition(format!(
                        "config fingerprint {:?} differs from cluster {:?}'s {:?}: \
                         the node's cluster-wide settings do not match \
                         (`meridian ctl set-fingerprint` changes the expected one)",
                        req.config_fingerprint, config.name, config.config_fingerprint
                    )),
                ));
            }
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
                    return Err((
                        NodeRemoved,
                        ServerError::FailedPrecondition(format!(
                            "node {:?} ({}) was removed from the cluster; register under a new name",
                            req.name, entry.node.id
                        )),
                    ));
                }
                let alive = self.sessions.session_of(entry.node.id).is_some()
                    && matches!(entry.state, NodeState::Online | NodeState::Suspect);
                if alive && entry.node.endpoint != req.endpoint {
                    return Err((
                        NameInUse,
                        ServerError::AlreadyExists(format!(
                            "node name {:?} is already alive at {} (this one says {})",
                            req.name, entry.node.endpoint, req.endpoint
                        )),
                    ));
                }
                let mut node = entry.node.clone();
                node.endpoint = req.endpoint.clone();
                node.labels = labels;
                node.capacity = capacity;
                node.version = req.version.clone();
                if node != entry.node {
                    self.persist_node(&node).await.map_err(StoreError.tag())?;
                }
                node
            }
            None => {
                let id = NodeId(self.node_ids.next().await.map_err(StoreError.tag())?);
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
                    .then(WriteOp::put(
                        keys::node(self.id, id),
                        encode(&node).map_err(StoreError.tag())?,
                    ));
                if !self
                    .store
                    .txn(txn)
                    .await
                    .map_err(StoreError.tag())?
                    .succeeded
                {
                    return Err((
                        ConcurrentRegistration,
                        ServerError::Aborted(format!(
                            "node name {:?} was registered concurrently; retry",
                            req.name
                        )),
                    ));
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
                    metrics::counter!("meridian_stale_shard_reports_total", "cluster" => self.name())
                        .increment(1);
                }
                state
                    .committed
                    .entry(report.shard)
                    .or_default()
                    .observe(report);
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
        due_orders(&self.name(), &mut entry.reconciling, orders, now_ms, false)
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
                ServerError::NotFound(format!(
                    "{id} not found in cluster {}",
                    self.config.read().name
                ))
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
                let positions = s
                    .shard
                    .replicas
                    .iter()
                    .map(|r| {
                        let log = state
                            .nodes
                            .get(&r.node)
                            .and_then(|n| n.reports.get(&s.shard.id))
                            .map(|rep| rep.log)
                            .unwrap_or_default();
                        ReplicaPosition {
                            node: r.node,
                            applied: log.applied,
                            committed: log.committed,
                        }
                    })
                    .collect();
                ShardInfo {
                    id: s.shard.id,
                    version: s.shard.version.0,
                    leader,
                    followers: s.shard.followers().collect(),
                    partitions: s.partitions.len(),
                    stats,
                    committed: state.committed.get(&s.shard.id).map_or(0, |m| m.committed),
                    positions,
                    waiting_for_in_sync_follower: false,
                    health: Vec::new(),
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
    ///
    /// A store that takes fewer writes per transaction than the shards need (etcd: 128)
    /// gets them in steps: a `create_shards` procedure record first, then the shards chunk
    /// by chunk, the last chunk deleting the record. A server that stops half way finds
    /// the record and creates the shards still missing.
    pub async fn maybe_create_shards(self: &Arc<Self>) -> Result<bool> {
        let _guard = self.init_lock.lock().await;
        let config = self.config();
        use std::sync::atomic::Ordering;
        if self.shards_complete.load(Ordering::Acquire) {
            return Ok(false);
        }
        let in_flight = keys::procedure(self.id, "create_shards", 0);
        let recorded = self.store.get(&in_flight).await?.is_some();
        let partial = self.has_shards() && recorded;
        if self.has_shards() && !partial {
            self.shards_complete.store(true, Ordering::Release);
            return Ok(false);
        }
        let nodes = {
            let state = self.state.read();
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
        let shard_ids: Vec<ShardId> = {
            let state = self.state.read();
            (1..=config.shard_count)
                .map(ShardId)
                .filter(|id| !state.shards.contains_key(id))
                .collect()
        };
        let placement =
            meridian_scheduler::place_shards(&nodes, &shard_ids, &config, u64::from(self.id.0))
                .map_err(|e| {
                    ServerError::FailedPrecondition(format!("cannot place shards: {e}"))
                })?;
        for w in &placement.warnings {
            tracing::warn!(cluster = %self.id, "{}", w.message);
            metrics::counter!("meridian_domain_violations_total", "cluster" => self.name())
                .increment(1);
        }
        let mut ops = Vec::with_capacity(placement.shards.len() * 2 + 2);
        ops.extend(self.copyset_ops(placement.copysets.as_ref())?);
        for shard in &placement.shards {
            ops.extend(super::revision::put_shard(self.id, shard)?);
        }
        let max = self.store.max_batch_ops().max(2);
        if ops.len() < max && !partial {
            self.store.batch(ops).await?;
        } else {
            if !recorded {
                self.store
                    .put(&in_flight, config.shard_count.to_string().as_bytes())
                    .await?;
            }
            ops.push(WriteOp::delete(in_flight));
            let chunks = ops.len().div_ceil(max - 1);
            for (i, chunk) in ops.chunks(max - 1).enumerate() {
                self.store.batch(chunk.to_vec()).await?;
                tracing::info!(cluster = %self.id, step = i + 1, of = chunks, "creating shards");
            }
        }
        self.copysets_placed(placement.copysets.clone());
        self.shards_complete.store(true, Ordering::Release);
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
        self.swap_shard_with(expected, next, Vec::new()).await
    }

    /// [`Cluster::swap_shard`] with `extra` writes in the same transaction.
    pub(super) async fn swap_shard_with(
        &self,
        expected: meridian_model::ShardVersion,
        next: Shard,
        extra: Vec<WriteOp>,
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
        let txn = Txn::new()
            .shard_at(self.id, next.id, current.version)
            .then_all(super::revision::put_shard(self.id, &next)?)
            .then_all(extra);
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
    // Views for the scheduler and the admin API
    // ----------------------------------------------------------------------------------

    /// Every node's name, by id.
    pub fn node_names(&self) -> HashMap<NodeId, String> {
        self.state
            .read()
            .nodes
            .values()
            .map(|e| (e.node.id, e.node.name.clone()))
            .collect()
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

    /// Shards as the scheduler sees them: tables per shard, the leader's load, the
    /// followers that reported Ready at the current version (the failover candidates), the
    /// replicas' log positions and the shard's last known committed position.
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
                let (in_sync, positions) = meridian_scheduler::replica_progress(&e.shard, report);
                ShardView {
                    shard: e.shard.clone(),
                    table_count: (e.partitions.len() as u32).saturating_add(e.reserved),
                    stats,
                    in_sync,
                    positions,
                    committed: state.committed.get(&e.shard.id).map_or(0, |m| m.committed),
                    load_trend: None,
                }
            })
            .collect()
    }

    /// Lowers `shard`'s committed mark to `committed` after an admin forced the promotion
    /// of a follower that had applied only that much: the rest of the old leader's log is
    /// abandoned, and a report from before (the old leader back) cannot raise it again.
    pub fn reset_committed(&self, shard: ShardId, committed: u64) {
        let mut state = self.state.write();
        let Some(version) = state.shards.get(&shard).map(|e| e.shard.version) else {
            return;
        };
        state
            .committed
            .entry(shard)
            .or_default()
            .reset(version.next(), committed);
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
