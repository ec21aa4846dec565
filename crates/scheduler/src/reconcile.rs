//! The one reconcile path: what each replica on a node needs, from the metadata, the node's
//! report and the running operators. The server calls it on every heartbeat of every node
//! and the simulator on every simulated heartbeat, so what the simulator proves about
//! repairs holds for the server.
//!
//! Per replica, [`reconcile`] decides between nothing, `Demote`, `CloseShard`, `Promote` and
//! `OpenShard`; [`reconcile_missing`] opens replicas the node should hold but did not
//! report. [`reconcile_node`] combines both for one report and orders them safely: a
//! promotion (or an open as leader) waits while another node may still lead the shard,
//! until that node acknowledged its demotion or its lease surely ran out
//! (demote-before-promote, DESIGN invariant 1).

use crate::operator::{reconcile, reconcile_missing, InstructionKind, NodeInstruction};
use meridian_model::{NodeId, ReplicaRole, Shard, ShardId, ShardReport};

/// What [`reconcile_node`] needs to know about the rest of the cluster.
pub trait ReconcileContext {
    /// The shard's metadata, `None` if it does not exist.
    fn shard(&self, shard: ShardId) -> Option<&Shard>;
    /// Whether a shard unknown to the metadata is being created (a split in progress):
    /// such a report is not a stray to close.
    fn pending(&self, shard: ShardId) -> bool;
    /// Whether an operator runs on the shard (its own instructions are in flight).
    fn busy(&self, shard: ShardId) -> bool;
    /// Whether a node other than `node` may still lead the shard: the server answers from
    /// its lease book (a lease it granted that was neither given up nor ran out), the
    /// simulator from what live nodes hold.
    fn other_leader(&self, shard: ShardId, node: NodeId) -> bool;
}

/// The instructions that bring `node`'s replicas in line with the metadata, given its
/// report (`reports`, every shard it holds) and the shards the metadata places on it
/// (`placed`).
pub fn reconcile_node<'a>(
    node: NodeId,
    reports: &[ShardReport],
    placed: impl IntoIterator<Item = &'a Shard>,
    ctx: &impl ReconcileContext,
) -> Vec<NodeInstruction> {
    let mut orders: Vec<NodeInstruction> = reports
        .iter()
        .filter(|r| ctx.shard(r.shard).is_some() || !ctx.pending(r.shard))
        .filter_map(|r| reconcile(node, r, ctx.shard(r.shard), ctx.busy(r.shard)))
        .collect();
    orders.extend(reconcile_missing(
        node,
        placed,
        |s| reports.iter().any(|r| r.shard == s),
        |s| ctx.busy(s),
    ));
    orders.retain(|o| !(makes_leader(o) && ctx.other_leader(o.shard, node)));
    orders
}

fn makes_leader(o: &NodeInstruction) -> bool {
    matches!(
        o.kind,
        InstructionKind::Promote
            | InstructionKind::OpenShard {
                role: ReplicaRole::Leader
            }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::{Replica, ShardStatus, ShardVersion};
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct Ctx {
        shards: HashMap<ShardId, Shard>,
        busy: HashSet<ShardId>,
        leaders: HashMap<ShardId, NodeId>,
    }

    impl ReconcileContext for Ctx {
        fn shard(&self, shard: ShardId) -> Option<&Shard> {
            self.shards.get(&shard)
        }
        fn pending(&self, _: ShardId) -> bool {
            false
        }
        fn busy(&self, shard: ShardId) -> bool {
            self.busy.contains(&shard)
        }
        fn other_leader(&self, shard: ShardId, node: NodeId) -> bool {
            self.leaders.get(&shard).is_some_and(|n| *n != node)
        }
    }

    fn shard(id: u32, version: u64, leader: u64, followers: &[u64]) -> Shard {
        let mut replicas = vec![Replica {
            node: NodeId(leader),
            role: ReplicaRole::Leader,
        }];
        replicas.extend(followers.iter().map(|&n| Replica {
            node: NodeId(n),
            role: ReplicaRole::Follower,
        }));
        Shard {
            id: ShardId(id),
            version: ShardVersion(version),
            replicas,
        }
    }

    fn report(id: u32, version: u64, role: ReplicaRole) -> ShardReport {
        ShardReport {
            shard: ShardId(id),
            version: ShardVersion(version),
            role,
            status: ShardStatus::Ready,
            stats: Default::default(),
            log: Default::default(),
            leased: false,
        }
    }

    #[test]
    fn a_follower_that_should_lead_is_promoted_only_after_the_old_leader_stepped_down() {
        // Shard 1 moved its leadership from node 1 to node 2 (v5); node 2 missed the promote.
        let mut ctx = Ctx::default();
        ctx.shards.insert(ShardId(1), shard(1, 5, 2, &[1]));
        ctx.leaders.insert(ShardId(1), NodeId(1));
        let placed = [ctx.shards[&ShardId(1)].clone()];
        let r2 = [report(1, 4, ReplicaRole::Follower)];
        assert!(reconcile_node(NodeId(2), &r2, &placed, &ctx).is_empty());
        // Node 1 still says it leads: it is demoted.
        let r1 = [report(1, 4, ReplicaRole::Leader)];
        let o = reconcile_node(NodeId(1), &r1, &placed, &ctx);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].kind, InstructionKind::Demote);
        // Once it reports as a follower, node 2 is promoted.
        ctx.leaders.clear();
        let o = reconcile_node(NodeId(2), &r2, &placed, &ctx);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].kind, InstructionKind::Promote);
        assert_eq!(o[0].version, ShardVersion(5));
    }

    #[test]
    fn a_replica_in_the_wrong_role_or_version_is_repaired_unless_an_operator_owns_it() {
        let mut ctx = Ctx::default();
        ctx.shards.insert(ShardId(1), shard(1, 5, 1, &[2]));
        let placed = [ctx.shards[&ShardId(1)].clone()];
        let stale = [report(1, 3, ReplicaRole::Follower)];
        let o = reconcile_node(NodeId(2), &stale, &placed, &ctx);
        assert_eq!(
            o[0].kind,
            InstructionKind::OpenShard {
                role: ReplicaRole::Follower
            }
        );
        ctx.busy.insert(ShardId(1));
        assert!(reconcile_node(NodeId(2), &stale, &placed, &ctx).is_empty());
    }

    #[test]
    fn a_replica_the_node_does_not_report_is_opened_and_a_lost_one_closed() {
        let mut ctx = Ctx::default();
        ctx.shards.insert(ShardId(1), shard(1, 5, 1, &[2]));
        ctx.shards.insert(ShardId(2), shard(2, 2, 3, &[4]));
        let placed = [ctx.shards[&ShardId(1)].clone()];
        let lost = [report(2, 1, ReplicaRole::Leader)];
        let mut o = reconcile_node(NodeId(2), &lost, &placed, &ctx);
        o.sort_by_key(|i| i.shard);
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!(
            o[0].kind,
            InstructionKind::OpenShard {
                role: ReplicaRole::Follower
            }
        );
        assert_eq!(o[1].kind, InstructionKind::CloseShard);
    }
}
