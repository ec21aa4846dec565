//! Newtype identifiers, so a shard id can never be passed where a table id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw number, for the wire and the store.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }
    };
}

id_type!(
    /// A cluster managed by this Meridian; allocated from a persistent counter.
    ClusterId(u32),
    "cluster-"
);
id_type!(
    /// A database node; allocated when a node name first registers in a cluster.
    NodeId(u64),
    "node-"
);
id_type!(
    /// A shard, the unit of scheduling; unique within its cluster.
    ShardId(u32),
    "shard-"
);
id_type!(
    /// A table; allocated from a persistent range allocator, never reused.
    TableId(u64),
    "table-"
);
id_type!(
    /// A scheduling operator (a sequence of steps on one shard).
    OperatorId(u64),
    "op-"
);
id_type!(
    /// One instruction sent to a node on its heartbeat stream.
    InstructionId(u64),
    "instr-"
);

/// The epoch of a shard: bumped by every change to its replica set or leader.
///
/// Versions are compared, never assumed: nodes refuse instructions older than what they
/// hold and Meridian ignores reports older than what it holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct ShardVersion(pub u64);

impl ShardVersion {
    /// The version after one more change.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// Whether `other` is strictly older than `self`.
    pub fn is_newer_than(self, other: ShardVersion) -> bool {
        self.0 > other.0
    }
}

impl fmt::Display for ShardVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
