//! Merge two shards.

use super::reshard::ReshardOutcome;
use crate::error::{Result, ServerError};
use crate::meta::cluster::{Cluster, ShardEntry};
use meridian_model::{ShardId, TableId};
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
}
