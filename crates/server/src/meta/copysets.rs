//! The copyset family of a cluster in copyset placement mode, persisted and kept valid.
//!
//! Copyset placement (see `meridian_scheduler::copyset`) is only worth its name if the
//! family drawn at first placement outlives that moment: repair, drain, balance and
//! expansion must keep using it, across restarts. So:
//!
//! - first placement writes the family in the same batch as the shards
//!   ([`Cluster::copyset_ops`]);
//! - the scheduling loop calls [`Cluster::sync_copysets`] once per tick, which asks the pure
//!   `update_family` whether nodes joined (new copysets derived for them), or drained, died
//!   past the repair delay, or left (a substitute replaces them in each copyset), and if so
//!   writes the new family to the store *before* the schedulers see it;
//! - at start the family is loaded ([`load`]); a copyset-mode cluster whose shards exist but
//!   whose family was never stored (placed by an older binary) adopts its shards' distinct
//!   replica sets, which is what first placement drew.
//!
//! The schedulers get the family through `ClusterView::with_copysets`.

use super::cluster::{encode, Cluster};
use crate::error::{Result, ServerError};
use meridian_model::{ClusterConfig, ClusterId, NodeId, PlacementMode, Shard};
use meridian_scheduler::{update_family, ClusterView, CopysetFamily, FamilyUpdate, NodeView};
use meridian_store::{keys, KvBackend, WriteOp};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// A cluster's family in memory: what was last written to the store, or an adopted one
/// not written yet (`unsaved`).
#[derive(Debug, Default)]
pub struct ClusterCopysets {
    family: RwLock<Option<Arc<CopysetFamily>>>,
    unsaved: AtomicBool,
    /// Shards outside every copyset at the last full pass (logged when it changes).
    violations: AtomicU32,
}

impl ClusterCopysets {
    fn get(&self) -> Option<Arc<CopysetFamily>> {
        self.family.read().clone()
    }

    fn set(&self, family: Option<Arc<CopysetFamily>>) {
        *self.family.write() = family;
    }
}

/// Loads a cluster's family: the stored one, or, in copyset mode with shards but none
/// stored, one adopted from the shards' replica sets (written at the next sync).
pub async fn load(
    store: &Arc<dyn KvBackend>,
    id: ClusterId,
    config: &ClusterConfig,
    shards: impl IntoIterator<Item = &Shard>,
) -> Result<ClusterCopysets> {
    let PlacementMode::Copyset { scatter_width } = config.placement else {
        return Ok(ClusterCopysets::default());
    };
    let key = keys::copysets(id);
    let family = match store.get(&key).await? {
        Some(raw) => Some(
            serde_json::from_slice::<CopysetFamily>(&raw)
                .map_err(|e| ServerError::Corrupt(format!("{id} copysets: {e}")))?,
        ),
        None => {
            let sets: Vec<Vec<NodeId>> = shards
                .into_iter()
                .map(|s| s.replicas.iter().map(|r| r.node).collect())
                .collect();
            (!sets.is_empty()).then(|| {
                tracing::warn!(cluster = %id, "copyset mode without a stored family: adopting the shards' replica sets");
                CopysetFamily::from_replica_sets(sets.iter().map(Vec::as_slice), scatter_width)
            })
        }
    };
    let copysets = ClusterCopysets::default();
    copysets.unsaved.store(
        family.is_some() && store.get(&key).await?.is_none(),
        Ordering::Relaxed,
    );
    copysets.set(family.map(Arc::new));
    Ok(copysets)
}

impl Cluster {
    /// The family the schedulers keep shards in (copyset mode, once shards exist).
    pub fn copysets(&self) -> Option<Arc<CopysetFamily>> {
        self.copyset_family.get()
    }

    /// The write that stores a first placement's family, to batch with its shards (publish
    /// it with [`Cluster::copysets_placed`] once the batch is durable).
    pub(super) fn copyset_ops(&self, family: Option<&CopysetFamily>) -> Result<Vec<WriteOp>> {
        Ok(match family {
            Some(f) => vec![WriteOp::put(keys::copysets(self.id), encode(f)?)],
            None => Vec::new(),
        })
    }

    /// Publishes a first placement's family once its batch is durable.
    pub(super) fn copysets_placed(&self, family: Option<CopysetFamily>) {
        if let Some(f) = family {
            self.copyset_family.set(Some(Arc::new(f)));
        }
    }

    /// Brings the family up to date with `nodes` (their liveness as of `now_ms`), durable
    /// first; returns whether it changed. A no-op outside copyset mode and before the
    /// shards exist.
    pub async fn sync_copysets(
        &self,
        nodes: &[NodeView],
        now_ms: u64,
        repair_delay_ms: u64,
    ) -> Result<bool> {
        let config = self.config();
        let Some(current) = self.copysets() else {
            return Ok(false);
        };
        let seed = u64::from(self.id.0) ^ current.len() as u64 ^ now_ms;
        let update = update_family(
            &current,
            nodes,
            config.replication_factor.max(1) as usize,
            config.isolation,
            now_ms,
            repair_delay_ms,
            seed,
        );
        let unsaved = self.copyset_family.unsaved.load(Ordering::Relaxed);
        let Some(update) = update.or_else(|| {
            unsaved.then(|| FamilyUpdate {
                family: (*current).clone(),
                added: 0,
                replaced: 0,
                dropped: 0,
            })
        }) else {
            return Ok(false);
        };
        self.store()
            .batch(vec![WriteOp::put(
                keys::copysets(self.id),
                encode(&update.family)?,
            )])
            .await?;
        tracing::info!(
            cluster = %self.id,
            copysets = update.family.len(),
            added = update.added,
            replaced = update.replaced,
            dropped = update.dropped,
            "copyset family updated"
        );
        metrics::counter!("meridian_copyset_family_updates_total", "cluster" => self.name())
            .increment(1);
        self.copyset_family.unsaved.store(false, Ordering::Relaxed);
        self.copyset_family.set(Some(Arc::new(update.family)));
        Ok(true)
    }

    /// Copyset mode degrades openly, as isolation does (invariant 4): the number of shards
    /// whose replica set lies in no copyset is a gauge, `meridian_shards_outside_copysets`,
    /// and a warning when it becomes non-zero. It is non-zero while a move is in flight
    /// (RF + 1 replicas) and when repair found no copyset with live members to complete.
    pub fn report_copyset_violations(&self, view: &ClusterView) {
        if view.copysets().is_none() {
            return;
        }
        let outside = view.copyset_violations();
        let before = self
            .copyset_family
            .violations
            .swap(outside, Ordering::Relaxed);
        if outside != before {
            if outside > 0 && before == 0 {
                tracing::warn!(cluster = %self.id, shards = outside, "shards outside every copyset: a repair found no copyset to complete, or moves are in flight; repair moves them back when one fits");
            } else if outside == 0 {
                tracing::info!(cluster = %self.id, "every shard is inside a copyset again");
            }
        }
        metrics::gauge!("meridian_shards_outside_copysets", "cluster" => self.config().name)
            .set(f64::from(outside));
    }
}
