//! Helpers shared by the end-to-end tests: real servers on loopback ports, simulated nodes
//! over real gRPC.
#![allow(dead_code)]

use meridian_client::{MetaClient, NodeAgentConfig};
use meridian_model::NodeLabels;
use meridian_server::{RunningServer, Server, ServerConfig, StoreKind};
use meridian_sim::node::SimNode;
use std::future::Future;
use std::time::{Duration, Instant};

/// A server config on free loopback ports with an in-memory store.
pub fn memory_config() -> ServerConfig {
    ServerConfig {
        store: StoreKind::Memory,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// Fast liveness for tests that wait for failover.
pub fn fast_liveness(c: &mut ServerConfig) {
    c.liveness.heartbeat_interval_ms = 200;
    c.liveness.suspect_after_ms = 400;
    c.liveness.offline_after_ms = 700;
    c.liveness.grace_period_ms = 500;
    c.schedule_interval_ms = 50;
    c.full_schedule_interval_ms = 200;
}

/// Starts an in-process server.
pub async fn start(config: ServerConfig) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// Agent config for simulated node `i` in zone `i % zones`.
pub fn node_config(
    server: &RunningServer,
    prefix: &str,
    i: usize,
    zones: usize,
) -> NodeAgentConfig {
    let mut c = NodeAgentConfig::new(
        server.grpc_addr.to_string(),
        format!("{prefix}-{i}"),
        format!("127.0.0.1:{}", 30000 + i),
    );
    c.labels = NodeLabels {
        zone: format!("zone-{}", i % zones),
        rack: format!("rack-{i}"),
        host: format!("host-{i}"),
    };
    c.min_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c
}

/// Starts `n` simulated nodes across `zones` zones and waits until each registered.
pub async fn start_nodes(
    server: &RunningServer,
    prefix: &str,
    n: usize,
    zones: usize,
) -> Vec<SimNode> {
    let nodes: Vec<SimNode> = (0..n)
        .map(|i| SimNode::start(node_config(server, prefix, i, zones)))
        .collect();
    for node in &nodes {
        node.agent
            .registered(Duration::from_secs(10))
            .await
            .expect("node registers");
    }
    nodes
}

/// A client of the default cluster.
pub async fn client(server: &RunningServer) -> MetaClient {
    MetaClient::connect(&[server.grpc_addr.to_string()], "default")
        .await
        .expect("client connects")
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the default cluster has its shards and every replica is open on its node.
pub async fn shards_ready(server: &RunningServer, nodes: &[SimNode]) {
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(10), || {
        let cluster = cluster.clone();
        async move {
            let entries = cluster.shard_entries();
            if entries.is_empty() {
                return None;
            }
            let want: usize = entries.iter().map(|e| e.shard.replicas.len()).sum();
            let held: usize = nodes.iter().map(|n| n.shards.shards().len()).sum();
            (held >= want).then_some(())
        }
    })
    .await;
}

/// An HTTP client call returning (status, JSON body).
pub async fn http(
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    http_as(method, &url, None, body).await
}

/// Like [`http`], presenting `token` as a bearer token (a server run with `--tokens`).
pub async fn http_as(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("http request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Waits until the default cluster has had no running operator and every shard its full
/// replica set for a whole second (several full scheduling passes): balancing after nodes
/// joined has finished, not just paused between two passes.
pub async fn settled(server: &RunningServer) {
    let cluster = server.meta.cluster("default").unwrap();
    let rf = cluster.config().replication_factor as usize;
    let mut quiet_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let idle = server.scheduling.operators(cluster.id, false).0.is_empty();
        let full = cluster
            .shard_entries()
            .iter()
            .all(|e| e.shard.replicas.len() == rf);
        if idle && full {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return;
            }
        } else {
            quiet_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (for server processes that need fixed ports across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redb-backed config in `dir` on fixed free ports, so it can be restarted on the same
/// addresses.
pub fn redb_config(dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.into(),
        grpc_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        http_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        ..Default::default()
    }
}

/// Starts `n` simulated nodes of the default cluster at `addr`, node `i` in zone `z{i}`,
/// advertising port `port_base + i`, reconnecting with `backoff_ms(i)` = (min, max), and
/// waits until each registered.
pub async fn start_nodes_at(
    addr: &str,
    prefix: &str,
    n: usize,
    port_base: usize,
    backoff_ms: impl Fn(usize) -> (u64, u64),
) -> Vec<SimNode> {
    start_nodes_in(addr, "", prefix, n, port_base, backoff_ms).await
}

/// Like [`start_nodes_at`], for cluster `cluster` (empty: the default one).
pub async fn start_nodes_in(
    addr: &str,
    cluster: &str,
    prefix: &str,
    n: usize,
    port_base: usize,
    backoff_ms: impl Fn(usize) -> (u64, u64),
) -> Vec<SimNode> {
    let nodes: Vec<SimNode> = (0..n)
        .map(|i| {
            let mut c = NodeAgentConfig::new(
                addr,
                format!("{prefix}-{i}"),
                format!("127.0.0.1:{}", port_base + i),
            );
            c.cluster = cluster.to_string();
            c.labels = NodeLabels {
                zone: format!("z{i}"),
                ..Default::default()
            };
            let (min, max) = backoff_ms(i);
            c.min_backoff = Duration::from_millis(min);
            c.max_backoff = Duration::from_millis(max);
            SimNode::start(c)
        })
        .collect();
    for node in &nodes {
        node.agent
            .registered(Duration::from_secs(10))
            .await
            .expect("node registers");
    }
    nodes
}

/// An in-memory server with fast liveness and six nodes in three zones, balanced and quiet.
pub async fn balanced_cluster(prefix: &str) -> (RunningServer, Vec<SimNode>) {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let nodes = start_nodes(&server, prefix, 6, 3).await;
    shards_ready(&server, &nodes).await;
    settled(&server).await;
    (server, nodes)
}

/// Pauses leader and shard balancing in the default cluster (they would fight a test's
/// manual moves).
pub async fn pause_balancing(server: &RunningServer) {
    pause_balancing_at(server.http_addr).await
}

/// [`pause_balancing`] for a server (or server process) serving HTTP at `http_addr`; also
/// pauses the hot-shard scheduler.
pub async fn pause_balancing_at(http_addr: std::net::SocketAddr) {
    let base = format!("http://{http_addr}/api/v1/clusters/default");
    for name in ["balance-leader", "balance-shard", "hot-shard"] {
        let (s, v) = http(
            reqwest::Method::POST,
            format!("{base}/schedulers/{name}/pause"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
}

/// A `meridian server` process on `dir` (redb) at the given loopback ports, with extra
/// environment `env` (e.g. an armed failpoint).
pub fn spawn_server_process(
    dir: &std::path::Path,
    grpc: u16,
    http: u16,
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["server", "--data-dir"])
        .arg(dir)
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
        ])
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("server process starts")
}

/// Runs `meridian ctl ARGS` against the server (off the runtime's threads): whether it
/// succeeded, and what it printed.
pub async fn ctl(http_addr: &str, args: &[&str]) -> (bool, String) {
    let (code, text) = ctl_exit(http_addr, args).await;
    (code == Some(0), text)
}

/// [`ctl`] with its exit code.
pub async fn ctl_exit(http_addr: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.args(["ctl", "--addr", &format!("http://{http_addr}")])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("ctl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// Runs `meridian ARGS` to its end: whether it succeeded, and what it printed (stdout,
/// then stderr).
pub fn meridian(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .expect("meridian runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An in-memory server run with a tokens file of `lines` (`ROLE TOKEN [NAME]` each); the
/// directory holding the file lives as long as the server is needed.
pub async fn start_with_tokens(lines: &str) -> (tempfile::TempDir, RunningServer) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, lines).unwrap();
    let mut config = memory_config();
    config.tokens_file = Some(tokens);
    (dir, start(config).await)
}
