//! Replica moves (and every other operator of more than one step) as persisted procedures.
//!
//! An operator changes a shard one step at a time; each step is a compare-and-swap of the
//! shard's placement on its version (so concurrent DDL that changes the shard, a split or
//! a merge, makes the next step fail cleanly). What the placement alone does not say is
//! the *intent*: after a crash between "add a follower on n4" and "remove the one on n1",
//! the shard would have one replica too many, and the repair scheduler would drop
//! whichever follower it likes least, perhaps the new one. So the operator itself is
//! recorded, in the same transaction as its steps.
//!
//! States (record: `keys::procedure(.., "move", shard)`, a [`MoveRecord`]):
//!
//! ```text
//!  step k < last starts ──> Recorded(k) ──> step k+1 < last starts ──> Recorded(k+1) ...
//!   one txn: shard swap      the operator,      one txn: shard swap
//!   + record put             the shard before    + record put
//!                            step k
//!  last step starts: one txn: shard swap + record deleted ──> (no record)
//!  failed, cancelled, timed out: record deleted (the schedulers repair what is left)
//!  server stops with a record: the next start resumes the operator at step k, if the
//!  shard is still as step k left it; otherwise the record is deleted
//! ```
//!
//! One-step operators (failover promotions, single transfers) write no record: their one
//! swap is all there is, and reconcile brings nodes in line with it after a restart.

use crate::error::Result;
use crate::meta::cluster::{decode, encode, Cluster};
use meridian_model::{Shard, ShardId, ShardVersion};
use meridian_scheduler::Operator;
use meridian_store::{keys, WriteOp};
use serde::{Deserialize, Serialize};

/// An operator between two of its steps, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// The operator; `current` is the step that started last.
    pub operator: Operator,
    /// The shard's placement before that step (the step's instructions are derived from
    /// the difference, so a resumed step can send them again).
    pub shard_before: Shard,
}

/// What a step's transaction does with the operator's record.
#[derive(Debug, Clone)]
pub enum RecordChange {
    /// Nothing: a one-step operator.
    None,
    /// Write the record: a step to come after this one.
    Put(Box<MoveRecord>),
    /// Delete it: the operator's last step.
    Delete,
}

impl RecordChange {
    /// The change for step `index` of `op` starting from `before`.
    pub fn for_step(op: &Operator, index: usize, before: &Shard) -> Self {
        if index + 1 < op.steps.len() {
            let mut operator = op.clone();
            operator.current = index;
            RecordChange::Put(Box::new(MoveRecord {
                operator,
                shard_before: before.clone(),
            }))
        } else if index > 0 {
            RecordChange::Delete
        } else {
            RecordChange::None
        }
    }
}

impl Cluster {
    /// Replaces a shard's placement if its version is still `expected`, changing the
    /// operator record in the same transaction (see the module's states). Returns false if
    /// the version moved.
    pub async fn swap_shard_for_step(
        &self,
        expected: ShardVersion,
        next: Shard,
        record: RecordChange,
    ) -> Result<bool> {
        let key = keys::procedure(self.id, "move", u64::from(next.id.0));
        let extra = match record {
            RecordChange::None => Vec::new(),
            RecordChange::Put(r) => vec![WriteOp::put(key, encode(&*r)?)],
            RecordChange::Delete => vec![WriteOp::delete(key)],
        };
        self.swap_shard_with(expected, next, extra).await
    }

    /// Deletes the record of an operator on `shard` that ended before its last step.
    pub async fn forget_move(&self, shard: ShardId) -> Result<()> {
        let key = keys::procedure(self.id, "move", u64::from(shard.0));
        Ok(self.store.batch(vec![WriteOp::delete(key)]).await?)
    }

    /// The operators a previous server left between two steps.
    pub async fn move_records(&self) -> Result<Vec<MoveRecord>> {
        let records = self
            .store
            .range(&keys::procedures_prefix(self.id, "move"), 0)
            .await?;
        records
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }
}
