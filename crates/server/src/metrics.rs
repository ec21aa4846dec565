//! Prometheus metrics: a process-wide recorder rendered at `/metrics`.
//!
//! Counters and histograms are recorded where things happen (`metrics::counter!`); gauges
//! describing current state are refreshed from memory at each scrape.

use crate::meta::Meta;
use meridian_model::NodeState;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process; later servers in the same process share it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

/// Renders every metric in Prometheus text format, refreshing state gauges first.
pub fn render(meta: &Meta) -> String {
    for cluster in meta.clusters() {
        let name = cluster.config().name;
        let nodes = cluster.node_entries();
        for state in [
            NodeState::Online,
            NodeState::Suspect,
            NodeState::Offline,
            NodeState::Removed,
        ] {
            let n = nodes.iter().filter(|e| e.state == state).count();
            let label = format!("{state:?}").to_lowercase();
            metrics::gauge!("meridian_nodes", "cluster" => name.clone(), "state" => label)
                .set(n as f64);
        }
        let shards = cluster.shard_entries();
        let leaderless = shards.iter().filter(|s| s.shard.leader().is_none()).count();
        metrics::gauge!("meridian_shards", "cluster" => name.clone()).set(shards.len() as f64);
        metrics::gauge!("meridian_shards_leaderless", "cluster" => name.clone())
            .set(leaderless as f64);
        metrics::gauge!("meridian_tables", "cluster" => name.clone())
            .set(cluster.table_count() as f64);
        metrics::gauge!("meridian_nodes_connected", "cluster" => name)
            .set(cluster.sessions.connected() as f64);
    }
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("meridian_process_resident_memory_bytes").set(rss as f64);
    }
    install().map(|h| h.render()).unwrap_or_default()
}

/// Resident set size of this process, from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
