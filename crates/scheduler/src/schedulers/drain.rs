//! Drain: move every replica off a draining node, leaders first.

use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::{choose_leader_target, choose_target, DomainRule};
use crate::view::ClusterView;
use meridian_model::NodeState;

/// Empties draining nodes so an admin can remove them.
///
/// While the node still leads shards, only leadership moves: a `TransferLeader` to an
/// in-sync follower that [can lead](crate::NodeView::can_lead) (fewest leaders first), or,
/// with no such follower, a move of the leader replica (`AddFollower`, `TransferLeader`,
/// `RemoveReplica`) to a node that can lead. Once it
/// leads nothing, followers move (`AddFollower` on a domain-respecting target, then
/// `RemoveReplica`). Targets prefer a free failure domain but accept a shared one: the
/// admin asked for the node to go, and a violation is visible where a stalled drain is not.
/// Leaders first because a leader transfer is cheap and takes the node out
/// of the write path at once. A draining node that is not Online cannot hand over
/// leadership (failover does that); its followers still move.
#[derive(Debug)]
pub struct DrainScheduler {
    config: SchedulerConfig,
}

impl DrainScheduler {
    /// A drain scheduler with `config`'s per-tick cap.
    pub fn new(config: SchedulerConfig) -> Self {
        Self { config }
    }
}

impl Scheduler for DrainScheduler {
    fn name(&self) -> &'static str {
        "drain"
    }

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let nodes = view.nodes();
        let mut ops = Vec::new();
        for (d, node) in nodes.iter().enumerate() {
            if !node.draining || node.state == NodeState::Removed {
                continue;
            }
            let from = node.id;
            let leads = tally.leaders[d] > 0;
            for sv in view.shards_on(from) {
                if ops.len() >= self.config.max_ops_per_tick {
                    return ops;
                }
                let s = &sv.shard;
                if !view.may_propose(s.id, Priority::Maintenance) {
                    continue;
                }
                let is_leader = s.leader() == Some(from);
                let steps = if is_leader {
                    if node.state != NodeState::Online || !tally.has_capacity(d) {
                        continue;
                    }
                    let follower = sv
                        .in_sync
                        .iter()
                        .filter_map(|&n| view.node_index(n))
                        .filter(|&i| nodes[i].can_lead() && tally.has_capacity(i))
                        .min_by_key(|&i| (tally.leaders[i], nodes[i].id));
                    if let Some(f) = follower {
                        tally.leaders[f] += 1;
                        tally.add_op(&[d, f]);
                        vec![Step::TransferLeader {
                            from,
                            to: nodes[f].id,
                        }]
                    } else {
                        let Some(t) =
                            choose_leader_target(view, &tally, s, &[from], DomainRule::Prefer)
                        else {
                            continue;
                        };
                        tally.leaders[t] += 1;
                        tally.replicas[t] += 1;
                        tally.add_op(&[d, t]);
                        let to = nodes[t].id;
                        vec![
                            Step::AddFollower { node: to },
                            Step::TransferLeader { from, to },
                            Step::RemoveReplica { node: from },
                        ]
                    }
                } else if leads {
                    continue;
                } else {
                    let Some(t) = choose_target(view, &tally, s, &[from], DomainRule::Prefer)
                    else {
                        continue;
                    };
                    tally.replicas[t] += 1;
                    tally.add_op(&[t]);
                    vec![
                        Step::AddFollower { node: nodes[t].id },
                        Step::RemoveReplica { node: from },
                    ]
                };
                let reason = format!("{from} is draining");
                ops.push(Operator::new(OperatorKind::Drain, s, steps, now, reason));
            }
        }
        ops
    }
}
