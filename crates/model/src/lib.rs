//! Meridian's domain model: pure data and the invariants on it.
//!
//! ```text
//! cluster ──< node            (endpoint, labels zone/rack/host, capacity, state)
//! cluster ──< catalog ──< schema ──< table ──< partition
//!                                    table ─── definition (columns, keys, options, version)
//! partition ──> shard         (many tables' partitions share one shard)
//! shard ──< replica           (node, role leader|follower)   version = epoch
//! ```
//!
//! Nothing here does I/O; every other crate of ours depends on this one.
#![warn(missing_docs)]

pub mod catalog;
pub mod cluster;
pub mod definition;
pub mod error;
pub mod ids;
pub mod names;
pub mod node;
pub mod shard;

pub use catalog::{hash_key, Partition, PartitionRule, Table, TableName, MAX_PARTITIONS};
pub use cluster::{ClusterConfig, IsolationLevel, PlacementMode};
pub use definition::{Column, ColumnType, DefinitionChange, TableDefinition};
pub use error::ModelError;
pub use ids::{ClusterId, InstructionId, NodeId, OperatorId, ShardId, ShardVersion, TableId};
pub use names::{validate_name, with_node_names};
pub use node::{Node, NodeCapacity, NodeLabels, NodeState, NodeStats};
pub use shard::{LogPosition, Replica, ReplicaRole, Shard, ShardReport, ShardStats, ShardStatus};
