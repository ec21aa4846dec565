//! Split and merge: partitions move between shards, routes follow, versions bump, and the
//! nodes serving the new shard hold the moved partitions.

mod common;

use common::*;
use meridian_model::{PartitionRule, ShardId, TableName};
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_moves_half_the_partitions_to_a_new_shard_and_merge_joins_them_back() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "s", 6, 3).await;
    shards_ready(&server, &nodes).await;
    // No balancing move may change shard 1 under the split (its version is checked below).
    pause_balancing(&server).await;
    settled(&server).await;
    let client = client(&server).await;
    for i in 0..16 {
        let t = TableName::new("default", "public", &format!("t{i}")).unwrap();
        client
            .create_table(&t, &PartitionRule::None, false)
            .await
            .unwrap();
    }
    let cluster = server.meta.cluster("default").unwrap();
    let before = cluster.shard(ShardId(1)).unwrap();
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let (s, v) = http(Method::POST, format!("{base}/shards/1/split"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["target"], 9);
    assert_eq!(v["moved"].as_array().unwrap().len(), 1);

    let after = cluster.shard(ShardId(1)).unwrap();
    assert_eq!(
        after.version,
        before.version.next(),
        "the source's version bumps"
    );
    let new = cluster.shard(ShardId(9)).unwrap();
    assert_ne!(
        new.leader(),
        before.leader(),
        "the new shard is led elsewhere"
    );
    let moved_table = v["moved"][0][0].as_u64().unwrap();
    // Routes follow.
    let tables = client.list_tables("default", "public").await.unwrap();
    let moved = tables.iter().find(|t| t.id == moved_table).unwrap();
    client.invalidate(&TableName::new("default", "public", &moved.name).unwrap());
    let route = client
        .route(&TableName::new("default", "public", &moved.name).unwrap())
        .await
        .unwrap();
    let shard = route.partitions[0].shard.clone().unwrap();
    assert_eq!(shard.shard_id, 9);
    // The new leader holds the moved partition.
    let leader = nodes
        .iter()
        .find(|n| n.agent.status().node_id == new.leader().map(|l| l.0))
        .unwrap();
    assert!(leader.shards.shards()[&ShardId(9)]
        .tables
        .contains(&(moved_table, 0)));
    // A shard with a single partition cannot split.
    let (s, v) = http(Method::POST, format!("{base}/shards/9/split"), None).await;
    assert_eq!(s, 412, "{v}");

    // Merge shard 9 back into 1: shard 9 disappears, its partitions live in 1.
    let (s, v) = http(
        Method::POST,
        format!("{base}/shards/1/merge"),
        Some(json!({"with": 9})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(cluster.shard(ShardId(9)).is_none());
    let ids: HashSet<u32> = cluster
        .shard_entries()
        .iter()
        .map(|e| e.shard.id.0)
        .collect();
    assert_eq!(ids.len(), 8);
    let partitions: usize = cluster
        .shard_entries()
        .iter()
        .map(|e| e.partitions.len())
        .sum();
    assert_eq!(partitions, 16, "no partition lost");
    let (s, _) = http(
        Method::POST,
        format!("{base}/shards/1/merge"),
        Some(json!({"with": 1})),
    )
    .await;
    assert_eq!(s, 400);
    // A merged-away shard's id is never reused: nodes may still hold versions of it.
    let (s, v) = http(Method::POST, format!("{base}/shards/1/split"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["target"], 10,
        "shard 9 existed once: the next split creates 10"
    );
    server.shutdown().await;
}
