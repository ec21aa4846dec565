//! SIGKILL the server process during a stream of creates; restart it on the same data
//! directory: every acknowledged create is there, ids continue without reuse, nodes
//! re-register, and routes are the same.

mod common;

use common::{eventually, free_port, redb_config, spawn_server_process, start_nodes_at};
use meridian_client::{MetaClient, NodeAgentConfig};
use meridian_model::{NodeLabels, PartitionRule, TableName};
use meridian_sim::node::SimNode;
use std::collections::{BTreeMap, HashMap};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

fn spawn_server(dir: &std::path::Path, grpc: u16, http: u16) -> Child {
    spawn_server_process(dir, grpc, http, &[])
}

async fn wait_healthy(http: u16) {
    eventually(Duration::from_secs(20), || async move {
        let r = reqwest::get(format!("http://127.0.0.1:{http}/health"))
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// table name -> (id, [(partition, shard, leader node)])
async fn routes(client: &MetaClient) -> BTreeMap<String, (u64, Vec<(u32, u32, u64)>)> {
    let tables = client.list_tables("default", "public").await.unwrap();
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let resp = client
        .fetch_routes("default", "public", names)
        .await
        .unwrap();
    resp.routes
        .into_iter()
        .map(|r| {
            let parts = r
                .partitions
                .iter()
                .map(|p| {
                    let s = p.shard.clone().unwrap_or_default();
                    (
                        p.index,
                        s.shard_id,
                        s.leader.map(|l| l.node_id).unwrap_or(0),
                    )
                })
                .collect();
            (r.table, (r.table_id, parts))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_creates_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let mut server = spawn_server(dir.path(), grpc, http);
    wait_healthy(http).await;
    let addr = format!("127.0.0.1:{grpc}");
    let nodes: Vec<SimNode> = (0..3)
        .map(|i| {
            let mut c = NodeAgentConfig::new(
                addr.clone(),
                format!("d-{i}"),
                format!("127.0.0.1:{}", 31000 + i),
            );
            c.labels = NodeLabels {
                zone: format!("z{i}"),
                ..Default::default()
            };
            c.min_backoff = Duration::from_millis(20);
            c.max_backoff = Duration::from_millis(200);
            SimNode::start(c)
        })
        .collect();
    for n in &nodes {
        n.agent.registered(Duration::from_secs(10)).await.unwrap();
    }
    let client = MetaClient::connect(std::slice::from_ref(&addr), "default")
        .await
        .unwrap();
    // Wait until shards exist (a create then succeeds).
    let probe = TableName::new("default", "public", "probe").unwrap();
    eventually(Duration::from_secs(10), || {
        let client = client.clone();
        let probe = probe.clone();
        async move {
            client
                .create_table(&probe, &PartitionRule::None, true)
                .await
                .ok()
        }
    })
    .await;

    // A stream of creates from 8 writers; remember what was acknowledged.
    let acked = Arc::new(parking_lot::Mutex::new(HashMap::<String, u64>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, acked) = (client.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}_{i}");
                let t = TableName::new("default", "public", &name).unwrap();
                let rule = if i % 3 == 0 {
                    PartitionRule::Hash {
                        count: 2,
                        columns: vec![],
                    }
                } else {
                    PartitionRule::None
                };
                match client.create_table(&t, &rule, false).await {
                    Ok((info, _)) => {
                        acked.lock().insert(name, info.id);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 20,
        "only {} creates were acknowledged before the kill",
        acked.len()
    );
    let max_id = *acked.values().max().unwrap();
    eprintln!(
        "{} creates acknowledged before SIGKILL; max id {max_id}",
        acked.len()
    );

    let mut server = spawn_server(dir.path(), grpc, http);
    wait_healthy(http).await;
    // Nodes reconnect by themselves.
    eventually(Duration::from_secs(15), || {
        let ok = nodes
            .iter()
            .all(|n| n.agent.status().connected && n.agent.status().sessions >= 2);
        async move { ok.then_some(()) }
    })
    .await;
    let client = MetaClient::connect(std::slice::from_ref(&addr), "default")
        .await
        .unwrap();
    let after = routes(&client).await;
    for (name, id) in &acked {
        let (got, _) = after
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged table {name} lost"));
        assert_eq!(got, id, "{name} changed id");
    }
    // Every route points at a live, registered node.
    let ids: Vec<u64> = nodes
        .iter()
        .filter_map(|n| n.agent.status().node_id)
        .collect();
    for (name, (_, parts)) in &after {
        for (_, _, leader) in parts {
            assert!(
                ids.contains(leader),
                "{name} routed to unknown node {leader}"
            );
        }
    }
    // Ids continue without reuse.
    let t = TableName::new("default", "public", "after_restart").unwrap();
    let (info, _) = client
        .create_table(&t, &PartitionRule::None, false)
        .await
        .unwrap();
    assert!(
        info.id > max_id,
        "id {} reused (max before crash {max_id})",
        info.id
    );
    // A second clean restart gives the same routes (nodes re-register, no failover).
    let before = routes(&client).await;
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = spawn_server(dir.path(), grpc, http);
    wait_healthy(http).await;
    let client = MetaClient::connect(std::slice::from_ref(&addr), "default")
        .await
        .unwrap();
    eventually(Duration::from_secs(15), || {
        let ok = nodes
            .iter()
            .all(|n| n.agent.status().connected && n.agent.status().sessions >= 3);
        async move { ok.then_some(()) }
    })
    .await;
    assert_eq!(
        routes(&client).await,
        before,
        "routes changed across a restart"
    );
    server.kill().unwrap();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_fails_nothing_over_while_nodes_reconnect_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = meridian_server::Server::start(config.clone())
        .await
        .unwrap();
    // One node comes back at once; the others well past the first scheduling ticks, but
    // within the grace period: nothing may fail over to the first one.
    let slow = |i: usize| if i == 0 { (20, 25) } else { (1500, 1875) };
    let nodes = start_nodes_at(&server.grpc_addr.to_string(), "g", 3, 33000, slow).await;
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(10), || {
        let n = cluster.shard_entries().len();
        async move { (n == 8).then_some(()) }
    })
    .await;
    let before: Vec<_> = cluster
        .shard_entries()
        .into_iter()
        .map(|e| e.shard)
        .collect();
    server.shutdown().await;

    let server = meridian_server::Server::start(config).await.unwrap();
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(15), || {
        let ok = nodes
            .iter()
            .all(|n| n.agent.status().connected && n.agent.status().sessions >= 2);
        async move { ok.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<_> = cluster
        .shard_entries()
        .into_iter()
        .map(|e| e.shard)
        .collect();
    assert_eq!(
        after, before,
        "placement changed across a restart: something failed over"
    );
    let (running, history) = server.scheduling.operators(cluster.id, true);
    assert!(
        running.is_empty() && history.is_empty(),
        "operators after restart: {running:?} {history:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_interrupted_by_a_crash_is_rolled_back_at_the_next_start() {
    use meridian_client::{ShardHandler, TableRef};
    use meridian_model::{Partition, ShardId, Table, TableId};
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = meridian_server::Server::start(config.clone())
        .await
        .unwrap();
    let nodes = start_nodes_at(&server.grpc_addr.to_string(), "p", 3, 34000, |_| (20, 100)).await;
    let cluster = server.meta.cluster("default").unwrap();
    let shard = eventually(Duration::from_secs(10), || {
        let s = cluster.shard(ShardId(1));
        let open = s.as_ref().and_then(|s| s.leader()).is_some_and(|l| {
            nodes.iter().any(|n| {
                n.agent.status().node_id == Some(l.0) && n.shards.shards().contains_key(&ShardId(1))
            })
        });
        async move { s.filter(|_| open) }
    })
    .await;
    let leader = nodes
        .iter()
        .find(|n| Some(n.agent.status().node_id.unwrap()) == shard.leader().map(|l| l.0))
        .unwrap();

    // The state a crash leaves between "the leader created the partition" and "the metadata
    // committed": the procedure record, and the partition on the node, but no table.
    let orphan = Table {
        id: TableId(999_999),
        name: meridian_model::TableName::new("default", "public", "orphan").unwrap(),
        rule: meridian_model::PartitionRule::None,
        partitions: vec![Partition {
            index: 0,
            shard: ShardId(1),
        }],
        created_at_ms: 0,
        revision: 0,
        definition: Default::default(),
    };
    let table_ref = TableRef {
        id: orphan.id,
        catalog: "default".into(),
        schema: "public".into(),
        table: "orphan".into(),
        partition: 0,
        definition: Default::default(),
    };
    leader
        .shards
        .create_table(ShardId(1), shard.version, table_ref)
        .await
        .unwrap();
    let key = meridian_store::keys::create_table_procedure(cluster.id, orphan.id);
    server
        .meta
        .store()
        .put(&key, &serde_json::to_vec(&orphan).unwrap())
        .await
        .unwrap();
    server.shutdown().await;

    let server = meridian_server::Server::start(config).await.unwrap();
    eventually(Duration::from_secs(15), || {
        let gone = !leader
            .shards
            .shards()
            .get(&ShardId(1))
            .is_some_and(|s| s.tables.contains(&(999_999, 0)));
        let store = server.meta.store().clone();
        let key = key.clone();
        async move {
            let record = store.get(&key).await.unwrap();
            (gone && record.is_none()).then_some(())
        }
    })
    .await;
    assert!(server
        .meta
        .cluster("default")
        .unwrap()
        .get_table(&orphan.name)
        .is_none());
    server.shutdown().await;
}
