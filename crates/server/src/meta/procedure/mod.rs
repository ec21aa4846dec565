//! Procedures: every change of the catalog or of shard boundaries that involves nodes.
//!
//! One module per kind, each with its states documented where they are defined:
//! [`create_table`], [`drop_table`], [`rename_table`], [`split`], [`merge`].

mod create_table;
mod drop_table;
mod merge;
mod rename_table;
mod reshard;
mod split;

pub use reshard::ReshardOutcome;

use super::cluster::{decode, Cluster};
use super::session::InstructionOutcome;
use crate::error::{Result, ServerError};
use meridian_model::{NodeId, ShardId, Table};
use meridian_proto as pb;
use meridian_store::{keys, WriteOp};
use std::sync::Arc;

impl Cluster {
    /// Sends an instruction to a shard's current leader and waits for its answer. If the
    /// leader refuses or is lost while the shard's placement changed under it (a transfer or
    /// failover raced with us: the node rightly refuses our older version), it is retried
    /// with the new leader. Returns the shard version the leader carried it out at.
    pub(super) async fn instruct_leader(
        &self,
        shard: ShardId,
        kind: pb::instruction::Kind,
    ) -> Result<meridian_model::ShardVersion> {
        let current = || -> Result<(NodeId, meridian_model::ShardVersion)> {
            let state = self.state.read();
            let e = state
                .shards
                .get(&shard)
                .ok_or_else(|| ServerError::NotFound(format!("{shard} not found")))?;
            let leader = e.shard.leader().ok_or_else(|| {
                ServerError::Unavailable(format!("{shard} has no leader (failover in progress)"))
            })?;
            Ok((leader, e.shard.version))
        };
        let mut attempt = 0;
        loop {
            let (leader, version) = current()?;
            let outcome = self
                .send_instruction(leader, shard, version, kind.clone())
                .await;
            let (error, refused) = match outcome {
                InstructionOutcome::Done => return Ok(version),
                InstructionOutcome::Failed(why) => (
                    ServerError::Unavailable(format!(
                        "{leader}, leader of {shard}, refused: {why}"
                    )),
                    true,
                ),
                InstructionOutcome::Lost(why) => (ServerError::Unavailable(why), false),
            };
            attempt += 1;
            let moved = current()
                .map(|now| now != (leader, version))
                .unwrap_or(false);
            // A refusal without a move is usually a leader that has not yet been told it
            // leads (a transfer's promotion is in flight): give it a moment.
            if !(moved || refused) || attempt >= 5 {
                return Err(error);
            }
            if !moved {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            tracing::debug!(%shard, "instruction to the leader failed; retrying: {error}");
        }
    }

    /// Resumes the create procedures a previous server left behind: a committed table only
    /// needs its record deleted; an uncommitted one is rolled back on the nodes.
    pub async fn resume_procedures(self: &Arc<Self>) -> Result<usize> {
        let records = self
            .store
            .range(&keys::create_table_procedures_prefix(self.id), 0)
            .await?;
        let mut resumed = 0;
        for kv in records {
            let table: Table = decode(&kv.key, &kv.value)?;
            if self.state.read().tables.contains_key(&table.id) {
                self.store.batch(vec![WriteOp::delete(kv.key)]).await?;
            } else {
                tracing::info!(table = %table.name, id = %table.id, "rolling back a create interrupted by a restart");
                self.roll_back_create(&table);
                resumed += 1;
            }
        }
        Ok(resumed)
    }
}
