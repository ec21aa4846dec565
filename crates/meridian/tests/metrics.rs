//! `/metrics` passes `promtool check metrics` (Debian's prometheus package, installed by
//! the README's test command): HELP text on every family, latencies as histograms, a
//! `cluster` label on everything about one cluster, zero series from the start, and
//! series that move with real events (a gRPC call, a node killed, a node removed). The
//! Grafana dashboard in deploy/grafana/meridian.json names only families Meridian exports.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Families about the whole server rather than one cluster: the only ones without a
/// `cluster` label.
const SERVER_WIDE: &[&str] = &[
    "meridian_build_info",
    "meridian_grpc_request_duration_seconds",
    "meridian_grpc_requests_total",
    "meridian_http_request_duration_seconds",
    "meridian_http_requests_total",
    "meridian_leader_elections_total",
    "meridian_leader_stepdowns_total",
    "meridian_process_resident_memory_bytes",
    "meridian_store_commit_duration_seconds",
];

/// Every family these tests expect on a freshly started server (with its type).
const EXPECTED: &[(&str, &str)] = &[
    ("meridian_build_info", "gauge"),
    ("meridian_ddl_duration_seconds", "histogram"),
    ("meridian_ddl_total", "counter"),
    ("meridian_failover_duration_seconds", "histogram"),
    ("meridian_failovers_total", "counter"),
    ("meridian_grpc_request_duration_seconds", "histogram"),
    ("meridian_grpc_requests_total", "counter"),
    ("meridian_heartbeat_handle_seconds", "histogram"),
    ("meridian_heartbeats_total", "counter"),
    ("meridian_instruction_timeouts_total", "counter"),
    ("meridian_node_leaders", "gauge"),
    ("meridian_node_read_units_per_second", "gauge"),
    ("meridian_node_replicas", "gauge"),
    ("meridian_node_write_units_per_second", "gauge"),
    ("meridian_nodes", "gauge"),
    ("meridian_operators_finished_total", "counter"),
    ("meridian_operators_running", "gauge"),
    ("meridian_registrations_refused_total", "counter"),
    ("meridian_schedule_tick_seconds", "histogram"),
    ("meridian_shards_unhealthy", "gauge"),
    ("meridian_store_commit_duration_seconds", "histogram"),
];

/// One scrape: the text, and each family's type.
struct Scrape {
    text: String,
    families: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of the sample written exactly `series` (name and labels), if present.
    fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            rest.parse().ok()
        })
    }

    /// Like [`Scrape::value`], failing the test (with the scrape) when absent.
    fn must(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.text))
    }

    /// Every sample line of `family` (histograms: their buckets, sum and count).
    fn samples<'a>(&'a self, family: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.text.lines().filter(move |l| {
            !l.starts_with('#')
                && l.split(['{', ' '])
                    .next()
                    .is_some_and(|n| n == family || histogram_part(n) == Some(family))
        })
    }
}

/// The family a histogram's `_bucket`, `_sum` or `_count` sample belongs to.
fn histogram_part(name: &str) -> Option<&str> {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
}

async fn scrape(server: &meridian_server::RunningServer) -> Scrape {
    let (status, body) = http(
        reqwest::Method::GET,
        format!("http://{}/metrics", server.http_addr),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_string();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    Scrape { text, families }
}

/// Runs `promtool check metrics` on `text`; it must say nothing and succeed.
fn promtool_check(text: &str) {
    let promtool = std::env::var("MERIDIAN_PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool} ({e}): the README's test command (scripts/test.sh) installs Debian's prometheus")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check metrics:\n{said}");
    assert!(said.trim().is_empty(), "promtool check metrics:\n{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_with_help_on_every_family() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "m", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    client
        .create_table(
            &TableName::new("default", "public", "m").unwrap(),
            &PartitionRule::None,
            false,
        )
        .await
        .unwrap();
    settled(&server).await;
    let s = scrape(&server).await;

    // Every family has HELP text, and latencies are histograms.
    for family in s.families.keys() {
        assert!(
            s.text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
    assert_eq!(
        s.families["meridian_heartbeat_handle_seconds"], "histogram",
        "{}",
        s.text
    );
    assert!(s
        .text
        .contains("meridian_heartbeat_handle_seconds_bucket{cluster=\"default\",le=\"0.001\"}"));
    promtool_check(&s.text);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_starts_at_zero_with_a_cluster_label_and_moves_with_real_events() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    // Slower than fast_liveness to call a node dead: on a busy machine a live node must
    // not be failed over before the zero series are read.
    config.liveness.suspect_after_ms = 1_000;
    config.liveness.offline_after_ms = 2_000;
    config.instruction_timeout_ms = 1_000;
    let server = start(config).await;
    let mut nodes = start_nodes(&server, "mx", 3, 3).await;
    shards_ready(&server, &nodes).await;
    settled(&server).await;
    // Nothing but failover moves replicas from here on.
    pause_balancing(&server).await;
    let base = format!("http://{}", server.http_addr);

    // A fresh server: every family is there, before any failover, DDL or refusal.
    let s = scrape(&server).await;
    for (family, kind) in EXPECTED {
        assert_eq!(
            s.families.get(*family).map(String::as_str),
            Some(*kind),
            "{family} missing or of the wrong type:\n{}",
            s.text
        );
    }
    // Everything about one cluster says which (a family without a cluster label must be
    // listed as server-wide).
    for family in s.families.keys() {
        if SERVER_WIDE.contains(&family.as_str()) {
            continue;
        }
        for sample in s.samples(family) {
            assert!(sample.contains("cluster=\""), "no cluster label: {sample}");
        }
    }
    // Zero series from the start.
    for zero in [
        r#"meridian_failovers_total{cluster="default",outcome="succeeded"}"#,
        r#"meridian_failover_duration_seconds_count{cluster="default"}"#,
        r#"meridian_registrations_refused_total{cluster="default",reason="fingerprint_mismatch"}"#,
        r#"meridian_registrations_refused_total{cluster="default",reason="node_removed"}"#,
        r#"meridian_operators_running{cluster="default",kind="failover"}"#,
        r#"meridian_operators_finished_total{cluster="default",kind="failover",outcome="succeeded"}"#,
        r#"meridian_forced_promotions_total{cluster="default"}"#,
        r#"meridian_reshards_total{cluster="default",kind="split"}"#,
        r#"meridian_ddl_total{cluster="default",kind="alter",outcome="ok"}"#,
        r#"meridian_ddl_duration_seconds_count{cluster="default",kind="drop"}"#,
    ] {
        assert_eq!(s.must(zero), 0.0, "{zero}");
    }
    assert!(s
        .value(r#"meridian_instruction_timeouts_total{cluster="default"}"#)
        .is_some());
    assert_eq!(
        s.must(&format!(
            r#"meridian_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // Per-node gauges: each node's replicas and leaders as placed in the metadata.
    let cluster = server.meta.cluster("default").unwrap();
    for info in cluster.node_infos() {
        let labels = format!(r#"{{cluster="default",node="{}"}}"#, info.name);
        assert_eq!(
            s.must(&format!("meridian_node_replicas{labels}")),
            info.shards as f64
        );
        assert_eq!(
            s.must(&format!("meridian_node_leaders{labels}")),
            info.leaders as f64
        );
        s.must(&format!("meridian_node_write_units_per_second{labels}"));
        s.must(&format!("meridian_node_read_units_per_second{labels}"));
    }
    // Store commits were timed (the nodes' registrations wrote).
    assert!(
        s.must(r#"meridian_store_commit_duration_seconds_count{backend="memory",op="txn"}"#) > 0.0
    );

    // A gRPC call (a DDL) moves the request counter, its latency and the DDL families.
    let create = r#"meridian_grpc_requests_total{method="/meridian.v1.CatalogService/CreateTable",code="OK"}"#;
    let create_latency = r#"meridian_grpc_request_duration_seconds_count{method="/meridian.v1.CatalogService/CreateTable"}"#;
    let ddl = r#"meridian_ddl_total{cluster="default",kind="create",outcome="ok"}"#;
    let ddl_latency = r#"meridian_ddl_duration_seconds_count{cluster="default",kind="create"}"#;
    let before: Vec<f64> = [create, create_latency, ddl, ddl_latency]
        .iter()
        .map(|series| s.must(series))
        .collect();
    client(&server)
        .await
        .create_table(
            &TableName::new("default", "public", "mx").unwrap(),
            &PartitionRule::None,
            false,
        )
        .await
        .unwrap();
    let s = scrape(&server).await;
    for (series, before) in [create, create_latency, ddl, ddl_latency]
        .iter()
        .zip(before)
    {
        assert_eq!(s.must(series), before + 1.0, "{series}");
    }
    // Schema DDL is timed and counted too.
    let schema_ddl =
        r#"meridian_ddl_duration_seconds_count{cluster="default",kind="create_schema"}"#;
    let before = s.must(schema_ddl);
    client(&server)
        .await
        .create_schema("default", "mxs", false)
        .await
        .unwrap();
    assert_eq!(scrape(&server).await.must(schema_ddl), before + 1.0);

    // HTTP requests are counted by route template, never by raw path.
    let (status, _) = http(
        reqwest::Method::GET,
        format!("{base}/api/v1/clusters/default/nodes"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(reqwest::Method::GET, format!("{base}/no/such/page"), None).await;
    assert_eq!(status, 404);
    let s = scrape(&server).await;
    assert!(
        s.must(r#"meridian_http_requests_total{method="GET",route="/api/v1/clusters/{cluster}/nodes",status="200"}"#)
            >= 1.0
    );
    assert!(
        s.must(r#"meridian_http_requests_total{method="GET",route="unmatched",status="404"}"#)
            >= 1.0
    );
    assert!(
        s.must(r#"meridian_http_requests_total{method="GET",route="/metrics",status="200"}"#)
            >= 1.0
    );
    assert!(!s.text.contains("/clusters/default/nodes"), "{}", s.text);

    // A node that holds nothing joins and is removed: its series go away; starting it again
    // under the same name is refused, counted with the reason.
    let extra = meridian_sim::node::SimNode::start(node_config(&server, "mxextra", 7, 3));
    extra
        .agent
        .registered(Duration::from_secs(10))
        .await
        .expect("node registers");
    let s = scrape(&server).await;
    assert_eq!(
        s.must(r#"meridian_node_replicas{cluster="default",node="mxextra-7"}"#),
        0.0
    );
    extra.agent.stop().await;
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters/default/nodes/mxextra-7/remove"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let s = scrape(&server).await;
    assert!(!s.text.contains(r#"node="mxextra-7""#), "{}", s.text);
    let again = meridian_sim::node::SimNode::start(node_config(&server, "mxextra", 7, 3));
    let refused =
        r#"meridian_registrations_refused_total{cluster="default",reason="node_removed"}"#;
    eventually(Duration::from_secs(10), || {
        let server = &server;
        async move { (scrape(server).await.must(refused) >= 1.0).then_some(()) }
    })
    .await;
    again.agent.stop().await;

    // A node that heartbeats but never answers an instruction gets a replica by hand: the
    // move runs (the running gauge says so) and its instruction times out, counted.
    let victim = cluster
        .node_infos()
        .into_iter()
        .find(|n| n.leaders > 0 && n.name.starts_with("mx-"))
        .expect("a node leads a shard");
    let timeouts = r#"meridian_instruction_timeouts_total{cluster="default"}"#;
    let timeouts_before = scrape(&server).await.must(timeouts);
    let (beat, drain) = mute_node(&server, "mxmute-8").await;
    let shard = cluster
        .shard_entries()
        .into_iter()
        .map(|e| e.shard)
        .find(|s| s.leader().is_some_and(|l| l.0 != victim.id.0))
        .expect("a shard another node leads");
    let from = shard
        .replicas
        .iter()
        .find(|r| Some(r.node) != shard.leader() && r.node.0 != victim.id.0)
        .expect("a follower that stays alive")
        .node;
    let from = cluster.find_node(&from.0.to_string()).unwrap().node.name;
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters/default/shards/{}/move", shard.id.0),
        Some(serde_json::json!({"from": from, "to": "mxmute-8", "force": true})),
    )
    .await;
    assert!(status < 300, "{status} {v}");
    let running = r#"meridian_operators_running{cluster="default",kind="manual"}"#;
    assert_eq!(scrape(&server).await.must(running), 1.0);
    eventually(Duration::from_secs(20), || {
        let server = &server;
        async move { (scrape(server).await.must(timeouts) > timeouts_before).then_some(()) }
    })
    .await;

    // A node that leads shards dies: failover moves the failover counter and histogram.
    let index = nodes.iter().position(|n| n.name == victim.name).unwrap();
    nodes.remove(index).agent.stop().await;
    let s = eventually(Duration::from_secs(20), || {
        let server = &server;
        async move {
            let s = scrape(server).await;
            (s.must(r#"meridian_failovers_total{cluster="default",outcome="succeeded"}"#) >= 1.0)
                .then_some(s)
        }
    })
    .await;
    assert!(s.must(r#"meridian_failover_duration_seconds_count{cluster="default"}"#) >= 1.0);
    assert!(s.must(r#"meridian_failover_duration_seconds_sum{cluster="default"}"#) > 0.0);
    assert!(
        s.must(r#"meridian_operators_finished_total{cluster="default",kind="failover",outcome="succeeded"}"#)
            >= 1.0
    );
    assert!(s.must(r#"meridian_node_state_changes_total{cluster="default",to="offline"}"#) >= 1.0);
    // The dead node's load reads 0 (its last report is stale).
    let labels = format!(r#"{{cluster="default",node="{}"}}"#, victim.name);
    assert_eq!(
        s.must(&format!("meridian_node_write_units_per_second{labels}")),
        0.0
    );
    promtool_check(&s.text);
    beat.abort();
    drain.abort();
    server.shutdown().await;
}

/// A node on a raw heartbeat stream: it registers as `name` (zone-2), reports every
/// 100 ms and never answers an instruction. Returns its reporting and reading tasks.
async fn mute_node(
    server: &meridian_server::RunningServer,
    name: &str,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    use meridian_proto as pb;
    let mut raw =
        pb::node_service_client::NodeServiceClient::connect(format!("http://{}", server.grpc_addr))
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let register = pb::RegisterNode {
        name: name.into(),
        endpoint: "127.0.0.1:30008".into(),
        labels: Some(pb::Labels {
            zone: "zone-2".into(),
            rack: "rack-8".into(),
            host: "host-8".into(),
        }),
        ..Default::default()
    };
    tx.send(pb::NodeHeartbeat {
        sent_at_ms: 0,
        body: Some(pb::node_heartbeat::Body::Register(register)),
    })
    .await
    .unwrap();
    let mut inbound = raw
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = inbound.message().await.unwrap().unwrap();
    assert!(
        matches!(first.body, Some(pb::meta_message::Body::Registered(_))),
        "{first:?}"
    );
    let beat = tokio::spawn(async move {
        let started = std::time::Instant::now();
        loop {
            let report = pb::NodeHeartbeat {
                sent_at_ms: started.elapsed().as_millis() as u64,
                body: Some(pb::node_heartbeat::Body::Report(pb::NodeReport::default())),
            };
            if tx.send(report).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Read (and ignore) what Meridian sends: acks and instructions.
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    (beat, drain)
}

/// Words of PromQL that are not metric names: aggregations, keywords, functions are told
/// apart by the `(` that follows them.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// The metric names a PromQL expression reads: identifiers outside label matchers
/// (`{...}`), ranges (`[...]`), strings, grouping lists (`by (...)`), that are neither a
/// function call nor a PromQL word nor a Grafana variable (`$cluster`).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_group = |i: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while *i < chars.len() {
            let c = chars[*i];
            *i += 1;
            if c == '"' {
                while *i < chars.len() && chars[*i] != '"' {
                    *i += if chars[*i] == '\\' { 2 } else { 1 };
                }
                *i += 1;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            skip_group(&mut i, '{', '}');
        } else if c == '[' {
            skip_group(&mut i, '[', ']');
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, or a number (with its exponent or unit).
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_.".contains(chars[i])) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = j < chars.len() && chars[j] == '(';
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                if call {
                    i = j;
                    skip_group(&mut i, '(', ')');
                }
            } else if !call && !PROMQL_WORDS.contains(&word.to_lowercase().as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The names in `exprs` that are no family of `families` (a histogram's `_bucket`,
/// `_sum` and `_count` belong to it).
fn unknown_metrics<'a>(
    exprs: impl IntoIterator<Item = &'a str>,
    families: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut unknown = Vec::new();
    for expr in exprs {
        for name in metric_names(expr) {
            let known = families.contains_key(&name)
                || histogram_part(&name).is_some_and(|base| {
                    families.get(base).map(String::as_str) == Some("histogram")
                });
            if !known {
                unknown.push(format!("{name} (in {expr})"));
            }
        }
    }
    unknown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_queries_families_meridian_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/meridian.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard file"))
            .expect("the dashboard is JSON");

    // Every panel's queries, rows' inner panels included.
    let mut exprs = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    let mut queried = 0;
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if panel["type"] != "row" {
            assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
            queried += 1;
        }
        for t in targets {
            exprs.push(t["expr"].as_str().expect("a PromQL expr").to_string());
        }
    }
    assert!(queried >= 10, "{queried} panels");
    // The cluster variable lists the clusters from a family too.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let cluster = variables
        .iter()
        .find(|v| v["name"] == "cluster")
        .expect("a cluster template variable");
    let query = cluster["definition"].as_str().expect("its query");
    let family = query
        .strip_prefix("label_values(")
        .and_then(|q| q.split(',').next())
        .expect("label_values(FAMILY, cluster)");

    // A freshly started server with one cluster and a few nodes.
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "g", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let s = scrape(&server).await;

    // The checker finds a misspelt family (a check that cannot fail proves nothing).
    let wrong = unknown_metrics(
        ["sum by (le) (rate(meridian_ddl_duration_secs_bucket{cluster=\"$cluster\"}[5m]))"],
        &s.families,
    );
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert_eq!(
        metric_names("histogram_quantile(0.99, sum by (le, kind) (rate(a_bucket{x=\"y\"}[$__rate_interval]))) / on (kind) b offset 5m"),
        ["a_bucket", "b"]
    );

    let unknown = unknown_metrics(exprs.iter().map(String::as_str), &s.families);
    assert!(
        unknown.is_empty(),
        "the dashboard queries what Meridian does not export: {unknown:#?}"
    );
    assert!(s.families.contains_key(family), "{family}");
    server.shutdown().await;
}
