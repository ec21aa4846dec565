//! Merge two shards: every partition of the source moves to the target, and the source is
//! deleted.
//!
//! States (record: `keys::procedure(.., "merge", source)`, a `ReshardRecord`):
//!
//! ```text
//! Prepared ───────> Opened ──────────────> Committed ─────────────> Done
//!  record written;   the target's replicas  one txn: both versions,    the source's replicas
//!  no create in      opened (next version)  moved tables' revisions    closed it (retried
//!  flight holds the  with kept + moved      as read; deletes the       until they confirm);
//!  source; new       partitions             source; record ->          record deleted
//!  tables avoid it                          Committed
//!      │                  │                      │ guard failed
//!      └──────────────────┴──────────────────────┴──> RollingBack: the target's replicas
//!                                                     drop the moved partitions (retried),
//!                                                     record deleted
//! ```
//!
//! A merge never deletes a shard that a create in flight reserved: it is refused while
//! either shard has reservations, creates do not pick a shard being merged, and a create's
//! commit requires that its shards exist and that no merge record of them exists.
//!
//! The rollback first brings the target's metadata version up to the version its replicas
//! were opened at (nodes refuse older versions), then drops the moved partitions.

use super::reshard::{ReshardKind, ReshardOutcome, ReshardRecord, ReshardStep};
use crate::error::{Result, ServerError};
use crate::meta::cluster::{Cluster, ShardEntry};
use meridian_model::{ShardId, TableId};
use meridian_store::Txn;
use std::sync::Arc;

impl Cluster {
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
        let (t, s, tables) = {
            let state = self.state.read();
            let get = |id: ShardId| {
                state
                    .shards
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| ServerError::NotFound(format!("{id} not found")))
            };
            let (t, s): (ShardEntry, ShardEntry) = (get(target)?, get(source)?);
            // The target too: its replicas reopen with the partitions known now, which
            // would leave out a table being created there.
            for e in [&s, &t] {
                if e.reserved > 0 {
                    return Err(ServerError::Aborted(format!(
                        "{} holds {} partition(s) of tables being created; retry",
                        e.shard.id, e.reserved
                    )));
                }
            }
            let mut merging = self.procedures.merging.lock();
            if merging.contains(&source) || merging.contains(&target) {
                return Err(ServerError::Aborted(format!(
                    "a merge of {source} or {target} is in flight; retry"
                )));
            }
            // Marked under the state lock that creates reserve shards under: from here no
            // create picks either shard.
            merging.insert(source);
            merging.insert(target);
            let ids: std::collections::BTreeSet<TableId> =
                s.partitions.iter().map(|(t, _)| *t).collect();
            let tables: Vec<_> = ids
                .into_iter()
                .filter_map(|id| state.tables.get(&id).cloned())
                .collect();
            (t, s, tables)
        };
        let moved: Vec<(TableId, u32)> = s.partitions.iter().copied().collect();
        let kept: Vec<(TableId, u32)> = t.partitions.iter().copied().collect();
        let mut target_after = t.shard.clone();
        target_after.version = target_after.version.next();
        let record = ReshardRecord {
            kind: ReshardKind::Merge,
            step: ReshardStep::Prepared,
            source_before: s.shard.clone(),
            source_after: s.shard,
            target_before: Some(t.shard),
            target_after,
            target_kept: kept,
            moved,
            tables,
        };
        let result = self.run_reshard(record, Txn::new()).await;
        {
            let mut merging = self.procedures.merging.lock();
            merging.remove(&source);
            merging.remove(&target);
        }
        result
    }
}
