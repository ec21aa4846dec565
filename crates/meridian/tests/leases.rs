//! Write leases per shard, checked from the side that would suffer: the nodes' own lease
//! tables and lease logs (real server, real gRPC, simulated nodes in this process).
mod common;

use common::*;
use meridian_client::{lease_overlaps, read_lease_log, LeaseLog, NotLeader, ShardLeases};
use meridian_model::{NodeId, ReplicaRole, ShardId};
use meridian_sim::node::SimNode;
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Node `i` of a test cluster, writing its lease log to `dir/i.log` (one file per node
/// process, so two processes under one name keep separate logs).
fn logged_node(
    server: &meridian_server::RunningServer,
    prefix: &str,
    i: usize,
    dir: &Path,
    file: &str,
) -> SimNode {
    let config = node_config(server, prefix, i, 3);
    let log = LeaseLog::open(&dir.join(file)).expect("lease log opens");
    SimNode::start_with_leases(
        config,
        None,
        ShardLeases::new(format!("{prefix}-{i}"), Some(log)),
    )
}

/// Every interval of every lease log in `dir`, one source per file.
fn intervals(dir: &Path) -> Vec<meridian_client::LeaseInterval> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (source, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        out.extend(read_lease_log(&text, source).unwrap());
    }
    out
}

fn assert_no_two_writers(dir: &Path) {
    let all = intervals(dir);
    let overlaps = lease_overlaps(&all);
    assert!(
        overlaps.is_empty(),
        "two processes could write one shard at once: {overlaps:#?}"
    );
}

/// Shard leaders per the metadata, with the node (by agent) that should hold the lease.
fn leader_of(server: &meridian_server::RunningServer, shard: ShardId) -> Option<NodeId> {
    server
        .meta
        .cluster("default")
        .unwrap()
        .shard(shard)
        .and_then(|s| s.leader())
}

fn node_index(nodes: &[SimNode], id: NodeId) -> usize {
    nodes
        .iter()
        .position(|n| n.agent.status().node_id == Some(id.0))
        .expect("a node with that id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leader_holds_a_write_lease_and_no_follower_does() {
    let (server, nodes) = balanced_cluster("l").await;
    let cluster = server.meta.cluster("default").unwrap();
    let shards: Vec<_> = cluster
        .shard_entries()
        .iter()
        .map(|e| e.shard.clone())
        .collect();
    for shard in &shards {
        let leader = node_index(&nodes, shard.leader().unwrap());
        eventually(Duration::from_secs(5), || {
            let ok = nodes[leader].agent.leases().writable(shard.id).is_ok();
            async move { ok.then_some(()) }
        })
        .await;
        for f in shard.followers() {
            let follower = &nodes[node_index(&nodes, f)];
            assert_eq!(
                follower.agent.leases().writable(shard.id),
                Err(NotLeader::Follower(shard.id))
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_meridian_is_gone_every_lease_runs_out() {
    let (server, nodes) = balanced_cluster("g").await;
    let mut config = memory_config();
    fast_liveness(&mut config);
    let lease_ms = config.liveness.leader_lease_ms();
    eventually(Duration::from_secs(5), || {
        let leased: usize = nodes.iter().map(|n| n.agent.leases().leases().len()).sum();
        let shards = server
            .meta
            .cluster("default")
            .unwrap()
            .shard_entries()
            .len();
        async move { (leased == shards).then_some(()) }
    })
    .await;
    server.shutdown().await;
    let stopped = std::time::Instant::now();
    // Nothing renews them now: each runs out within a lease of the last ack.
    eventually(Duration::from_secs(5), || {
        let leased: usize = nodes.iter().map(|n| n.agent.leases().leases().len()).sum();
        async move { (leased == 0).then_some(()) }
    })
    .await;
    assert!(
        stopped.elapsed() <= Duration::from_millis(lease_ms + 200),
        "a lease outlived its length"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_meridian_stops_writing_before_a_follower_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let nodes: Vec<SimNode> = (0..6)
        .map(|i| logged_node(&server, "p", i, dir.path(), &format!("{i}.log")))
        .collect();
    for n in &nodes {
        n.agent.registered(Duration::from_secs(10)).await.unwrap();
    }
    shards_ready(&server, &nodes).await;
    settled(&server).await;
    // The victim leads something and holds its leases.
    let victim_id = leader_of(&server, ShardId(1)).unwrap();
    let victim = node_index(&nodes, victim_id);
    let led: Vec<ShardId> = server
        .meta
        .cluster("default")
        .unwrap()
        .shard_entries()
        .iter()
        .filter(|e| e.shard.leader() == Some(victim_id))
        .map(|e| e.shard.id)
        .collect();
    let victim_leases = nodes[victim].agent.leases();
    eventually(Duration::from_secs(5), || {
        let ok = led.iter().all(|s| victim_leases.writable(*s).is_ok());
        async move { ok.then_some(()) }
    })
    .await;
    // Cut it off: its heartbeats stop, but the process (and its lease table) lives on, as
    // a partitioned node's would, still asking whether it may write.
    let mut nodes = nodes;
    let cut = nodes.remove(victim);
    cut.agent.kill();
    let others = &nodes;
    let mut sampled = 0;
    eventually(Duration::from_secs(15), || {
        // At every instant at most one node may write each shard.
        for s in &led {
            let writers = others
                .iter()
                .filter(|n| n.agent.leases().writable(*s).is_ok())
                .count()
                + usize::from(victim_leases.writable(*s).is_ok());
            assert!(writers <= 1, "{s} has {writers} writable leaders");
        }
        sampled += 1;
        let moved = led.iter().all(|s| {
            leader_of(&server, *s) != Some(victim_id)
                && others.iter().any(|n| n.agent.leases().writable(*s).is_ok())
        });
        async move { moved.then_some(()) }
    })
    .await;
    assert!(sampled > 1);
    for s in &led {
        assert!(victim_leases.writable(*s).is_err());
    }
    // And precisely, from the logs: no two intervals of one shard overlap.
    assert_no_two_writers(dir.path());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_one_name_never_both_hold_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let nodes: Vec<SimNode> = (0..3)
        .map(|i| logged_node(&server, "t", i, dir.path(), &format!("{i}.log")))
        .collect();
    for n in &nodes {
        n.agent.registered(Duration::from_secs(10)).await.unwrap();
    }
    shards_ready(&server, &nodes).await;
    settled(&server).await;
    // A second process starts under node t-0's name and endpoint (a botched restart that
    // left the first one running). The two keep replacing each other's sessions.
    let twin = logged_node(&server, "t", 0, dir.path(), "0-twin.log");
    twin.agent
        .registered(Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    twin.agent.stop().await;
    assert!(
        nodes[0].agent.status().sessions > 1,
        "the first process was never replaced: the test proves nothing"
    );
    // The survivor leads again in the end.
    eventually(Duration::from_secs(10), || {
        let cluster = server.meta.cluster("default").unwrap();
        let ok = cluster.shard_entries().iter().all(|e| {
            let leader = node_index(&nodes, e.shard.leader().unwrap());
            nodes[leader].agent.leases().writable(e.shard.id).is_ok()
        });
        async move { ok.then_some(()) }
    })
    .await;
    assert_no_two_writers(dir.path());
    server.shutdown().await;
}

/// A node that refuses to step down from one shard.
struct RefuseDemote {
    inner: std::sync::Arc<meridian_sim::node::SimShards>,
    shard: ShardId,
    /// Demotes to refuse before obeying (u32::MAX: always), and how they are refused:
    /// `hang` waits past the instruction timeout (a lost answer) instead of failing.
    refusals: std::sync::atomic::AtomicU32,
    hang: Option<Duration>,
}

#[async_trait::async_trait]
impl meridian_client::ShardHandler for RefuseDemote {
    async fn open_shard(
        &self,
        s: ShardId,
        v: meridian_model::ShardVersion,
        r: ReplicaRole,
        t: Vec<meridian_client::TableRef>,
    ) -> Result<(), String> {
        self.inner.open_shard(s, v, r, t).await
    }
    async fn close_shard(&self, s: ShardId, v: meridian_model::ShardVersion) -> Result<(), String> {
        self.inner.close_shard(s, v).await
    }
    async fn change_role(
        &self,
        s: ShardId,
        v: meridian_model::ShardVersion,
        r: ReplicaRole,
    ) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if s == self.shard
            && r == ReplicaRole::Follower
            && self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            if let Some(hang) = self.hang {
                tokio::time::sleep(hang).await;
            }
            return Err("busy: cannot step down now".into());
        }
        self.inner.change_role(s, v, r).await
    }
    async fn create_table(
        &self,
        s: ShardId,
        v: meridian_model::ShardVersion,
        t: meridian_client::TableRef,
    ) -> Result<(), String> {
        self.inner.create_table(s, v, t).await
    }
    async fn drop_table(
        &self,
        s: ShardId,
        v: meridian_model::ShardVersion,
        t: meridian_client::TableRef,
    ) -> Result<(), String> {
        self.inner.drop_table(s, v, t).await
    }
    fn report(&self) -> (meridian_model::NodeStats, Vec<meridian_model::ShardReport>) {
        self.inner.report()
    }
}

/// A cluster whose node 0 leads shard 1 through a `RefuseDemote` handler; returns the
/// server, the other nodes, node 0's agent and its id.
async fn cluster_with_stubborn_leader(
    refusals: u32,
    hang: Option<Duration>,
) -> (
    meridian_server::RunningServer,
    Vec<SimNode>,
    meridian_client::NodeAgent,
    NodeId,
) {
    let mut config = memory_config();
    fast_liveness(&mut config);
    config.instruction_timeout_ms = 400;
    let server = start(config).await;
    let stubborn = std::sync::Arc::new(RefuseDemote {
        inner: std::sync::Arc::new(meridian_sim::node::SimShards::new(10.0)),
        shard: ShardId(1),
        refusals: refusals.into(),
        hang,
    });
    let agent = meridian_client::NodeAgent::start(node_config(&server, "s", 0, 3), stubborn);
    let id = NodeId(agent.registered(Duration::from_secs(10)).await.unwrap());
    let others = start_nodes(&server, "o", 5, 3).await;
    settled(&server).await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    pause_balancing(&server).await;
    // Make node 0 the leader of shard 1 if it is not.
    let cluster = server.meta.cluster("default").unwrap();
    if leader_of(&server, ShardId(1)) != Some(id) {
        if !cluster.shard(ShardId(1)).unwrap().has_replica_on(id) {
            // Not even a replica: move one there first.
            let from = cluster
                .shard(ShardId(1))
                .unwrap()
                .followers()
                .next()
                .unwrap();
            let (s, v) = http(
                Method::POST,
                format!("{base}/shards/1/move"),
                // Forced: the set-up needs the replica there, whatever the zones say.
                Some(json!({"from": from.0.to_string(), "to": id.0.to_string(), "force": true})),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            eventually(Duration::from_secs(10), || {
                let ok = cluster.shard(ShardId(1)).unwrap().has_replica_on(id)
                    && server.scheduling.operators(cluster.id, false).0.is_empty();
                async move { ok.then_some(()) }
            })
            .await;
        }
        let (s, v) = http(
            Method::POST,
            format!("{base}/shards/1/transfer-leader"),
            Some(json!({"to": id.0.to_string()})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        eventually(Duration::from_secs(10), || {
            let ok = leader_of(&server, ShardId(1)) == Some(id)
                && server.scheduling.operators(cluster.id, false).0.is_empty();
            async move { ok.then_some(()) }
        })
        .await;
    }
    eventually(Duration::from_secs(5), || {
        let ok = agent.leases().writable(ShardId(1)).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    (server, others, agent, id)
}

/// Transfers shard 1's leadership away from `from` and returns the operator's final JSON.
async fn transfer_away(server: &meridian_server::RunningServer, from: NodeId) -> serde_json::Value {
    let cluster = server.meta.cluster("default").unwrap();
    let to = cluster
        .shard(ShardId(1))
        .unwrap()
        .followers()
        .next()
        .unwrap();
    assert_ne!(to, from);
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/1/transfer-leader"),
        Some(json!({"to": to.0.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let op = v["operator"].clone();
    eventually(Duration::from_secs(20), || {
        let base = base.clone();
        let op = op.clone();
        async move {
            let (_, v) = http(Method::GET, format!("{base}/operators?history=true"), None).await;
            v["history"]
                .as_array()?
                .iter()
                .find(|o| o["id"] == op)
                .cloned()
        }
    })
    .await
}

/// Shard 1's new leader (not `old`, whose agent is `agent`) becomes writable, and the two
/// are never writable at once.
async fn new_leader_takes_over(
    server: &meridian_server::RunningServer,
    others: &[SimNode],
    agent: &meridian_client::NodeAgent,
    old: NodeId,
) {
    let new_leader = leader_of(server, ShardId(1)).unwrap();
    assert_ne!(new_leader, old);
    let n = &others[node_index(others, new_leader)];
    eventually(Duration::from_secs(10), || {
        let was = agent.leases().writable(ShardId(1)).is_ok();
        let new = n.agent.leases().writable(ShardId(1)).is_ok();
        assert!(!(was && new), "both leaders are writable");
        async move { (new && !was).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_refuses_to_step_down_fails_the_transfer_at_once_and_loses_its_lease() {
    let (server, others, agent, id) = cluster_with_stubborn_leader(u32::MAX, None).await;
    let op = transfer_away(&server, id).await;
    let state = op["state"].to_string();
    assert!(
        state.contains("refused"),
        "the operator should fail on the refusal, not time out: {op}"
    );
    // The stubborn node still believes it leads, but the metadata moved on: it gets no more
    // lease, and once its last one ran out the new leader takes over. Never both.
    new_leader_takes_over(&server, &others, &agent, id).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_demotion_is_sent_again_and_the_transfer_completes() {
    // The first demotion's answer never comes in time (the node hangs past the 400 ms
    // instruction timeout); the second is obeyed.
    let (server, others, agent, id) =
        cluster_with_stubborn_leader(1, Some(Duration::from_millis(600))).await;
    let op = transfer_away(&server, id).await;
    assert_eq!(op["state"]["state"], "succeeded", "{op}");
    let new_leader = leader_of(&server, ShardId(1)).unwrap();
    assert_ne!(new_leader, id);
    let n = &others[node_index(&others, new_leader)];
    eventually(Duration::from_secs(5), || {
        let ok = n.agent.leases().writable(ShardId(1)).is_ok()
            && agent.leases().writable(ShardId(1)).is_err();
        async move { ok.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_whose_leader_never_answers_times_out_and_the_new_leader_takes_over_once_the_lease_ran_out(
) {
    // Every demotion hangs far past the step's timeout: the transfer can only time out.
    let (server, others, agent, id) =
        cluster_with_stubborn_leader(u32::MAX, Some(Duration::from_secs(120))).await;
    let op = transfer_away(&server, id).await;
    assert_eq!(op["state"]["state"], "timed_out", "{op}");
    // The metadata named the new leader when the step started; the silent old one got no
    // lease since, so once its last one ran out the new leader was promoted (by reconcile)
    // and holds the lease. Never both.
    new_leader_takes_over(&server, &others, &agent, id).await;
    server.shutdown().await;
}
