//! Prometheus metrics: a process-wide recorder rendered at `/metrics`.
//!
//! Counters and histograms are recorded where things happen (`metrics::counter!`); gauges
//! describing current state are refreshed from memory at each scrape.

use crate::meta::Meta;
use meridian_model::NodeState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process; later servers in the same process share it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Latencies as histograms (aggregatable across servers), not summaries.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("metrics disabled: {e}");
                    return None;
                }
            };
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            describe();
            installed
        })
        .as_ref()
}

/// Histogram buckets of every latency (seconds): 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The HELP text of every family Meridian exports (`promtool check metrics` wants one).
fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!("meridian_copyset_family_updates_total", "Times a cluster's copyset family changed (nodes joined, drained, died past the repair delay or left).");
    c!("meridian_domain_violations_total", "Placements that put two replicas in one failure domain because no free domain could take one.");
    c!("meridian_forced_promotions_total", "Promotions forced by an admin (ctl force-promote), accepting the loss of unapplied writes.");
    c!(
        "meridian_heartbeats_total",
        "Heartbeats received from nodes."
    );
    c!(
        "meridian_leader_elections_total",
        "Times this server won the Meridian leader election (highly available mode)."
    );
    c!(
        "meridian_leader_stepdowns_total",
        "Times this server stopped leading (its lease or a fenced write ended its term)."
    );
    c!("meridian_lease_grants_denied_total", "Write-lease renewals refused because the metadata says another node leads the shard, or the version differs.");
    c!(
        "meridian_node_registrations_total",
        "Node registrations accepted."
    );
    c!(
        "meridian_node_state_changes_total",
        "Node liveness changes, by the state entered."
    );
    c!(
        "meridian_operators_added_total",
        "Operators admitted, by kind."
    );
    c!(
        "meridian_operators_finished_total",
        "Operators finished, by kind and outcome."
    );
    c!(
        "meridian_reconcile_resends_total",
        "Instructions sent again to a node whose report disagrees with the metadata."
    );
    c!(
        "meridian_registrations_refused_total",
        "Node registrations refused (wrong fingerprint, a name alive elsewhere...), by reason."
    );
    c!(
        "meridian_reshards_total",
        "Shard splits and merges committed, by kind."
    );
    c!(
        "meridian_shard_reports_total",
        "Per-shard reports received in heartbeats."
    );
    c!(
        "meridian_stale_shard_reports_total",
        "Shard reports at an older version than the metadata (the node has not caught up yet)."
    );
    c!("meridian_tables_created_total", "Tables created.");
    c!("meridian_tables_dropped_total", "Tables dropped.");
    g!(
        "meridian_domain_violations",
        "Replicas sharing a failure domain although a free one exists, by cluster."
    );
    g!("meridian_nodes", "Nodes by cluster and liveness state.");
    g!(
        "meridian_nodes_connected",
        "Nodes with an open heartbeat stream to this server, by cluster."
    );
    g!(
        "meridian_process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory of the Meridian process."
    );
    g!("meridian_shards", "Shards, by cluster.");
    g!("meridian_shards_domain_degraded", "Shards whose replicas share a failure domain for any reason (including fewer domains than replicas), by cluster.");
    g!(
        "meridian_shards_leaderless",
        "Shards without a leader in the metadata, by cluster."
    );
    g!(
        "meridian_shards_outside_copysets",
        "Copyset mode: shards whose replica set is in no copyset of the family, by cluster."
    );
    g!("meridian_shards_unhealthy", "Shards with each health problem (see GET /api/v1/clusters/{c}/health), by cluster and problem.");
    g!("meridian_shards_waiting_for_in_sync_follower", "Shards whose leader is down and that no follower can take over within max_promote_lag, by cluster.");
    g!("meridian_tables", "Tables, by cluster.");
    h!(
        "meridian_heartbeat_handle_seconds",
        metrics::Unit::Seconds,
        "Time to handle one heartbeat on the server."
    );
    h!(
        "meridian_schedule_tick_seconds",
        metrics::Unit::Seconds,
        "Duration of one scheduling pass."
    );
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
