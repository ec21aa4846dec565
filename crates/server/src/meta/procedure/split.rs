//! Split a shard.

use super::reshard::ReshardOutcome;
use crate::error::{Result, ServerError};
use crate::meta::cluster::Cluster;
use meridian_model::{ShardId, TableId};
use meridian_store::keys;
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
}
