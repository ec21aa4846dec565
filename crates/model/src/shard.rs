//! Shards, their replicas and what nodes report about them.

use crate::{NodeId, ShardId, ShardVersion};
use serde::{Deserialize, Serialize};

/// Role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaRole {
    /// Takes writes (while its lease lasts) and serves reads.
    Leader,
    /// Serves reads; promoted on failover.
    Follower,
}

/// One copy of a shard on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replica {
    /// The node holding it.
    pub node: NodeId,
    /// Its role.
    pub role: ReplicaRole,
}

/// A shard: a group of table partitions placed and moved together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Id within the cluster.
    pub id: ShardId,
    /// Epoch: bumped by every change of replicas or leader.
    pub version: ShardVersion,
    /// Leader first, then followers; at most one leader.
    pub replicas: Vec<Replica>,
}

impl Shard {
    /// The node of the leader replica, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.replicas
            .iter()
            .find(|r| r.role == ReplicaRole::Leader)
            .map(|r| r.node)
    }

    /// Nodes of the follower replicas.
    pub fn followers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .filter(|r| r.role == ReplicaRole::Follower)
            .map(|r| r.node)
    }

    /// Whether `node` holds a replica.
    pub fn has_replica_on(&self, node: NodeId) -> bool {
        self.replicas.iter().any(|r| r.node == node)
    }

    /// The role of `node`'s replica, if it holds one.
    pub fn role_of(&self, node: NodeId) -> Option<ReplicaRole> {
        self.replicas
            .iter()
            .find(|r| r.node == node)
            .map(|r| r.role)
    }

    /// Checks the shard invariants: at most one leader, replicas on distinct nodes.
    pub fn check(&self) -> Result<(), String> {
        let leaders = self
            .replicas
            .iter()
            .filter(|r| r.role == ReplicaRole::Leader)
            .count();
        if leaders > 1 {
            return Err(format!("{} has {leaders} leaders", self.id));
        }
        let mut nodes: Vec<_> = self.replicas.iter().map(|r| r.node).collect();
        nodes.sort();
        nodes.dedup();
        if nodes.len() != self.replicas.len() {
            return Err(format!("{} has two replicas on one node", self.id));
        }
        Ok(())
    }
}

/// Status of a replica as its node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    /// Open and serving.
    #[default]
    Ready,
    /// Being opened (catching up).
    Opening,
    /// Closed or being closed.
    Closed,
}

/// Load figures of one shard replica.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ShardStats {
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Rows stored.
    pub rows: u64,
    /// Read units per second.
    pub read_units_per_sec: f64,
    /// Write units per second.
    pub write_units_per_sec: f64,
}

/// What a node reports about one replica it holds, in a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// The shard.
    pub shard: ShardId,
    /// The version the node holds.
    pub version: ShardVersion,
    /// The role the node believes it has.
    pub role: ReplicaRole,
    /// Replica status.
    pub status: ShardStatus,
    /// Load figures.
    pub stats: ShardStats,
    /// Replication progress of this replica (log positions).
    pub log: LogPosition,
    /// Whether the node holds an unexpired write lease for this shard at `version` right
    /// now (leaders only). After a Meridian restart this tells which leases may be renewed
    /// at once: a node without one gets a fresh lease only once every lease an earlier
    /// Meridian may have granted has surely run out.
    pub leased: bool,
}

/// Replication progress of one replica, in the database's own log positions (any monotonic
/// counter: a raft index, a WAL sequence number). Zero means "not reported".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct LogPosition {
    /// Highest log position this replica has applied.
    pub applied: u64,
    /// Highest position the shard's leader knows committed (as this replica last heard).
    pub committed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_break_the_invariant() {
        let s = Shard {
            id: ShardId(1),
            version: ShardVersion(3),
            replicas: vec![
                Replica {
                    node: NodeId(1),
                    role: ReplicaRole::Leader,
                },
                Replica {
                    node: NodeId(2),
                    role: ReplicaRole::Leader,
                },
            ],
        };
        assert!(s.check().is_err());
    }
}
