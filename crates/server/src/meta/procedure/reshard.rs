//! What split and merge share: one persisted record, one executor, one rollback, one
//! cleanup. The states of each are documented in [`super::split`] and [`super::merge`].
//!
//! Order: the record is written before any node acts; the nodes that will serve the
//! partitions open them (the leader must answer); one transaction commits the new placement,
//! guarded by the shards' versions and the moved tables' revisions as read at the start (a
//! concurrent failover, operator, drop, rename or reshard makes it fail, and the procedure
//! rolls back), and moves the record to `Committed`; memory and routes follow; the nodes
//! that lost partitions drop them (retried until they confirm); the record is deleted.

use super::Backoff;
use crate::error::{Result, ServerError};
use crate::meta::catalog::{drop_partition, table_on_shard};
use crate::meta::cluster::{decode, encode, Cluster, ShardEntry};
use crate::meta::revision::{delete_shard, put_shard, put_table, Guarded};
use crate::meta::session::InstructionOutcome;
use meridian_model::{
    NodeId, Partition, ReplicaRole, Shard, ShardId, ShardVersion, Table, TableId,
};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a split or merge did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReshardOutcome {
    /// The shard that received partitions.
    pub target: ShardId,
    /// The shard that gave them.
    pub source: ShardId,
    /// Partitions moved, as (table, partition index).
    pub moved: Vec<(TableId, u32)>,
    /// Whether the source shard was deleted (merge).
    pub source_deleted: bool,
}

/// Split or merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReshardKind {
    /// A new shard takes part of the source's partitions.
    Split,
    /// An existing shard takes all of the source's partitions; the source is deleted.
    Merge,
}

impl ReshardKind {
    fn name(self) -> &'static str {
        match self {
            ReshardKind::Split => "split",
            ReshardKind::Merge => "merge",
        }
    }
}

/// Where a reshard is; see the states in [`super::split`] and [`super::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReshardStep {
    /// Recorded, maybe opened on nodes, not committed: a restart rolls it back.
    Prepared,
    /// Committed: what is left is node-side cleanup of the source.
    Committed,
}

/// The persisted state of a split or merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReshardRecord {
    /// Split or merge.
    pub kind: ReshardKind,
    /// Where it is.
    pub step: ReshardStep,
    /// The source as read at the start (its version guards the commit).
    pub source_before: Shard,
    /// The source as committed (a split bumps its version; a merge deletes it).
    pub source_after: Shard,
    /// A merge's target as read at the start (its version guards the commit).
    pub target_before: Option<Shard>,
    /// The target as committed.
    pub target_after: Shard,
    /// Partitions the target already holds (merge).
    pub target_kept: Vec<(TableId, u32)>,
    /// Partitions that move from source to target.
    pub moved: Vec<(TableId, u32)>,
    /// The tables of the moved partitions as read at the start (their revisions guard
    /// the commit; their names address node-side drops).
    pub tables: Vec<Table>,
}

impl ReshardRecord {
    /// The record's key: a split by the new shard, a merge by its source.
    pub(super) fn key(&self, cluster: meridian_model::ClusterId) -> Vec<u8> {
        match self.kind {
            ReshardKind::Split => keys::procedure(cluster, "split", self.target_after.id.0.into()),
            ReshardKind::Merge => keys::procedure(cluster, "merge", self.source_before.id.0.into()),
        }
    }
}

impl Cluster {
    /// Runs a reshard from its record: `prepare` (extra guards and writes of the first
    /// transaction, e.g. a split's id claim) is committed with the record.
    pub(super) async fn run_reshard(
        self: &Arc<Self>,
        record: ReshardRecord,
        prepare: Txn,
    ) -> Result<ReshardOutcome> {
        let (source, target) = (record.source_before.id, record.target_after.id);
        let kind = record.kind;
        // Every moved partition's table must be guarded by its revision, or the commit
        // could move a partition of a table that is being dropped.
        if let Some((t, _)) = record
            .moved
            .iter()
            .find(|(id, _)| !record.tables.iter().any(|t| t.id == *id))
        {
            return Err(ServerError::Aborted(format!(
                "{t} changed while the {} started; retry",
                kind.name()
            )));
        }
        let key = record.key(self.id);
        let prepared = encode(&record)?;
        let txn = prepare
            .when_absent(key.clone())
            .then(WriteOp::put(key.clone(), prepared.clone()));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "another {} of {source} or {target} is in flight; retry",
                kind.name()
            )));
        }
        // 1. The target's replicas open with every partition they will serve.
        let tables: Vec<pb::TableOnShard> = self.with_state(|state| {
            Ok(record
                .target_kept
                .iter()
                .chain(&record.moved)
                .filter_map(|(tid, p)| state.tables.get(tid).map(|t| table_on_shard(t, *p)))
                .collect())
        })?;
        let opens = record.target_after.replicas.iter().map(|r| {
            let open = pb::instruction::Kind::OpenShard(pb::OpenShard {
                role: pb::Role::from(r.role) as i32,
                tables: tables.clone(),
            });
            self.send_instruction(r.node, target, record.target_after.version, open)
        });
        let outcomes = futures::future::join_all(opens).await;
        let leader_ok = record
            .target_after
            .replicas
            .iter()
            .zip(&outcomes)
            .any(|(r, o)| r.role == ReplicaRole::Leader && *o == InstructionOutcome::Done);
        if !leader_ok {
            self.roll_back_reshard(record);
            return Err(ServerError::Unavailable(format!(
                "the leader of {target} did not open it: {outcomes:?}"
            )));
        }
        let point = format!("{}.after_open", kind.name());
        self.procedures.failpoints.hit(&point).await;
        // 2. Commit, guarded by what was read at the start.
        let committed = match self.commit_reshard(&record, &key, prepared).await {
            Ok(Some(updated)) => updated,
            Ok(None) => {
                self.roll_back_reshard(record);
                return Err(ServerError::Aborted(format!(
                    "{source}, {target} or a table in them changed during the {}; retry",
                    kind.name()
                )));
            }
            Err(e) => {
                // Unknown whether it committed: the record says, at the next start.
                return Err(e);
            }
        };
        if kind == ReshardKind::Split {
            self.publish_shard(&record.source_after);
        }
        self.publish_shard(&record.target_after);
        for t in &committed {
            self.publish_table(t);
        }
        tracing::info!(cluster = %self.id, %source, %target, moved = record.moved.len(), kind = kind.name(), "resharded");
        metrics::counter!("meridian_reshards_total", "cluster" => self.name(), "kind" => kind.name())
            .increment(1);
        let point = format!("{}.after_commit", kind.name());
        self.procedures.failpoints.hit(&point).await;
        // 3. The source's nodes drop what moved (or close the deleted shard), until done.
        let outcome = ReshardOutcome {
            target,
            source,
            moved: record.moved.clone(),
            source_deleted: kind == ReshardKind::Merge,
        };
        self.clean_up_reshard(ReshardRecord {
            step: ReshardStep::Committed,
            ..record
        });
        Ok(outcome)
    }

    /// The commit: one transaction guarded by the shards' versions and the tables'
    /// revisions as read at the start, then memory. Returns the tables as committed, or
    /// None if a guard failed.
    async fn commit_reshard(
        &self,
        record: &ReshardRecord,
        key: &[u8],
        prepared: Vec<u8>,
    ) -> Result<Option<Vec<Table>>> {
        let (source, target) = (record.source_before.id, record.target_after.id);
        let merge = record.kind == ReshardKind::Merge;
        let _commit = self.procedures.commit.write().await;
        let mut updated = Vec::with_capacity(record.tables.len());
        for read in &record.tables {
            let mut t = read.clone();
            for p in &mut t.partitions {
                if record.moved.contains(&(t.id, p.index)) {
                    *p = Partition {
                        index: p.index,
                        shard: target,
                    };
                }
            }
            t.revision = read.revision + 1;
            updated.push(t);
        }
        let mut committed = ReshardRecord {
            step: ReshardStep::Committed,
            ..record.clone()
        };
        committed.tables = updated.clone();
        let mut txn = Txn::new().when_equals(key.to_vec(), prepared).shard_at(
            self.id,
            source,
            record.source_before.version,
        );
        txn = match &record.target_before {
            Some(t) => txn.shard_at(self.id, target, t.version),
            None => txn
                .when_absent(keys::shard(self.id, target))
                .when_absent(keys::shard_version(self.id, target)),
        };
        for read in &record.tables {
            txn = txn.table_at(self.id, read.id, read.revision);
        }
        txn = if merge {
            txn.then_all(delete_shard(self.id, source))
        } else {
            txn.then_all(put_shard(self.id, &record.source_after)?)
        };
        txn = txn.then_all(put_shard(self.id, &record.target_after)?);
        for t in &updated {
            txn = txn.then_all(put_table(self.id, t)?);
        }
        txn = txn.then(WriteOp::put(key.to_vec(), encode(&committed)?));
        if !self.store.txn(txn).await?.succeeded {
            return Ok(None);
        }
        let moved: BTreeSet<(TableId, u32)> = record.moved.iter().copied().collect();
        self.with_state_mut(|state| {
            if merge {
                state.shards.remove(&source);
            } else if let Some(e) = state.shards.get_mut(&source) {
                e.shard = record.source_after.clone();
                e.partitions.retain(|p| !moved.contains(p));
            }
            let entry = state.shards.entry(target).or_insert_with(|| ShardEntry {
                shard: record.target_after.clone(),
                partitions: BTreeSet::new(),
                reserved: 0,
            });
            entry.shard = record.target_after.clone();
            entry.partitions.extend(moved.iter().copied());
            for t in &updated {
                state.tables.insert(t.id, t.clone());
            }
        });
        Ok(Some(updated))
    }

    /// Sends `kind` about `shard` at `version` to `node` until it confirms, or the node is
    /// gone for good.
    async fn until_node_done(
        &self,
        node: NodeId,
        shard: ShardId,
        version: ShardVersion,
        kind: pb::instruction::Kind,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let outcome = self
                .send_instruction(node, shard, version, kind.clone())
                .await;
            if outcome == InstructionOutcome::Done || self.node_gone(node) {
                return;
            }
            tracing::debug!(%node, %shard, "reshard cleanup on node not done; retrying: {outcome:?}");
            backoff.wait().await;
        }
    }

    /// Undoes an uncommitted reshard on the nodes, in the background, then deletes its
    /// record: a split's new shard is closed on its replicas; a merge's moved partitions
    /// are dropped from the target's replicas.
    pub(super) fn roll_back_reshard(self: &Arc<Self>, record: ReshardRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let target = record.target_after.id;
            match record.kind {
                ReshardKind::Split => {
                    let closes = record.target_after.replicas.iter().map(|r| {
                        let close = pb::instruction::Kind::CloseShard(pb::CloseShard {});
                        this.until_node_done(r.node, target, record.target_after.version, close)
                    });
                    futures::future::join_all(closes).await;
                }
                ReshardKind::Merge => {
                    // The replicas hold the version they were opened at and refuse older
                    // ones: the metadata catches up first (same placement, that version).
                    if let Some(cur) = this.shard(target) {
                        if cur.version < record.target_after.version {
                            let mut caught_up = cur.clone();
                            caught_up.version = record.target_after.version;
                            if let Err(e) = this.swap_shard(cur.version, caught_up).await {
                                tracing::warn!(%target, "bringing a merge target's version up: {e}");
                            }
                        }
                    }
                    // The target as it is now (a newer version is fine: nodes take it).
                    this.drop_moved_partitions(&record, &record.target_after)
                        .await;
                }
            }
            this.finish_reshard(&record, "rolled back").await;
        });
    }

    /// Finishes a committed reshard on the nodes, in the background, then deletes its
    /// record: a split's source replicas drop the moved partitions; a merge's source
    /// replicas close the deleted shard.
    pub(super) fn clean_up_reshard(self: &Arc<Self>, record: ReshardRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let source = record.source_before.id;
            match record.kind {
                ReshardKind::Merge => {
                    let closes = record.source_before.replicas.iter().map(|r| {
                        let close = pb::instruction::Kind::CloseShard(pb::CloseShard {});
                        this.until_node_done(r.node, source, record.source_before.version, close)
                    });
                    futures::future::join_all(closes).await;
                }
                ReshardKind::Split => {
                    // The source as it is now: replicas moved away meanwhile were closed.
                    this.drop_moved_partitions(&record, &record.source_after)
                        .await;
                }
            }
            this.finish_reshard(&record, "cleaned up").await;
        });
    }

    /// Drops the record's moved partitions from every replica of `planned`'s shard as it is
    /// now (or as planned, if it is gone), at the newer of the two versions, each retried
    /// on its node until done.
    async fn drop_moved_partitions(&self, record: &ReshardRecord, planned: &Shard) {
        let shard = planned.id;
        let now = self.shard(shard).unwrap_or_else(|| planned.clone());
        let version = now.version.max(planned.version);
        let drops = now.replicas.iter().map(|r| async move {
            for t in &record.tables {
                for (_, p) in record.moved.iter().filter(|(id, _)| *id == t.id) {
                    self.until_node_done(r.node, shard, version, drop_partition(t, *p))
                        .await;
                }
            }
        });
        futures::future::join_all(drops).await;
    }

    async fn finish_reshard(&self, record: &ReshardRecord, what: &str) {
        let key = record.key(self.id);
        match self.store.batch(vec![WriteOp::delete(key)]).await {
            Ok(()) => tracing::info!(
                source = %record.source_before.id,
                target = %record.target_after.id,
                kind = record.kind.name(),
                "reshard {what} on every node"
            ),
            Err(e) => {
                tracing::warn!("deleting a finished reshard's record (the next start retries): {e}")
            }
        }
    }

    /// Resumes the splits and merges a previous server left: uncommitted ones are rolled
    /// back, committed ones cleaned up.
    pub(super) async fn resume_reshards(self: &Arc<Self>) -> Result<usize> {
        let mut resumed = 0;
        for kind in ["split", "merge"] {
            for kv in self
                .store
                .range(&keys::procedures_prefix(self.id, kind), 0)
                .await?
            {
                let record: ReshardRecord = decode(&kv.key, &kv.value)?;
                tracing::info!(kind, step = ?record.step, source = %record.source_before.id, "resuming a reshard interrupted by a restart");
                match record.step {
                    ReshardStep::Prepared => self.roll_back_reshard(record),
                    ReshardStep::Committed => self.clean_up_reshard(record),
                }
                resumed += 1;
            }
        }
        Ok(resumed)
    }
}
