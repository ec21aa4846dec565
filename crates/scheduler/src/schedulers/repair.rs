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
/// - Copyset mode: every target completes a copyset of the family when one fits. When none
///   does (every copyset holding the survivors has lost its other members too), repair
///   degrades openly: it takes the node of the copyset that holds most survivors (else any
///   domain-respecting node), the shard counts in `ClusterView::copyset_violations`, and a
///   `CopysetFix` later moves it, one replica per operator, into the copyset it overlaps
///   most, never below its replica count.
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

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
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
                copyset_fix(view, &tally, s).or_else(|| domain_fix(view, &tally, s))
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
        (OperatorKind::CopysetFix, _) => format!("{} is outside every copyset", s.id),
        (_, Some(d)) => format!("replica of {} on dead {d}", s.id),
        _ => format!("{} has {} replicas", s.id, s.replicas.len()),
    }
}

/// The follower to drop from an over-replicated shard: on a node that should not hold it,
/// else one whose removal leaves the shard outside every copyset last (copyset mode), else
/// one sharing a domain, else on the node with most replicas.
fn surplus_follower(view: &ClusterView, s: &Shard) -> Option<NodeId> {
    s.followers().max_by_key(|&n| {
        let node = view.node(n);
        let unwanted = node.is_none_or(|v| !v.can_receive());
        let rest: Vec<NodeId> = s
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|&m| m != n)
            .collect();
        let keeps_copyset = view.inside_copyset(&rest);
        let dom = view.domain_of(n);
        let shared = s
            .replicas
            .iter()
            .filter(|r| r.node != n && view.domain_of(r.node) == dom)
            .count();
        (unwanted, keeps_copyset, shared, view.replica_count(n), n)
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

/// Moves a shard that is outside every copyset one replica closer to the copyset it
/// overlaps most among those whose missing members are all Online and can receive
/// (copyset mode only; with none, the shard stays where it is, counted as a violation): add a member of that copyset, then remove a replica
/// that is not in it (a follower if one is; a leader replica hands its leadership to the
/// new member first). The shard keeps its replica count throughout, and each operator
/// raises the overlap by one, so it ends inside the copyset after at most RF - 1 of them.
fn copyset_fix(
    view: &ClusterView,
    tally: &crate::view::Tally,
    s: &Shard,
) -> Option<(OperatorKind, Vec<Step>)> {
    view.copysets()?;
    let current: Vec<NodeId> = s.replicas.iter().map(|r| r.node).collect();
    if view.inside_copyset(&current) {
        return None;
    }
    // A replica on a draining or dead node is drain's or repair's to move, straight to the
    // node that replaced it in the family.
    if current
        .iter()
        .any(|&n| view.node(n).is_none_or(|v| v.draining || v.is_down()))
    {
        return None;
    }
    let mut sets: Vec<&[NodeId]> = current
        .iter()
        .flat_map(|&n| view.copysets_with(n))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    let avail = view.available_domains();
    let mut best: Option<(_, NodeId, NodeId)> = None;
    for set in sets {
        // Only a copyset the shard can reach whole: every member it lacks can take a
        // replica now. Moving towards one with a dead member would never end.
        let reachable = set.iter().filter(|n| !current.contains(n)).all(|&n| {
            view.node(n)
                .is_some_and(|v| v.can_receive() && v.state == meridian_model::NodeState::Online)
        });
        if !reachable {
            continue;
        }
        let overlap = current.iter().filter(|n| set.contains(n)).count();
        // The replica to drop: a follower outside the copyset, else the leader.
        let Some(out) = s
            .replicas
            .iter()
            .filter(|r| !set.contains(&r.node))
            .min_by_key(|r| (r.role == ReplicaRole::Leader, r.node))
        else {
            continue;
        };
        let leader_moves = out.role == ReplicaRole::Leader;
        for &t in set.iter().filter(|t| !current.contains(t)) {
            let Some(i) = view.node_index(t) else {
                continue;
            };
            let node = &view.nodes()[i];
            let may = if leader_moves {
                node.can_lead()
            } else {
                node.can_receive()
            };
            if !may || !tally.has_capacity(i) {
                continue;
            }
            if leader_moves
                && !view
                    .node_index(out.node)
                    .is_some_and(|o| tally.has_capacity(o))
            {
                continue;
            }
            let after = crate::domain::violations_of(
                s.replicas
                    .iter()
                    .filter(|r| r.node != out.node)
                    .filter_map(|r| view.domain_of(r.node))
                    .chain(view.domain_of(t)),
                avail,
            );
            let key = (
                std::cmp::Reverse(overlap),
                leader_moves,
                after,
                tally.replicas[i],
                t,
            );
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, t, out.node));
            }
        }
    }
    let (key, to, from) = best?;
    let mut steps = vec![Step::AddFollower { node: to }];
    if key.1 {
        steps.push(Step::TransferLeader { from, to });
    }
    steps.push(Step::RemoveReplica { node: from });
    Some((OperatorKind::CopysetFix, steps))
}
