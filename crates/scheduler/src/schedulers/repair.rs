//! Replica repair: every shard keeps `replication_factor` live replicas in distinct domains.

use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::{choose_target, violations_around, DomainRule};
use crate::view::ClusterView;
use meridian_model::{NodeId, NodeState, ReplicaRole, Shard};

/// Restores the replica count and failure-domain spread of shards that have a live leader
/// (a shard without one is the failover scheduler's first).
///
/// - A follower on a node Removed, unknown, or Offline for at least `repair_delay_ms` is
///   dead: add a follower on a domain-respecting target, then remove the dead one.
///   (Offline for less: wait; the node is probably restarting.)
/// - Fewer replicas than RF: add a follower. More: remove the worst follower (on a
///   draining / cordoned node, or in a shared domain, or on the fullest node); these are
///   what a cancelled move leaves behind.
/// - Replicas sharing a domain while a free domain has room: move one (a `DomainFix`).
#[derive(Debug)]
pub struct ReplicaRepairScheduler {
    config: SchedulerConfig,
}

impl ReplicaRepairScheduler {
    /// A repair scheduler with `config`'s repair delay and per-tick cap.
    pub fn new(config: SchedulerConfig) -> Self {
        Self { config }
    }
}

impl Scheduler for ReplicaRepairScheduler {
    fn name(&self) -> &'static str {
        "replica-repair"
    }

    fn essential(&self) -> bool {
        true
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let rf = view.config().replication_factor.max(1) as usize;
        let mut tally = view.tally();
        let mut ops = Vec::new();
        for sv in view.shards() {
            if ops.len() >= self.config.max_ops_per_tick {
                break;
            }
            let s = &sv.shard;
            let leader_alive = s
                .leader()
                .and_then(|l| view.node(l))
                .is_some_and(|n| !n.is_down());
            if !leader_alive || !view.may_propose(s.id, Priority::Repair) {
                continue;
            }
            let mut dead = Vec::new();
            let mut waiting = false;
            for r in s
                .replicas
                .iter()
                .filter(|r| r.role == ReplicaRole::Follower)
            {
                match view.node(r.node) {
                    None => dead.push(r.node),
                    Some(n) if n.state == NodeState::Removed => dead.push(r.node),
                    Some(n) if n.state == NodeState::Offline => {
                        if now.saturating_sub(n.state_since_ms) >= self.config.repair_delay_ms {
                            dead.push(r.node);
                        } else {
                            waiting = true;
                        }
                    }
                    Some(_) => {}
                }
            }
            // A busy shard is mid-change (a move briefly has RF + 1 replicas): only a dead
            // replica justifies stepping in, preempting the lower-priority operator.
            let busy = view.busy(s.id).is_some();
            let plan = if let Some(&d) = dead.first() {
                if s.replicas.len() - dead.len() >= rf {
                    Some((
                        OperatorKind::ReplicaRepair,
                        vec![Step::RemoveReplica { node: d }],
                    ))
                } else {
                    choose_target(view, &tally, s, &dead, DomainRule::Prefer).map(|t| {
                        let steps = vec![
                            Step::AddFollower {
                                node: view.nodes()[t].id,
                            },
                            Step::RemoveReplica { node: d },
                        ];
                        (OperatorKind::ReplicaRepair, steps)
                    })
                }
            } else if busy {
                None
            } else if s.replicas.len() < rf {
                choose_target(view, &tally, s, &[], DomainRule::Prefer).map(|t| {
                    let node = view.nodes()[t].id;
                    (
                        OperatorKind::ReplicaRepair,
                        vec![Step::AddFollower { node }],
                    )
                })
            } else if s.replicas.len() > rf {
                surplus_follower(view, s).map(|node| {
                    (
                        OperatorKind::ReplicaRepair,
                        vec![Step::RemoveReplica { node }],
                    )
                })
            } else if !waiting && view.may_propose(s.id, Priority::Maintenance) {
                domain_fix(view, &tally, s)
            } else {
                None
            };
            let Some((kind, steps)) = plan else {
                continue;
            };
            let op = Operator::new(kind, s, steps, now, describe(kind, s, &dead));
            for n in op.workers() {
                if let Some(i) = view.node_index(n) {
                    tally.add_op(&[i]);
                    tally.replicas[i] += 1;
                }
            }
            ops.push(op);
        }
        ops
    }
}

fn describe(kind: OperatorKind, s: &Shard, dead: &[NodeId]) -> String {
    match (kind, dead.first()) {
        (OperatorKind::DomainFix, _) => format!("{} has replicas sharing a failure domain", s.id),
        (_, Some(d)) => format!("replica of {} on dead {d}", s.id),
        _ => format!("{} has {} replicas", s.id, s.replicas.len()),
    }
}

/// The follower to drop from an over-replicated shard: on a node that should not hold it,
/// else one sharing a domain, else on the node with most replicas.
fn surplus_follower(view: &ClusterView, s: &Shard) -> Option<NodeId> {
    s.followers().max_by_key(|&n| {
        let node = view.node(n);
        let unwanted = node.is_none_or(|v| !v.can_receive());
        let dom = view.domain_of(n);
        let shared = s
            .replicas
            .iter()
            .filter(|r| r.node != n && view.domain_of(r.node) == dom)
            .count();
        (unwanted, shared, view.replica_count(n), n)
    })
}

/// Moves a follower out of a shared domain, if a strict target lowers the violations.
fn domain_fix(
    view: &ClusterView,
    tally: &crate::view::Tally,
    s: &Shard,
) -> Option<(OperatorKind, Vec<Step>)> {
    if view.shard_violations(s) == 0 {
        return None;
    }
    for f in s.followers() {
        let dom = view.domain_of(f);
        let shares = s
            .replicas
            .iter()
            .any(|r| r.node != f && view.domain_of(r.node) == dom);
        if !shares {
            continue;
        }
        if let Some(t) = choose_target(view, tally, s, &[f], DomainRule::Strict) {
            let to = view.nodes()[t].id;
            let (before, after) = violations_around(view, s, &[f], to);
            if after < before {
                let steps = vec![
                    Step::AddFollower { node: to },
                    Step::RemoveReplica { node: f },
                ];
                return Some((OperatorKind::DomainFix, steps));
            }
        }
    }
    None
}
