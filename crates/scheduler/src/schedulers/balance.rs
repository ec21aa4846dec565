//! Balance: even replica and leader counts across nodes (which is also how a new, empty
//! node fills up: expansion falls out of balance).

use super::hot::hot_line;
use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::violations_around;
use crate::view::{ClusterView, NodeView, ShardView, Tally};
use meridian_model::{NodeId, ReplicaRole, ShardId};
use std::collections::{HashMap, HashSet, VecDeque};

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

/// Members (view indices) by `member` (replica or leader balance membership) and their
/// spread in `counts`.
fn members_spread(
    view: &ClusterView,
    counts: &[u32],
    member: fn(&NodeView) -> bool,
) -> (Vec<usize>, u32) {
    let members: Vec<usize> = view
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| member(n))
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
/// Only balance members (Online, not draining, not cordoned) give or receive; a node whose
/// leaders are evicted is one (it keeps and takes followers) but never receives a leader
/// replica. A move never raises the shard's failure-domain violations and, in copyset mode,
/// always leaves the shard inside a copyset of the family (a new node fills up through the
/// copysets the family derived for it). A follower replica moves as
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

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let (members, spread) = members_spread(view, &tally.replicas, NodeView::is_balance_member);
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
            after <= before && view.inside_copyset_after(&sv.shard, &[from], to)
        })
        .filter(|sv| {
            // A leader move also works the source (the transfer) and carries the load, and
            // needs a destination that may lead.
            sv.shard.role_of(from) != Some(ReplicaRole::Leader)
                || (nodes[dst].can_lead()
                    && capacity_for(tally, view, &[from])
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

/// Evens out leader counts with the same hysteresis as shard balance, by leader transfers
/// to in-sync followers.
///
/// Only leader balance members ([`NodeView::is_leader_balance_member`]) count, give or
/// receive: a node whose leaders are evicted is left out, so its falling count neither
/// widens the spread nor draws leaderships back to it.
///
/// A transfer goes from a node with the most leaders towards one with at least two fewer.
/// Failure domains often forbid the direct transfer (with one replica per zone, two nodes
/// of one zone never hold replicas of the same shard), so it searches, breadth first, for a
/// shortest chain `a -> b -> ... -> z` of transfers, each handing one shard's leadership to
/// a follower on the next node: only `a` and `z` change counts. Cold shards move first, and
/// never onto a node they would push over the hot line, so leader balance and the
/// hot-shard scheduler do not undo each other.
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

/// One hop of a transfer chain: leadership of `shard` from node `from` to node `to`.
struct Hop<'a> {
    from: usize,
    to: usize,
    shard: &'a ShardView,
}

/// Shortest chain of leader transfers from a node with `max` leaders to a node with at most
/// `max - 2`, over idle shards not yet `used`.
fn transfer_chain<'a>(
    view: &'a ClusterView,
    tally: &Tally,
    used: &HashSet<ShardId>,
    members: &[usize],
    line: Option<f64>,
) -> Option<Vec<Hop<'a>>> {
    let nodes = view.nodes();
    let max = members.iter().map(|&i| tally.leaders[i]).max()?;
    let mut parent: HashMap<usize, Option<Hop<'a>>> = HashMap::new();
    let mut queue = VecDeque::new();
    let mut sources: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| tally.leaders[i] == max && tally.has_capacity(i))
        .collect();
    sources.sort_by_key(|&i| nodes[i].id);
    for s in sources {
        parent.insert(s, None);
        queue.push_back(s);
    }
    while let Some(u) = queue.pop_front() {
        let from = nodes[u].id;
        let mut led: Vec<&ShardView> = view
            .shards_on(from)
            .filter(|sv| {
                sv.shard.leader() == Some(from)
                    && !used.contains(&sv.shard.id)
                    && view.may_propose(sv.shard.id, Priority::Balance)
            })
            .collect();
        led.sort_by(|a, b| {
            a.load()
                .total_cmp(&b.load())
                .then(a.shard.id.cmp(&b.shard.id))
        });
        for sv in led {
            let mut next: Vec<usize> = sv
                .in_sync
                .iter()
                .filter_map(|&n| view.node_index(n))
                .filter(|&i| {
                    !parent.contains_key(&i)
                        && nodes[i].is_leader_balance_member()
                        && tally.has_capacity(i)
                        && line.is_none_or(|l| tally.load[i] + sv.load() <= l)
                })
                .collect();
            next.sort_by_key(|&i| (tally.leaders[i], nodes[i].id));
            for v in next {
                parent.insert(
                    v,
                    Some(Hop {
                        from: u,
                        to: v,
                        shard: sv,
                    }),
                );
                if tally.leaders[v] + 2 <= max {
                    let mut chain = Vec::new();
                    let mut at = v;
                    while let Some(Some(hop)) = parent.remove(&at) {
                        at = hop.from;
                        chain.push(hop);
                    }
                    chain.reverse();
                    return Some(chain);
                }
                queue.push_back(v);
            }
        }
    }
    None
}

impl Scheduler for BalanceLeaderScheduler {
    fn name(&self) -> &'static str {
        "balance-leader"
    }

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let (members, spread) =
            members_spread(view, &tally.leaders, NodeView::is_leader_balance_member);
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
            let Some(chain) = transfer_chain(view, &tally, &used, &members, line) else {
                break;
            };
            let (first, last) = (chain[0].from, chain[chain.len() - 1].to);
            let reason = format!(
                "leaders: {} has {}, {} has {} ({} transfer(s))",
                nodes[first].id,
                tally.leaders[first],
                nodes[last].id,
                tally.leaders[last],
                chain.len()
            );
            tally.leaders[first] -= 1;
            tally.leaders[last] += 1;
            for hop in chain {
                let (from, to) = (nodes[hop.from].id, nodes[hop.to].id);
                ops.push(Operator::new(
                    OperatorKind::BalanceLeader,
                    &hop.shard.shard,
                    vec![Step::TransferLeader { from, to }],
                    now,
                    reason.clone(),
                ));
                tally.add_op(&[hop.from, hop.to]);
                tally.load[hop.from] -= hop.shard.load();
                tally.load[hop.to] += hop.shard.load();
                used.insert(hop.shard.shard.id);
            }
        }
        self.fruitless = ops.is_empty().then_some(fingerprint);
        ops
    }
}
