//! Shard health as the API, `ctl check`, the dashboard and the gauges show it: the
//! scheduler's pure `shard_problems` over the current view, with the failover scheduler's
//! own finding of which shards wait for an in-sync follower.

use super::Scheduling;
use crate::meta::Cluster;
use meridian_model::ShardId;
use meridian_scheduler::{unhealthy_shards, ClusterView, ShardProblem};
use std::collections::BTreeMap;

impl Scheduling {
    /// Every unhealthy shard of `cluster` with its problems, worst first.
    pub fn unhealthy(&self, cluster: &Cluster) -> BTreeMap<ShardId, Vec<ShardProblem>> {
        let state = self.cluster_state(cluster.id);
        let (nodes, waiting) = {
            let s = state.lock();
            (
                cluster.node_views(|n| s.liveness.state_since(n).unwrap_or(0)),
                s.waiting
                    .keys()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>(),
            )
        };
        let view = ClusterView::new(cluster.config(), nodes, cluster.shard_views());
        unhealthy_shards(&view, |s| waiting.contains(&s))
    }
}

/// Sets `meridian_shards_unhealthy{cluster, problem}` for every problem (zero included, so
/// a series exists from the first pass) from a full pass's view.
pub(super) fn report_health(
    view: &ClusterView,
    waiting: &BTreeMap<ShardId, meridian_scheduler::WaitingShard>,
    cluster: &str,
) {
    let mut counts: BTreeMap<ShardProblem, u64> =
        ShardProblem::ALL.iter().map(|p| (*p, 0)).collect();
    for problems in unhealthy_shards(view, |s| waiting.contains_key(&s)).values() {
        for p in problems {
            *counts.entry(*p).or_default() += 1;
        }
    }
    for (problem, n) in counts {
        metrics::gauge!("meridian_shards_unhealthy", "cluster" => cluster.to_string(), "problem" => problem.name())
            .set(n as f64);
    }
}
