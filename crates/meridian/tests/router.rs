//! The client-side router against a live server: keys are located by the documented
//! function, rows grouped by the leader that must take them, reads ordered by preference.

mod common;

use common::*;
use meridian_client::ReadPreference;
use meridian_model::{PartitionRule, TableName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_located_and_grouped_by_their_leader() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "r", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    let name = TableName::new("default", "public", "events").unwrap();
    let rule = PartitionRule::Hash {
        count: 8,
        columns: vec!["host".into()],
    };
    client.create_table(&name, &rule, false).await.unwrap();
    let cluster = server.meta.cluster("default").unwrap();
    let table = cluster.get_table(&name).unwrap();
    // The endpoint each node advertises (node_config: 127.0.0.1:30000 + its index).
    let endpoint_of = |id: u64| {
        nodes
            .iter()
            .position(|n| n.agent.status().node_id == Some(id))
            .map(|i| format!("127.0.0.1:{}", 30000 + i))
    };
    let keys: Vec<String> = (0..64).map(|i| format!("host-{i}")).collect();
    for k in &keys {
        let at = client.locate(&name, &[k.as_str()]).await.unwrap();
        assert_eq!(at.partition, rule.partition_of(&[k.as_str()]));
        let shard = table.partitions[at.partition as usize].shard;
        assert_eq!(at.shard, shard.0);
        let leader = cluster.shard(shard).unwrap().leader().unwrap();
        assert_eq!(at.leader, endpoint_of(leader.0), "{k}");
    }
    // One batch per leader endpoint, each row in the batch of its partition's leader.
    let rows = keys.iter().map(|k| (vec![k.clone()], k.clone()));
    let batches = client.split_writes(&name, rows).await.unwrap();
    assert!(batches.len() > 1, "8 partitions over 3 leaders");
    assert_eq!(batches.values().map(Vec::len).sum::<usize>(), keys.len());
    for (leader, rows) in &batches {
        for k in rows {
            let at = client.locate(&name, &[k.as_str()]).await.unwrap();
            assert_eq!(at.leader.as_ref(), Some(leader));
        }
    }
    // Reads preferring followers try both followers before the leader.
    let targets = client
        .read_targets(&name, 0, ReadPreference::PreferFollower)
        .await
        .unwrap();
    let at = client.locate(&name, &["host-0"]).await.unwrap();
    let targets0 = client
        .read_targets(&name, at.partition, ReadPreference::PreferFollower)
        .await
        .unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets0.last(), at.leader.as_ref());
    // Routes carry each replica's zone; a reader in one zone tries its zone's follower first.
    let zone_of = |endpoint: &str| {
        let i: usize = endpoint
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            - 30000;
        format!("zone-{}", i % 3)
    };
    let follower = &at.followers[0];
    let near = client
        .read_targets_near(
            &name,
            at.partition,
            ReadPreference::PreferFollower,
            &zone_of(follower),
        )
        .await
        .unwrap();
    assert_eq!(&near[0], follower);
    assert_eq!(at.follower_zones[0], zone_of(follower));

    // `ctl locate` names the same partition, shard and leader.
    let (ok, out) = ctl(
        &server.http_addr.to_string(),
        &["--json", "locate", "events", "host-1"],
    )
    .await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let at = client.locate(&name, &["host-1"]).await.unwrap();
    assert_eq!(
        v["partition"], 3,
        "host-1 is in partition 3 of 8 (docs test vector)"
    );
    assert_eq!(v["partition"], at.partition);
    assert_eq!(v["shard"], at.shard);
    assert_eq!(v["leader"]["endpoint"].as_str(), at.leader.as_deref());
    let (ok, out) = ctl(&server.http_addr.to_string(), &["locate", "nosuch", "k"]).await;
    assert!(!ok && out.contains("not found"), "{out}");
    server.shutdown().await;
}

/// `meridian bench route --locate --json` keeps its contract: one JSON line at the end with
/// `ops_per_sec`.
#[test]
fn the_locate_bench_reports_keys_per_second() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["bench", "route", "--locate", "--duration", "1", "--json"])
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).expect(last);
    assert_eq!(v["bench"], "route_locate");
    assert!(v["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{v}");
}
