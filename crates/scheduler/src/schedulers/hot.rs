//! Hot shards: a node serving much more read/write load than the mean sheds some.

use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::violations_around;
use crate::view::{ClusterView, ShardView};
use meridian_model::{NodeId, NodeState, ShardId};
use std::collections::HashMap;

/// Moves load off nodes whose leader load (read + write units of the shards they lead)
/// has exceeded the mean over leader balance members by `hot_threshold` for
/// `hot_sustain_ms`.
///
/// For each such node, hottest shard first, it transfers leadership to an in-sync follower
/// or, failing that, moves the leader replica (`AddFollower`, `TransferLeader`,
/// `RemoveReplica`) to the coolest domain-respecting node; either way the receiver must be
/// able to lead (not evicting leaders). A receiver that stays under the hot line is
/// preferred; any move must leave the receiver cooler than the source was
/// (`receiver + x < source`), which strictly lowers the sum of squared node loads, so moves
/// cannot cycle while loads hold still. A shard hotter than the line by itself is never
/// moved for load (it would only carry the hot spot along; splitting it is the remedy): its
/// node sheds its other shards instead. A moved shard is left alone for `hot_cooldown_ms`.
#[derive(Debug)]
pub struct HotShardScheduler {
    config: SchedulerConfig,
    moved: HashMap<ShardId, u64>,
    hot_since: HashMap<NodeId, u64>,
}

impl HotShardScheduler {
    /// A hot-shard scheduler with `config`'s threshold, sustain time and cooldown.
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            moved: HashMap::new(),
            hot_since: HashMap::new(),
        }
    }
}

/// The leader load above which a node is hot: the mean over leader balance members times
/// (1 + threshold); `None` while the cluster reports no load.
pub(crate) fn hot_line(view: &ClusterView, load: &[f64], threshold: f64) -> Option<f64> {
    let members: Vec<usize> = (0..view.nodes().len())
        .filter(|&i| view.nodes()[i].is_leader_balance_member())
        .collect();
    if members.is_empty() {
        return None;
    }
    let mean = members.iter().map(|&i| load[i]).sum::<f64>() / members.len() as f64;
    (mean > 0.0).then_some(mean * (1.0 + threshold))
}

impl Scheduler for HotShardScheduler {
    fn name(&self) -> &'static str {
        "hot-shard"
    }

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let cooldown = self.config.hot_cooldown_ms;
        self.moved
            .retain(|_, &mut at| now.saturating_sub(at) < cooldown);
        let mut tally = view.tally();
        let nodes = view.nodes();
        let Some(line) = hot_line(view, &tally.load, self.config.hot_threshold) else {
            self.hot_since.clear();
            return Vec::new();
        };
        let hot_now: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].state == NodeState::Online && tally.load[i] > line)
            .collect();
        self.hot_since
            .retain(|n, _| hot_now.iter().any(|&i| nodes[i].id == *n));
        let mut hot: Vec<usize> = hot_now
            .into_iter()
            .filter(|&i| {
                let since = *self.hot_since.entry(nodes[i].id).or_insert(now);
                now.saturating_sub(since) >= self.config.hot_sustain_ms
            })
            .collect();
        hot.sort_by(|&a, &b| tally.load[b].total_cmp(&tally.load[a]));
        let mut ops = Vec::new();
        for h in hot {
            if ops.len() >= self.config.max_ops_per_tick || !tally.has_capacity(h) {
                continue;
            }
            let from = nodes[h].id;
            let mut led: Vec<&ShardView> = view
                .shards_on(from)
                .filter(|sv| {
                    sv.shard.leader() == Some(from)
                        && sv.load() > 0.0
                        && sv.load() < line
                        && !self.moved.contains_key(&sv.shard.id)
                        && view.may_propose(sv.shard.id, Priority::Balance)
                })
                .collect();
            led.sort_by(|a, b| {
                b.load()
                    .total_cmp(&a.load())
                    .then(a.shard.id.cmp(&b.shard.id))
            });
            let load_h = tally.load[h];
            let mut choice = None;
            for sv in &led {
                let x = sv.load();
                let room = |i: &usize| tally.has_capacity(*i) && tally.load[*i] + x < load_h;
                let follower = sv
                    .in_sync
                    .iter()
                    .filter_map(|&n| view.node_index(n))
                    .filter(|i| nodes[*i].can_lead() && room(i))
                    .min_by(|&a, &b| tally.load[a].total_cmp(&tally.load[b]));
                // The coolest node that may take the replica without a new domain violation
                // (and, in copyset mode, leaving the shard inside a copyset).
                let target = (0..nodes.len())
                    .filter(|i| {
                        nodes[*i].can_lead()
                            && !sv.shard.has_replica_on(nodes[*i].id)
                            && room(i)
                            && {
                                let (b, a) =
                                    violations_around(view, &sv.shard, &[from], nodes[*i].id);
                                a <= b
                            }
                            && view.inside_copyset_after(&sv.shard, &[from], nodes[*i].id)
                    })
                    .min_by(|&a, &b| tally.load[a].total_cmp(&tally.load[b]));
                let fits = |i: usize| tally.load[i] + x <= line;
                let pick = match (follower, target) {
                    (Some(f), _) if fits(f) => Some((f, false)),
                    (_, Some(t)) if fits(t) => Some((t, true)),
                    (Some(f), _) => Some((f, false)),
                    (_, Some(t)) => Some((t, true)),
                    _ => None,
                };
                if let Some((to, copy)) = pick {
                    choice = Some((*sv, to, copy, x));
                    break;
                }
            }
            let Some((sv, t, copy, x)) = choice else {
                continue;
            };
            let to = nodes[t].id;
            let steps = if copy {
                vec![
                    Step::AddFollower { node: to },
                    Step::TransferLeader { from, to },
                    Step::RemoveReplica { node: from },
                ]
            } else {
                vec![Step::TransferLeader { from, to }]
            };
            let reason = format!(
                "{from} leads {load_h:.0} units/s (hot line {line:.0}); move {} ({x:.0}) to {to}",
                sv.shard.id
            );
            ops.push(Operator::new(
                OperatorKind::HotShard,
                &sv.shard,
                steps,
                now,
                reason,
            ));
            tally.load[h] -= x;
            tally.load[t] += x;
            tally.add_op(&[h, t]);
            self.moved.insert(sv.shard.id, now);
        }
        ops
    }
}
