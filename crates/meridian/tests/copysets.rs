//! Copyset mode on a real server: the family drawn at first placement is persisted,
//! survives a restart unchanged, and repair after a node dies keeps every shard inside a
//! copyset of the (updated, persisted) family.

mod common;

use common::*;
use meridian_model::{ClusterConfig, IsolationLevel, NodeId, PlacementMode};
use meridian_scheduler::CopysetFamily;
use meridian_server::meta::Cluster;
use meridian_sim::node::SimNode;
use meridian_store::keys;
use std::sync::Arc;
use std::time::Duration;

const CLUSTER: &str = "cs";

fn copyset_cluster() -> ClusterConfig {
    ClusterConfig {
        name: CLUSTER.into(),
        shard_count: 24,
        replication_factor: 3,
        min_nodes: 9,
        isolation: IsolationLevel::Zone,
        placement: PlacementMode::Copyset { scatter_width: 4 },
        config_fingerprint: String::new(),
        shared_storage: false,
    }
}

fn start_cs_nodes(addr: &str, from: usize, n: usize) -> Vec<SimNode> {
    (from..from + n)
        .map(|i| {
            let mut c = meridian_client::NodeAgentConfig::new(
                addr.to_string(),
                format!("cs-{i}"),
                format!("127.0.0.1:{}", 31000 + i),
            );
            c.cluster = CLUSTER.into();
            c.labels = meridian_model::NodeLabels {
                zone: format!("zone-{}", i % 3),
                rack: format!("rack-{i}"),
                host: format!("host-{i}"),
            };
            c.min_backoff = Duration::from_millis(20);
            c.max_backoff = Duration::from_millis(200);
            SimNode::start(c)
        })
        .collect()
}

/// Shards whose replica set is in no copyset of `family`.
fn outside(cluster: &Cluster, family: &CopysetFamily) -> Vec<String> {
    cluster
        .shard_entries()
        .iter()
        .filter(|e| {
            let nodes: Vec<NodeId> = e.shard.replicas.iter().map(|r| r.node).collect();
            !family.covers(&nodes)
        })
        .map(|e| format!("{:?}", e.shard))
        .collect()
}

async fn stored_family(cluster: &Cluster) -> Option<CopysetFamily> {
    let raw = cluster
        .store()
        .get(&keys::copysets(cluster.id))
        .await
        .ok()??;
    serde_json::from_slice(&raw).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copyset_family_survives_a_restart_and_repair_keeps_shards_in_copysets() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = redb_config(dir.path());
    fast_liveness(&mut config);
    config.scheduler.repair_delay_ms = 1_000;
    let server = start(config.clone()).await;
    server.meta.create_cluster(copyset_cluster()).await.unwrap();
    let addr = server.grpc_addr.to_string();
    let mut nodes = start_cs_nodes(&addr, 0, 9);

    // First placement: shards in copysets, the family durable and equal to memory.
    let cluster = server.meta.cluster(CLUSTER).unwrap();
    let family: Arc<CopysetFamily> = eventually(Duration::from_secs(15), || {
        let cluster = cluster.clone();
        async move { cluster.has_shards().then(|| cluster.copysets()).flatten() }
    })
    .await;
    assert!(outside(&cluster, &family).is_empty());
    assert_eq!(stored_family(&cluster).await.as_ref(), Some(&*family));

    // Restart on the same data: the family is loaded, not redrawn.
    server.shutdown().await;
    let server = start(config).await;
    let cluster = server.meta.cluster(CLUSTER).unwrap();
    assert_eq!(cluster.copysets().as_deref(), Some(&*family));
    assert!(outside(&cluster, &family).is_empty());
    for n in &nodes {
        n.agent.registered(Duration::from_secs(10)).await.unwrap();
    }

    // A node dies for good: past the repair delay the family replaces it, and repair puts
    // each of its replicas on the node that completes the shard's copyset.
    let victim = nodes.remove(4);
    let victim_id = NodeId(victim.agent.status().node_id.unwrap());
    victim.agent.kill();
    let repaired: Arc<CopysetFamily> = eventually(Duration::from_secs(30), || {
        let cluster = cluster.clone();
        async move {
            let family = cluster.copysets()?;
            let done = cluster
                .shard_entries()
                .iter()
                .all(|e| e.shard.replicas.len() == 3 && !e.shard.has_replica_on(victim_id));
            (done && outside(&cluster, &family).is_empty()).then_some(family)
        }
    })
    .await;
    assert!(
        repaired.sets().iter().all(|s| !s.contains(&victim_id)),
        "the dead node is still in the family"
    );
    assert_ne!(*repaired, *family);
    assert_eq!(stored_family(&cluster).await.as_ref(), Some(&*repaired));
    // Straight to the substitute: no detour outside the family and back.
    let (_, history) = server.scheduling.operators(cluster.id, true);
    assert!(history.iter().any(|o| o.kind == "replica_repair"));
    assert!(
        history.iter().all(|o| o.kind != "copyset_fix"),
        "{history:?}"
    );
    server.shutdown().await;
}

/// A split places its new shard inside a copyset of the family, led away from the source's
/// leader: no stray shard for `CopysetFix` to move afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_places_the_new_shard_inside_a_copyset() {
    let server = start(memory_config()).await;
    server.meta.create_cluster(copyset_cluster()).await.unwrap();
    let addr = server.grpc_addr.to_string();
    let _nodes = start_cs_nodes(&addr, 20, 9);
    let cluster = server.meta.cluster(CLUSTER).unwrap();
    let family: Arc<CopysetFamily> = eventually(Duration::from_secs(15), || {
        let cluster = cluster.clone();
        async move { cluster.has_shards().then(|| cluster.copysets()).flatten() }
    })
    .await;
    // Two partitions per shard.
    let name = meridian_model::TableName::new("default", "public", "wide").unwrap();
    let rule = meridian_model::PartitionRule::Hash {
        count: 48,
        columns: vec!["k".into()],
    };
    eventually(Duration::from_secs(15), || {
        let (cluster, name, rule) = (cluster.clone(), name.clone(), rule.clone());
        async move { cluster.create_table(name, rule, true).await.ok() }
    })
    .await;
    // Split shards that hold at least two partitions: a shard whose leader had not yet
    // connected when the table was created holds none.
    let sources: Vec<meridian_model::ShardId> = cluster
        .shard_entries()
        .iter()
        .filter(|e| e.partitions.len() >= 2)
        .map(|e| e.shard.id)
        .take(6)
        .collect();
    assert_eq!(sources.len(), 6, "48 partitions over at most 24 shards");
    for source in sources {
        let source_leader = cluster.shard(source).unwrap().leader();
        let outcome = cluster.split_shard(source).await.unwrap();
        let new = cluster.shard(outcome.target).unwrap();
        let nodes: Vec<NodeId> = new.replicas.iter().map(|r| r.node).collect();
        assert!(
            cluster.copysets().unwrap().covers(&nodes),
            "{new:?} is outside the family {family:?}"
        );
        assert_ne!(new.leader(), source_leader);
    }
    assert!(outside(&cluster, &cluster.copysets().unwrap()).is_empty());
    server.shutdown().await;
}
