//! Split and merge of shards (HoraeDB's shard operations).
//!
//! Split moves the upper half of a shard's table partitions to a new shard placed on other
//! nodes; merge moves every partition of one shard into another and deletes the emptied
//! shard. Both follow one order: the nodes that will serve the partitions open them first
//! (and must answer), then the new placement is persisted in one compare-and-swap
//! transaction guarded by the shards' current values (so a concurrent operator or another
//! reshard makes it fail cleanly), then memory and routes follow, then the nodes that lost
//! partitions are told to drop them (best effort: they are no longer routed there).

use super::cluster::{drop_partition, encode, table_on_shard, Cluster, ShardEntry};
use super::session::InstructionOutcome;
use crate::error::{Result, ServerError};
use meridian_model::{Partition, ReplicaRole, Shard, ShardId, TableId};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A shard id claimed by a split: (high-water key, its value as read, the new value). The
/// commit fails if another split moved the high-water mark meanwhile.
type IdClaim = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);

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
    /// Splits `source`: the upper half of its partitions go to a new shard placed away from
    /// the source's leader where the topology allows.
    pub async fn split_shard(self: &Arc<Self>, source: ShardId) -> Result<ReshardOutcome> {
        let config = self.config();
        // Shard ids are never reused: the new id is above every id that ever existed.
        let high_key = keys::shard_id_high_water(self.id);
        let high_raw = self.store().get(&high_key).await?;
        let high = match &high_raw {
            Some(v) => keys::decode_id(v)?,
            None => 0,
        };
        let (entry, new_id, mut nodes) = self.with_state(|state| {
            let entry = state
                .shards
                .get(&source)
                .cloned()
                .ok_or_else(|| ServerError::NotFound(format!("{source} not found")))?;
            let max = state
                .shards
                .keys()
                .next_back()
                .map_or(0, |s| u64::from(s.0));
            let new_id = u32::try_from(max.max(high) + 1)
                .map(ShardId)
                .map_err(|_| ServerError::FailedPrecondition("shard ids exhausted".into()))?;
            let nodes: Vec<_> = state
                .nodes
                .values()
                .map(|e| meridian_scheduler::NodeView::from_node(&e.node, e.state, 0, e.stats))
                .collect();
            Ok((entry, new_id, nodes))
        })?;
        if entry.partitions.len() < 2 {
            return Err(ServerError::FailedPrecondition(format!(
                "{source} holds {} partition(s): a split needs at least 2",
                entry.partitions.len()
            )));
        }
        // "Elsewhere": keep the new leader off the source leader's node when others can take it.
        if let Some(leader) = entry.shard.leader() {
            let others = nodes
                .iter()
                .filter(|n| n.can_receive() && n.id != leader)
                .count();
            if others >= config.replication_factor as usize {
                for n in nodes.iter_mut().filter(|n| n.id == leader) {
                    n.cordoned = true;
                }
            }
        }
        let placement =
            meridian_scheduler::place_shards(&nodes, &[new_id], &config, u64::from(new_id.0))
                .map_err(|e| {
                    ServerError::FailedPrecondition(format!("cannot place the new shard: {e}"))
                })?;
        let Some(target) = placement.shards.into_iter().next() else {
            return Err(ServerError::FailedPrecondition(
                "placement returned no shard".into(),
            ));
        };
        let all: Vec<(TableId, u32)> = entry.partitions.iter().copied().collect();
        let moved = all[all.len() / 2..].to_vec();
        let mut source_after = entry.shard.clone();
        source_after.version = source_after.version.next();
        // Until the split commits, nodes report the new shard although the metadata does not
        // know it yet: it must not be closed as a stray meanwhile. If the split fails, the
        // mark goes and the next heartbeats close the opened replicas.
        let mut claimed = false;
        self.with_state_mut(|state| {
            claimed = !state.shards.contains_key(&new_id) && state.splitting.insert(new_id);
        });
        if !claimed {
            return Err(ServerError::Aborted(format!(
                "another split is creating {new_id}; retry"
            )));
        }
        let result = self
            .reshard(
                entry.shard,
                source_after,
                None,
                target,
                Vec::new(),
                moved,
                Some((high_key, high_raw, keys::encode_id(u64::from(new_id.0)))),
            )
            .await;
        self.with_state_mut(|state| {
            state.splitting.remove(&new_id);
        });
        result
    }

    /// Merges `source` into `target`: every partition of `source` moves to `target`, and
    /// `source` is deleted.
    pub async fn merge_shards(
        self: &Arc<Self>,
        target: ShardId,
        source: ShardId,
    ) -> Result<ReshardOutcome> {
        if target == source {
            return Err(ServerError::InvalidArgument(
                "cannot merge a shard into itself".into(),
            ));
        }
        let (t, s): (ShardEntry, ShardEntry) = self.with_state(|state| {
            let get = |id: ShardId| {
                state
                    .shards
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| ServerError::NotFound(format!("{id} not found")))
            };
            Ok((get(target)?, get(source)?))
        })?;
        let moved: Vec<(TableId, u32)> = s.partitions.iter().copied().collect();
        let kept: Vec<(TableId, u32)> = t.partitions.iter().copied().collect();
        let mut target_after = t.shard.clone();
        target_after.version = target_after.version.next();
        self.reshard(
            s.shard.clone(),
            s.shard,
            Some(t.shard),
            target_after,
            kept,
            moved,
            None,
        )
        .await
    }

    /// The common path of split and merge; see the module documentation for the order.
    #[allow(clippy::too_many_arguments)]
    async fn reshard(
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
