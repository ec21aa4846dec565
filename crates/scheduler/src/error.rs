//! The scheduler crate's errors: one enum for callers, one for a step that cannot apply.

use meridian_model::{NodeId, ShardId, ShardVersion};

/// Why a scheduler-crate call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// Fewer schedulable nodes than replicas per shard: replicas must be on distinct nodes.
    #[error("need at least {need} schedulable nodes to place shards, have {have}")]
    NotEnoughNodes {
        /// Nodes needed (the replication factor).
        need: usize,
        /// Schedulable nodes available.
        have: usize,
    },
    /// No scheduler with this name is registered (pause / resume by name).
    #[error("unknown scheduler {0:?}")]
    UnknownScheduler(String),
    /// A configuration value is out of range.
    #[error("invalid scheduler config: {0}")]
    InvalidConfig(String),
    /// A forced promotion cannot apply (the leader is alive, the node holds no follower or
    /// is not Online).
    #[error("cannot force the promotion: {0}")]
    ForcePromoteRefused(String),
}

/// Why a step cannot be applied to the shard as it is now.
///
/// Raised when the shard changed between planning and execution; the operator then fails
/// and the schedulers plan again from the new state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The shard is not at the version the operator was planned against.
    #[error("{shard} is at {found}, the operator expected {expected}")]
    StaleVersion {
        /// The shard.
        shard: ShardId,
        /// Version the operator was planned against.
        expected: ShardVersion,
        /// Version found.
        found: ShardVersion,
    },
    /// The node is not the shard's leader.
    #[error("{node} is not the leader of {shard}")]
    NotLeader {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// The node holds no follower replica of the shard.
    #[error("{node} holds no follower of {shard}")]
    NotFollower {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// The node already holds a replica of the shard.
    #[error("{node} already holds a replica of {shard}")]
    AlreadyReplica {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// The node holds no replica of the shard.
    #[error("{node} holds no replica of {shard}")]
    NoReplica {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// Removing the leader's replica would leave the shard without a leader.
    #[error("cannot remove the leader {node} of {shard}: transfer leadership first")]
    RemovesLeader {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: NodeId,
    },
    /// The shard the operator is for no longer exists.
    #[error("{0} no longer exists")]
    ShardGone(ShardId),
}
