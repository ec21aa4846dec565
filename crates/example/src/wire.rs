//! The example node's HTTP data plane, as JSON: what clients and peers send and receive.
//!
//! | method and path    | from     | body                | answer                                  |
//! |--------------------|----------|---------------------|-----------------------------------------|
//! | `POST /v1/write`   | clients  | [`WriteBatch`]      | 200 [`WriteAck`], else [`NodeError`]    |
//! | `POST /v1/read`    | clients  | [`ReadRequest`]     | 200 [`ReadReply`], else [`NodeError`]   |
//! | `POST /v1/replicate` | the shard's leader | [`ReplicateRequest`] | 200 [`ReplicateReply`], else [`NodeError`] |
//! | `GET /v1/status`   | anyone   |                     | 200 [`NodeStatus`]                      |
//!
//! Errors carry a stable `error` code; `retryable: true` means "refresh the route and try
//! again" (see [`ErrorCode::is_stale_route`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A row: column name to value. Values are JSON (numbers for integer, float and timestamp
/// columns, strings for text and bytes, booleans, any JSON for `json` columns).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Rows for one partition of one table, as the client's route placed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionRows {
    /// Partition index (computed by the client with the table's partition rule).
    pub partition: u32,
    /// The shard the client's route says holds the partition.
    pub shard: u32,
    /// The rows.
    pub rows: Vec<Row>,
}

/// `POST /v1/write`: rows of one table, grouped by partition, all led by the receiving node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The table's id.
    pub table_id: u64,
    /// The definition version the client's route carries: a node holding another version
    /// refuses with `stale_definition` so the client refreshes its route (and its columns).
    pub definition_version: u64,
    /// The rows, by partition.
    pub parts: Vec<PartitionRows>,
}

/// A write the node accepted: applied, replicated to a majority of the shard's replicas,
/// and still under the shard's write lease when acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// The node's name.
    pub node: String,
    /// Rows written.
    pub rows: u64,
    /// Per shard written: its log position after the write.
    pub positions: BTreeMap<u32, u64>,
}

/// `POST /v1/read`: rows of one partition, from any replica of its shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The table's id.
    pub table_id: u64,
    /// Partition index.
    pub partition: u32,
    /// The shard the client's route says holds it.
    pub shard: u32,
    /// Only the row with this primary key (its values in key order); absent: every row.
    #[serde(default)]
    pub key: Option<Vec<serde_json::Value>>,
}

/// The rows a replica holds for a partition. A follower's may lag the leader's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadReply {
    /// The node's name.
    pub node: String,
    /// `leader` or `follower`.
    pub role: String,
    /// The replica's log position (how recent the answer is).
    pub applied: u64,
    /// The rows, ordered by primary key.
    pub rows: Vec<Row>,
}

/// One entry of a shard's log: rows written to one partition of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the shard's log (1, 2, ...).
    pub seq: u64,
    /// The shard version of the leader that wrote it: two entries at one position with
    /// different versions come from different leaders (the later one wins).
    pub version: u64,
    /// Table id.
    pub table_id: u64,
    /// Partition index.
    pub partition: u32,
    /// The rows (upserts by identity key), keyed by the leader so every replica files a
    /// row under the same key.
    pub rows: Vec<KeyedRow>,
}

/// A row with its identity key (see `data::identity_key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedRow {
    /// The identity key.
    pub key: String,
    /// The row.
    pub row: Row,
}

/// A whole replica's rows at one log position, sent to a follower that cannot catch up
/// from the log (new, restarted, or holding entries of a deposed leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The log position the rows reflect.
    pub seq: u64,
    /// The version of the entry at `seq`.
    pub seq_version: u64,
    /// Every partition's rows.
    pub partitions: Vec<SnapshotPartition>,
}

/// One partition in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPartition {
    /// Table id.
    pub table_id: u64,
    /// Partition index.
    pub partition: u32,
    /// Rows by their identity key.
    pub rows: BTreeMap<String, Row>,
}

/// What a leader ships to a follower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Shipment {
    /// Entries following `prev_seq` (whose entry the follower must hold at `prev_version`).
    Entries {
        /// The position the entries follow.
        prev_seq: u64,
        /// The version of the entry at `prev_seq` (0 for position 0).
        prev_version: u64,
        /// The entries, in order.
        entries: Vec<LogEntry>,
    },
    /// Replace everything with this.
    Snapshot(Snapshot),
}

/// `POST /v1/replicate`: from the leader of `shard` at `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    /// The shard.
    pub shard: u32,
    /// The leader's shard version: a follower that knows a newer one refuses.
    pub version: u64,
    /// The leader's committed position (replicated to a majority).
    pub committed: u64,
    /// What to apply.
    pub shipment: Shipment,
}

/// A follower's answer to a [`ReplicateRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateReply {
    /// Whether the shipment was applied. `false`: the entries do not follow what the
    /// follower holds; the leader sends a snapshot.
    pub applied_shipment: bool,
    /// The follower's log position now.
    pub applied: u64,
}

/// `GET /v1/status`: what the node holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Per shard held.
    pub shards: Vec<ShardStatus>,
}

/// One shard in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u32,
    /// Its version here.
    pub version: u64,
    /// `leader` or `follower`.
    pub role: String,
    /// Log position applied.
    pub applied: u64,
    /// Committed position as known here.
    pub committed: u64,
    /// Rows held, over all partitions.
    pub rows: u64,
    /// Definition version per table id held.
    pub definitions: BTreeMap<u64, u64>,
}

/// Stable error codes of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// This node does not lead the shard now (or its lease ran out): refresh the route.
    NotLeader,
    /// The shard or partition is not here (moved, split, merged): refresh the route.
    NotHere,
    /// The client's definition version differs from the node's: refresh the route.
    StaleDefinition,
    /// The shard could not replicate to a majority in time: retry later.
    ReplicationUnavailable,
    /// A leader of an older version tried to replicate.
    StaleLeader,
    /// A row does not fit the table's definition: not retryable.
    InvalidRow,
    /// The request itself is malformed: not retryable.
    BadRequest,
}

impl ErrorCode {
    /// Whether the answer means the client's route is out of date.
    pub fn is_stale_route(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader | ErrorCode::NotHere | ErrorCode::StaleDefinition
        )
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(self) -> bool {
        self.is_stale_route() || self == ErrorCode::ReplicationUnavailable
    }
}

/// An error answer of the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{node}: {error:?}: {message}")]
pub struct NodeError {
    /// Stable code.
    pub error: ErrorCode,
    /// Why, for people.
    pub message: String,
    /// The answering node.
    pub node: String,
    /// Whether trying again (after refreshing the route) may succeed.
    pub retryable: bool,
}

impl NodeError {
    /// An error with `code` from `node`.
    pub fn new(node: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: code,
            message: message.into(),
            node: node.to_string(),
            retryable: code.is_retryable(),
        }
    }
}
