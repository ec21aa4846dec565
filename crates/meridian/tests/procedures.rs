//! Every change is a persisted procedure: drops, renames, splits and merges are guarded
//! against each other by revisions, finish or roll back after a crash, and leave no orphan
//! partition on a node.

mod common;

use common::*;
use meridian_model::{PartitionRule, Shard, ShardId, Table, TableId, TableName};
use meridian_server::meta::Cluster;
use meridian_sim::node::SimNode;
use meridian_store::keys;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

fn name(table: &str) -> TableName {
    TableName::new("default", "public", table).unwrap()
}

/// A server with six nodes and 16 single-partition tables `t0..t15` (two per shard).
async fn cluster_with_tables(
    prefix: &str,
) -> (meridian_server::RunningServer, Vec<SimNode>, Arc<Cluster>) {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, prefix, 6, 3).await;
    shards_ready(&server, &nodes).await;
    // No balancing move in flight, and none to come: leaders stay where the tests find them.
    pause_balancing(&server).await;
    settled(&server).await;
    let cluster = server.meta.cluster("default").unwrap();
    for i in 0..16 {
        cluster
            .create_table(name(&format!("t{i}")), PartitionRule::None, false)
            .await
            .unwrap();
    }
    (server, nodes, cluster)
}

/// The table a split of `shard` moves (the upper half of two partitions: the last one).
fn moved_by_split(cluster: &Cluster, shard: ShardId) -> Table {
    let entry = cluster
        .shard_entries()
        .into_iter()
        .find(|e| e.shard.id == shard)
        .unwrap();
    let (id, _) = *entry.partitions.iter().next_back().unwrap();
    cluster
        .list_tables("", "")
        .into_iter()
        .find(|t| t.id == id)
        .unwrap()
}

fn holders(nodes: &[SimNode], shard: ShardId) -> usize {
    nodes
        .iter()
        .filter(|n| n.shards.shards().contains_key(&shard))
        .count()
}

fn holds_partition(nodes: &[SimNode], table: TableId) -> bool {
    nodes.iter().any(|n| {
        n.shards
            .shards()
            .values()
            .any(|s| s.tables.contains(&(table.0, 0)))
    })
}

async fn records(cluster: &Cluster, kind: &str) -> usize {
    cluster
        .store()
        .range(&keys::procedures_prefix(cluster.id, kind), 0)
        .await
        .unwrap()
        .len()
}

/// Every partition of every table is on an existing shard whose leader holds it.
fn every_partition_served(cluster: &Cluster, nodes: &[SimNode]) -> bool {
    match unserved_partition(cluster, nodes) {
        None => true,
        Some(why) => {
            eprintln!("not every partition is served: {why}");
            false
        }
    }
}

/// The first partition whose shard's leader does not hold it, described.
fn unserved_partition(cluster: &Cluster, nodes: &[SimNode]) -> Option<String> {
    for t in cluster.list_tables("", "") {
        for p in &t.partitions {
            let Some(shard) = cluster.shard(p.shard) else {
                return Some(format!("{}#{} is on missing {}", t.name, p.index, p.shard));
            };
            let Some(leader) = shard.leader() else {
                return Some(format!("{}#{}: {} has no leader", t.name, p.index, p.shard));
            };
            let held = nodes.iter().any(|n| {
                n.agent.status().node_id == Some(leader.0)
                    && n.shards
                        .shards()
                        .get(&p.shard)
                        .is_some_and(|s| s.tables.contains(&(t.id.0, p.index)))
            });
            if !held {
                let on_leader = nodes
                    .iter()
                    .find(|n| n.agent.status().node_id == Some(leader.0))
                    .map(|n| format!("{:?}", n.shards.shards().get(&p.shard)));
                return Some(format!(
                    "{}#{} ({:?}) on {} v{:?}: leader {leader} holds {on_leader:?}",
                    t.name, p.index, t.id, p.shard, shard.version
                ));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_during_a_split_is_never_undone_by_the_split() {
    let (server, nodes, cluster) = cluster_with_tables("ds").await;
    let victim = moved_by_split(&cluster, ShardId(1));
    let gate = cluster.failpoints().pause("split.after_open");
    let splitter = cluster.clone();
    let split = tokio::spawn(async move { splitter.split_shard(ShardId(1)).await });
    gate.reached().await;
    assert!(cluster.drop_table(&victim.name, false).await.unwrap());
    gate.release();
    // The split either saw the drop or failed cleanly (this one fails: the table it read
    // changed); either way the table stays dropped.
    let split_result = split.await.unwrap();

    assert!(cluster.get_table(&victim.name).is_none());
    assert!(
        cluster
            .list_tables("", "")
            .iter()
            .all(|t| t.id != victim.id),
        "the dropped table came back in memory"
    );
    let stored = cluster
        .store()
        .get(&keys::table(cluster.id, victim.id))
        .await
        .unwrap();
    assert!(stored.is_none(), "the dropped table came back in the store");
    assert_eq!(cluster.list_tables("", "").len(), 15);
    // The split's new shard is closed on every node, the dropped partition is nowhere, and
    // no record is left.
    eventually(Duration::from_secs(15), || {
        let nodes = &nodes;
        let cluster = cluster.clone();
        async move {
            let clean = holders(nodes, ShardId(9)) == 0 && !holds_partition(nodes, victim.id);
            let done =
                records(&cluster, "split").await == 0 && records(&cluster, "drop_table").await == 0;
            (clean && done).then_some(())
        }
    })
    .await;
    assert!(
        split_result.is_err(),
        "the split read a table that was dropped: {split_result:?}"
    );
    assert!(cluster.shard(ShardId(9)).is_none());
    assert!(every_partition_served(&cluster, &nodes));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_during_a_split_keeps_the_new_name_and_every_partition() {
    let (server, nodes, cluster) = cluster_with_tables("rs").await;
    let victim = moved_by_split(&cluster, ShardId(1));
    let gate = cluster.failpoints().pause("split.after_open");
    let splitter = cluster.clone();
    let split = tokio::spawn(async move { splitter.split_shard(ShardId(1)).await });
    gate.reached().await;
    let renamed = cluster.rename_table(&victim.name, "renamed").await.unwrap();
    gate.release();
    let split_result = split.await.unwrap();

    let now = cluster
        .get_table(&name("renamed"))
        .expect("the renamed table");
    assert_eq!(
        now.name,
        name("renamed"),
        "the split wrote the old name back"
    );
    assert_eq!(
        now.partitions, victim.partitions,
        "every partition stays where it was"
    );
    assert!(cluster.get_table(&victim.name).is_none());
    let stored: Table = serde_json::from_slice(
        &cluster
            .store()
            .get(&keys::table(cluster.id, victim.id))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, renamed);
    eventually(Duration::from_secs(15), || {
        let nodes = &nodes;
        let cluster = cluster.clone();
        async move {
            let done = holders(nodes, ShardId(9)) == 0 && records(&cluster, "split").await == 0;
            done.then_some(())
        }
    })
    .await;
    assert_eq!(cluster.list_tables("", "").len(), 16);
    assert!(every_partition_served(&cluster, &nodes));
    assert!(
        split_result.is_err(),
        "the split read a table that was renamed: {split_result:?}"
    );
    // An unraced split still works.
    let outcome = cluster.split_shard(ShardId(1)).await.unwrap();
    assert_eq!(outcome.moved.len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_never_deletes_a_shard_that_a_create_in_flight_reserved() {
    let (server, nodes, cluster) = cluster_with_tables("mc").await;
    let gate = cluster.failpoints().pause("create_table.before_commit");
    let creator = cluster.clone();
    let create = tokio::spawn(async move {
        creator
            .create_table(name("late"), PartitionRule::None, false)
            .await
    });
    gate.reached().await;
    let reserved = cluster
        .shard_entries()
        .into_iter()
        .find(|e| e.reserved > 0)
        .expect("the create reserved a shard")
        .shard
        .id;
    let other = cluster
        .shard_entries()
        .into_iter()
        .map(|e| e.shard.id)
        .find(|s| *s != reserved)
        .unwrap();
    let merge = cluster.merge_shards(other, reserved).await;
    assert!(merge.is_err(), "merged away a reserved shard: {merge:?}");
    gate.release();
    let (table, created) = create.await.unwrap().unwrap();
    assert!(created);
    let shard = table.partitions[0].shard;
    assert!(
        cluster.shard(shard).is_some(),
        "the table lives in a deleted shard"
    );
    eventually(Duration::from_secs(10), || {
        let ok = every_partition_served(&cluster, &nodes);
        async move { ok.then_some(()) }
    })
    .await;
    // Once the create is done, the merge goes through.
    cluster.merge_shards(other, reserved).await.unwrap();
    assert!(cluster.shard(reserved).is_none());
    assert_eq!(
        cluster.get_table(&name("late")).unwrap().partitions[0].shard,
        other
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_that_a_node_first_refuses_is_retried_until_the_node_drops_it() {
    let (server, nodes, cluster) = cluster_with_tables("dr").await;
    let table = cluster.get_table(&name("t3")).unwrap();
    // Every node refuses drops (wherever the leader is) until told otherwise.
    const REFUSALS: u64 = 1_000_000;
    for node in &nodes {
        node.shards.refuse_next_drops(REFUSALS);
    }
    assert!(cluster.drop_table(&table.name, false).await.unwrap());
    // Refused once per pass of leader retries (5 attempts): more than that proves the
    // drop was tried again after the client was answered.
    eventually(Duration::from_secs(20), || {
        let refused: u64 = nodes
            .iter()
            .map(|n| REFUSALS - n.shards.drops_to_refuse())
            .sum();
        async move { (refused > 10).then_some(()) }
    })
    .await;
    // (Whether the partition is still on the node is not asserted here: a reconcile that
    // reopens a replica sends the current table list, which no longer has it.)
    assert_eq!(
        records(&cluster, "drop_table").await,
        1,
        "refused drops keep the procedure recorded"
    );
    for node in &nodes {
        node.shards.refuse_next_drops(0);
    }
    eventually(Duration::from_secs(20), || {
        let gone = !holds_partition(&nodes, table.id);
        let cluster = cluster.clone();
        async move { (gone && records(&cluster, "drop_table").await == 0).then_some(()) }
    })
    .await;
    server.shutdown().await;
}

/// A server process on `dir` that stops for good at failpoint `point` (creating `marker`).
fn spawn_server(
    dir: &std::path::Path,
    grpc: u16,
    http: u16,
    point: &str,
    marker: &std::path::Path,
) -> Child {
    spawn_server_process(
        dir,
        grpc,
        http,
        &[
            (meridian_server::failpoint::ENV_POINT, point.as_ref()),
            (meridian_server::failpoint::ENV_FILE, marker.as_os_str()),
        ],
    )
}

/// Runs a server process with `point` armed, 3 nodes and 16 tables; `act` starts the
/// procedure (which stops at the point); the process is SIGKILLed there. Returns the data
/// dir, the config to restart on the same ports, and the nodes.
async fn crash_at(
    point: &str,
    act: impl FnOnce(String) -> tokio::task::JoinHandle<()>,
) -> (
    tempfile::TempDir,
    meridian_server::ServerConfig,
    Vec<SimNode>,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let marker = dir.path().join("failpoint-reached");
    let mut child = spawn_server(
        dir.path(),
        config.grpc_addr.port(),
        config.http_addr.port(),
        point,
        &marker,
    );
    let addr = config.grpc_addr.to_string();
    let nodes = start_nodes_at(&addr, "k", 3, 35000, |_| (20, 100)).await;
    let client = meridian_client::MetaClient::connect(std::slice::from_ref(&addr), "default")
        .await
        .unwrap();
    for i in 0..16 {
        let t = name(&format!("t{i}"));
        eventually(Duration::from_secs(10), || {
            let (client, t) = (client.clone(), t.clone());
            async move {
                client
                    .create_table(&t, &PartitionRule::None, true)
                    .await
                    .ok()
            }
        })
        .await;
    }
    let base = format!("http://{}/api/v1/clusters/default", config.http_addr);
    let pending = act(base);
    eventually(Duration::from_secs(20), || {
        let reached = marker.exists();
        async move { reached.then_some(()) }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    pending.abort();
    (dir, config, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_killed_before_its_commit_is_rolled_back_at_the_next_start() {
    let (_dir, config, nodes) = crash_at("split.after_open", |base| {
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{base}/shards/1/split"))
                .send()
                .await;
        })
    })
    .await;
    // The new shard (the first id past the initial ones) was opened on nodes before the kill.
    let new = ShardId(meridian_model::ClusterConfig::default_cluster().shard_count + 1);
    assert!(
        holders(&nodes, new) > 0,
        "the split opened its new shard first"
    );
    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    assert!(
        cluster.shard(new).is_none(),
        "an uncommitted split is not in the metadata"
    );
    eventually(Duration::from_secs(20), || {
        let nodes = &nodes;
        let cluster = cluster.clone();
        async move {
            let done = holders(nodes, new) == 0 && records(&cluster, "split").await == 0;
            done.then_some(())
        }
    })
    .await;
    assert_eq!(cluster.list_tables("", "").len(), 16);
    eventually(Duration::from_secs(10), || {
        let ok = every_partition_served(&cluster, &nodes);
        async move { ok.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_killed_after_its_commit_is_finished_on_the_nodes_at_the_next_start() {
    let (_dir, config, nodes) = crash_at("drop_table.after_commit", |base| {
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .delete(format!("{base}/tables/default/public/t5"))
                .send()
                .await;
        })
    })
    .await;
    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    assert!(
        cluster.get_table(&name("t5")).is_none(),
        "the drop committed"
    );
    assert_eq!(cluster.list_tables("", "").len(), 15);
    // Which id t5 had: the one no longer listed among 1..=16 table ids created.
    let ids: Vec<u64> = cluster.list_tables("", "").iter().map(|t| t.id.0).collect();
    eventually(Duration::from_secs(20), || {
        let orphan = nodes.iter().any(|n| {
            n.shards
                .shards()
                .values()
                .any(|s| s.tables.iter().any(|(t, _)| !ids.contains(t)))
        });
        let cluster = cluster.clone();
        async move { (!orphan && records(&cluster, "drop_table").await == 0).then_some(()) }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_another_binary_still_swap() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = start(config.clone()).await;
    let nodes = start_nodes_at(&config.grpc_addr.to_string(), "o", 3, 36000, |_| (20, 100)).await;
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(10), || {
        let ready = cluster.shard(ShardId(1)).is_some() && holders(&nodes, ShardId(1)) == 3;
        async move { ready.then_some(()) }
    })
    .await;
    cluster
        .create_table(name("old"), PartitionRule::None, false)
        .await
        .unwrap();
    let table = cluster.get_table(&name("old")).unwrap();
    let (id, store) = (cluster.id, server.meta.store().clone());
    // Records with a field this binary does not know, and no revision keys (written by a
    // binary from before them, so a store of format 1: the next start migrates it).
    let with_extra = |raw: Vec<u8>| {
        let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        v["added_by_a_newer_binary"] = serde_json::json!({"any": [1, 2]});
        serde_json::to_vec(&v).unwrap()
    };
    let shard_raw = store
        .get(&keys::shard(id, ShardId(1)))
        .await
        .unwrap()
        .unwrap();
    let table_raw = store
        .get(&keys::table(id, table.id))
        .await
        .unwrap()
        .unwrap();
    store
        .batch(vec![
            meridian_store::WriteOp::put(keys::shard(id, ShardId(1)), with_extra(shard_raw)),
            meridian_store::WriteOp::delete(keys::shard_version(id, ShardId(1))),
            meridian_store::WriteOp::put(keys::table(id, table.id), with_extra(table_raw)),
            meridian_store::WriteOp::delete(keys::table_revision(id, table.id)),
            meridian_store::WriteOp::put(keys::format(), b"1".to_vec()),
        ])
        .await
        .unwrap();
    server.shutdown().await;

    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    let shard: Shard = cluster.shard(ShardId(1)).unwrap();
    let mut next = shard.clone();
    next.version = shard.version.next();
    assert!(
        cluster.swap_shard(shard.version, next).await.unwrap(),
        "a shard record with an unknown field must still swap"
    );
    cluster.rename_table(&name("old"), "new").await.unwrap();
    assert!(cluster.get_table(&name("new")).is_some());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_killed_after_its_commit_closes_the_source_at_the_next_start() {
    let (_dir, config, nodes) = crash_at("merge.after_commit", |base| {
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{base}/shards/1/merge"))
                .json(&serde_json::json!({"with": 2}))
                .send()
                .await;
        })
    })
    .await;
    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    assert!(cluster.shard(ShardId(2)).is_none(), "the merge committed");
    assert_eq!(cluster.list_tables("", "").len(), 16);
    eventually(Duration::from_secs(20), || {
        let nodes = &nodes;
        let cluster = cluster.clone();
        async move {
            let done = holders(nodes, ShardId(2)) == 0 && records(&cluster, "merge").await == 0;
            done.then_some(())
        }
    })
    .await;
    eventually(Duration::from_secs(10), || {
        let ok = every_partition_served(&cluster, &nodes);
        async move { ok.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

/// A replica move is a procedure too: a server killed between "add a follower on the new
/// node" and "remove the one on the old node" leaves a record, and the next start finishes
/// the move as asked. (Without the record, the shard would keep a replica too many until
/// the repair scheduler dropped whichever follower it liked least; repair is paused here so
/// that only the resumed move can finish the job.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_between_its_steps_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let marker = dir.path().join("failpoint-reached");
    let mut child = spawn_server(
        dir.path(),
        config.grpc_addr.port(),
        config.http_addr.port(),
        "move.after_step",
        &marker,
    );
    let base = format!("http://{}/api/v1/clusters/default", config.http_addr);
    // No balancing move may reach the failpoint first (pauses are persisted: they hold
    // after the restart too).
    eventually(Duration::from_secs(10), || {
        let url = format!("http://{}/health", config.http_addr);
        async move {
            let ok = reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success());
            ok.then_some(())
        }
    })
    .await;
    pause_balancing_at(config.http_addr).await;
    let (s, v) = http(
        reqwest::Method::POST,
        format!("{base}/schedulers/replica-repair/pause"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let addr = config.grpc_addr.to_string();
    let nodes = start_nodes_at(&addr, "mv", 4, 35100, |_| (20, 100)).await;
    // Shard 1, the node it lacks, and one of its followers.
    let (from, to, before) = eventually(Duration::from_secs(20), || {
        let base = base.clone();
        async move {
            let (_, v) = http(reqwest::Method::GET, format!("{base}/shards"), None).await;
            let shard = v["shards"]
                .as_array()?
                .iter()
                .find(|s| s["id"] == 1)?
                .clone();
            shard["leader"].as_u64()?;
            let followers: Vec<u64> = shard["followers"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_u64())
                .collect();
            let (_, v) = http(reqwest::Method::GET, format!("{base}/nodes"), None).await;
            let ids: Vec<u64> = v["nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n["id"].as_u64())
                .collect();
            let holding: Vec<u64> = followers
                .iter()
                .copied()
                .chain(shard["leader"].as_u64())
                .collect();
            let to = ids.into_iter().find(|n| !holding.contains(n))?;
            Some((*followers.first()?, to, holding))
        }
    })
    .await;
    let (s, v) = http(
        reqwest::Method::POST,
        format!("{base}/shards/1/move"),
        // Forced: any free node will do for the crash under test, whatever the zones say.
        Some(serde_json::json!({"from": from.to_string(), "to": to.to_string(), "force": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually(Duration::from_secs(20), || {
        let reached = marker.exists();
        async move { reached.then_some(()) }
    })
    .await;
    child.kill().unwrap(); // SIGKILL, with the follower added and the old one still listed
    child.wait().unwrap();

    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    let shard = cluster.shard(ShardId(1)).unwrap();
    assert!(
        shard.has_replica_on(meridian_model::NodeId(to)) && shard.replicas.len() == 4,
        "the first step was persisted before the kill: {shard:?}"
    );
    let wanted: std::collections::BTreeSet<u64> = before
        .iter()
        .copied()
        .filter(|n| *n != from)
        .chain([to])
        .collect();
    eventually(Duration::from_secs(20), || {
        let cluster = cluster.clone();
        let wanted = &wanted;
        async move {
            let s = cluster.shard(ShardId(1))?;
            let now: std::collections::BTreeSet<u64> =
                s.replicas.iter().map(|r| r.node.0).collect();
            let done = &now == wanted && records(&cluster, "move").await == 0;
            done.then_some(())
        }
    })
    .await;
    let history = server.scheduling.operators(cluster.id, true).1;
    assert!(
        history
            .iter()
            .any(|o| o.shard == ShardId(1) && o.reason.contains("resumed after a restart")),
        "{history:?}"
    );
    // The nodes follow: the new node holds the shard, the old one closed it.
    eventually(Duration::from_secs(20), || {
        let on = |id: u64| {
            nodes.iter().any(|n| {
                n.agent.status().node_id == Some(id) && n.shards.shards().contains_key(&ShardId(1))
            })
        };
        let ok = on(to) && !on(from);
        async move { ok.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

/// An alter is a procedure: a server killed after the leaders took the new definition but
/// before the commit leaves a record, and the next start gives the leaders the committed
/// definition back; the table never changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alter_killed_before_its_commit_is_rolled_back_on_the_leaders() {
    let (_dir, config, nodes) = crash_at("alter_table.before_commit", |base| {
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .patch(format!("{base}/tables/default/public/t5"))
                .json(&serde_json::json!({"add_column": {"name": "extra", "type": "int64"}}))
                .send()
                .await;
        })
    })
    .await;
    let leader_version = |cluster: &Cluster, id: TableId| {
        let t = cluster
            .list_tables("", "")
            .into_iter()
            .find(|t| t.id == id)?;
        let leader = cluster.shard(t.partitions[0].shard)?.leader()?;
        let node = nodes
            .iter()
            .find(|n| n.agent.status().node_id == Some(leader.0))?;
        Some(node.shards.definition(id.0).map_or(0, |d| d.version))
    };
    let server = start(config).await;
    let cluster = server.meta.cluster("default").unwrap();
    let table = cluster.get_table(&name("t5")).unwrap();
    assert_eq!(table.definition.version, 0, "the alter never committed");
    eventually(Duration::from_secs(20), || {
        let cluster = cluster.clone();
        let back = leader_version(&cluster, table.id) == Some(0);
        async move { (back && records(&cluster, "alter_table").await == 0).then_some(()) }
    })
    .await;
    server.shutdown().await;
}
