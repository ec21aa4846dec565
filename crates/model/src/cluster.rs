//! Cluster configuration: shard count, replication, failure-domain isolation, placement.

use crate::{validate_name, ModelError};
use serde::{Deserialize, Serialize};

/// The failure-domain level at which replicas of one shard must not share a domain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Replicas go to distinct nodes only.
    Node,
    /// Replicas go to distinct hosts.
    Host,
    /// Replicas go to distinct racks.
    Rack,
    /// Replicas go to distinct zones (the default).
    #[default]
    Zone,
}

/// How replica sets are chosen for new shards.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum PlacementMode {
    /// Least loaded nodes, spread across failure domains.
    #[default]
    Spread,
    /// Replica sets drawn from a bounded family of node groups (Copysets, ATC 2013).
    Copyset {
        /// Scatter width S: each node shares copysets with about S other nodes.
        scatter_width: u32,
    },
}

/// A cluster's configuration, fixed at creation except where noted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Unique name of the cluster.
    pub name: String,
    /// Number of shards created when the cluster first reaches `min_nodes`.
    pub shard_count: u32,
    /// Replicas per shard (leader plus followers).
    pub replication_factor: u32,
    /// Node count at which shards are first created.
    pub min_nodes: u32,
    /// Failure-domain isolation for replicas of one shard.
    #[serde(default)]
    pub isolation: IsolationLevel,
    /// How replica sets are drawn.
    #[serde(default)]
    pub placement: PlacementMode,
    /// Nodes must present this config fingerprint to join; empty: any is accepted. Set
    /// explicitly (at creation, or `ctl set-fingerprint`), never taken from a node.
    #[serde(default)]
    pub config_fingerprint: String,
    /// The shards' data lives on shared storage (object storage, as in HoraeDB or
    /// GreptimeDB), not in the replicas: any live replica, or a new node, can serve a shard
    /// with nothing lost, so failover promotes or reopens any live replica whatever its log
    /// position. `false` (the default): data lives in the replicas, and failover promotes
    /// only a follower that has applied the shard's committed log (within the scheduler's
    /// `max_promote_lag`), or waits.
    #[serde(default)]
    pub shared_storage: bool,
}

/// The most shards a cluster may have.
pub const MAX_SHARDS: u32 = 65_536;
/// The highest accepted replication factor.
pub const MAX_REPLICATION: u32 = 7;

impl ClusterConfig {
    /// The cluster that exists on first start, so the quick start needs no set-up.
    pub fn default_cluster() -> Self {
        Self {
            name: "default".into(),
            shard_count: 8,
            replication_factor: 3,
            min_nodes: 3,
            isolation: IsolationLevel::Zone,
            placement: PlacementMode::Spread,
            config_fingerprint: String::new(),
            shared_storage: false,
        }
    }

    /// Checks the invariants of a configuration.
    pub fn validate(&self) -> Result<(), ModelError> {
        validate_name("cluster", &self.name)?;
        let bad = |m: String| Err(ModelError::InvalidClusterConfig(m));
        if self.shard_count == 0 || self.shard_count > MAX_SHARDS {
            return bad(format!(
                "shard_count must be 1..={MAX_SHARDS}, got {}",
                self.shard_count
            ));
        }
        if self.replication_factor == 0 || self.replication_factor > MAX_REPLICATION {
            return bad(format!(
                "replication_factor must be 1..={MAX_REPLICATION}, got {}",
                self.replication_factor
            ));
        }
        if self.min_nodes < self.replication_factor {
            return bad(format!(
                "min_nodes ({}) must be at least replication_factor ({})",
                self.min_nodes, self.replication_factor
            ));
        }
        if let PlacementMode::Copyset { scatter_width } = self.placement {
            if scatter_width < self.replication_factor.saturating_sub(1).max(1) {
                return bad(format!(
                    "scatter_width ({scatter_width}) must be at least replication_factor - 1"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cluster_is_valid() {
        ClusterConfig::default_cluster().validate().unwrap();
    }

    #[test]
    fn refuses_zero_shards_and_too_few_nodes() {
        let mut c = ClusterConfig::default_cluster();
        c.shard_count = 0;
        assert!(c.validate().is_err());
        let mut c = ClusterConfig::default_cluster();
        c.min_nodes = 2;
        assert!(c.validate().is_err());
    }
}
