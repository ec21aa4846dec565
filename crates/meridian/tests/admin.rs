//! Scheduling admin over HTTP: drain then remove, cordon, manual transfer-leader and
//! move-shard, scheduler pause/resume, maintenance mode, operator listing.

mod common;

use common::*;
use meridian_model::{NodeId, ReplicaRole, ShardId};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_every_replica_off_then_remove_succeeds() {
    let (server, _nodes) = balanced_cluster("a").await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let cluster = server.meta.cluster("default").unwrap();
    let victim = cluster.shard_entries()[0].shard.leader().unwrap();

    // Removing a node that still holds replicas is refused, with the way out in the message.
    let (s, v) = http(
        Method::POST,
        format!("{base}/nodes/{}/remove", victim.0),
        None,
    )
    .await;
    assert_eq!(s, 412, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("drain it first"));

    let (s, v) = http(
        Method::POST,
        format!("{base}/nodes/{}/drain", victim.0),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually(Duration::from_secs(30), || {
        let held = cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.has_replica_on(victim))
            .count();
        async move { (held == 0).then_some(()) }
    })
    .await;
    // Every shard still has its full replica set, on distinct zones.
    for e in cluster.shard_entries() {
        assert_eq!(e.shard.replicas.len(), 3, "{:?}", e.shard);
        assert!(e.shard.leader().is_some());
    }
    let (s, v) = http(
        Method::POST,
        format!("{base}/nodes/{}/remove", victim.0),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = http(Method::GET, format!("{base}/nodes"), None).await;
    let state = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == victim.0)
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "removed");
    let (_, v) = http(Method::GET, format!("{base}/operators?history=true"), None).await;
    assert!(
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "drain"),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_transfer_leader_and_move_shard_run_as_operators() {
    let (server, nodes) = balanced_cluster("m").await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    // Balancing would fight the manual moves in this test: pause it.
    pause_balancing(&server).await;
    let (s, _) = http(
        Method::POST,
        format!("{base}/schedulers/no-such/pause"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, v) = http(Method::GET, format!("{base}/schedulers"), None).await;
    assert!(
        v["schedulers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "balance-leader" && s["paused"] == true),
        "{v}"
    );

    let cluster = server.meta.cluster("default").unwrap();
    let shard = cluster.shard(ShardId(1)).unwrap();
    let follower = shard.followers().next().unwrap();
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/1/transfer-leader"),
        Some(json!({"to": follower.0.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually(Duration::from_secs(10), || {
        let leader = cluster.shard(ShardId(1)).unwrap().leader();
        async move { (leader == Some(follower)).then_some(()) }
    })
    .await;
    let node = nodes
        .iter()
        .find(|n| n.agent.status().node_id == Some(follower.0))
        .unwrap();
    eventually(Duration::from_secs(10), || {
        let role = node.shards.shards().get(&ShardId(1)).map(|s| s.role);
        async move { (role == Some(ReplicaRole::Leader)).then_some(()) }
    })
    .await;

    // Move a follower replica of shard 2 to a node that does not hold it, in the same zone.
    let shard = cluster.shard(ShardId(2)).unwrap();
    let from = shard.followers().next().unwrap();
    let zone_of = |id: NodeId| {
        cluster
            .find_node(&id.0.to_string())
            .unwrap()
            .node
            .labels
            .zone
    };
    let to = cluster
        .node_entries()
        .iter()
        .map(|e| e.node.id)
        .find(|id| !shard.has_replica_on(*id) && zone_of(*id) == zone_of(from))
        .unwrap();
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/2/move"),
        Some(json!({"from": from.0.to_string(), "to": to.0.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually(Duration::from_secs(15), || {
        let s = cluster.shard(ShardId(2)).unwrap();
        async move { (s.has_replica_on(to) && !s.has_replica_on(from)).then_some(()) }
    })
    .await;
    // A move to a node that already holds the shard is refused at once.
    let holder = cluster.shard(ShardId(2)).unwrap().leader().unwrap();
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/2/move"),
        Some(json!({"from": from.0.to_string(), "to": holder.0.to_string()})),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {v}");

    // A move that puts two replicas in one zone (while the shard's own zone is free) is
    // refused, changing nothing, unless forced.
    let shard = cluster.shard(ShardId(2)).unwrap();
    let from = shard.followers().next().unwrap();
    let leader = shard.leader().unwrap();
    let crowded = cluster
        .node_entries()
        .iter()
        .map(|e| e.node.id)
        .find(|id| !shard.has_replica_on(*id) && zone_of(*id) == zone_of(leader))
        .unwrap();
    let body = |force: bool| json!({"from": from.0.to_string(), "to": crowded.0.to_string(), "force": force});
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/2/move"),
        Some(body(false)),
    )
    .await;
    assert_eq!(s, 412, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one failure domain"),
        "{v}"
    );
    assert_eq!(cluster.shard(ShardId(2)).unwrap(), shard, "nothing changed");
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/2/move"),
        Some(body(true)),
    )
    .await;
    assert_eq!(s, 200, "forced: {v}");

    // Maintenance mode switches on and off.
    let (s, _) = http(
        Method::PUT,
        format!("{base}/maintenance"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = http(Method::GET, format!("{base}/schedulers"), None).await;
    assert_eq!(v["maintenance"], true);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_receives_no_new_replicas_when_the_cluster_grows() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let nodes = start_nodes(&server, "c", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let cluster = server.meta.cluster("default").unwrap();
    // Two new nodes join while shard balance is paused; one is cordoned, then balance resumes.
    let (s, _) = http(
        Method::POST,
        format!("{base}/schedulers/balance-shard/pause"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let newcomers: Vec<_> = (3..5)
        .map(|i| meridian_sim::node::SimNode::start(node_config(&server, "c", i, 3)))
        .collect();
    let mut ids = Vec::new();
    for n in &newcomers {
        ids.push(NodeId(
            n.agent.registered(Duration::from_secs(5)).await.unwrap(),
        ));
    }
    let (s, _) = http(
        Method::POST,
        format!("{base}/nodes/{}/cordon", ids[0].0),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = http(
        Method::POST,
        format!("{base}/schedulers/balance-shard/resume"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // The other newcomer receives replicas (expansion); the cordoned one none.
    eventually(Duration::from_secs(30), || {
        let got = cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.has_replica_on(ids[1]))
            .count();
        async move { (got >= 3).then_some(()) }
    })
    .await;
    assert_eq!(
        cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.has_replica_on(ids[0]))
            .count(),
        0
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_leaders_moves_every_leadership_off_a_node_before_a_planned_restart() {
    let (server, nodes) = balanced_cluster("e").await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let cluster = server.meta.cluster("default").unwrap();
    let victim = cluster.shard_entries()[0].shard.leader().unwrap();
    let replicas_before = cluster
        .shard_entries()
        .iter()
        .filter(|e| e.shard.has_replica_on(victim))
        .count();
    let (s, v) = http(
        Method::POST,
        format!("{base}/nodes/{}/evict-leaders", victim.0),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["evict_leaders"], true);
    eventually(Duration::from_secs(20), || {
        let leads = cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.leader() == Some(victim))
            .count();
        async move { (leads == 0).then_some(()) }
    })
    .await;
    // No shard lost its leader on the way, and the node keeps its followers.
    for e in cluster.shard_entries() {
        assert!(e.shard.leader().is_some(), "{:?}", e.shard);
    }
    let node = nodes
        .iter()
        .find(|n| n.agent.status().node_id == Some(victim.0))
        .unwrap();
    eventually(Duration::from_secs(10), || {
        let leads = node.shards.leaders().len();
        async move { (leads == 0).then_some(()) }
    })
    .await;
    let replicas_after = cluster
        .shard_entries()
        .iter()
        .filter(|e| e.shard.has_replica_on(victim))
        .count();
    assert_eq!(
        replicas_after, replicas_before,
        "eviction moves leaders only"
    );
    // Balancing leaves it alone while the flag is set.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.leader() == Some(victim))
            .count(),
        0
    );
    let (s, v) = http(
        Method::POST,
        format!("{base}/nodes/{}/unevict-leaders", victim.0),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = http(Method::GET, format!("{base}/operators?history=true"), None).await;
    assert!(
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "evict_leader"),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_and_paused_schedulers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = start(config.clone()).await;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    for (method, path, body) in [
        (Method::PUT, "maintenance", Some(json!({"enabled": true}))),
        (Method::POST, "schedulers/balance-shard/pause", None),
        (Method::POST, "schedulers/balance-leader/pause", None),
        (Method::POST, "schedulers/balance-leader/resume", None),
    ] {
        let (s, v) = http(method, format!("{base}/{path}"), body).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    // A refused switch changes nothing.
    let (s, _) = http(
        Method::POST,
        format!("{base}/schedulers/no-such/pause"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    server.shutdown().await;

    let server = start(config).await;
    let (_, v) = http(Method::GET, format!("{base}/schedulers"), None).await;
    assert_eq!(v["maintenance"], true, "{v}");
    let paused: Vec<&str> = v["schedulers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["paused"] == true)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(paused, ["balance-shard"], "{v}");
    server.shutdown().await;
}
