//! The worked example database (`meridian example-node` processes) under traffic: a client
//! writes rows through the router and a reader prefers followers while the table is
//! altered and the node leading the most shards is killed. Every acknowledged row must be
//! on the shard's leader afterwards, the writer must go on after both, and follower reads
//! must keep answering.

mod common;

use common::*;
use meridian_client::{MetaClient, ReadPreference};
use meridian_example::wire::Row;
use meridian_example::{ExampleClient, ExampleError};
use meridian_model::{
    Column, ColumnType, DefinitionChange, NodeId, PartitionRule, TableDefinition, TableName,
};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Example-node process `i` (zone `i % 3`) serving on `port`.
fn example_node(grpc: &str, i: usize, port: u16, log: &std::path::Path) -> Proc {
    let log = std::fs::File::create(log).expect("node log");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["example-node", "--meta", grpc, "--name", &format!("ex-{i}")])
            .args(["--endpoint", &format!("127.0.0.1:{port}")])
            .args(["--zone", &format!("zone-{}", i % 3)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("example-node starts"),
    )
}

/// What the writer and the reader saw.
#[derive(Default)]
struct Traffic {
    /// host -> the row acknowledged for it.
    acked: Mutex<BTreeMap<String, Row>>,
    /// Acknowledged rows carrying the column the ALTER adds.
    acked_with_region: AtomicU64,
    /// Write attempts refused with a retryable error (then retried).
    retried: AtomicU64,
    /// The writer's last retryable error, for the failure message.
    last_error: Mutex<String>,
    /// Reads answered by a follower.
    follower_reads: AtomicU64,
    /// Reads that found no replica answering.
    failed_reads: AtomicU64,
    stop: AtomicBool,
    with_region: AtomicBool,
}

impl Traffic {
    fn acked(&self) -> usize {
        self.acked.lock().len()
    }
}

/// Writes batches of 8 new rows until stopped, retrying a batch until acknowledged.
async fn writer(client: ExampleClient, table: TableName, traffic: Arc<Traffic>) {
    let mut next = 0u64;
    while !traffic.stop.load(Ordering::SeqCst) {
        let region = traffic.with_region.load(Ordering::SeqCst);
        let rows: Vec<Row> = (next..next + 8)
            .map(|i| {
                let mut row =
                    json!({"host": format!("host-{i}"), "ts": i, "cpu": (i % 100) as f64 / 4.0});
                if region {
                    row["region"] = json!(format!("r{}", i % 3));
                }
                row.as_object().cloned().unwrap()
            })
            .collect();
        next += 8;
        loop {
            match client.write(&table, rows.clone()).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() => {
                    traffic.retried.fetch_add(1, Ordering::SeqCst);
                    *traffic.last_error.lock() = e.to_string();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("write refused for good: {e}"),
            }
        }
        let mut acked = traffic.acked.lock();
        for row in rows {
            if row.contains_key("region") {
                traffic.acked_with_region.fetch_add(1, Ordering::SeqCst);
            }
            acked.insert(row["host"].as_str().unwrap().to_string(), row);
        }
    }
}

/// Reads partitions round-robin, followers first, until stopped.
async fn reader(client: ExampleClient, table: TableName, partitions: u32, traffic: Arc<Traffic>) {
    let mut p = 0;
    while !traffic.stop.load(Ordering::SeqCst) {
        match client
            .read_partition(&table, p, ReadPreference::PreferFollower)
            .await
        {
            Ok(reply) if reply.role == "follower" => {
                traffic.follower_reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(_) => {
                traffic.failed_reads.fetch_add(1, Ordering::SeqCst);
            }
        }
        p = (p + 1) % partitions;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_database_keeps_acknowledged_rows_through_an_alter_and_a_failover() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let grpc = server.grpc_addr.to_string();
    let logs = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut nodes: Vec<Option<Proc>> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let log = logs.path().join(format!("ex-{i}.log"));
            Some(example_node(&grpc, i, port, &log))
        })
        .collect();
    let cluster = server.meta.cluster("default").unwrap();
    eventually(Duration::from_secs(30), || {
        let cluster = cluster.clone();
        async move {
            let shards = cluster.shard_entries();
            let ready = !shards.is_empty()
                && shards
                    .iter()
                    .all(|s| s.shard.replicas.len() == 3 && s.shard.leader().is_some());
            ready.then_some(())
        }
    })
    .await;
    pause_balancing(&server).await;
    // Pausing stops new moves, not the ones running (the fourth node's expansion): the
    // table is created once they are done. A create racing a replica move can leave the
    // shard's leader without the new partition (seen in CI: "partition 0 of table 1 is
    // not on shard-1" on every write for 60 s); that race is a known open bug, not what
    // this test is about.
    settled(&server).await;

    let meta = MetaClient::connect(std::slice::from_ref(&grpc), "default")
        .await
        .unwrap();
    meta.watch_routes();
    let table = TableName::new("default", "public", "cpu").unwrap();
    let definition = TableDefinition {
        columns: vec![
            Column::new("host", ColumnType::String, false),
            Column::new("ts", ColumnType::TimestampMs, false),
            Column::new("cpu", ColumnType::Float64, true),
        ],
        primary_key: vec!["host".into()],
        time_index: Some("ts".into()),
        ..Default::default()
    };
    let rule = PartitionRule::Hash {
        count: 8,
        columns: vec!["host".into()],
    };
    meta.create_table_with(&table, &rule, &definition, false)
        .await
        .unwrap();
    let client = ExampleClient::new(meta.clone());

    // A row that does not fit the definition is refused for good, naming the column.
    // (Retried until the leaders hold their first write leases.)
    let bad = json!({"host": "h", "ts": 1, "mem": 3})
        .as_object()
        .cloned()
        .unwrap();
    let err = eventually(Duration::from_secs(30), || {
        let (client, table, bad) = (client.clone(), table.clone(), bad.clone());
        async move {
            match client.write(&table, vec![bad]).await {
                Err(e) if !e.is_retryable() => Some(e),
                Err(_) => None,
                Ok(ack) => panic!("a row with an unknown column was acknowledged: {ack:?}"),
            }
        }
    })
    .await;
    assert!(err.to_string().contains("unknown column \"mem\""), "{err}");

    let traffic = Arc::new(Traffic::default());
    let writing = tokio::spawn(writer(client.clone(), table.clone(), traffic.clone()));
    let reading = tokio::spawn(reader(
        client.clone().in_zone("zone-1"),
        table.clone(),
        8,
        traffic.clone(),
    ));
    // Waits for `n` acknowledged rows; if they do not come, says what the writer last
    // heard, where the metadata puts each shard, and what the nodes logged.
    let wait_acked = |n: usize| {
        let (traffic, cluster, logs) = (traffic.clone(), cluster.clone(), logs.path().to_owned());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while traffic.acked() < n {
                if std::time::Instant::now() > deadline {
                    let shards: Vec<String> = cluster
                        .shard_entries()
                        .iter()
                        .map(|e| format!("{:?}", e.shard))
                        .collect();
                    let mut node_logs = String::new();
                    for i in 0..4 {
                        let log = std::fs::read_to_string(logs.join(format!("ex-{i}.log")))
                            .unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(20).collect();
                        node_logs += &format!("--- ex-{i}\n{}\n", tail.join("\n"));
                    }
                    panic!(
                        "{} of {n} rows acknowledged within 60 s; {} retries, the last: {}\nshards: {shards:#?}\n{node_logs}",
                        traffic.acked(),
                        traffic.retried.load(Ordering::SeqCst),
                        traffic.last_error.lock()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acked(200).await;

    // ALTER in the middle of the traffic: the writer, whose route still carries the old
    // definition version, is refused as stale, refreshes and goes on.
    let altered = meta
        .alter_table(
            &table,
            &DefinitionChange::AddColumn(Column::new("region", ColumnType::String, true)),
        )
        .await
        .unwrap();
    let new_version = altered.definition.unwrap().version;
    traffic.with_region.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(60), || {
        let traffic = traffic.clone();
        async move { (traffic.acked_with_region.load(Ordering::SeqCst) >= 100).then_some(()) }
    })
    .await;

    // Kill the node leading the most shards, mid-traffic.
    let mut led: HashMap<NodeId, usize> = HashMap::new();
    for s in cluster.shard_entries() {
        if let Some(l) = s.shard.leader() {
            *led.entry(l).or_default() += 1;
        }
    }
    let (&victim, _) = led.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim_name = cluster
        .node_entries()
        .into_iter()
        .find(|n| n.node.id == victim)
        .unwrap()
        .node
        .name;
    let index: usize = victim_name.trim_start_matches("ex-").parse().unwrap();
    let follower_reads_before = traffic.follower_reads.load(Ordering::SeqCst);
    drop(nodes[index].take());
    let acked_at_kill = traffic.acked();

    // Every shard gets a leader on a live node; the writer goes on.
    eventually(Duration::from_secs(60), || {
        let cluster = cluster.clone();
        async move {
            cluster
                .shard_entries()
                .iter()
                .all(|s| s.shard.leader().is_some_and(|l| l != victim))
                .then_some(())
        }
    })
    .await;
    wait_acked(acked_at_kill + 300).await;
    traffic.stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();
    reading.await.unwrap();

    eprintln!(
        "acked {} rows ({} at the kill, {} with region), {} retried writes, {} follower reads \
         ({} before the kill), {} failed reads",
        traffic.acked(),
        acked_at_kill,
        traffic.acked_with_region.load(Ordering::SeqCst),
        traffic.retried.load(Ordering::SeqCst),
        traffic.follower_reads.load(Ordering::SeqCst),
        follower_reads_before,
        traffic.failed_reads.load(Ordering::SeqCst)
    );
    // Every acknowledged row is on its partition's leader, as acknowledged.
    let mut on_leaders: BTreeMap<String, Row> = BTreeMap::new();
    for p in 0..8 {
        let reply = client
            .read_partition(&table, p, ReadPreference::Leader)
            .await
            .unwrap_or_else(|e: ExampleError| panic!("partition {p}: {e}"));
        assert_eq!(reply.role, "leader");
        for row in reply.rows {
            on_leaders.insert(row["host"].as_str().unwrap().to_string(), row);
        }
    }
    let acked = traffic.acked.lock().clone();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(host, row)| on_leaders.get(*host) != Some(row))
        .map(|(host, _)| host)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged rows missing or different on the leaders, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(traffic.acked_with_region.load(Ordering::SeqCst) >= 100);
    assert!(
        traffic.retried.load(Ordering::SeqCst) > 0,
        "the ALTER and the kill each make some write retry"
    );
    assert!(follower_reads_before > 0, "followers answered reads");
    assert!(
        traffic.follower_reads.load(Ordering::SeqCst) > follower_reads_before,
        "followers answered reads after the failover"
    );
    // The nodes that lead the table hold its new definition.
    for (i, port) in ports.iter().enumerate() {
        if nodes[i].is_none() {
            continue;
        }
        let (_, status) = http(
            reqwest::Method::GET,
            format!("http://127.0.0.1:{port}/v1/status"),
            None,
        )
        .await;
        for s in status["shards"].as_array().unwrap() {
            if s["role"] == "leader" && s["rows"].as_u64() > Some(0) {
                let versions = s["definitions"].as_object().unwrap();
                assert!(
                    versions.values().all(|v| v.as_u64() == Some(new_version)),
                    "{status}"
                );
            }
        }
    }
    drop(nodes);
    server.shutdown().await;
}
