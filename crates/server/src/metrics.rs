//! Prometheus metrics: a process-wide recorder rendered at `/metrics`.
//!
//! Counters and histograms are recorded where things happen (`metrics::counter!`); gauges
//! describing current state are refreshed from memory at each scrape. Everything about one
//! cluster carries a `cluster` label (its name), and every per-cluster series exists at 0
//! from the moment the cluster is created or loaded ([`register_cluster`]), so dashboards
//! and alerts see it before its first event. Per-node gauges are rendered from memory at
//! each scrape ([`render`]): a removed node's series disappear at the next scrape.
//!
//! Requests are measured by [`requests`] (a tower layer on gRPC, a middleware on HTTP),
//! store writes by [`store::MeteredBackend`]. The list of families with their labels is in
//! docs/operations.md ("Every family"); deploy/grafana/meridian.json charts them.

pub mod requests;
pub mod store;

use crate::meta::{Meta, Refusal};
use crate::schedule::Scheduling;
use meridian_model::NodeState;
use meridian_scheduler::{OperatorKind, ShardProblem};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

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
            metrics::gauge!("meridian_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            requests::register_grpc_methods();
            requests::register_http_scrape();
            installed
        })
        .as_ref()
}

/// Histogram buckets of every latency (seconds): 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How an operator ended, as the `outcome` label says it.
pub const OPERATOR_OUTCOMES: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

/// The liveness states a node enters (the `to` label of `meridian_node_state_changes_total`).
const LIVENESS_STATES: [&str; 3] = ["online", "suspect", "offline"];

/// What a DDL statement did (the `kind` label of the DDL families).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    /// CREATE TABLE.
    Create,
    /// DROP TABLE.
    Drop,
    /// ALTER TABLE (columns, options).
    Alter,
    /// ALTER TABLE ... RENAME.
    Rename,
    /// CREATE SCHEMA.
    CreateSchema,
    /// DROP SCHEMA.
    DropSchema,
    /// DROP CATALOG.
    DropCatalog,
}

impl DdlKind {
    /// Every kind.
    pub const ALL: [DdlKind; 7] = [
        DdlKind::Create,
        DdlKind::Drop,
        DdlKind::Alter,
        DdlKind::Rename,
        DdlKind::CreateSchema,
        DdlKind::DropSchema,
        DdlKind::DropCatalog,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            DdlKind::Create => "create",
            DdlKind::Drop => "drop",
            DdlKind::Alter => "alter",
            DdlKind::Rename => "rename",
            DdlKind::CreateSchema => "create_schema",
            DdlKind::DropSchema => "drop_schema",
            DdlKind::DropCatalog => "drop_catalog",
        }
    }
}

/// The HELP text of every family Meridian exports (`promtool check metrics` wants one).
fn describe() {
    use metrics::Unit::Seconds;
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!("meridian_copyset_family_updates_total", "Times a cluster's copyset family changed (nodes joined, drained, died past the repair delay or left), by cluster.");
    c!("meridian_ddl_total", "DDL statements, by cluster, kind (create, drop, alter, rename of tables; create_schema, drop_schema, drop_catalog) and outcome (ok, error).");
    c!("meridian_domain_violations_total", "Placements that put two replicas in one failure domain because no free domain could take one, by cluster.");
    c!(
        "meridian_failovers_total",
        "Failover operators finished (a leader's node went offline), by cluster and outcome."
    );
    c!("meridian_forced_promotions_total", "Promotions forced by an admin (ctl force-promote), accepting the loss of unapplied writes, by cluster.");
    c!(
        "meridian_grpc_requests_total",
        "gRPC calls finished, by method and status code (a stream counts when it ends)."
    );
    c!(
        "meridian_heartbeats_total",
        "Heartbeats received from nodes, by cluster."
    );
    c!(
        "meridian_http_requests_total",
        "HTTP requests answered, by method, route template and status code."
    );
    c!(
        "meridian_instruction_timeouts_total",
        "Instructions a node did not take or answer within instruction_timeout_ms, by cluster."
    );
    c!(
        "meridian_leader_elections_total",
        "Times this server won the Meridian leader election (highly available mode)."
    );
    c!(
        "meridian_leader_stepdowns_total",
        "Times this server stopped leading (its lease or a fenced write ended its term)."
    );
    c!("meridian_lease_grants_denied_total", "Write-lease renewals refused because the metadata says another node leads the shard, or the version differs, by cluster.");
    c!(
        "meridian_node_registrations_total",
        "Node registrations accepted, by cluster."
    );
    c!(
        "meridian_node_state_changes_total",
        "Node liveness changes, by cluster and the state entered."
    );
    c!(
        "meridian_operators_added_total",
        "Operators admitted, by cluster and kind."
    );
    c!(
        "meridian_operators_finished_total",
        "Operators finished, by cluster, kind and outcome."
    );
    c!(
        "meridian_reconcile_resends_total",
        "Instructions sent again to a node whose report disagrees with the metadata, by cluster."
    );
    c!("meridian_registrations_refused_total", "Node registrations refused, by cluster and reason (fingerprint_mismatch, name_in_use, node_removed, invalid_request, concurrent_registration, store_error).");
    c!(
        "meridian_reshards_total",
        "Shard splits and merges committed, by cluster and kind."
    );
    c!(
        "meridian_shard_reports_total",
        "Per-shard reports received in heartbeats, by cluster."
    );
    c!("meridian_stale_shard_reports_total", "Shard reports at an older version than the metadata (the node has not caught up yet), by cluster.");
    c!(
        "meridian_tables_created_total",
        "Tables created, by cluster."
    );
    c!(
        "meridian_tables_dropped_total",
        "Tables dropped, by cluster."
    );
    g!(
        "meridian_build_info",
        "Always 1; the version label says which Meridian runs."
    );
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
        "meridian_operators_running",
        "Operators running now, by cluster and kind."
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
        "meridian_ddl_duration_seconds",
        Seconds,
        "Time from a DDL statement's arrival to its answer, by cluster and kind."
    );
    h!("meridian_failover_duration_seconds", Seconds, "Time from a failover operator's creation (the first scheduling pass after the leader's node went offline) to its end, by cluster.");
    h!(
        "meridian_grpc_request_duration_seconds",
        Seconds,
        "Time to answer a unary gRPC call, by method."
    );
    h!(
        "meridian_heartbeat_handle_seconds",
        Seconds,
        "Time to handle one heartbeat on the server, by cluster."
    );
    h!(
        "meridian_http_request_duration_seconds",
        Seconds,
        "Time to answer an HTTP request (until the response head), by method and route template."
    );
    h!(
        "meridian_schedule_tick_seconds",
        Seconds,
        "Duration of one scheduling pass's decision part, by cluster."
    );
    h!("meridian_store_commit_duration_seconds", Seconds, "Time for the store to commit one write (batch or transaction), as the caller waits for it, by backend and operation.");
}

/// Starts every per-cluster series at 0 (counters and histograms) or at its current value
/// (gauges set by the scheduling pass), so a dashboard or an alert sees the series before
/// the first event. Called when a cluster is created or loaded.
pub fn register_cluster(cluster: &str) {
    let c = || cluster.to_string();
    for name in [
        "meridian_copyset_family_updates_total",
        "meridian_domain_violations_total",
        "meridian_forced_promotions_total",
        "meridian_heartbeats_total",
        "meridian_instruction_timeouts_total",
        "meridian_lease_grants_denied_total",
        "meridian_node_registrations_total",
        "meridian_reconcile_resends_total",
        "meridian_shard_reports_total",
        "meridian_stale_shard_reports_total",
        "meridian_tables_created_total",
        "meridian_tables_dropped_total",
    ] {
        metrics::counter!(name, "cluster" => c()).increment(0);
    }
    for reason in Refusal::ALL {
        metrics::counter!("meridian_registrations_refused_total", "cluster" => c(), "reason" => reason.name())
            .increment(0);
    }
    for to in LIVENESS_STATES {
        metrics::counter!("meridian_node_state_changes_total", "cluster" => c(), "to" => to)
            .increment(0);
    }
    for kind in ["split", "merge"] {
        metrics::counter!("meridian_reshards_total", "cluster" => c(), "kind" => kind).increment(0);
    }
    for kind in OperatorKind::ALL {
        metrics::counter!("meridian_operators_added_total", "cluster" => c(), "kind" => kind.name())
            .increment(0);
        for outcome in OPERATOR_OUTCOMES {
            metrics::counter!("meridian_operators_finished_total", "cluster" => c(), "kind" => kind.name(), "outcome" => outcome)
                .increment(0);
        }
    }
    for outcome in OPERATOR_OUTCOMES {
        metrics::counter!("meridian_failovers_total", "cluster" => c(), "outcome" => outcome)
            .increment(0);
    }
    for kind in DdlKind::ALL {
        for outcome in ["ok", "error"] {
            metrics::counter!("meridian_ddl_total", "cluster" => c(), "kind" => kind.name(), "outcome" => outcome)
                .increment(0);
        }
        // A histogram handle registers the series; its buckets render at 0.
        let _ = metrics::histogram!("meridian_ddl_duration_seconds", "cluster" => c(), "kind" => kind.name());
    }
    for name in [
        "meridian_failover_duration_seconds",
        "meridian_heartbeat_handle_seconds",
        "meridian_schedule_tick_seconds",
    ] {
        let _ = metrics::histogram!(name, "cluster" => c());
    }
    // Gauges the scheduling pass sets: adding 0 registers them without changing a value
    // another server in this process (tests) may have set.
    for name in [
        "meridian_domain_violations",
        "meridian_shards_domain_degraded",
        "meridian_shards_outside_copysets",
        "meridian_shards_waiting_for_in_sync_follower",
    ] {
        metrics::gauge!(name, "cluster" => c()).increment(0.0);
    }
    for problem in ShardProblem::ALL {
        metrics::gauge!("meridian_shards_unhealthy", "cluster" => c(), "problem" => problem.name())
            .increment(0.0);
    }
}

/// Runs one DDL statement of `cluster` and records its duration and outcome.
pub async fn ddl<T, E>(
    cluster: &str,
    kind: DdlKind,
    statement: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = statement.await;
    metrics::histogram!("meridian_ddl_duration_seconds", "cluster" => cluster.to_string(), "kind" => kind.name())
        .record(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("meridian_ddl_total", "cluster" => cluster.to_string(), "kind" => kind.name(), "outcome" => outcome)
        .increment(1);
    result
}

/// The `outcome` label of an operator that ended in `state`.
pub fn operator_outcome(state: &meridian_scheduler::OperatorState) -> &'static str {
    use meridian_scheduler::OperatorState as S;
    match state {
        S::Succeeded => "succeeded",
        S::Failed(_) => "failed",
        S::Cancelled(_) => "cancelled",
        S::TimedOut => "timed_out",
        // Not an end; never finished in that state.
        S::Running => "failed",
    }
}

/// Per-node gauges, rendered from memory at each scrape (so a removed node's series
/// vanish at once): name, HELP text, and how to read the value from a node.
type NodeGauge = (
    &'static str,
    &'static str,
    fn(&crate::meta::NodeInfo) -> f64,
);

/// The per-node families. Load values of a node that is not online or suspect read 0: its
/// last report is stale.
const NODE_GAUGES: [NodeGauge; 8] = [
    ("meridian_node_replicas", "Replicas placed on the node, by cluster and node.", |n| n.shards as f64),
    ("meridian_node_leaders", "Leader replicas placed on the node, by cluster and node.", |n| n.leaders as f64),
    ("meridian_node_write_units_per_second", "Write load the node reported (units per second over its shards), by cluster and node; 0 while it is offline.", |n| live(n, n.stats.write_units_per_sec)),
    ("meridian_node_read_units_per_second", "Read load the node reported (units per second over its shards), by cluster and node; 0 while it is offline.", |n| live(n, n.stats.read_units_per_sec)),
    ("meridian_node_cpu_usage_ratio", "CPU use the node reported (0..1 of all cores), by cluster and node; 0 while it is offline.", |n| live(n, n.stats.cpu_usage)),
    ("meridian_node_memory_used_bytes", "Memory the node reported in use, by cluster and node; 0 while it is offline.", |n| live(n, n.stats.memory_used_bytes as f64)),
    ("meridian_node_disk_used_bytes", "Disk the node reported in use, by cluster and node; 0 while it is offline.", |n| live(n, n.stats.disk_used_bytes as f64)),
    ("meridian_node_disk_total_bytes", "Disk capacity the node reported, by cluster and node; 0 while it is offline.", |n| live(n, n.stats.disk_total_bytes as f64)),
];

fn live(node: &crate::meta::NodeInfo, value: f64) -> f64 {
    if matches!(node.state, NodeState::Online | NodeState::Suspect) {
        value
    } else {
        0.0
    }
}

/// Renders every metric in Prometheus text format, refreshing state gauges first.
pub fn render(meta: &Meta, scheduling: &Scheduling) -> String {
    let mut per_node: Vec<(String, Vec<crate::meta::NodeInfo>)> = Vec::new();
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
        metrics::gauge!("meridian_nodes_connected", "cluster" => name.clone())
            .set(cluster.sessions.connected() as f64);
        let (running, _) = scheduling.operators(cluster.id, false);
        for kind in OperatorKind::ALL {
            let n = running.iter().filter(|o| o.kind == kind.name()).count();
            metrics::gauge!("meridian_operators_running", "cluster" => name.clone(), "kind" => kind.name())
                .set(n as f64);
        }
        let infos = cluster
            .node_infos()
            .into_iter()
            .filter(|n| n.state != NodeState::Removed)
            .collect();
        per_node.push((name, infos));
    }
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("meridian_process_resident_memory_bytes").set(rss as f64);
    }
    let mut text = install().map(|h| h.render()).unwrap_or_default();
    render_node_gauges(&mut text, &per_node);
    text
}

/// Appends the per-node families (HELP and TYPE even without a node, so the families
/// always exist).
fn render_node_gauges(text: &mut String, clusters: &[(String, Vec<crate::meta::NodeInfo>)]) {
    for (family, help, value) in NODE_GAUGES {
        let _ = writeln!(text, "# HELP {family} {help}");
        let _ = writeln!(text, "# TYPE {family} gauge");
        for (cluster, nodes) in clusters {
            for node in nodes {
                let _ = writeln!(
                    text,
                    "{family}{{cluster=\"{}\",node=\"{}\"}} {}",
                    escape(cluster),
                    escape(&node.name),
                    value(node)
                );
            }
        }
        text.push('\n');
    }
}

/// Escapes a label value (names are validated, but the text format must never break).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size of this process, from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
