//! Keeping nodes' replicas in line with the metadata: the server's side of the one
//! reconcile path (`meridian_scheduler::reconcile_node`, which the simulator calls too).
//!
//! Every report is reconciled as it arrives (`Cluster::on_report`); replicas a node should
//! hold but does not report are found by a sweep with each full scheduling pass
//! ([`Cluster::reconcile_sweep`]), which costs one pass over the shards instead of one per
//! heartbeat. An instruction that did not fix the replica (lost, refused, failed) is sent
//! again, with exponential backoff, for as long as the disagreement lasts.

use super::cluster::{Cluster, ClusterState};
use meridian_model::{NodeId, NodeState, Shard, ShardId, ShardVersion};
use meridian_scheduler::LeaseBook;
use meridian_scheduler::{reconcile_node, InstructionKind, NodeInstruction, ReconcileContext};
use std::collections::{HashMap, HashSet};

/// Wait before sending the same fix a second time; doubles with each attempt.
const RESEND_FIRST_MS: u64 = 500;
/// Longest wait between two sends of the same fix.
const RESEND_MAX_MS: u64 = 8_000;

/// A fix sent to a node for one shard, and when it may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    version: ShardVersion,
    kind: InstructionKind,
    attempts: u32,
    next_ms: u64,
}

/// Keeps the orders that are due (new, or unanswered past their backoff) and records them.
/// Fixes for shards that need none any more are forgotten.
/// Resends are counted for `cluster`.
pub(super) fn due_orders(
    cluster: &str,
    book: &mut HashMap<ShardId, Resend>,
    orders: Vec<NodeInstruction>,
    now_ms: u64,
    forget_others: bool,
) -> Vec<NodeInstruction> {
    if forget_others {
        let wanted: HashSet<ShardId> = orders.iter().map(|o| o.shard).collect();
        book.retain(|s, _| wanted.contains(s));
    }
    orders
        .into_iter()
        .filter(|o| {
            let attempts = match book.get(&o.shard) {
                Some(r) if r.version == o.version && r.kind == o.kind => {
                    if now_ms < r.next_ms {
                        return false;
                    }
                    metrics::counter!("meridian_reconcile_resends_total", "cluster" => cluster.to_string())
                        .increment(1);
                    r.attempts + 1
                }
                _ => 0,
            };
            let wait = (RESEND_FIRST_MS << attempts.min(16)).min(RESEND_MAX_MS);
            book.insert(
                o.shard,
                Resend {
                    version: o.version,
                    kind: o.kind,
                    attempts,
                    next_ms: now_ms + wait,
                },
            );
            true
        })
        .collect()
}

/// The cluster's state as the pure reconcile function sees it.
pub(super) struct StateContext<'a> {
    pub(super) state: &'a ClusterState,
    pub(super) leases: &'a LeaseBook,
    pub(super) now_ms: u64,
}

impl ReconcileContext for StateContext<'_> {
    fn shard(&self, shard: ShardId) -> Option<&Shard> {
        self.state.shards.get(&shard).map(|e| &e.shard)
    }

    fn pending(&self, shard: ShardId) -> bool {
        self.state.splitting.contains(&shard)
    }

    fn busy(&self, shard: ShardId) -> bool {
        self.state.busy.contains(&shard)
    }

    /// Another node may still lead: it holds the shard's lease (Meridian granted it and
    /// neither saw it given up nor saw it run out). A node that merely still *reports*
    /// itself leader without a lease cannot write, so it does not hold a promotion back
    /// (or one that refuses to step down would block its shard for ever).
    fn other_leader(&self, shard: ShardId, node: NodeId) -> bool {
        self.leases
            .held_until(shard)
            .is_some_and(|(holder, until)| holder != node && self.now_ms < until)
    }
}

impl Cluster {
    /// Tells the reconcile path which shards have a running operator (their instructions
    /// are the operator's to send); called by the scheduling loop each tick.
    pub fn set_busy_shards(&self, busy: impl IntoIterator<Item = ShardId>) {
        let busy: HashSet<ShardId> = busy.into_iter().collect();
        let mut state = self.state.write();
        if state.busy != busy {
            state.busy = busy;
        }
    }

    /// Fixes for every connected node (or only `only`), from its last report and the
    /// shards the metadata places on it: opens replicas it does not report, and whatever
    /// the per-report path would send again after its backoff.
    pub fn reconcile_sweep(&self, now_ms: u64, only: Option<NodeId>) -> Vec<NodeInstruction> {
        let mut state = self.state.write();
        let mut placed: HashMap<NodeId, Vec<Shard>> = HashMap::new();
        for e in state.shards.values() {
            for r in &e.shard.replicas {
                if only.is_some_and(|n| n != r.node) {
                    continue;
                }
                placed.entry(r.node).or_default().push(e.shard.clone());
            }
        }
        let mut fixes: Vec<(NodeId, Vec<NodeInstruction>)> = Vec::new();
        {
            let leases = self.leases.lock();
            let ctx = StateContext {
                state: &state,
                leases: &leases,
                now_ms,
            };
            for (id, entry) in &state.nodes {
                if only.is_some_and(|n| n != *id)
                    || entry.last_heartbeat_ms.is_none()
                    || !matches!(entry.state, NodeState::Online | NodeState::Suspect)
                    || self.sessions.session_of(*id).is_none()
                {
                    continue;
                }
                let reports: Vec<_> = entry.reports.values().copied().collect();
                let shards = placed.get(id).map(Vec::as_slice).unwrap_or_default();
                fixes.push((*id, reconcile_node(*id, &reports, shards, &ctx)));
            }
        }
        let mut out = Vec::new();
        let name = self.name();
        for (id, orders) in fixes {
            if let Some(entry) = state.nodes.get_mut(&id) {
                out.extend(due_orders(
                    &name,
                    &mut entry.reconciling,
                    orders,
                    now_ms,
                    true,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(version: u64) -> NodeInstruction {
        NodeInstruction {
            op: None,
            node: NodeId(1),
            shard: ShardId(3),
            version: ShardVersion(version),
            kind: InstructionKind::Demote,
            required: false,
        }
    }

    #[test]
    fn an_unanswered_fix_is_sent_again_with_growing_backoff() {
        let mut book = HashMap::new();
        assert_eq!(
            due_orders("test", &mut book, vec![order(4)], 0, true).len(),
            1
        );
        assert!(due_orders("test", &mut book, vec![order(4)], 499, true).is_empty());
        assert_eq!(
            due_orders("test", &mut book, vec![order(4)], 500, true).len(),
            1
        );
        // Second resend waits twice as long.
        assert!(due_orders("test", &mut book, vec![order(4)], 1_499, true).is_empty());
        assert_eq!(
            due_orders("test", &mut book, vec![order(4)], 1_500, true).len(),
            1
        );
        // A newer version is a new fix: sent at once.
        assert_eq!(
            due_orders("test", &mut book, vec![order(5)], 1_501, true).len(),
            1
        );
        // Fixed: forgotten, so a later disagreement is sent at once too.
        assert!(due_orders("test", &mut book, vec![], 1_502, true).is_empty());
        assert!(book.is_empty());
    }
}
