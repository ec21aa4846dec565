//! Shard health: what is wrong with a shard, as an operator asks it (like `pd-ctl region
//! check miss-peer / down-peer`). One pure function, so the API, `ctl check`, the dashboard
//! and the gauges say the same thing.

use crate::view::{ClusterView, ShardView};
use meridian_model::ShardId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One thing wrong with a shard. A shard with none is healthy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardProblem {
    /// No replica leads, or the leader's node is down: writes fail until failover.
    Leaderless,
    /// The leader is down and no follower is close enough to the committed position to
    /// take over without losing writes: failover waits (see `ctl force-promote`).
    WaitingForInSyncFollower,
    /// A replica's node is down (Offline or Removed) or unknown: repair replaces it after
    /// its delay.
    ReplicaDown,
    /// Fewer replicas than the cluster's replication factor.
    UnderReplicated,
    /// Two replicas share a failure domain although a free domain exists.
    DomainViolation,
}

impl ShardProblem {
    /// Every problem, worst first.
    pub const ALL: [ShardProblem; 5] = [
        ShardProblem::Leaderless,
        ShardProblem::WaitingForInSyncFollower,
        ShardProblem::ReplicaDown,
        ShardProblem::UnderReplicated,
        ShardProblem::DomainViolation,
    ];

    /// Its name on every interface (`"replica_down"`).
    pub fn name(self) -> &'static str {
        match self {
            ShardProblem::Leaderless => "leaderless",
            ShardProblem::WaitingForInSyncFollower => "waiting_for_in_sync_follower",
            ShardProblem::ReplicaDown => "replica_down",
            ShardProblem::UnderReplicated => "under_replicated",
            ShardProblem::DomainViolation => "domain_violation",
        }
    }

    /// What an operator can do about it, in one line.
    pub fn advice(self) -> &'static str {
        match self {
            ShardProblem::Leaderless => {
                "failover promotes a follower once the leader's lease has run out; if it stays, see waiting_for_in_sync_follower"
            }
            ShardProblem::WaitingForInSyncFollower => {
                "bring the old leader's node back, or accept losing its unreplicated writes with `ctl force-promote SHARD NODE`"
            }
            ShardProblem::ReplicaDown => {
                "bring the node back, or wait for repair to replace the replica (repair delay); `ctl nodes` shows which node"
            }
            ShardProblem::UnderReplicated => {
                "repair adds replicas when enough nodes can take one; add nodes (in other zones) if none can"
            }
            ShardProblem::DomainViolation => {
                "repair moves a replica to the free domain; check that nodes there are Online and not cordoned"
            }
        }
    }
}

/// The problems of one shard, worst first. `waiting` says whether failover is waiting for an
/// in-sync follower for it (the failover scheduler's finding).
pub fn shard_problems(view: &ClusterView, sv: &ShardView, waiting: bool) -> Vec<ShardProblem> {
    let mut problems = Vec::new();
    let down = |node| view.node(node).is_none_or(|n| n.is_down());
    if sv.shard.leader().is_none_or(down) {
        problems.push(ShardProblem::Leaderless);
    }
    if waiting {
        problems.push(ShardProblem::WaitingForInSyncFollower);
    }
    if sv.shard.replicas.iter().any(|r| down(r.node)) {
        problems.push(ShardProblem::ReplicaDown);
    }
    let factor = view.config().replication_factor.max(1) as usize;
    if sv.shard.replicas.len() < factor {
        problems.push(ShardProblem::UnderReplicated);
    }
    if view.shard_violations(&sv.shard) > 0 {
        problems.push(ShardProblem::DomainViolation);
    }
    problems
}

/// Every unhealthy shard of `view` with its problems; `waiting` lists the shards failover
/// waits on.
pub fn unhealthy_shards(
    view: &ClusterView,
    waiting: impl Fn(ShardId) -> bool,
) -> BTreeMap<ShardId, Vec<ShardProblem>> {
    view.shards()
        .iter()
        .filter_map(|sv| {
            let problems = shard_problems(view, sv, waiting(sv.shard.id));
            (!problems.is_empty()).then_some((sv.shard.id, problems))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{modify, ClusterBuilder};
    use meridian_model::{NodeId, NodeState, Replica, ReplicaRole};

    fn replicas(nodes: &[u64]) -> Vec<Replica> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| Replica {
                node: NodeId(n),
                role: if i == 0 {
                    ReplicaRole::Leader
                } else {
                    ReplicaRole::Follower
                },
            })
            .collect()
    }

    #[test]
    fn each_problem_is_found_and_a_healthy_shard_has_none() {
        // Nodes 1..6 in zones z0 z1 z2 z0 z1 z2. Shard 0 on 1, 2, 3 (spread); shard 1 on
        // 1, 4, 2 (z0 twice while z2 is free); shard 2 on 2, 3 only.
        let view = ClusterBuilder::new().zones(3).nodes(6).shards(3).build();
        let view = modify(view, |_, shards| {
            shards[0].shard.replicas = replicas(&[1, 2, 3]);
            shards[1].shard.replicas = replicas(&[1, 4, 2]);
            shards[2].shard.replicas = replicas(&[2, 3]);
        });
        let sv = |i: usize| view.shards()[i].clone();
        assert!(shard_problems(&view, &sv(0), false).is_empty());
        assert_eq!(
            shard_problems(&view, &sv(1), false),
            [ShardProblem::DomainViolation]
        );
        assert_eq!(
            shard_problems(&view, &sv(2), false),
            [ShardProblem::UnderReplicated]
        );

        // Node 1 (the leader of shards 0 and 1) goes Offline; failover waits for shard 0.
        let view = modify(view, |nodes, _| {
            nodes[0].state = NodeState::Offline;
        });
        let found = unhealthy_shards(&view, |s| s == view.shards()[0].shard.id);
        let first = view.shards()[0].shard.id;
        assert_eq!(
            found[&first],
            [
                ShardProblem::Leaderless,
                ShardProblem::WaitingForInSyncFollower,
                ShardProblem::ReplicaDown
            ]
        );
        assert!(found[&view.shards()[1].shard.id].contains(&ShardProblem::ReplicaDown));
        assert_eq!(found.len(), 3);
    }
}
