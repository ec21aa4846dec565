//! Revisions: what every compare-and-swap on a shard or a table compares.
//!
//! A shard's version and a table's revision are each kept, besides inside the record, in a
//! small key of their own (`keys::shard_version`, `keys::table_revision`) written in the
//! same transaction as the record. Transactions compare that key, never the encoded record:
//! re-encoding a record read by an older binary drops the fields it does not know, so a
//! byte compare would fail every swap on records written by a newer one. Every record has its
//! key from store format 2 on (`meridian_store::format` wrote the missing ones).

use super::cluster::encode;
use crate::error::Result;
use meridian_model::{ClusterId, Shard, ShardId, ShardVersion, Table, TableId};
use meridian_store::{keys, Txn, WriteOp};

/// The writes that store `shard` with its version key.
pub(super) fn put_shard(cluster: ClusterId, shard: &Shard) -> Result<[WriteOp; 2]> {
    Ok([
        WriteOp::put(keys::shard(cluster, shard.id), encode(shard)?),
        WriteOp::put(
            keys::shard_version(cluster, shard.id),
            keys::encode_id(shard.version.0),
        ),
    ])
}

/// The writes that delete a shard and its version key.
pub(super) fn delete_shard(cluster: ClusterId, shard: ShardId) -> [WriteOp; 2] {
    [
        WriteOp::delete(keys::shard(cluster, shard)),
        WriteOp::delete(keys::shard_version(cluster, shard)),
    ]
}

/// The writes that store `table` with its revision key.
pub(super) fn put_table(cluster: ClusterId, table: &Table) -> Result<[WriteOp; 2]> {
    Ok([
        WriteOp::put(keys::table(cluster, table.id), encode(table)?),
        WriteOp::put(
            keys::table_revision(cluster, table.id),
            keys::encode_id(table.revision),
        ),
    ])
}

/// The writes that delete a table and its revision key.
pub(super) fn delete_table(cluster: ClusterId, table: TableId) -> [WriteOp; 2] {
    [
        WriteOp::delete(keys::table(cluster, table)),
        WriteOp::delete(keys::table_revision(cluster, table)),
    ]
}

/// Guards of a transaction on revisions.
pub(super) trait Guarded: Sized {
    /// Requires shard `shard` to be at `version`.
    fn shard_at(self, cluster: ClusterId, shard: ShardId, version: ShardVersion) -> Self;
    /// Requires table `table` to be at `revision` (and to exist).
    fn table_at(self, cluster: ClusterId, table: TableId, revision: u64) -> Self;
    /// Adds every write of `ops` to the success branch.
    fn then_all(self, ops: impl IntoIterator<Item = WriteOp>) -> Self;
}

impl Guarded for Txn {
    fn shard_at(self, cluster: ClusterId, shard: ShardId, version: ShardVersion) -> Self {
        self.when_equals(
            keys::shard_version(cluster, shard),
            keys::encode_id(version.0),
        )
    }

    fn table_at(self, cluster: ClusterId, table: TableId, revision: u64) -> Self {
        self.when_equals(
            keys::table_revision(cluster, table),
            keys::encode_id(revision),
        )
    }

    fn then_all(mut self, ops: impl IntoIterator<Item = WriteOp>) -> Self {
        self.success.extend(ops);
        self
    }
}
