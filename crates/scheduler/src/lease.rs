//! Write leases per shard, as Meridian books them: which node (in which session) may lead
//! each shard, and until when Meridian must assume it still does. Pure: the server keeps
//! one book per cluster behind a lock, the simulator one per simulated cluster, and both
//! grant through [`LeaseBook::try_grant`].
//!
//! A lease is granted in a heartbeat ack for one shard at one version, to the node the
//! durable metadata names leader at the version it reported, in its current session, while
//! it is not Offline (the caller checks that). The node may write until its heartbeat's
//! send time plus the lease (its own clock); Meridian counts from its *receipt* of that
//! heartbeat plus the lease plus the drift margin (`hold_ms`), which is later. The book
//! lets no other holder (another node, or another session of the same node) take the shard
//! before the last holder's hold ran out, unless the holder gave it up first (it reported
//! the shard as not led, or acknowledged a demotion or close). So two nodes never hold a
//! lease for one shard at once, whatever path put a new leader in the metadata: failover,
//! a manual transfer, a reopen, a node that reconnected in a new session.
//!
//! After Meridian (re)starts it does not know what an earlier run granted: for `hold_ms` it
//! renews only leases that nodes report they still hold (`leased` in their reports) at the
//! version the metadata names, and grants no fresh ones.
//!
//! ```text
//!   node N  ──H(sent t0)──>  Meridian receives at r0, grants (S, v) to (N, session)
//!   N writable until t0 + lease          (node clock; t0 <= r0)
//!   nobody else granted S before r0 + lease + margin   (Meridian clock)
//! ```

use meridian_model::{NodeId, ReplicaRole, ShardId, ShardReport, ShardStatus, ShardVersion};
use std::collections::{BTreeSet, HashMap};

/// The current holder of one shard's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    node: NodeId,
    session: u64,
    version: ShardVersion,
    /// Receipt time (Meridian's clock, ms) of the last heartbeat whose ack renewed it.
    granted_ms: u64,
}

/// Why a grant was refused (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDenied {
    /// Another node or session holds the shard's lease until this time (Meridian ms).
    HeldByOther {
        /// The holder.
        node: NodeId,
        /// Its hold runs out at this time.
        until_ms: u64,
    },
    /// Meridian started less than a lease ago and the node claims no lease.
    StartQuiet {
        /// Fresh grants resume at this time.
        until_ms: u64,
    },
}

/// Every shard's lease holder in one cluster.
#[derive(Debug)]
pub struct LeaseBook {
    hold_ms: u64,
    quiet_until_ms: u64,
    holders: HashMap<ShardId, Holder>,
    /// Shards each node holds a lease for (to release those it stops reporting).
    by_node: HashMap<NodeId, BTreeSet<ShardId>>,
}

impl LeaseBook {
    fn remove(&mut self, shard: ShardId) {
        if let Some(h) = self.holders.remove(&shard) {
            if let Some(set) = self.by_node.get_mut(&h.node) {
                set.remove(&shard);
            }
        }
    }
}

impl LeaseBook {
    /// A book whose leases are held `hold_ms` after the granting heartbeat's receipt;
    /// `now_ms` is when this Meridian started serving the cluster.
    pub fn new(hold_ms: u64, now_ms: u64) -> Self {
        Self {
            hold_ms,
            quiet_until_ms: now_ms + hold_ms,
            holders: HashMap::new(),
            by_node: HashMap::new(),
        }
    }

    /// Grants or renews `shard`'s lease to `node` in `session` at `version`, received at
    /// `now_ms`. `claims` says the node reported that it holds a valid lease for the shard
    /// at that version already. The caller has checked the metadata.
    pub fn try_grant(
        &mut self,
        shard: ShardId,
        node: NodeId,
        session: u64,
        version: ShardVersion,
        claims: bool,
        now_ms: u64,
    ) -> Result<(), LeaseDenied> {
        if let Some(h) = self.holders.get(&shard).copied() {
            let same_holder = h.node == node && h.session == session;
            // The same node in a new session may keep a lease it shows it still holds
            // (a reconnect); a new process under the same name holds none.
            let same_node_still_holding = h.node == node && claims && version >= h.version;
            let held = now_ms < h.granted_ms + self.hold_ms;
            if !(same_holder || same_node_still_holding) && held {
                return Err(LeaseDenied::HeldByOther {
                    node: h.node,
                    until_ms: h.granted_ms + self.hold_ms,
                });
            }
            if !same_holder && !claims && now_ms < self.quiet_until_ms {
                return Err(LeaseDenied::StartQuiet {
                    until_ms: self.quiet_until_ms,
                });
            }
            if h.node != node {
                self.remove(shard);
            }
        } else if !claims && now_ms < self.quiet_until_ms {
            return Err(LeaseDenied::StartQuiet {
                until_ms: self.quiet_until_ms,
            });
        }
        self.holders.insert(
            shard,
            Holder {
                node,
                session,
                version,
                granted_ms: now_ms,
            },
        );
        self.by_node.entry(node).or_default().insert(shard);
        Ok(())
    }

    /// The holder of `shard` in `session` gave it up (acknowledged a demotion or close).
    pub fn release(&mut self, shard: ShardId, node: NodeId, session: u64) {
        if self
            .holders
            .get(&shard)
            .is_some_and(|h| h.node == node && h.session == session)
        {
            self.remove(shard);
        }
    }

    /// Releases the leases that a report of `node`'s current session shows it gave up:
    /// shards it no longer reports, or reports as not led, closed, or at another version
    /// than the one leased.
    pub fn observe_report(&mut self, node: NodeId, session: u64, reports: &[ShardReport]) {
        let Some(held) = self.by_node.get(&node) else {
            return;
        };
        if held.is_empty() {
            return;
        }
        let by_shard: HashMap<ShardId, &ShardReport> =
            reports.iter().map(|r| (r.shard, r)).collect();
        let released: Vec<ShardId> = held
            .iter()
            .copied()
            .filter(|shard| {
                let Some(h) = self.holders.get(shard) else {
                    return true;
                };
                if h.session != session {
                    return false;
                }
                match by_shard.get(shard) {
                    None => true,
                    Some(r) => {
                        r.role != ReplicaRole::Leader
                            || r.status == ShardStatus::Closed
                            || r.version > h.version && !r.leased
                    }
                }
            })
            .collect();
        for shard in released {
            self.remove(shard);
        }
    }

    /// Until when (Meridian ms) the lease of `shard` may still be held, and by whom.
    pub fn held_until(&self, shard: ShardId) -> Option<(NodeId, u64)> {
        self.holders
            .get(&shard)
            .map(|h| (h.node, h.granted_ms + self.hold_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: u64 = 2500;

    fn book() -> LeaseBook {
        // Started long ago: no start-up quiet period in the way.
        let b = LeaseBook::new(HOLD, 0);
        assert!(b.quiet_until_ms == HOLD);
        b
    }

    const S: ShardId = ShardId(1);
    const V: ShardVersion = ShardVersion(3);

    #[test]
    fn another_node_gets_no_lease_before_the_holders_hold_ran_out() {
        let mut b = book();
        b.try_grant(S, NodeId(1), 1, V, false, 10_000).unwrap();
        let next = ShardVersion(4);
        assert_eq!(
            b.try_grant(S, NodeId(2), 7, next, false, 12_000),
            Err(LeaseDenied::HeldByOther {
                node: NodeId(1),
                until_ms: 12_500
            })
        );
        b.try_grant(S, NodeId(2), 7, next, false, 12_500).unwrap();
        assert_eq!(b.held_until(S), Some((NodeId(2), 15_000)));
    }

    #[test]
    fn a_new_session_of_the_same_node_waits_unless_it_still_holds_the_lease() {
        let mut b = book();
        b.try_grant(S, NodeId(1), 1, V, false, 10_000).unwrap();
        // A second process under the same name: it holds no lease.
        assert!(b.try_grant(S, NodeId(1), 2, V, false, 10_100).is_err());
        // The same process after a reconnect shows the lease it holds.
        b.try_grant(S, NodeId(1), 2, V, true, 10_200).unwrap();
        // Now the old session is the other one.
        assert!(b.try_grant(S, NodeId(1), 1, V, false, 10_300).is_err());
    }

    #[test]
    fn a_holder_that_steps_down_frees_the_shard_at_once() {
        let mut b = book();
        b.try_grant(S, NodeId(1), 1, V, false, 10_000).unwrap();
        let demoted = ShardReport {
            shard: S,
            version: ShardVersion(4),
            role: ReplicaRole::Follower,
            status: ShardStatus::Ready,
            stats: Default::default(),
            log: Default::default(),
            leased: false,
        };
        // A report of another session says nothing about this one's lease.
        b.observe_report(NodeId(1), 9, &[demoted]);
        assert!(b.held_until(S).is_some());
        b.observe_report(NodeId(1), 1, &[demoted]);
        assert!(b.held_until(S).is_none());
        b.try_grant(S, NodeId(2), 5, ShardVersion(4), false, 10_001)
            .unwrap();
        // So does an acknowledged demotion, and a shard missing from the report.
        b.release(S, NodeId(2), 4);
        assert!(
            b.held_until(S).is_some(),
            "another session's ack releases nothing"
        );
        b.release(S, NodeId(2), 5);
        b.try_grant(S, NodeId(3), 5, ShardVersion(5), false, 10_002)
            .unwrap();
        b.observe_report(NodeId(3), 5, &[]);
        assert!(b.held_until(S).is_none());
    }

    #[test]
    fn after_a_start_only_leases_that_nodes_still_hold_are_renewed() {
        let mut b = LeaseBook::new(HOLD, 1_000);
        assert_eq!(
            b.try_grant(S, NodeId(1), 1, V, false, 2_000),
            Err(LeaseDenied::StartQuiet { until_ms: 3_500 })
        );
        b.try_grant(S, NodeId(2), 1, V, true, 2_000).unwrap();
        b.try_grant(ShardId(2), NodeId(1), 1, V, false, 3_500)
            .unwrap();
    }
}
