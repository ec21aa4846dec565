//! The operator controller: owns running operators, enforces limits and timeouts, turns
//! steps into metadata changes plus node instructions, and tracks their acknowledgement.
//!
//! The executor (server tick loop or simulator) drives it:
//!
//! ```text
//! every tick:
//!   ops = schedulers.schedule(&view, now)      for op in ops: controller.try_add(op)
//!   for event in controller.tick(now, &mut |shard| routes.get(shard).cloned()):
//!     StepStarted(s) -> persist + publish s.shard_after (compare-and-swap on
//!                       s.shard_before.version; on failure: controller.fail(s.op, ..)),
//!                       then send s.instructions
//!     Send{..}       -> send the instructions (next phase, or a resend)
//!     Finished{..}   -> record / log
//!                   (unacknowledged ones are resent with backoff: resend_first_ms, doubling
//!                   up to resend_interval_ms, until acked or the step times out)
//! on an instruction ack from a node:   controller.on_instruction_acked(op, node, version)
//! on a heartbeat's shard report:       controller.on_shard_report(node, &report)
//! on a node going Offline:             controller.on_node_down(node, now)
//! at start, per operator a previous server left between two steps (its record):
//!                                      controller.resume(op, &before, &current, now)
//! ```
//! Steps start only inside `tick`, so the view the schedulers saw at the start of the tick
//! is never overtaken by a step; and a step applies only if the shard is still at the
//! version the operator expects (versions are compared, never assumed).

use crate::error::StepError;
use crate::operator::{NodeInstruction, Operator, OperatorKind, OperatorState, Priority, Step};
use meridian_model::{NodeId, OperatorId, Shard, ShardId, ShardReport, ShardVersion};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Concurrency limits on running operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorLimits {
    /// Operators doing work on one node at once (receiving a replica, changing a leader).
    /// Bounds the copy traffic a node takes on. Default 2.
    pub per_node: u32,
    /// Operators running in the cluster at once. Default 64.
    pub per_cluster: u32,
    /// Failover operators ignore both limits (and are not counted against them): a
    /// leaderless shard must not wait behind balance moves. Default true.
    pub failover_exempt_from_limits: bool,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        Self {
            per_node: 2,
            per_cluster: 64,
            failover_exempt_from_limits: true,
        }
    }
}

/// Controller configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Concurrency limits.
    pub limits: OperatorLimits,
    /// Timeout of a step that only changes roles (transfer, promote, remove). Default 10 s.
    pub leader_step_timeout_ms: u64,
    /// Timeout of a step that copies data (add follower, reopen). Default 10 min.
    pub replica_step_timeout_ms: u64,
    /// First wait before a step's unacknowledged required instructions are sent again (a
    /// message may have been lost, or a node may have reconnected and lost them;
    /// instructions are idempotent). Each further resend of the same instructions waits
    /// twice as long, up to `resend_interval_ms` ([`ControllerConfig::resend_wait_ms`]).
    /// Short, because a lost promotion keeps its shard unwritable until the resend lands:
    /// with a flat 5 s, one lost message cost 5 s and two cost the whole step timeout.
    /// Default 500 ms.
    pub resend_first_ms: u64,
    /// Longest wait between two sends of a step's unacknowledged instructions (the cap of
    /// the backoff). Default 5 s.
    pub resend_interval_ms: u64,
    /// Finished operators kept for `history()`. Default 1000.
    pub history_len: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            limits: OperatorLimits::default(),
            leader_step_timeout_ms: 10_000,
            replica_step_timeout_ms: 600_000,
            resend_first_ms: 500,
            resend_interval_ms: 5_000,
            history_len: 1000,
        }
    }
}

impl ControllerConfig {
    /// How long after the last send a step's unacknowledged instructions are sent again,
    /// when they were already resent `resends` times: `resend_first_ms`, doubling with each
    /// resend, at most `resend_interval_ms` (500, 1000, 2000, 4000, 5000, 5000... ms by
    /// default).
    pub fn resend_wait_ms(&self, resends: u32) -> u64 {
        self.resend_first_ms
            .saturating_mul(1u64 << resends.min(32))
            .min(self.resend_interval_ms)
    }
}

/// Why an operator was not admitted. Schedulers simply propose again on a later tick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The operator has no steps.
    #[error("operator has no steps")]
    Empty,
    /// Another operator of equal or higher priority runs on the shard.
    #[error("{shard} is busy with {running} ({priority:?})")]
    ShardBusy {
        /// The shard.
        shard: ShardId,
        /// The operator running on it.
        running: OperatorId,
        /// Its priority.
        priority: Priority,
    },
    /// A node the operator works on is at its limit.
    #[error("{node} already runs {limit} operators")]
    NodeLimit {
        /// The node.
        node: NodeId,
        /// The per-node limit.
        limit: u32,
    },
    /// The cluster is at its limit.
    #[error("cluster already runs {limit} operators")]
    ClusterLimit {
        /// The per-cluster limit.
        limit: u32,
    },
    /// A resumed operator's step no longer leads from the recorded shard to the shard's
    /// metadata now: something else changed the shard since.
    #[error("{shard} changed since the operator's step started: {why}")]
    Stale {
        /// The shard.
        shard: ShardId,
        /// What differs.
        why: String,
    },
}

/// A step starting: the executor persists and publishes `shard_after`, then sends
/// `instructions`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStart {
    /// The operator.
    pub op: OperatorId,
    /// Its kind.
    pub kind: OperatorKind,
    /// Index of the step in the operator.
    pub step_index: usize,
    /// The step.
    pub step: Step,
    /// The shard's metadata before the step (compare-and-swap on its version).
    pub shard_before: Shard,
    /// The shard's metadata after the step: persist it and publish the routes.
    pub shard_after: Shard,
    /// Instructions to send now (a leader transfer sends the rest once the old leader
    /// acknowledged its demotion, in a later `Send`).
    pub instructions: Vec<NodeInstruction>,
    /// The operator as this step starts (its `current` is this step), for executors that
    /// persist it between steps.
    pub operator: Box<Operator>,
}

/// What the executor must do after a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerEvent {
    /// A step started.
    StepStarted(StepStart),
    /// Send these instructions (the next phase of a step, or a resend).
    Send {
        /// The operator.
        op: OperatorId,
        /// What to send.
        instructions: Vec<NodeInstruction>,
    },
    /// An operator ended.
    Finished {
        /// The operator.
        op: OperatorId,
        /// Its shard.
        shard: ShardId,
        /// Its kind.
        kind: OperatorKind,
        /// How it ended.
        state: OperatorState,
        /// From its creation to its end, ms.
        duration_ms: u64,
    },
}

#[derive(Debug, Clone)]
struct Running {
    op: Operator,
    /// Required instructions sent and not yet acknowledged.
    pending: Vec<NodeInstruction>,
    /// Instructions held back until the gate node acknowledges.
    held: Vec<NodeInstruction>,
    gate: Option<NodeId>,
    last_sent_ms: u64,
    /// Times `pending` was resent since it was last sent afresh (the backoff's exponent).
    resends: u32,
}

impl Running {
    /// Starts `step` (which turns `before` into `after`): records what it waits for and
    /// returns the instructions to send now (the rest are held behind the gate node).
    fn start_step(
        &mut self,
        id: OperatorId,
        step: Step,
        before: &Shard,
        after: &Shard,
        now: u64,
    ) -> Vec<NodeInstruction> {
        let all = step.instructions(Some(id), before, after);
        self.gate = step.held_until_acked();
        let (send, held): (Vec<_>, Vec<_>) = match self.gate {
            Some(g) => all.into_iter().partition(|i| i.node == g),
            None => (all, Vec::new()),
        };
        self.pending = send.iter().filter(|i| i.required).copied().collect();
        self.held = held;
        self.last_sent_ms = now;
        self.resends = 0;
        self.op.step_started_ms = Some(now);
        self.op.shard_version = after.version;
        send
    }
}

/// Owns running operators; see the module documentation for the executor's loop.
#[derive(Debug, Clone)]
pub struct OperatorController {
    config: ControllerConfig,
    next_id: u64,
    running: BTreeMap<OperatorId, Running>,
    by_shard: HashMap<ShardId, OperatorId>,
    history: VecDeque<Operator>,
    outbox: Vec<ControllerEvent>,
}

impl OperatorController {
    /// An empty controller; operator ids start at 1.
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            next_id: 1,
            running: BTreeMap::new(),
            by_shard: HashMap::new(),
            history: VecDeque::new(),
            outbox: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// New concurrency limits (a runtime setting changed): they apply to operators
    /// admitted from now on; running ones go on.
    pub fn set_limits(&mut self, limits: OperatorLimits) {
        self.config.limits = limits;
    }

    fn exempt(&self, op: &Operator) -> bool {
        self.config.limits.failover_exempt_from_limits && op.priority == Priority::Failover
    }

    /// Admits an operator: one per shard; a higher priority preempts (cancels) a lower one
    /// on the same shard; limits apply unless exempt. Returns the id assigned.
    pub fn try_add(&mut self, mut op: Operator) -> Result<OperatorId, Rejected> {
        if op.steps.is_empty() {
            return Err(Rejected::Empty);
        }
        let preempt = match self.by_shard.get(&op.shard) {
            Some(&id) => {
                let running = &self.running[&id].op;
                if running.priority >= op.priority {
                    return Err(Rejected::ShardBusy {
                        shard: op.shard,
                        running: id,
                        priority: running.priority,
                    });
                }
                Some(id)
            }
            None => None,
        };
        if !self.exempt(&op) {
            let counted = || {
                self.running
                    .values()
                    .filter(|r| Some(r.op.id) != preempt && !self.exempt(&r.op))
            };
            let limits = self.config.limits;
            if counted().count() >= limits.per_cluster as usize {
                return Err(Rejected::ClusterLimit {
                    limit: limits.per_cluster,
                });
            }
            for node in op.workers() {
                let busy = counted().filter(|r| r.op.workers().contains(&node)).count();
                if busy >= limits.per_node as usize {
                    return Err(Rejected::NodeLimit {
                        node,
                        limit: limits.per_node,
                    });
                }
            }
        }
        if let Some(old) = preempt {
            let reason = format!("preempted by a {:?} operator", op.kind);
            self.finish(old, OperatorState::Cancelled(reason), op.created_ms);
        }
        op.id = OperatorId(self.next_id);
        self.next_id += 1;
        op.state = OperatorState::Running;
        op.current = 0;
        op.step_started_ms = None;
        let id = op.id;
        self.by_shard.insert(op.shard, id);
        self.running.insert(
            id,
            Running {
                op,
                pending: Vec::new(),
                held: Vec::new(),
                gate: None,
                last_sent_ms: 0,
                resends: 0,
            },
        );
        Ok(id)
    }

    /// Re-admits an operator that a previous server (or term) left between two steps: its
    /// step `op.current` was applied to `before` and persisted, which gave `current`, the
    /// shard's metadata now. The step's instructions go out again at the next tick (nodes
    /// take them idempotently), and the operator carries on from there. Limits do not
    /// apply: the work was admitted once already. Returns the new id.
    pub fn resume(
        &mut self,
        mut op: Operator,
        before: &Shard,
        current: &Shard,
        now: u64,
    ) -> Result<OperatorId, Rejected> {
        let stale = |why: String| Rejected::Stale {
            shard: current.id,
            why,
        };
        let Some(&step) = op.steps.get(op.current) else {
            return Err(Rejected::Empty);
        };
        if let Some(&running) = self.by_shard.get(&current.id) {
            return Err(Rejected::ShardBusy {
                shard: current.id,
                running,
                priority: self.running[&running].op.priority,
            });
        }
        let after = step.apply(before).map_err(|e| stale(e.to_string()))?;
        if after != *current {
            return Err(stale(format!(
                "the step gives {:?} at {}, the metadata has {:?} at {}",
                after.replicas, after.version, current.replicas, current.version
            )));
        }
        op.id = OperatorId(self.next_id);
        self.next_id += 1;
        op.state = OperatorState::Running;
        op.finished_ms = None;
        let id = op.id;
        let mut r = Running {
            op,
            pending: Vec::new(),
            held: Vec::new(),
            gate: None,
            last_sent_ms: 0,
            resends: 0,
        };
        let send = r.start_step(id, step, before, &after, now);
        self.by_shard.insert(current.id, id);
        self.running.insert(id, r);
        self.outbox.push(ControllerEvent::Send {
            op: id,
            instructions: send,
        });
        Ok(id)
    }

    /// Cancels a running operator (admin request). Steps already applied stay applied;
    /// the schedulers repair whatever state that leaves. Returns false if not running.
    pub fn cancel(&mut self, id: OperatorId, now: u64) -> bool {
        self.finish(id, OperatorState::Cancelled("cancelled".into()), now)
    }

    /// Fails a running operator (e.g. the executor could not persist a step's metadata).
    /// Returns false if not running.
    pub fn fail(&mut self, id: OperatorId, reason: impl Into<String>, now: u64) -> bool {
        self.finish(id, OperatorState::Failed(reason.into()), now)
    }

    fn finish(&mut self, id: OperatorId, state: OperatorState, now: u64) -> bool {
        let Some(mut r) = self.running.remove(&id) else {
            return false;
        };
        self.by_shard.remove(&r.op.shard);
        r.op.state = state.clone();
        r.op.finished_ms = Some(now);
        self.outbox.push(ControllerEvent::Finished {
            op: id,
            shard: r.op.shard,
            kind: r.op.kind,
            state,
            duration_ms: now.saturating_sub(r.op.created_ms),
        });
        if self.config.history_len > 0 {
            if self.history.len() == self.config.history_len {
                self.history.pop_front();
            }
            self.history.push_back(r.op);
        }
        true
    }

    /// Advances every running operator: starts steps (given each shard's current metadata
    /// from `current`), releases held instructions, finishes steps whose required
    /// instructions were all acknowledged, resends, and times out. Higher priorities first.
    pub fn tick(
        &mut self,
        now: u64,
        current: &mut dyn FnMut(ShardId) -> Option<Shard>,
    ) -> Vec<ControllerEvent> {
        let mut order: Vec<(Priority, OperatorId)> = self
            .running
            .values()
            .map(|r| (r.op.priority, r.op.id))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut events = std::mem::take(&mut self.outbox);
        for (_, id) in order {
            if let Some(end) = self.advance(id, now, current, &mut events) {
                self.finish(id, end, now);
            }
        }
        events.append(&mut self.outbox);
        events
    }

    /// Moves one operator forward; returns its end state if it ended.
    fn advance(
        &mut self,
        id: OperatorId,
        now: u64,
        current: &mut dyn FnMut(ShardId) -> Option<Shard>,
        events: &mut Vec<ControllerEvent>,
    ) -> Option<OperatorState> {
        let config = self.config;
        let r = self.running.get_mut(&id)?;
        loop {
            let op = &mut r.op;
            let Some(&step) = op.steps.get(op.current) else {
                return Some(OperatorState::Succeeded);
            };
            if op.step_started_ms.is_none() {
                let Some(before) = current(op.shard) else {
                    return Some(OperatorState::Failed(
                        StepError::ShardGone(op.shard).to_string(),
                    ));
                };
                if before.version != op.shard_version {
                    let e = StepError::StaleVersion {
                        shard: op.shard,
                        expected: op.shard_version,
                        found: before.version,
                    };
                    return Some(OperatorState::Failed(e.to_string()));
                }
                let after = match step.apply(&before) {
                    Ok(after) => after,
                    Err(e) => return Some(OperatorState::Failed(e.to_string())),
                };
                let send = r.start_step(id, step, &before, &after, now);
                events.push(ControllerEvent::StepStarted(StepStart {
                    op: id,
                    kind: r.op.kind,
                    step_index: r.op.current,
                    step,
                    shard_before: before,
                    shard_after: after,
                    instructions: send,
                    operator: Box::new(r.op.clone()),
                }));
            }
            if let Some(g) = r.gate {
                if r.pending.iter().all(|i| i.node != g) {
                    r.gate = None;
                    let held = std::mem::take(&mut r.held);
                    r.pending
                        .extend(held.iter().filter(|i| i.required).copied());
                    r.last_sent_ms = now;
                    r.resends = 0;
                    if !held.is_empty() {
                        events.push(ControllerEvent::Send {
                            op: id,
                            instructions: held,
                        });
                    }
                }
            }
            let op = &mut r.op;
            if r.pending.is_empty() && r.held.is_empty() {
                op.current += 1;
                op.step_started_ms = None;
                continue;
            }
            let started = op.step_started_ms.unwrap_or(now);
            let timeout = if step.copies_data() {
                config.replica_step_timeout_ms
            } else {
                config.leader_step_timeout_ms
            };
            if now.saturating_sub(started) >= timeout {
                return Some(OperatorState::TimedOut);
            }
            if now.saturating_sub(r.last_sent_ms) >= config.resend_wait_ms(r.resends)
                && !r.pending.is_empty()
            {
                r.last_sent_ms = now;
                r.resends = r.resends.saturating_add(1);
                events.push(ControllerEvent::Send {
                    op: id,
                    instructions: r.pending.clone(),
                });
            }
            return None;
        }
    }

    /// A node acknowledged instruction(s) of `op` at `version`. Returns whether it completed
    /// something the operator was waiting for. Progress is acted on at the next `tick`.
    pub fn on_instruction_acked(
        &mut self,
        op: OperatorId,
        node: NodeId,
        version: ShardVersion,
    ) -> bool {
        let Some(r) = self.running.get_mut(&op) else {
            return false;
        };
        let before = r.pending.len();
        r.pending
            .retain(|i| !(i.node == node && i.version == version));
        r.pending.len() != before
    }

    /// A node went Offline (or was removed): fails every running operator still waiting for
    /// that node's acknowledgement, so the schedulers re-plan at once instead of waiting for
    /// the step timeout (a failover promoting a follower whose node then died must not leave
    /// the shard leaderless for `leader_step_timeout_ms`). Returns how many failed; their
    /// `Finished` events come with the next `tick`.
    pub fn on_node_down(&mut self, node: NodeId, now: u64) -> usize {
        let stuck: Vec<OperatorId> = self
            .running
            .values()
            .filter(|r| {
                r.pending
                    .iter()
                    .chain(&r.held)
                    .any(|i| i.node == node && i.required)
            })
            .map(|r| r.op.id)
            .collect();
        for &id in &stuck {
            self.finish(id, OperatorState::Failed(format!("{node} went down")), now);
        }
        stuck.len()
    }

    /// A heartbeat's shard report: completes pending instructions it shows were carried out
    /// (the alternative to explicit acks). Returns whether it completed something.
    pub fn on_shard_report(&mut self, node: NodeId, report: &ShardReport) -> bool {
        let Some(id) = self.by_shard.get(&report.shard) else {
            return false;
        };
        let Some(r) = self.running.get_mut(id) else {
            return false;
        };
        let before = r.pending.len();
        r.pending
            .retain(|i| !(i.node == node && i.satisfied_by(report)));
        r.pending.len() != before
    }

    /// Running operators, in id order.
    pub fn running(&self) -> impl Iterator<Item = &Operator> + '_ {
        self.running.values().map(|r| &r.op)
    }

    /// Number of running operators.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// One running operator.
    pub fn get(&self, id: OperatorId) -> Option<&Operator> {
        self.running.get(&id).map(|r| &r.op)
    }

    /// The operator running on `shard`, if any.
    pub fn for_shard(&self, shard: ShardId) -> Option<&Operator> {
        self.by_shard.get(&shard).and_then(|id| self.get(*id))
    }

    /// Recently finished operators, oldest first (bounded by `history_len`).
    pub fn history(&self) -> impl Iterator<Item = &Operator> + '_ {
        self.history.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::InstructionKind;
    use crate::testing::ClusterBuilder;
    use meridian_model::ReplicaRole;
    use std::collections::HashMap;

    fn routes(view: &crate::ClusterView) -> HashMap<ShardId, Shard> {
        view.shards()
            .iter()
            .map(|s| (s.shard.id, s.shard.clone()))
            .collect()
    }

    fn apply(routes: &mut HashMap<ShardId, Shard>, events: &[ControllerEvent]) {
        for e in events {
            if let ControllerEvent::StepStarted(s) = e {
                routes.insert(s.shard_after.id, s.shard_after.clone());
            }
        }
    }

    #[test]
    fn higher_priority_operator_preempts_balance() {
        let view = ClusterBuilder::new().zones(3).nodes(6).shards(6).build();
        let s = view.shards()[0].shard.clone();
        let follower = s.followers().next().unwrap();
        let mut c = OperatorController::new(ControllerConfig::default());
        let balance = Operator::new(
            OperatorKind::BalanceLeader,
            &s,
            vec![Step::TransferLeader {
                from: s.leader().unwrap(),
                to: follower,
            }],
            0,
            "test",
        );
        let b = c.try_add(balance.clone()).unwrap();
        assert!(matches!(
            c.try_add(balance),
            Err(Rejected::ShardBusy { .. })
        ));
        let failover = Operator::new(
            OperatorKind::Failover,
            &s,
            vec![Step::PromoteFollower { to: follower }],
            1,
            "test",
        );
        let f = c.try_add(failover).unwrap();
        assert_eq!(c.for_shard(s.id).unwrap().id, f);
        let events = c.tick(2, &mut |id| routes(&view).get(&id).cloned());
        assert!(events.iter().any(|e| matches!(e,
            ControllerEvent::Finished { op, state: OperatorState::Cancelled(_), .. } if *op == b)));
        assert!(events.iter().any(|e| matches!(e,
            ControllerEvent::StepStarted(st) if st.op == f)));
    }

    #[test]
    fn per_node_limit_rejects_and_failover_is_exempt() {
        let view = ClusterBuilder::new().zones(3).nodes(3).shards(6).build();
        let limits = OperatorLimits {
            per_node: 1,
            ..OperatorLimits::default()
        };
        let mut c = OperatorController::new(ControllerConfig {
            limits,
            ..ControllerConfig::default()
        });
        let mut shards = view.shards().iter().map(|s| s.shard.clone());
        let s0 = shards.next().unwrap();
        let s1 = shards.next().unwrap();
        let s2 = shards.next().unwrap();
        let transfer = |s: &Shard| {
            let to = s.followers().next().unwrap();
            Operator::new(
                OperatorKind::BalanceLeader,
                s,
                vec![Step::TransferLeader {
                    from: s.leader().unwrap(),
                    to,
                }],
                0,
                "t",
            )
        };
        c.try_add(transfer(&s0)).unwrap();
        // With 3 nodes every transfer touches a node already busy.
        assert!(matches!(
            c.try_add(transfer(&s1)),
            Err(Rejected::NodeLimit { .. })
        ));
        let to = s2.followers().next().unwrap();
        let failover = Operator::new(
            OperatorKind::Failover,
            &s2,
            vec![Step::PromoteFollower { to }],
            0,
            "f",
        );
        c.try_add(failover).unwrap();
    }

    #[test]
    fn a_resumed_move_sends_its_started_step_again_then_carries_on() {
        let view = ClusterBuilder::new().zones(3).nodes(4).shards(1).build();
        let mut r = routes(&view);
        let s = view.shards()[0].shard.clone();
        let spare = view
            .nodes()
            .iter()
            .map(|n| n.id)
            .find(|n| !s.has_replica_on(*n))
            .unwrap();
        let gone = s.followers().next().unwrap();
        let steps = vec![
            Step::AddFollower { node: spare },
            Step::RemoveReplica { node: gone },
        ];
        // What the previous server left: step 0 applied and persisted.
        let mut op = Operator::new(OperatorKind::Manual, &s, steps, 0, "move");
        let after = op.steps[0].apply(&s).unwrap();
        r.insert(s.id, after.clone());
        op.shard_version = after.version;

        let mut c = OperatorController::new(ControllerConfig::default());
        // A record that does not lead to the metadata now is refused.
        assert!(matches!(
            c.resume(op.clone(), &s, &s, 0),
            Err(Rejected::Stale { .. })
        ));
        let id = c.resume(op, &s, &after, 0).unwrap();
        let ev = c.tick(0, &mut |i| r.get(&i).cloned());
        let [ControllerEvent::Send { instructions, .. }] = &ev[..] else {
            panic!("{ev:?}")
        };
        let open = instructions
            .iter()
            .find(|i| i.node == spare)
            .expect("the new follower is told to open again");
        assert_eq!(open.version, after.version);
        assert!(c.on_instruction_acked(id, spare, after.version));
        // A removal finishes as it starts.
        let ev = c.tick(1, &mut |i| r.get(&i).cloned());
        let [ControllerEvent::StepStarted(st), ControllerEvent::Finished { state, .. }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(st.step, Step::RemoveReplica { node: gone });
        assert_eq!(st.shard_before, after);
        assert_eq!(*state, OperatorState::Succeeded);
    }

    #[test]
    fn transfer_waits_for_demotion_then_promotes_then_succeeds() {
        let view = ClusterBuilder::new().zones(3).nodes(3).shards(1).build();
        let mut r = routes(&view);
        let s = view.shards()[0].shard.clone();
        let from = s.leader().unwrap();
        let to = s.followers().next().unwrap();
        let mut c = OperatorController::new(ControllerConfig::default());
        let id = c
            .try_add(Operator::new(
                OperatorKind::Manual,
                &s,
                vec![Step::TransferLeader { from, to }],
                0,
                "t",
            ))
            .unwrap();
        let ev = c.tick(0, &mut |i| r.get(&i).cloned());
        apply(&mut r, &ev);
        let ControllerEvent::StepStarted(st) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(st.instructions.len(), 1);
        assert_eq!(st.instructions[0].kind, InstructionKind::Demote);
        assert_eq!(st.shard_after.leader(), Some(to));
        // Nothing more until the demotion is acknowledged.
        assert!(c.tick(100, &mut |i| r.get(&i).cloned()).is_empty());
        assert!(c.on_instruction_acked(id, from, st.shard_after.version));
        let ev = c.tick(200, &mut |i| r.get(&i).cloned());
        let ControllerEvent::Send { instructions, .. } = &ev[0] else {
            panic!("{ev:?}")
        };
        assert!(instructions
            .iter()
            .any(|i| i.node == to && i.kind == InstructionKind::Promote));
        // A heartbeat report also counts as the acknowledgement.
        let report = ShardReport {
            shard: s.id,
            version: st.shard_after.version,
            role: ReplicaRole::Leader,
            status: meridian_model::ShardStatus::Ready,
            stats: Default::default(),
            log: Default::default(),
            leased: false,
        };
        assert!(c.on_shard_report(to, &report));
        let ev = c.tick(300, &mut |i| r.get(&i).cloned());
        assert!(matches!(
            ev.as_slice(),
            [ControllerEvent::Finished {
                state: OperatorState::Succeeded,
                ..
            }]
        ));
        assert_eq!(c.history().count(), 1);
    }

    #[test]
    fn a_step_against_a_changed_shard_fails_the_operator() {
        let view = ClusterBuilder::new().zones(3).nodes(4).shards(1).build();
        let s = view.shards()[0].shard.clone();
        let mut c = OperatorController::new(ControllerConfig::default());
        let spare = view
            .nodes()
            .iter()
            .find(|n| !s.has_replica_on(n.id))
            .unwrap()
            .id;
        c.try_add(Operator::new(
            OperatorKind::BalanceShard,
            &s,
            vec![Step::AddFollower { node: spare }],
            0,
            "t",
        ))
        .unwrap();
        let mut moved = s.clone();
        moved.version = moved.version.next();
        let ev = c.tick(0, &mut |_| Some(moved.clone()));
        assert!(matches!(
            ev.as_slice(),
            [ControllerEvent::Finished {
                state: OperatorState::Failed(_),
                ..
            }]
        ));
    }

    #[test]
    fn a_promotion_whose_target_dies_fails_at_once() {
        let view = ClusterBuilder::new().zones(3).nodes(3).shards(1).build();
        let r = routes(&view);
        let s = view.shards()[0].shard.clone();
        let to = s.followers().next().unwrap();
        let mut c = OperatorController::new(ControllerConfig::default());
        c.try_add(Operator::new(
            OperatorKind::Failover,
            &s,
            vec![Step::PromoteFollower { to }],
            0,
            "t",
        ))
        .unwrap();
        c.tick(0, &mut |i| r.get(&i).cloned());
        assert_eq!(c.on_node_down(to, 500), 1);
        assert!(c.for_shard(s.id).is_none());
        let ev = c.tick(600, &mut |i| r.get(&i).cloned());
        assert!(matches!(
            ev.as_slice(),
            [ControllerEvent::Finished {
                state: OperatorState::Failed(_),
                ..
            }]
        ));
    }

    #[test]
    fn a_lost_instruction_is_resent_soon_then_with_growing_backoff() {
        let view = ClusterBuilder::new().zones(3).nodes(4).shards(1).build();
        let r = routes(&view);
        let s = view.shards()[0].shard.clone();
        let to = s.followers().next().unwrap();
        let config = ControllerConfig::default();
        let mut c = OperatorController::new(config);
        c.try_add(Operator::new(
            OperatorKind::Failover,
            &s,
            vec![Step::PromoteFollower { to }],
            0,
            "t",
        ))
        .unwrap();
        c.tick(0, &mut |i| r.get(&i).cloned());
        // The promotion is lost: every 100 ms tick, note when it goes out again.
        let mut resent_at = Vec::new();
        for now in (100..=9_900).step_by(100) {
            let ev = c.tick(now, &mut |i| r.get(&i).cloned());
            for e in &ev {
                let ControllerEvent::Send { instructions, .. } = e else {
                    panic!("{ev:?}")
                };
                assert!(instructions
                    .iter()
                    .any(|i| i.node == to && i.kind == InstructionKind::Promote));
                resent_at.push(now);
            }
        }
        // 500 ms after the first send, then 1 s, 2 s, 4 s later: four tries before the
        // step's 10 s timeout instead of one at 5 s.
        assert_eq!(resent_at, vec![500, 1_500, 3_500, 7_500]);
        assert_eq!(config.resend_wait_ms(4), config.resend_interval_ms);
        assert_eq!(config.resend_wait_ms(40), config.resend_interval_ms);
    }

    #[test]
    fn an_unacknowledged_step_times_out() {
        let view = ClusterBuilder::new().zones(3).nodes(4).shards(1).build();
        let r = routes(&view);
        let s = view.shards()[0].shard.clone();
        let to = s.followers().next().unwrap();
        let mut c = OperatorController::new(ControllerConfig::default());
        c.try_add(Operator::new(
            OperatorKind::Failover,
            &s,
            vec![Step::PromoteFollower { to }],
            0,
            "t",
        ))
        .unwrap();
        c.tick(0, &mut |i| r.get(&i).cloned());
        let resend = c.tick(5_000, &mut |i| r.get(&i).cloned());
        assert!(matches!(resend.as_slice(), [ControllerEvent::Send { .. }]));
        let ev = c.tick(10_000, &mut |i| r.get(&i).cloned());
        assert!(matches!(
            ev.as_slice(),
            [ControllerEvent::Finished {
                state: OperatorState::TimedOut,
                ..
            }]
        ));
    }
}
