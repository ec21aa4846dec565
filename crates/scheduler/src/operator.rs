//! Operators: a planned sequence of steps on one shard, and the instructions each step
//! sends to nodes.
//!
//! A step is pure: [`Step::apply`] turns the shard's metadata into the next metadata (with
//! the version bumped: every change bumps it), and [`Step::instructions`] says what each node
//! must be told so that the nodes catch up with that metadata. The executor (server or
//! simulator) persists and publishes the new metadata when a step starts, then sends the
//! instructions; the controller decides when the step is finished.

use crate::error::StepError;
use meridian_model::{
    NodeId, OperatorId, Replica, ReplicaRole, Shard, ShardId, ShardReport, ShardStatus,
    ShardVersion,
};
use serde::{Deserialize, Serialize};

/// Urgency of an operator. A higher priority preempts (cancels) a lower one on the same
/// shard; equal priorities never preempt each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Balance, hot shards, expansion: nice to have, first to give way.
    Balance,
    /// Drain, leader eviction, manual moves, failure-domain fixes: asked for, but nothing
    /// is at risk yet.
    Maintenance,
    /// Restoring the replica count: durability is reduced until it finishes.
    Repair,
    /// Restoring a leader: the shard takes no writes until it finishes.
    Failover,
}

/// Why an operator exists (which scheduler, or an admin, made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// The leader's node is offline: promote a follower or reopen the shard.
    Failover,
    /// An admin promoted a follower that is not caught up (`ctl force-promote`), for a
    /// shard that waited for an in-sync follower.
    ForcedPromote,
    /// Too few live replicas, or one on a dead node: add a replica, drop the dead one.
    ReplicaRepair,
    /// Replicas share a failure domain although a free one exists.
    DomainFix,
    /// Copyset mode: a shard's replica set left the copyset family (a repair that found no
    /// fitting copyset); one replica moves per operator until it is inside one again.
    CopysetFix,
    /// A draining node: move everything off it.
    Drain,
    /// A node whose leaders are evicted (before a planned restart): move its leaderships.
    EvictLeader,
    /// Asked for by an admin (transfer leader, move shard).
    Manual,
    /// Replica counts differ too much between nodes.
    BalanceShard,
    /// Leader counts differ too much between nodes.
    BalanceLeader,
    /// A node carries much more read/write load than the mean.
    HotShard,
    /// A balance move onto a node that held nothing (a new node).
    Expansion,
}

impl OperatorKind {
    /// Every kind (metrics start a zero series for each).
    pub const ALL: [OperatorKind; 12] = [
        OperatorKind::Failover,
        OperatorKind::ForcedPromote,
        OperatorKind::ReplicaRepair,
        OperatorKind::DomainFix,
        OperatorKind::CopysetFix,
        OperatorKind::Drain,
        OperatorKind::EvictLeader,
        OperatorKind::Manual,
        OperatorKind::BalanceShard,
        OperatorKind::BalanceLeader,
        OperatorKind::HotShard,
        OperatorKind::Expansion,
    ];

    /// The priority every operator of this kind gets.
    pub fn priority(self) -> Priority {
        match self {
            OperatorKind::Failover | OperatorKind::ForcedPromote => Priority::Failover,
            OperatorKind::ReplicaRepair => Priority::Repair,
            OperatorKind::DomainFix
            | OperatorKind::CopysetFix
            | OperatorKind::Drain
            | OperatorKind::EvictLeader
            | OperatorKind::Manual => Priority::Maintenance,
            OperatorKind::BalanceShard
            | OperatorKind::BalanceLeader
            | OperatorKind::HotShard
            | OperatorKind::Expansion => Priority::Balance,
        }
    }

    /// A stable lowercase name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            OperatorKind::Failover => "failover",
            OperatorKind::ForcedPromote => "forced_promote",
            OperatorKind::ReplicaRepair => "replica_repair",
            OperatorKind::DomainFix => "domain_fix",
            OperatorKind::CopysetFix => "copyset_fix",
            OperatorKind::Drain => "drain",
            OperatorKind::EvictLeader => "evict_leader",
            OperatorKind::Manual => "manual",
            OperatorKind::BalanceShard => "balance_shard",
            OperatorKind::BalanceLeader => "balance_leader",
            OperatorKind::HotShard => "hot_shard",
            OperatorKind::Expansion => "expansion",
        }
    }
}

/// Where an operator is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum OperatorState {
    /// Admitted and not finished.
    Running,
    /// Every step finished.
    Succeeded,
    /// A step could not apply (the shard changed under it), or the executor gave up.
    Failed(String),
    /// Cancelled by an admin or preempted by a higher-priority operator.
    Cancelled(String),
    /// A step did not finish within its timeout.
    TimedOut,
}

impl OperatorState {
    /// Whether the operator has ended, one way or another.
    pub fn is_finished(&self) -> bool {
        !matches!(self, OperatorState::Running)
    }
}

/// One change to a shard's replica set or leader.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Move leadership between two live replicas. `from` must acknowledge its demotion
    /// before `to` is told to lead, so two nodes never both accept writes (invariant 1).
    TransferLeader {
        /// Current leader.
        from: NodeId,
        /// A follower that becomes leader.
        to: NodeId,
    },
    /// Failover fast path: a follower becomes leader. No demotion acknowledgement is awaited
    /// because the old leader's node is Offline, and Offline comes only after its leader
    /// lease surely ran out (`LivenessConfig::leader_lease_ms`).
    PromoteFollower {
        /// The follower to promote.
        to: NodeId,
    },
    /// Open a new follower replica on `node`; finished when it has caught up.
    AddFollower {
        /// The node receiving the replica.
        node: NodeId,
    },
    /// Drop the (follower) replica on `node`. Finishes at once: the metadata no longer lists
    /// it, so no route points there, and the node is told to close it (again on its next
    /// report if it was down).
    RemoveReplica {
        /// The node losing the replica.
        node: NodeId,
    },
    /// Failover slow path: no in-sync follower is left, so `on` opens the shard as leader
    /// from durable storage. The old leader, if listed, stays as a (dead) follower for the
    /// repair scheduler to replace.
    ReopenShard {
        /// The node that opens the shard as leader.
        on: NodeId,
    },
}

impl Step {
    /// The shard metadata after this step, with the version bumped.
    pub fn apply(&self, shard: &Shard) -> Result<Shard, StepError> {
        let id = shard.id;
        let mut replicas = shard.replicas.clone();
        match *self {
            Step::TransferLeader { from, to } => {
                if shard.leader() != Some(from) {
                    return Err(StepError::NotLeader {
                        shard: id,
                        node: from,
                    });
                }
                if shard.role_of(to) != Some(ReplicaRole::Follower) {
                    return Err(StepError::NotFollower {
                        shard: id,
                        node: to,
                    });
                }
                set_leader(&mut replicas, to);
            }
            Step::PromoteFollower { to } => {
                if shard.role_of(to) != Some(ReplicaRole::Follower) {
                    return Err(StepError::NotFollower {
                        shard: id,
                        node: to,
                    });
                }
                set_leader(&mut replicas, to);
            }
            Step::AddFollower { node } => {
                if shard.has_replica_on(node) {
                    return Err(StepError::AlreadyReplica { shard: id, node });
                }
                replicas.push(Replica {
                    node,
                    role: ReplicaRole::Follower,
                });
            }
            Step::RemoveReplica { node } => match shard.role_of(node) {
                None => return Err(StepError::NoReplica { shard: id, node }),
                Some(ReplicaRole::Leader) => {
                    return Err(StepError::RemovesLeader { shard: id, node })
                }
                Some(ReplicaRole::Follower) => replicas.retain(|r| r.node != node),
            },
            Step::ReopenShard { on } => {
                if !shard.has_replica_on(on) {
                    replicas.push(Replica {
                        node: on,
                        role: ReplicaRole::Follower,
                    });
                }
                set_leader(&mut replicas, on);
            }
        }
        Ok(Shard {
            id,
            version: shard.version.next(),
            replicas,
        })
    }

    /// Nodes whose acknowledgement (or matching report) finishes the step.
    pub fn awaited(&self) -> Vec<NodeId> {
        match *self {
            Step::TransferLeader { from, to } => vec![from, to],
            Step::PromoteFollower { to } => vec![to],
            Step::AddFollower { node } => vec![node],
            Step::RemoveReplica { .. } => Vec::new(),
            Step::ReopenShard { on } => vec![on],
        }
    }

    /// A node whose acknowledgement must arrive before any other instruction of the step is
    /// sent: the demoted leader of a transfer.
    pub fn held_until_acked(&self) -> Option<NodeId> {
        match *self {
            Step::TransferLeader { from, .. } => Some(from),
            _ => None,
        }
    }

    /// Whether the step copies data (so it gets the long timeout).
    pub fn copies_data(&self) -> bool {
        matches!(self, Step::AddFollower { .. } | Step::ReopenShard { .. })
    }

    /// Nodes doing real work in this step, counted against per-node operator limits.
    /// A removal is not work: the node only closes a replica.
    pub fn workers(&self) -> Vec<NodeId> {
        match *self {
            Step::TransferLeader { from, to } => vec![from, to],
            Step::PromoteFollower { to } => vec![to],
            Step::AddFollower { node } => vec![node],
            Step::RemoveReplica { .. } => Vec::new(),
            Step::ReopenShard { on } => vec![on],
        }
    }

    /// What each node must be told so it matches `new` (the result of [`Step::apply`] on
    /// `old`), in sending order.
    ///
    /// Derived from the difference between the two replica sets, so every replica learns the
    /// new version (a follower that never hears of it would not count as in sync):
    /// a node new to the set gets `OpenShard`, a node gone from it `CloseShard`, a role
    /// change `Promote` / `Demote`, and an unchanged replica `OpenShard` with its role again
    /// (idempotent; it only moves the version). Only instructions to [`Step::awaited`] nodes
    /// are `required`; the others are best effort (a dead node never answers).
    pub fn instructions(
        &self,
        op: Option<OperatorId>,
        old: &Shard,
        new: &Shard,
    ) -> Vec<NodeInstruction> {
        let awaited = self.awaited();
        let mut out = Vec::with_capacity(old.replicas.len() + 1);
        let mut push = |node: NodeId, kind: InstructionKind| {
            out.push(NodeInstruction {
                op,
                node,
                shard: new.id,
                version: new.version,
                kind,
                required: awaited.contains(&node),
            });
        };
        for r in &old.replicas {
            let kind = match (r.role, new.role_of(r.node)) {
                (_, None) => InstructionKind::CloseShard,
                (ReplicaRole::Follower, Some(ReplicaRole::Leader)) => InstructionKind::Promote,
                (ReplicaRole::Leader, Some(ReplicaRole::Follower)) => InstructionKind::Demote,
                (_, Some(role)) => InstructionKind::OpenShard { role },
            };
            push(r.node, kind);
        }
        for r in new.replicas.iter().filter(|r| !old.has_replica_on(r.node)) {
            push(r.node, InstructionKind::OpenShard { role: r.role });
        }
        if let Some(first) = self.held_until_acked() {
            // Stable sort: the held node first, the rest in replica order.
            out.sort_by_key(|i| i.node != first);
        }
        out
    }
}

/// Makes `node` the only leader and puts it first (leader first, then followers).
fn set_leader(replicas: &mut [Replica], node: NodeId) {
    for r in replicas.iter_mut() {
        r.role = if r.node == node {
            ReplicaRole::Leader
        } else {
            ReplicaRole::Follower
        };
    }
    replicas.sort_by_key(|r| r.role != ReplicaRole::Leader);
}

/// What a node is told to do with one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InstructionKind {
    /// Hold the shard with this role at the instruction's version (open it if needed,
    /// catching up from the leader or durable storage).
    OpenShard {
        /// Role to hold.
        role: ReplicaRole,
    },
    /// Close the shard and stop serving it.
    CloseShard,
    /// Become leader (the node already holds a follower).
    Promote,
    /// Stop accepting writes and become a follower.
    Demote,
}

/// One instruction for one node, carried on its heartbeat stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInstruction {
    /// The operator it belongs to; `None` for reconciliation of a stray replica.
    pub op: Option<OperatorId>,
    /// The node to tell.
    pub node: NodeId,
    /// The shard.
    pub shard: ShardId,
    /// The shard version it brings the node to; nodes refuse anything older than they hold.
    pub version: ShardVersion,
    /// What to do.
    pub kind: InstructionKind,
    /// Whether the step waits for this instruction to be acknowledged.
    pub required: bool,
}

impl NodeInstruction {
    /// Whether a heartbeat report from the instruction's node shows it was carried out.
    pub fn satisfied_by(&self, report: &ShardReport) -> bool {
        if report.shard != self.shard || report.version < self.version {
            return false;
        }
        let ready = report.status == ShardStatus::Ready;
        match self.kind {
            InstructionKind::OpenShard { role } => ready && report.role == role,
            InstructionKind::Promote => ready && report.role == ReplicaRole::Leader,
            InstructionKind::Demote => report.role == ReplicaRole::Follower,
            InstructionKind::CloseShard => report.status == ShardStatus::Closed,
        }
    }
}

/// A planned sequence of steps on one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    /// Assigned by the controller when admitted (`OperatorId(0)` before).
    pub id: OperatorId,
    /// The shard it changes.
    pub shard: ShardId,
    /// Why it exists.
    pub kind: OperatorKind,
    /// Its urgency (from the kind, unless raised by an admin).
    pub priority: Priority,
    /// A human-readable reason ("leader node-3 is offline").
    pub reason: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Index of the step in progress (== steps.len() when done).
    pub current: usize,
    /// The shard version the next step to start expects; a mismatch fails the operator.
    pub shard_version: ShardVersion,
    /// When it was created (caller's monotonic ms).
    pub created_ms: u64,
    /// When the current step started, if it has.
    pub step_started_ms: Option<u64>,
    /// When it ended, if it has.
    pub finished_ms: Option<u64>,
    /// Where it is in its life.
    pub state: OperatorState,
}

impl Operator {
    /// A new operator planned against `shard` as it is now.
    pub fn new(
        kind: OperatorKind,
        shard: &Shard,
        steps: Vec<Step>,
        now: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            id: OperatorId(0),
            shard: shard.id,
            kind,
            priority: kind.priority(),
            reason: reason.into(),
            steps,
            current: 0,
            shard_version: shard.version,
            created_ms: now,
            step_started_ms: None,
            finished_ms: None,
            state: OperatorState::Running,
        }
    }

    /// Nodes doing work in any remaining step (for per-node limits).
    pub fn workers(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.steps[self.current.min(self.steps.len())..]
            .iter()
            .flat_map(Step::workers)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The shard as it will be when every remaining step has applied to `current` (the
    /// shard's metadata now, which already includes a started step). `None` if a step
    /// would not apply.
    pub fn projected(&self, current: &Shard) -> Option<Shard> {
        let from = self.current + usize::from(self.step_started_ms.is_some());
        let mut shard = current.clone();
        for step in self.steps.get(from..).unwrap_or_default() {
            shard = step.apply(&shard).ok()?;
        }
        Some(shard)
    }
}

/// What to tell a node whose report disagrees with the shard's metadata, if anything.
///
/// Invariant 5: a node that returns after it was declared dead is told to close shards it
/// lost (`CloseShard`), and a node that still believes it leads a shard it no longer leads is
/// demoted at once, even while an operator runs on the shard. Other disagreements (a
/// restarted replica at an old version or in the wrong role) are repaired with an
/// `OpenShard` / `Promote` at the current version, but only when no operator is running on
/// the shard: a running operator's own instructions are in flight. `current` is `None` when
/// the shard no longer exists. A report newer than the metadata, or one already saying
/// "closed", needs nothing.
pub fn reconcile(
    node: NodeId,
    report: &ShardReport,
    current: Option<&Shard>,
    operator_running: bool,
) -> Option<NodeInstruction> {
    let instruct = |version: ShardVersion, kind: InstructionKind| {
        Some(NodeInstruction {
            op: None,
            node,
            shard: report.shard,
            version,
            kind,
            required: false,
        })
    };
    if report.status == ShardStatus::Closed {
        return None;
    }
    let Some(shard) = current else {
        return instruct(report.version, InstructionKind::CloseShard);
    };
    if report.version > shard.version {
        return None;
    }
    match shard.role_of(node) {
        None => instruct(shard.version, InstructionKind::CloseShard),
        Some(ReplicaRole::Follower) if report.role == ReplicaRole::Leader => {
            instruct(shard.version, InstructionKind::Demote)
        }
        Some(_) if operator_running => None,
        Some(role) if report.role != role || report.version < shard.version => {
            let kind = if role == ReplicaRole::Leader && report.role == ReplicaRole::Follower {
                InstructionKind::Promote
            } else {
                InstructionKind::OpenShard { role }
            };
            instruct(shard.version, kind)
        }
        Some(_) => None,
    }
}

/// Instructions for replicas the metadata places on `node` that its heartbeat did not
/// report (an `OpenShard` sent while it was down was lost, or its disk was replaced): open
/// them again at the current version. `shards` are the shards listing `node` (e.g.
/// `ClusterView::shards_on`), `reported` says whether the heartbeat mentioned a shard, and
/// shards with a running operator (`busy`) are skipped: its own instructions are in flight.
pub fn reconcile_missing<'a>(
    node: NodeId,
    shards: impl IntoIterator<Item = &'a Shard>,
    reported: impl Fn(ShardId) -> bool,
    busy: impl Fn(ShardId) -> bool,
) -> Vec<NodeInstruction> {
    shards
        .into_iter()
        .filter(|s| !reported(s.id) && !busy(s.id))
        .filter_map(|s| {
            let role = s.role_of(node)?;
            Some(NodeInstruction {
                op: None,
                node,
                shard: s.id,
                version: s.version,
                kind: InstructionKind::OpenShard { role },
                required: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(leader: u64, followers: &[u64]) -> Shard {
        let mut replicas = vec![Replica {
            node: NodeId(leader),
            role: ReplicaRole::Leader,
        }];
        replicas.extend(followers.iter().map(|&n| Replica {
            node: NodeId(n),
            role: ReplicaRole::Follower,
        }));
        Shard {
            id: ShardId(7),
            version: ShardVersion(4),
            replicas,
        }
    }

    #[test]
    fn every_step_bumps_the_version_and_keeps_the_shard_valid() {
        let s = shard(1, &[2, 3]);
        let steps = [
            Step::TransferLeader {
                from: NodeId(1),
                to: NodeId(2),
            },
            Step::PromoteFollower { to: NodeId(3) },
            Step::AddFollower { node: NodeId(4) },
            Step::RemoveReplica { node: NodeId(3) },
            Step::ReopenShard { on: NodeId(9) },
        ];
        for step in steps {
            let next = step.apply(&s).unwrap();
            assert_eq!(next.version, ShardVersion(5), "{step:?}");
            next.check().unwrap();
            assert_eq!(next.replicas[0].role, ReplicaRole::Leader, "{step:?}");
        }
    }

    #[test]
    fn removing_the_leader_is_refused() {
        let s = shard(1, &[2, 3]);
        let err = Step::RemoveReplica { node: NodeId(1) }
            .apply(&s)
            .unwrap_err();
        assert!(matches!(err, StepError::RemovesLeader { .. }));
    }

    #[test]
    fn transfer_sends_the_demotion_first_and_awaits_both_ends() {
        let s = shard(1, &[2, 3]);
        let step = Step::TransferLeader {
            from: NodeId(1),
            to: NodeId(3),
        };
        let next = step.apply(&s).unwrap();
        let instr = step.instructions(Some(OperatorId(1)), &s, &next);
        assert_eq!(instr[0].node, NodeId(1));
        assert_eq!(instr[0].kind, InstructionKind::Demote);
        let promote = instr.iter().find(|i| i.node == NodeId(3)).unwrap();
        assert_eq!(promote.kind, InstructionKind::Promote);
        assert!(promote.required);
        let bystander = instr.iter().find(|i| i.node == NodeId(2)).unwrap();
        assert!(!bystander.required);
        assert!(instr.iter().all(|i| i.version == ShardVersion(5)));
    }

    #[test]
    fn returning_node_is_told_to_close_a_shard_it_lost() {
        let s = shard(2, &[3, 4]);
        let stale = ShardReport {
            shard: s.id,
            version: ShardVersion(3),
            role: ReplicaRole::Leader,
            status: ShardStatus::Ready,
            stats: Default::default(),
            log: Default::default(),
            leased: false,
        };
        let i = reconcile(NodeId(1), &stale, Some(&s), true).unwrap();
        assert_eq!(i.kind, InstructionKind::CloseShard);
        assert_eq!(i.version, s.version);
    }

    #[test]
    fn restarted_leader_is_promoted_again_at_the_current_version() {
        let s = shard(1, &[2, 3]);
        let after_restart = ShardReport {
            shard: s.id,
            version: s.version,
            role: ReplicaRole::Follower,
            status: ShardStatus::Ready,
            stats: Default::default(),
            log: Default::default(),
            leased: false,
        };
        let i = reconcile(NodeId(1), &after_restart, Some(&s), false).unwrap();
        assert_eq!(i.kind, InstructionKind::Promote);
        assert!(reconcile(NodeId(1), &after_restart, Some(&s), true).is_none());
    }
}
