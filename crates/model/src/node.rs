//! Database nodes: identity, labels, capacity, load and liveness state.

use crate::{ClusterId, NodeId};
use serde::{Deserialize, Serialize};

/// Failure-domain labels of a node. Empty labels count as one shared unknown domain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct NodeLabels {
    /// Availability zone.
    #[serde(default)]
    pub zone: String,
    /// Rack within the zone.
    #[serde(default)]
    pub rack: String,
    /// Physical host (several nodes may share one).
    #[serde(default)]
    pub host: String,
}

/// What a node offers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeCapacity {
    /// CPU cores.
    pub cpu_cores: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

/// Load reported by a node in its heartbeats; kept in memory only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeStats {
    /// CPU use, 0.0..=1.0 of all cores.
    pub cpu_usage: f64,
    /// Memory used in bytes.
    pub memory_used_bytes: u64,
    /// Disk used in bytes.
    pub disk_used_bytes: u64,
    /// Disk total in bytes.
    pub disk_total_bytes: u64,
    /// Read units per second over all shards.
    pub read_units_per_sec: f64,
    /// Write units per second over all shards.
    pub write_units_per_sec: f64,
}

/// Liveness and administrative state of a node.
///
/// ```text
///            no heartbeat for suspect_after      no heartbeat for offline_after
///   Online ─────────────────────────────> Suspect ─────────────────────────────> Offline
///     ^   <───────────── heartbeat ───────────┘                                     │
///     └────────────────────────── heartbeat (re-register) ─────────────────────────┘
///   any ── drained and removed by an operator ──> Removed (terminal)
/// ```
/// The liveness tracker (server) moves Online/Suspect/Offline; an admin moves Removed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeats arrive in time.
    #[default]
    Online,
    /// Heartbeats are late; nothing is moved yet, but no new placements go here.
    Suspect,
    /// Declared dead: its leaderships are failed over.
    Offline,
    /// Removed by an operator after a drain; may not register again under this id.
    Removed,
}

impl NodeState {
    /// Whether the node may host new replicas or leaders.
    pub fn is_schedulable(self) -> bool {
        matches!(self, NodeState::Online)
    }
}

/// A registered node, as persisted (liveness and load live in memory).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Cluster it belongs to.
    pub cluster: ClusterId,
    /// Id allocated at first registration.
    pub id: NodeId,
    /// Stable name chosen by the node (its identity across restarts).
    pub name: String,
    /// Address clients use to reach it (host:port).
    pub endpoint: String,
    /// Failure-domain labels.
    pub labels: NodeLabels,
    /// What it offers.
    pub capacity: NodeCapacity,
    /// Binary version it reported.
    pub version: String,
    /// Administrative flag: no new placements (cordon), but it keeps what it has.
    #[serde(default)]
    pub cordoned: bool,
    /// Administrative flag: every replica is being moved off it.
    #[serde(default)]
    pub draining: bool,
    /// Set once removed by an operator.
    #[serde(default)]
    pub removed: bool,
    /// Administrative flag: move every leadership off it (before a planned restart), and
    /// give it none; it keeps its follower replicas.
    #[serde(default)]
    pub evict_leaders: bool,
}
