//! Leader eviction: move every leadership off a node before a planned restart.

use super::{Scheduler, SchedulerConfig};
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::view::ClusterView;
use meridian_model::NodeState;

/// Empties flagged nodes of leaderships, so a planned restart costs a leader transfer per
/// shard (a few round trips) instead of a failover (the leader lease plus detection).
///
/// For every shard led by an Online node with `evict_leaders` set, one `TransferLeader` to
/// an in-sync follower on a node that [can lead](crate::NodeView::can_lead), fewest
/// leaders first. A transfer keeps the replica set, so failure domains are unchanged and no
/// data moves; the node keeps its followers. A shard with no such follower waits (a copy
/// would defeat the point of a cheap restart; the admin sees the node still leads). A
/// flagged node that is not Online cannot hand over leadership: failover does that.
/// Like drain, it runs at `Maintenance` priority, within `max_ops_per_tick` and the
/// per-node operator limit.
#[derive(Debug)]
pub struct EvictLeaderScheduler {
    config: SchedulerConfig,
}

impl EvictLeaderScheduler {
    /// An evict-leader scheduler with `config`'s per-tick cap.
    pub fn new(config: SchedulerConfig) -> Self {
        Self { config }
    }
}

impl Scheduler for EvictLeaderScheduler {
    fn name(&self) -> &'static str {
        "evict-leader"
    }

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.config = config;
    }

    /// Essential: an admin sets the flag to restart a node, typically during maintenance
    /// (an upgrade), and then waits for the node to lead nothing. Pausing it there would
    /// stall the restart or turn it into a failover, the very cost the flag avoids; it only
    /// transfers leaderships, which moves no data.
    fn essential(&self) -> bool {
        true
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let nodes = view.nodes();
        let mut ops = Vec::new();
        for (d, node) in nodes.iter().enumerate() {
            if !node.evict_leaders || node.state != NodeState::Online {
                continue;
            }
            let from = node.id;
            for sv in view.shards_on(from) {
                if ops.len() >= self.config.max_ops_per_tick {
                    return ops;
                }
                if !tally.has_capacity(d) {
                    break;
                }
                let s = &sv.shard;
                if s.leader() != Some(from) || !view.may_propose(s.id, Priority::Maintenance) {
                    continue;
                }
                let Some(f) = sv
                    .in_sync
                    .iter()
                    .filter_map(|&n| view.node_index(n))
                    .filter(|&i| nodes[i].can_lead() && tally.has_capacity(i))
                    .min_by_key(|&i| (tally.leaders[i], nodes[i].id))
                else {
                    continue;
                };
                tally.leaders[d] = tally.leaders[d].saturating_sub(1);
                tally.leaders[f] += 1;
                tally.add_op(&[d, f]);
                let to = nodes[f].id;
                ops.push(Operator::new(
                    OperatorKind::EvictLeader,
                    s,
                    vec![Step::TransferLeader { from, to }],
                    now,
                    format!("{from} is evicting leaders: transfer to in-sync follower {to}"),
                ));
            }
        }
        ops
    }
}
