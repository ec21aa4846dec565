//! A cluster's history over HTTP (`GET .../history`): per-node series named by node,
//! per-shard load, and cluster rates, sampled once per step while the cluster runs; a
//! shard made hot shows in its own series.

mod common;

use common::*;
use meridian_model::{PartitionRule, ShardId, TableName};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

fn last(v: &Value, name: &str) -> Option<f64> {
    v["series"].as_array()?.iter().find(|s| s["name"] == name)?["points"]
        .as_array()?
        .last()?[1]
        .as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_has_node_shard_and_cluster_series() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    config.history_step_ms = 100;
    let server = start(config).await;
    let nodes = start_nodes(&server, "hi", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    for i in 0..5 {
        let t = TableName::new("default", "public", &format!("h{i}")).unwrap();
        client
            .create_table(&t, &PartitionRule::None, false)
            .await
            .unwrap();
    }
    let hot = ShardId(1);
    for n in &nodes {
        n.shards.set_hot(hot, 5000.0);
    }
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);

    // The cluster's rates and every node's counts, by name.
    let cluster = eventually(Duration::from_secs(15), || async {
        let (s, v) = http(Method::GET, format!("{base}/history?prefix=cluster/"), None).await;
        assert_eq!(s, 200, "{v}");
        let beating = last(&v, "cluster/heartbeats_per_sec").is_some_and(|r| r > 0.0);
        let ddl_seen = v["series"]
            .as_array()
            .and_then(|list| list.iter().find(|s| s["name"] == "cluster/ddl_per_sec"))
            .and_then(|s| s["points"].as_array())
            .is_some_and(|p| p.iter().any(|pt| pt[1].as_f64() > Some(0.0)));
        (beating && ddl_seen).then_some(v)
    })
    .await;
    assert_eq!(cluster["step_ms"], 100);
    let (_, v) = http(Method::GET, format!("{base}/history?prefix=node/"), None).await;
    let leaders: f64 = (0..3)
        .map(|i| last(&v, &format!("node/hi-{i}/leaders")).unwrap_or_else(|| panic!("{v}")))
        .sum();
    let shards = server
        .meta
        .cluster("default")
        .unwrap()
        .shard_entries()
        .len();
    assert_eq!(leaders as usize, shards, "{v}");

    // The hot shard's own series carries its load; a quiet one's does not.
    eventually(Duration::from_secs(15), || async {
        let (_, v) = http(Method::GET, format!("{base}/history?prefix=shard/1/"), None).await;
        last(&v, "shard/1/load")
            .filter(|l| *l >= 5000.0)
            .map(|_| ())
    })
    .await;
    let (_, v) = http(Method::GET, format!("{base}/history?prefix=shard/2/"), None).await;
    assert!(last(&v, "shard/2/load").is_some_and(|l| l < 5000.0), "{v}");

    // A bad query is a JSON 400.
    let (s, v) = http(Method::GET, format!("{base}/history?prefx=node/"), None).await;
    assert_eq!(s, 400, "{v}");
    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
}
