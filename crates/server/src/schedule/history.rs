//! Each cluster's history (`meridian_scheduler::History`): what is sampled, under which
//! names, and how the series API reads it.
//!
//! Series names: `shard/{id}/load`; `node/{name}/leader_load`, `node/{name}/leaders`,
//! `node/{name}/replicas`; `cluster/heartbeats_per_sec`, `cluster/ddl_per_sec`,
//! `cluster/operators_running`. Loads are read + write units per second as the leaders
//! report them.

use super::{ClusterScheduling, Scheduling};
use crate::meta::Cluster;
use meridian_model::{ClusterId, ReplicaRole};
use meridian_scheduler::history::shard_load_samples;
use meridian_scheduler::{ClusterView, Series};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

impl Scheduling {
    /// Takes a sample of `view` (its reported loads, not trends) and of the cluster's
    /// activity, once per history step; says whether it did.
    pub(super) fn sample_history(
        cluster: &Cluster,
        s: &mut ClusterScheduling,
        view: &ClusterView,
        now: u64,
    ) -> bool {
        if !s.history.due(now) {
            return false;
        }
        let names = cluster.node_names();
        let mut per_node: HashMap<meridian_model::NodeId, (f64, u32, u32)> = view
            .nodes()
            .iter()
            .filter(|n| n.state != meridian_model::NodeState::Removed)
            .map(|n| (n.id, (0.0, 0, 0)))
            .collect();
        let mut samples: Vec<(String, f64)> = shard_load_samples(view).collect();
        for sv in view.shards() {
            for r in &sv.shard.replicas {
                if let Some(e) = per_node.get_mut(&r.node) {
                    e.2 += 1;
                    if r.role == ReplicaRole::Leader {
                        e.0 += sv.reported_load();
                        e.1 += 1;
                    }
                }
            }
        }
        for (node, (load, leaders, replicas)) in per_node {
            let name = names
                .get(&node)
                .cloned()
                .unwrap_or_else(|| node.to_string());
            samples.push((format!("node/{name}/leader_load"), load));
            samples.push((format!("node/{name}/leaders"), f64::from(leaders)));
            samples.push((format!("node/{name}/replicas"), f64::from(replicas)));
        }
        let heartbeats = cluster.activity.heartbeats.load(Ordering::Relaxed);
        let ddl = cluster.activity.ddl.load(Ordering::Relaxed);
        if let Some((at, h, d)) = s.last_counts {
            let secs = now.saturating_sub(at) as f64 / 1000.0;
            if secs > 0.0 {
                samples.push((
                    "cluster/heartbeats_per_sec".into(),
                    heartbeats.saturating_sub(h) as f64 / secs,
                ));
                samples.push((
                    "cluster/ddl_per_sec".into(),
                    ddl.saturating_sub(d) as f64 / secs,
                ));
            }
        }
        s.last_counts = Some((now, heartbeats, ddl));
        samples.push((
            "cluster/operators_running".into(),
            s.controller.running().count() as f64,
        ));
        s.history.record(now, samples);
        true
    }

    /// The series of `cluster` whose names start with `prefix` (`""`: all), and the
    /// history's step.
    pub fn history(&self, cluster: ClusterId, prefix: &str) -> (u64, Vec<Series>) {
        let state = self.cluster_state(cluster);
        let s = state.lock();
        (s.history.step_ms(), s.history.series(prefix))
    }
}
