//! Balance: even replica and leader counts across nodes (which is also how a new, empty
//! node fills up: expansion falls out of balance).

use super::hot::hot_line;
use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::violations_around;
use crate::view::{ClusterView, ShardView, Tally};
use meridian_model::{NodeId, ReplicaRole, ShardId};
use std::collections::HashSet;

/// Hysteresis on a spread: starts at `start`, stops at `stop`.
#[derive(Debug, Clone, Copy)]
struct Hysteresis {
    start: u32,
    stop: u32,
    active: bool,
}

impl Hysteresis {
    fn new(config: &SchedulerConfig) -> Self {
        Self {
            start: config.balance_start_spread,
            stop: config.balance_stop_spread,
            active: false,
        }
    }

    /// Whether to balance at this spread; remembers the decision.
    fn update(&mut self, spread: u32) -> bool {
        if spread >= self.start {
            self.active = true;
        } else if spread <= self.stop {
            self.active = false;
        }
        self.active
    }
}

/// Balance members (view indices) and their spread in `counts`.
fn members_spread(view: &ClusterView, counts: &[u32]) -> (Vec<usize>, u32) {
    let members: Vec<usize> = view
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.is_balance_member())
        .map(|(i, _)| i)
        .collect();
    let max = members.iter().map(|&i| counts[i]).max().unwrap_or(0);
    let min = members.iter().map(|&i| counts[i]).min().unwrap_or(0);
    (members, max - min)
}

fn spread_of(members: &[usize], counts: &[u32]) -> u32 {
    let max = members.iter().map(|&i| counts[i]).max().unwrap_or(0);
    let min = members.iter().map(|&i| counts[i]).min().unwrap_or(0);
    max - min
}

fn capacity_for(tally: &Tally, view: &ClusterView, op_nodes: &[NodeId]) -> bool {
    op_nodes
        .iter()
        .filter_map(|&n| view.node_index(n))
        .all(|i| tally.has_capacity(i))
}

/// Moves replicas from the node with the most to the node with the fewest, until max - min
/// is at most `balance_stop_spread` (starting only once it reaches `balance_start_spread`).
///
/// Only balance members (Online, not draining, not cordoned) give or receive. A move never
/// raises the shard's failure-domain violations. A follower replica moves as
/// `AddFollower(dst), RemoveReplica(src)`; a leader replica as `AddFollower(dst),
/// TransferLeader(src -> dst), RemoveReplica(src)`, so the shard always has its full
/// replica count and a leader. Followers and cold shards are moved first. Each move goes
/// from a node to one with at least two fewer replicas, so every move brings the cluster
/// closer to even and none is undone. Where failure domains leave no legal move (zones
/// of unequal size under zone isolation), it stays uneven and says nothing; an unchanged
/// cluster is not searched twice.
#[derive(Debug)]
pub struct BalanceShardScheduler {
    config: SchedulerConfig,
    hysteresis: Hysteresis,
    fruitless: Option<u64>,
}

impl BalanceShardScheduler {
    /// A shard balancer with `config`'s spreads and per-tick cap.
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            hysteresis: Hysteresis::new(&config),
            fruitless: None,
        }
    }
}

impl Scheduler for BalanceShardScheduler {
    fn name(&self) -> &'static str {
        "balance-shard"
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let (members, spread) = members_spread(view, &tally.replicas);
        if members.len() < 2 || !self.hysteresis.update(spread) {
            return Vec::new();
        }
        let fingerprint = view.fingerprint();
        if self.fruitless == Some(fingerprint) {
            return Vec::new();
        }
        let nodes = view.nodes();
        let line = hot_line(view, &tally.load, self.config.hot_threshold);
        let mut used: HashSet<ShardId> = HashSet::new();
        let mut ops = Vec::new();
        while ops.len() < self.config.max_ops_per_tick
            && spread_of(&members, &tally.replicas) > self.config.balance_stop_spread
        {
            let mut srcs = members.clone();
            srcs.sort_by_key(|&i| (std::cmp::Reverse(tally.replicas[i]), nodes[i].id));
            let mut dsts = members.clone();
            dsts.sort_by_key(|&i| (tally.replicas[i], nodes[i].id));
            let found = srcs.iter().find_map(|&src| {
                dsts.iter()
                    .take_while(|&&dst| tally.replicas[dst] + 2 <= tally.replicas[src])
                    .filter(|&&dst| tally.has_capacity(dst))
                    .find_map(|&dst| {
                        pick_move(view, &tally, &used, line, src, dst).map(|sv| (src, dst, sv))
                    })
            });
            let Some((src, dst, sv)) = found else {
                break;
            };
            let (from, to) = (nodes[src].id, nodes[dst].id);
            let mut steps = vec![Step::AddFollower { node: to }];
            if sv.shard.leader() == Some(from) {
                steps.push(Step::TransferLeader { from, to });
                tally.leaders[src] -= 1;
                tally.leaders[dst] += 1;
                tally.load[src] -= sv.load();
                tally.load[dst] += sv.load();
            }
            steps.push(Step::RemoveReplica { node: from });
            let kind = if view.replica_count(to) == 0 {
                OperatorKind::Expansion
            } else {
                OperatorKind::BalanceShard
            };
            let reason = format!(
                "move a replica of {} from {from} ({} replicas) to {to} ({})",
                sv.shard.id, tally.replicas[src], tally.replicas[dst]
            );
            let op = Operator::new(kind, &sv.shard, steps, now, reason);
            let workers: Vec<usize> = op
                .workers()
                .iter()
                .filter_map(|&n| view.node_index(n))
                .collect();
            tally.add_op(&workers);
            tally.replicas[src] -= 1;
            tally.replicas[dst] += 1;
            used.insert(sv.shard.id);
            ops.push(op);
        }
        self.fruitless = ops.is_empty().then_some(fingerprint);
        ops
    }
}

/// A shard on `src` that may move to `dst`: idle, not on `dst` already, no new domain
/// violation, capacity on every node that works. Followers first, then the coldest.
fn pick_move<'a>(
    view: &'a ClusterView,
    tally: &Tally,
    used: &HashSet<ShardId>,
    hot_line: Option<f64>,
    src: usize,
    dst: usize,
) -> Option<&'a ShardView> {
    let nodes = view.nodes();
    let (from, to) = (nodes[src].id, nodes[dst].id);
    view.shards_on(from)
        .filter(|sv| {
            let s = &sv.shard;
            !used.contains(&s.id)
                && view.may_propose(s.id, Priority::Balance)
                && !s.has_replica_on(to)
        })
        .filter(|sv| {
            let (before, after) = violations_around(view, &sv.shard, &[from], to);
            after <= before
        })
        .filter(|sv| {
            // A leader move also works the source (the transfer) and carries the load.
            sv.shard.role_of(from) != Some(ReplicaRole::Leader)
                || (capacity_for(tally, view, &[from])
                    && hot_line.is_none_or(|l| tally.load[dst] + sv.load() <= l))
        })
        .min_by(|a, b| {
            let leader = |sv: &ShardView| sv.shard.role_of(from) == Some(ReplicaRole::Leader);
            leader(a)
                .cmp(&leader(b))
                .then(a.load().total_cmp(&b.load()))
                .then(a.shard.id.cmp(&b.shard.id))
        })
}

/// Transfers leadership from the node with the most leaders to an in-sync follower on a
/// node with at least two fewer, with the same hysteresis as shard balance. Cold shards
/// move first, and never onto a node they would push over the hot line, so leader balance
/// and the hot-shard scheduler do not undo each other.
#[derive(Debug)]
pub struct BalanceLeaderScheduler {
    config: SchedulerConfig,
    hysteresis: Hysteresis,
    fruitless: Option<u64>,
}

impl BalanceLeaderScheduler {
    /// A leader balancer with `config`'s spreads and per-tick cap.
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            hysteresis: Hysteresis::new(&config),
            fruitless: None,
        }
    }
}

impl Scheduler for BalanceLeaderScheduler {
    fn name(&self) -> &'static str {
        "balance-leader"
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let (members, spread) = members_spread(view, &tally.leaders);
        if members.len() < 2 || !self.hysteresis.update(spread) {
            return Vec::new();
        }
        let fingerprint = view.fingerprint();
        if self.fruitless == Some(fingerprint) {
            return Vec::new();
        }
        let nodes = view.nodes();
        let line = hot_line(view, &tally.load, self.config.hot_threshold);
        let mut used: HashSet<ShardId> = HashSet::new();
        let mut ops = Vec::new();
        while ops.len() < self.config.max_ops_per_tick
            && spread_of(&members, &tally.leaders) > self.config.balance_stop_spread
        {
            let mut srcs = members.clone();
            srcs.sort_by_key(|&i| (std::cmp::Reverse(tally.leaders[i]), nodes[i].id));
            let found = srcs.iter().find_map(|&src| {
                if !tally.has_capacity(src) {
                    return None;
                }
                let from = nodes[src].id;
                let mut led: Vec<&ShardView> = view
                    .shards_on(from)
                    .filter(|sv| {
                        sv.shard.leader() == Some(from)
                            && !used.contains(&sv.shard.id)
                            && view.may_propose(sv.shard.id, Priority::Balance)
                    })
                    .collect();
                led.sort_by(|a, b| a.load().total_cmp(&b.load()));
                led.into_iter().find_map(|sv| {
                    sv.in_sync
                        .iter()
                        .filter_map(|&n| view.node_index(n))
                        .filter(|&i| {
                            nodes[i].is_balance_member()
                                && tally.has_capacity(i)
                                && tally.leaders[i] + 2 <= tally.leaders[src]
                                && line.is_none_or(|l| tally.load[i] + sv.load() <= l)
                        })
                        .min_by_key(|&i| (tally.leaders[i], nodes[i].id))
                        .map(|dst| (src, dst, sv))
                })
            });
            let Some((src, dst, sv)) = found else {
                break;
            };
            let (from, to) = (nodes[src].id, nodes[dst].id);
            let reason = format!(
                "leaders: {from} has {}, {to} has {}",
                tally.leaders[src], tally.leaders[dst]
            );
            ops.push(Operator::new(
                OperatorKind::BalanceLeader,
                &sv.shard,
                vec![Step::TransferLeader { from, to }],
                now,
                reason,
            ));
            tally.add_op(&[src, dst]);
            tally.leaders[src] -= 1;
            tally.leaders[dst] += 1;
            tally.load[src] -= sv.load();
            tally.load[dst] += sv.load();
            used.insert(sv.shard.id);
        }
        self.fruitless = ops.is_empty().then_some(fingerprint);
        ops
    }
}
