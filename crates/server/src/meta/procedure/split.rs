//! Split a shard: the upper half of its partitions move to a new shard placed away from
//! the source's leader where the topology allows (and inside a copyset of the family in
//! copyset mode: `meridian_scheduler::place_new_shard`).
//!
//! States (record: `keys::procedure(.., "split", new shard)`, a `ReshardRecord`):
//!
//! ```text
//! Prepared ───────> Opened ──────────────> Committed ─────────────> Done
//!  record written    the new shard's        one txn: source version,   the source's replicas
//!  with the new id   replicas opened with   moved tables' revisions    dropped the moved
//!  claimed (high-    the moved partitions   as read, new shard absent; partitions (retried
//!  water mark)       (leader must answer)   record -> Committed        until they confirm);
//!      │                  │                      │ guard failed         record deleted
//!      └──────────────────┴──────────────────────┴──> RollingBack: the new shard's replicas
//!                                                     close it (retried), record deleted
//! ```
//!
//! A restart rolls a Prepared record back and finishes a Committed one. A drop or rename
//! of a moved table before the commit fails the commit (revision), so the split never
//! writes a dropped table back or an old name over a new one.

use super::reshard::{ReshardKind, ReshardOutcome, ReshardRecord, ReshardStep};
use crate::error::{Result, ServerError};
use crate::meta::cluster::Cluster;
use meridian_model::{ShardId, TableId};
use meridian_store::{keys, Txn, WriteOp};
use std::sync::Arc;

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
        let (entry, tables, new_id, nodes) = self.with_state(|state| {
            let entry = state
                .shards
                .get(&source)
                .cloned()
                .ok_or_else(|| ServerError::NotFound(format!("{source} not found")))?;
            // Read with the partitions, under one lock: the commit is guarded by exactly
            // these revisions.
            let tables: Vec<_> = entry
                .partitions
                .iter()
                .map(|(t, _)| *t)
                .collect::<std::collections::BTreeSet<TableId>>()
                .into_iter()
                .filter_map(|id| state.tables.get(&id).cloned())
                .collect();
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
            Ok((entry, tables, new_id, nodes))
        })?;
        if entry.partitions.len() < 2 {
            return Err(ServerError::FailedPrecondition(format!(
                "{source} holds {} partition(s): a split needs at least 2",
                entry.partitions.len()
            )));
        }
        // "Elsewhere": the new leader off the source leader's node when another can lead;
        // in copyset mode, inside a copyset of the family.
        let view = meridian_scheduler::ClusterView::new(config.clone(), nodes, self.shard_views())
            .with_copysets(self.copysets());
        let target = meridian_scheduler::place_new_shard(
            &view,
            new_id,
            entry.shard.leader(),
            u64::from(new_id.0),
        )
        .map_err(|e| ServerError::FailedPrecondition(format!("cannot place the new shard: {e}")))?;
        let all: Vec<(TableId, u32)> = entry.partitions.iter().copied().collect();
        let moved = all[all.len() / 2..].to_vec();
        let mut source_after = entry.shard.clone();
        source_after.version = source_after.version.next();
        // Until the split commits, nodes report the new shard although the metadata does not
        // know it yet: it must not be closed as a stray meanwhile. If the split fails, its
        // rollback closes the opened replicas (and with the mark gone, so would the next
        // heartbeats).
        let mut claimed = false;
        self.with_state_mut(|state| {
            claimed = !state.shards.contains_key(&new_id) && state.splitting.insert(new_id);
        });
        if !claimed {
            return Err(ServerError::Aborted(format!(
                "another split is creating {new_id}; retry"
            )));
        }
        let tables: Vec<_> = tables
            .into_iter()
            .filter(|t| moved.iter().any(|(id, _)| *id == t.id))
            .collect();
        let record = ReshardRecord {
            kind: ReshardKind::Split,
            step: ReshardStep::Prepared,
            source_before: entry.shard,
            source_after,
            target_before: None,
            target_after: target,
            target_kept: Vec::new(),
            moved,
            tables,
        };
        // The id is claimed with the record: ids are never reused, even by a failed split.
        let claim = Txn::new()
            .when(high_key.clone(), high_raw)
            .then(WriteOp::put(high_key, keys::encode_id(u64::from(new_id.0))));
        let result = self.run_reshard(record, claim).await;
        self.with_state_mut(|state| {
            state.splitting.remove(&new_id);
        });
        result
    }
}
