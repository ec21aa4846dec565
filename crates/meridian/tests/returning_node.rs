//! Invariant 5: a node that comes back after it was declared dead gets no writes for shards
//! it lost and is told to close them (or to step down, if it still holds a follower).

mod common;

use common::*;
use meridian_client::NodeAgent;
use meridian_model::{NodeId, ReplicaRole};
use std::time::Duration;

async fn scenario(nodes_n: usize, repair_delay_ms: u64) {
    let mut config = memory_config();
    fast_liveness(&mut config);
    config.scheduler.repair_delay_ms = repair_delay_ms;
    let server = start(config).await;
    let mut nodes = start_nodes(&server, "r", nodes_n, 3).await;
    shards_ready(&server, &nodes).await;
    let cluster = server.meta.cluster("default").unwrap();
    // Let the grace period pass and balance settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Victim: a node that leads something. Its agent stops (no heartbeats) but its shards,
    // still believing they lead, stay in memory: a partitioned node.
    let victim_pos = nodes
        .iter()
        .position(|n| !n.shards.leaders().is_empty())
        .unwrap();
    let victim = nodes.remove(victim_pos);
    let victim_id = NodeId(victim.agent.status().node_id.unwrap());
    let led = victim.shards.leaders();
    let config = node_config(&server, "r", victim_pos, 3);
    let shards = victim.shards.clone();
    victim.agent.kill();

    // Failover: none of its shards is led by it any more.
    eventually(Duration::from_secs(15), || {
        let cluster = cluster.clone();
        let led = led.clone();
        async move {
            led.iter()
                .all(|s| {
                    cluster
                        .shard(*s)
                        .and_then(|s| s.leader())
                        .is_some_and(|l| l != victim_id)
                })
                .then_some(())
        }
    })
    .await;
    if repair_delay_ms < 5_000 {
        // Repair: its replicas are re-created elsewhere and removed from it.
        eventually(Duration::from_secs(20), || {
            let held = cluster
                .shard_entries()
                .iter()
                .filter(|e| e.shard.has_replica_on(victim_id))
                .count();
            async move { (held == 0).then_some(()) }
        })
        .await;
    }

    // It comes back with its old state: it is told to step down / close what it lost.
    let _agent = NodeAgent::start(config, shards.clone());
    eventually(Duration::from_secs(15), || {
        let held = shards.shards();
        let cluster = cluster.clone();
        async move {
            let ok = held.iter().all(|(id, s)| match cluster.shard(*id) {
                Some(meta) => match meta.role_of(victim_id) {
                    None => false, // it still holds a shard it lost
                    Some(role) => {
                        s.role == role
                            || role == ReplicaRole::Follower && s.role != ReplicaRole::Leader
                    }
                },
                None => false,
            });
            ok.then_some(())
        }
    })
    .await;
    for (id, s) in shards.shards() {
        assert_ne!(
            (
                cluster.shard(id).unwrap().leader() != Some(victim_id),
                s.role
            ),
            (true, ReplicaRole::Leader),
            "{id}: the returning node still acts as leader"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_node_steps_down_from_leaderships_it_lost() {
    // Three nodes and a long repair delay: the returning node keeps follower replicas.
    scenario(3, 60_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_node_closes_shards_that_were_repaired_elsewhere() {
    // Six nodes and a short repair delay: its replicas moved away while it was gone.
    scenario(6, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_without_followers_is_reopened_on_a_healthy_node_with_its_tables() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let base = format!("http://{}/api/v1", server.http_addr);
    // Reopening elsewhere loses nothing only when the data is on shared storage; without
    // it, the shard would wait for its node (failover never reopens a stale replica).
    let body = serde_json::json!({"name": "solo", "shard_count": 4, "replication_factor": 1, "min_nodes": 2, "shared_storage": true});
    let (s, v) = http(
        reqwest::Method::POST,
        format!("{base}/clusters"),
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut c = node_config(&server, "solo", i, 2);
        c.cluster = "solo".into();
        let n = meridian_sim::node::SimNode::start(c);
        n.agent.registered(Duration::from_secs(5)).await.unwrap();
        nodes.push(n);
    }
    let cluster = server.meta.cluster("solo").unwrap();
    eventually(Duration::from_secs(10), || {
        let n = cluster.shard_entries().len();
        async move { (n == 4).then_some(()) }
    })
    .await;
    let client = meridian_client::MetaClient::connect(&[server.grpc_addr.to_string()], "solo")
        .await
        .unwrap();
    for i in 0..4 {
        let t = meridian_model::TableName::new("default", "public", &format!("s{i}")).unwrap();
        eventually(Duration::from_secs(10), || {
            let (client, t) = (client.clone(), t.clone());
            async move {
                client
                    .create_table(&t, &meridian_model::PartitionRule::None, false)
                    .await
                    .ok()
            }
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await; // past the grace period
    let victim = nodes.remove(0);
    let victim_id = NodeId(victim.agent.status().node_id.unwrap());
    let lost: Vec<_> = victim.shards.leaders();
    assert!(!lost.is_empty());
    victim.agent.kill();
    let survivor = &nodes[0];
    eventually(Duration::from_secs(15), || {
        let held = survivor.shards.shards();
        let cluster = cluster.clone();
        let lost = lost.clone();
        async move {
            lost.iter()
                .all(|s| {
                    let meta = cluster
                        .shard_entries()
                        .into_iter()
                        .find(|e| e.shard.id == *s);
                    meta.is_some_and(|e| {
                        e.shard.leader().is_some_and(|l| l != victim_id)
                            && held.get(s).is_some_and(|h| {
                                h.role == ReplicaRole::Leader
                                    && h.tables.len() == e.partitions.len()
                            })
                    })
                })
                .then_some(())
        }
    })
    .await;
    server.shutdown().await;
}
