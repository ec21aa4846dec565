//! Procedures: every change of the catalog or of shard boundaries, persisted with its step.
//!
//! Each kind has a record in the store (`keys::procedure`) written before any node acts on
//! it and updated in the same transaction as the metadata it changes, so a server that
//! dies anywhere leaves a record saying what to finish or undo; [`Cluster::resume_procedures`]
//! does that at the next start. Commits compare revisions (`super::revision`), so a
//! concurrent change makes a procedure fail cleanly (and roll back) instead of overwriting
//! it. Node-side cleanup (dropping partitions, closing shards) is retried with backoff until
//! the nodes confirm it, so no partition is left orphaned on a node.
//!
//! One module per kind, each with its states documented where they are defined:
//! [`create_table`], [`alter_table`], [`drop_table`], [`rename_table`], [`split`], [`merge`] (the last two
//! share [`reshard`]), and [`move_replicas`] for the scheduler's multi-step operators.
//!
//! Catalog commits and the memory updates that follow them run under one lock per cluster
//! ([`Procedures::commit`]), so memory applies conflicting commits in store order; node
//! steps run outside it. Creates share it: two creates touch disjoint keys (their names are
//! guarded by compares, their ids are unique), so their commits commute and may overlap,
//! and redb's group commit then shares one fsync among them. Alters share it too (one alter
//! per table at a time, each guarded by its table's revision). Drops, renames, splits and
//! merges hold it alone.

mod alter_table;
mod create_table;
mod drop_table;
mod merge;
mod move_replicas;
mod rename_table;
mod reshard;
mod split;

pub use move_replicas::{MoveRecord, RecordChange};
pub use reshard::ReshardOutcome;

use super::cluster::{decode, Cluster};
use super::session::InstructionOutcome;
use crate::error::{Result, ServerError};
use crate::failpoint::Failpoints;
use meridian_model::{NodeId, ShardId, Table};
use meridian_proto as pb;
use meridian_store::{keys, WriteOp};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Per-cluster state of procedures in flight (memory only; the records are in the store).
#[derive(Default)]
pub struct Procedures {
    /// Held from a catalog commit's transaction until memory reflects it: shared by
    /// creates and alters, exclusive for every other commit.
    pub(in crate::meta) commit: tokio::sync::RwLock<()>,
    /// Sources of merges in flight: new tables are not placed on them, and a merge is
    /// refused while a create in flight reserved its source.
    pub(in crate::meta) merging: parking_lot::Mutex<HashSet<ShardId>>,
    /// Test hooks between steps.
    pub(in crate::meta) failpoints: Failpoints,
}

/// First wait between two attempts of a node-side cleanup step.
const CLEANUP_MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of a node-side cleanup step.
const CLEANUP_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Waits between attempts of a node-side cleanup step: exponential, from
/// [`CLEANUP_MIN_BACKOFF`] to [`CLEANUP_MAX_BACKOFF`]. Cleanup is retried until done, never
/// given up: an orphan partition on a node is the failure this avoids.
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: CLEANUP_MIN_BACKOFF,
        }
    }
}

impl Backoff {
    /// Sleeps for the current delay and doubles it (up to the cap).
    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(CLEANUP_MAX_BACKOFF);
    }
}

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

    /// The test hooks between procedure steps of this cluster.
    pub fn failpoints(&self) -> &Failpoints {
        &self.procedures.failpoints
    }

    /// Resumes the procedures a previous server left behind: each kind finishes what was
    /// committed and rolls back what was not (see each kind's states). Returns how many
    /// procedures it resumed.
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
        resumed += self.resume_drops().await?;
        resumed += self.resume_renames().await?;
        resumed += self.resume_reshards().await?;
        resumed += self.resume_alters().await?;
        Ok(resumed)
    }

    /// Whether `node` is gone for good (removed or unknown): cleanup addressed to it is
    /// done, since it will never serve again under its id.
    pub(super) fn node_gone(&self, node: NodeId) -> bool {
        self.state
            .read()
            .nodes
            .get(&node)
            .is_none_or(|e| e.node.removed)
    }
}
