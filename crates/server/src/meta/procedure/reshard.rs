//! Split and merge of shards (HoraeDB's shard operations).
//!
//! Split moves the upper half of a shard's table partitions to a new shard placed on other
//! nodes; merge moves every partition of one shard into another and deletes the emptied
//! shard. Both follow one order: the nodes that will serve the partitions open them first
//! (and must answer), then the new placement is persisted in one compare-and-swap
//! transaction guarded by the shards' current values (so a concurrent operator or another
//! reshard makes it fail cleanly), then memory and routes follow, then the nodes that lost
//! partitions are told to drop them (best effort: they are no longer routed there).

use crate::error::{Result, ServerError};
use crate::meta::catalog::{drop_partition, table_on_shard};
use crate::meta::cluster::{encode, Cluster, ShardEntry};
use crate::meta::session::InstructionOutcome;
use meridian_model::{Partition, ReplicaRole, Shard, ShardId, TableId};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A shard id claimed by a split: (high-water key, its value as read, the new value). The
/// commit fails if another split moved the high-water mark meanwhile.
pub(super) type IdClaim = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);

/// What a split or merge did.
#[derive(Debug, Clone, Serialize)]
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

impl Cluster {
    /// The common path of split and merge; see the module documentation for the order.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reshard(
        self: &Arc<Self>,
        source_before: Shard,
        source_after: Shard,
        target_before: Option<Shard>,
        target_after: Shard,
        target_kept: Vec<(TableId, u32)>,
        moved: Vec<(TableId, u32)>,
        id_claim: Option<IdClaim>,
    ) -> Result<ReshardOutcome> {
        // A merge deletes its source; a split creates its target.
        let delete_source = target_before.is_some();
        let (source, target) = (source_before.id, target_after.id);
        // 1. The target's replicas open with every partition they will serve.
        let tables: Vec<pb::TableOnShard> = self.with_state(|state| {
            Ok(target_kept
                .iter()
                .chain(&moved)
                .filter_map(|(tid, p)| state.tables.get(tid).map(|t| table_on_shard(t, *p)))
                .collect())
        })?;
        let opens = target_after.replicas.iter().map(|r| {
            let open = pb::instruction::Kind::OpenShard(pb::OpenShard {
                role: pb::Role::from(r.role) as i32,
                tables: tables.clone(),
            });
            self.send_instruction(r.node, target, target_after.version, open)
        });
        let outcomes = futures::future::join_all(opens).await;
        let leader_ok = target_after
            .replicas
            .iter()
            .zip(&outcomes)
            .any(|(r, o)| r.role == ReplicaRole::Leader && *o == InstructionOutcome::Done);
        if !leader_ok {
            return Err(ServerError::Unavailable(format!(
                "the leader of {target} did not open it: {outcomes:?}"
            )));
        }
        // 2. Persist, guarded by the shards as we read them.
        let updated_tables = self.with_state(|state| {
            let mut out = Vec::new();
            let ids: BTreeSet<TableId> = moved.iter().map(|(t, _)| *t).collect();
            for id in ids {
                let Some(table) = state.tables.get(&id) else {
                    continue;
                };
                let mut t = table.clone();
                for p in &mut t.partitions {
                    if moved.contains(&(t.id, p.index)) {
                        *p = Partition {
                            index: p.index,
                            shard: target,
                        };
                    }
                }
                out.push(t);
            }
            Ok(out)
        })?;
        let mut txn = Txn::new().when_equals(keys::shard(self.id, source), encode(&source_before)?);
        match &target_before {
            Some(t) => txn = txn.when_equals(keys::shard(self.id, target), encode(t)?),
            None => txn = txn.when_absent(keys::shard(self.id, target)),
        }
        if let Some((key, expected, claimed)) = id_claim {
            txn = txn
                .when(key.clone(), expected)
                .then(WriteOp::put(key, claimed));
        }
        if delete_source {
            txn = txn.then(WriteOp::delete(keys::shard(self.id, source)));
        } else {
            txn = txn.then(WriteOp::put(
                keys::shard(self.id, source),
                encode(&source_after)?,
            ));
        }
        txn = txn.then(WriteOp::put(
            keys::shard(self.id, target),
            encode(&target_after)?,
        ));
        for t in &updated_tables {
            txn = txn.then(WriteOp::put(keys::table(self.id, t.id), encode(t)?));
        }
        if !self.store().txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "{source} or {target} changed concurrently; retry"
            )));
        }
        // 3. Memory and routes.
        self.with_state_mut(|state| {
            let moved_set: BTreeSet<(TableId, u32)> = moved.iter().copied().collect();
            if delete_source {
                state.shards.remove(&source);
            } else if let Some(e) = state.shards.get_mut(&source) {
                e.shard = source_after.clone();
                e.partitions.retain(|p| !moved_set.contains(p));
            }
            let entry = state.shards.entry(target).or_insert_with(|| ShardEntry {
                shard: target_after.clone(),
                partitions: BTreeSet::new(),
                reserved: 0,
            });
            entry.shard = target_after.clone();
            entry.partitions.extend(moved_set);
            for t in &updated_tables {
                state.tables.insert(t.id, t.clone());
            }
        });
        if !delete_source {
            self.publish_shard(&source_after);
        }
        self.publish_shard(&target_after);
        for t in &updated_tables {
            self.publish_table(t);
        }
        // 4. The source's nodes drop what moved (or close the deleted shard).
        let this = self.clone();
        let moved_tables = updated_tables.clone();
        let (src_before, src_after) = (source_before.clone(), source_after.clone());
        tokio::spawn(async move {
            for r in &src_before.replicas {
                let version = src_after.version;
                if delete_source {
                    let close = pb::instruction::Kind::CloseShard(pb::CloseShard {});
                    let _ = this.send_instruction(r.node, source, version, close).await;
                    continue;
                }
                for t in &moved_tables {
                    for p in t.partitions.iter().filter(|p| p.shard == target) {
                        let drop = drop_partition(t, p.index);
                        let _ = this.send_instruction(r.node, source, version, drop).await;
                    }
                }
            }
        });
        tracing::info!(cluster = %self.id, %source, %target, moved = moved.len(), delete_source, "resharded");
        metrics::counter!("meridian_reshards_total", "kind" => if delete_source { "merge" } else { "split" }).increment(1);
        Ok(ReshardOutcome {
            target,
            source,
            moved,
            source_deleted: delete_source,
        })
    }
}
