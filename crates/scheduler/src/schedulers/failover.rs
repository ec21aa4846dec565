//! Failover: a shard whose leader is on a dead node gets a new leader.

use super::Scheduler;
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::{choose_leader_target, choose_target, DomainRule};
use crate::view::ClusterView;
use meridian_model::{NodeState, ReplicaRole};

/// Restores a leader to every shard whose leader is on an Offline or Removed node (or that
/// has none).
///
/// Fast path: one `PromoteFollower` step to an in-sync follower on an Online node, the one
/// with the fewest leaders on a node that [can lead](crate::NodeView::can_lead) if there is
/// one (else on an evicting, draining or cordoned node: availability beats the eviction, and
/// the evict-leader or drain scheduler moves it on later), so the route moves on
/// the very tick the operator is admitted. Safe without the old leader's consent because
/// Offline comes only after its lease ran out. Slow path, when no in-sync follower is
/// alive: `ReopenShard` on a live replica's node, or else on a new node, which opens the
/// shard from durable storage. Restoring the replica count is left to the repair scheduler.
#[derive(Debug, Default)]
pub struct FailoverScheduler;

impl FailoverScheduler {
    /// A failover scheduler (it has no tuning).
    pub fn new() -> Self {
        Self
    }
}

impl Scheduler for FailoverScheduler {
    fn name(&self) -> &'static str {
        "failover"
    }

    fn essential(&self) -> bool {
        true
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let nodes = view.nodes();
        let mut ops = Vec::new();
        for sv in view.shards() {
            let s = &sv.shard;
            let leader = s.leader();
            let leader_alive = leader
                .and_then(|l| view.node(l))
                .is_some_and(|n| !n.is_down());
            if leader_alive || !view.may_propose(s.id, Priority::Failover) {
                continue;
            }
            let why = match leader {
                Some(l) => format!("leader {l} is offline"),
                None => "no leader".to_string(),
            };
            // Prefer nodes that may lead; an evicting, draining or cordoned node beats no
            // leader.
            let rank = |i: usize| {
                (
                    !nodes[i].can_lead(),
                    !nodes[i].can_receive(),
                    tally.leaders[i],
                    nodes[i].id,
                )
            };
            let promote = sv
                .in_sync
                .iter()
                .filter(|&&n| s.role_of(n) == Some(ReplicaRole::Follower))
                .filter_map(|&n| view.node_index(n))
                .filter(|&i| nodes[i].state == NodeState::Online)
                .min_by_key(|&i| rank(i));
            let (step, i) = if let Some(i) = promote {
                (Step::PromoteFollower { to: nodes[i].id }, i)
            } else {
                let live_replica = s
                    .replicas
                    .iter()
                    .filter_map(|r| view.node_index(r.node))
                    .filter(|&i| nodes[i].state == NodeState::Online)
                    .min_by_key(|&i| rank(i));
                let Some(i) = live_replica
                    .or_else(|| choose_leader_target(view, &tally, s, &[], DomainRule::Prefer))
                    .or_else(|| choose_target(view, &tally, s, &[], DomainRule::Prefer))
                else {
                    continue;
                };
                (Step::ReopenShard { on: nodes[i].id }, i)
            };
            tally.leaders[i] += 1;
            let reason = match step {
                Step::PromoteFollower { to } => format!("{why}: promote in-sync follower {to}"),
                _ => format!(
                    "{why}, no in-sync follower alive: reopen on {}",
                    nodes[i].id
                ),
            };
            ops.push(Operator::new(
                OperatorKind::Failover,
                s,
                vec![step],
                now,
                reason,
            ));
        }
        ops
    }
}
