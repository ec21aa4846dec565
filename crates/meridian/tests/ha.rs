//! Highly available Meridian on real etcd: followers forward and redirect, a clean
//! shutdown hands over at once, and leader kills, a pause past the election lease, the loss
//! of an etcd member and a restart of every server lose nothing acknowledged and stop no
//! shard from taking writes.

mod common;

use common::{eventually, free_port, start_nodes_at, start_nodes_in};
use meridian_client::MetaClient;
use meridian_model::{PartitionRule, TableName};
use meridian_server::{HaServer, Role, RunningHa, ServerConfig, StoreKind};
use meridian_store::etcd::LocalEtcd;
use std::process::Command;
use std::time::{Duration, Instant};

fn ha_config(etcd: &LocalEtcd, name: &str) -> ServerConfig {
    let mut c = ServerConfig {
        store: StoreKind::Etcd,
        grpc_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        http_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        name: name.into(),
        ..Default::default()
    };
    c.etcd.endpoints = etcd.endpoints();
    c
}

async fn leader_of(servers: &[&RunningHa]) -> usize {
    eventually(Duration::from_secs(20), || async {
        servers
            .iter()
            .position(|s| matches!(s.role(), Role::Leader { .. }))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_forward_ddl_redirect_http_and_send_nodes_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let a = HaServer::start(ha_config(&etcd, "a")).await.unwrap();
    let b = HaServer::start(ha_config(&etcd, "b")).await.unwrap();
    let leader = leader_of(&[&a, &b]).await;
    let (leader, follower) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let follower_grpc = follower.grpc_addr.to_string();

    // A node given only the follower's address is sent to the leader.
    let nodes = start_nodes_at(&follower_grpc, "ha", 3, 32000, |_| (20, 200)).await;

    // DDL sent to the follower only (one address: no leader discovery) is forwarded.
    let client = MetaClient::connect(std::slice::from_ref(&follower_grpc), "default")
        .await
        .unwrap();
    let name = TableName::new("default", "public", "forwarded").unwrap();
    let (created, _) = eventually(Duration::from_secs(20), || {
        let (client, name) = (client.clone(), name.clone());
        async move {
            client
                .create_table(&name, &PartitionRule::None, true)
                .await
                .ok()
        }
    })
    .await;
    let read = client.get_table(&name).await.unwrap();
    assert_eq!(read.id, created.id);
    // A client that asks for redirects gets the leader's address instead.
    let channel = meridian_client::connect_channel(std::slice::from_ref(&follower_grpc), None)
        .await
        .unwrap();
    let mut raw = meridian_proto::catalog_service_client::CatalogServiceClient::new(channel);
    let mut request = tonic::Request::new(meridian_proto::GetTableRequest {
        cluster: "default".into(),
        catalog: "default".into(),
        schema: "public".into(),
        table: "forwarded".into(),
    });
    request
        .metadata_mut()
        .insert("meridian-redirect", "1".parse().unwrap());
    let redirected = raw.get_table(request).await.unwrap_err();
    assert_eq!(
        redirected.code(),
        tonic::Code::Unavailable,
        "{redirected:?}"
    );
    assert_eq!(
        redirected.metadata().get("meridian-leader").unwrap(),
        leader.grpc_addr.to_string().as_str()
    );

    // HTTP: the follower says who leads, and redirects the API there.
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let health: serde_json::Value = web
        .get(format!("http://{}/health", follower.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["role"], "follower");
    assert_eq!(
        health["leader"]["http_addr"],
        leader.http_addr.to_string(),
        "{health}"
    );
    let redirected = web
        .get(format!("http://{}/api/v1/clusters", follower.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 307);
    assert_eq!(
        redirected.headers()["location"],
        format!("http://{}/api/v1/clusters", leader.http_addr).as_str()
    );
    // Following the redirect (reqwest's default) reaches the leader's answer.
    let tables: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/clusters/default/tables",
        follower.http_addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(tables.to_string().contains("forwarded"), "{tables}");
    // The leader timed its etcd commits.
    let metrics = reqwest::get(format!("http://{}/metrics", leader.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let commits = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"meridian_store_commit_duration_seconds_count{backend="etcd",op="txn"} "#,
            )
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(commits.is_some_and(|n| n > 0.0), "{metrics}");

    for n in nodes {
        n.agent.stop().await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_shutdown_resigns_and_another_server_leads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let a = HaServer::start(ha_config(&etcd, "a")).await.unwrap();
    leader_of(&[&a]).await;
    let b = HaServer::start(ha_config(&etcd, "b")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Role::Leader { term: first } = a.role() else {
        panic!("a should still lead: {:?}", a.role());
    };
    assert!(matches!(b.role(), Role::Follower { leader: Some(_) }));
    let stopped = Instant::now();
    a.shutdown().await;
    let term = eventually(Duration::from_secs(10), || async {
        match b.role() {
            Role::Leader { term } => Some(term),
            _ => None,
        }
    })
    .await;
    let handover = stopped.elapsed();
    assert!(term > first, "terms grow: {first} then {term}");
    // Well under the 2 s election TTL a crash would cost.
    assert!(
        handover < Duration::from_millis(1500),
        "handover took {handover:?}"
    );
    b.shutdown().await;
}

/// Runs `meridian bench takeover` (three server processes on a three-member etcd, sim-node
/// processes with lease logs, a creating client) and checks its findings.
#[test]
fn leader_kills_a_pause_an_etcd_fault_and_a_full_restart_lose_nothing_and_no_lease_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "bench",
            "takeover",
            "--kills",
            "3",
            "--pause",
            "--etcd-fault",
            "--json",
        ])
        .arg("--dir")
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("meridian runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    assert!(out.status.success(), "violations: {report}\n{stderr}");
    assert_eq!(report["samples"], 3, "{report}");
    assert!(report["acked_creates"].as_u64().unwrap() > 0, "{report}");
    for zero in [
        "lost_creates",
        "duplicate_ids",
        "lease_overlaps",
        "lease_lapses",
        "client_errors_outside_windows",
        "shards_without_leader",
        "shards_unwritable",
    ] {
        assert_eq!(report[zero], 0, "{zero}: {report}\n{stderr}");
    }
    assert_eq!(
        report["pause"]["deposed_leader_stepped_down"], true,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_of_300_shards_and_a_table_over_200_of_them_fit_in_etcds_limits() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let server = HaServer::start(ha_config(&etcd, "a")).await.unwrap();
    leader_of(&[&server]).await;
    // 300 shards are 600 keys: more than one etcd transaction takes, so they are written in
    // resumable steps.
    let created = reqwest::Client::new()
        .post(format!("http://{}/api/v1/clusters", server.http_addr))
        .json(&serde_json::json!({
            "name": "big",
            "shard_count": 300,
            "replication_factor": 1,
            "min_nodes": 3,
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let grpc = server.grpc_addr.to_string();
    let nodes = start_nodes_in(&grpc, "big", "big", 3, 33000, |_| (20, 200)).await;
    let client = MetaClient::connect(std::slice::from_ref(&grpc), "big")
        .await
        .unwrap();
    // 200 partitions on 200 distinct shards: one "no merge in flight" compare instead of
    // 200 (etcd takes 128 per transaction).
    let name = TableName::new("default", "public", "wide").unwrap();
    let rule = PartitionRule::Hash {
        count: 200,
        columns: vec!["k".into()],
    };
    let (table, _) = eventually(Duration::from_secs(60), || {
        let (client, name, rule) = (client.clone(), name.clone(), rule.clone());
        async move { client.create_table(&name, &rule, true).await.ok() }
    })
    .await;
    let shards: std::collections::BTreeSet<u32> =
        table.partitions.iter().map(|p| p.shard_id).collect();
    assert_eq!(shards.len(), 200, "partitions spread over distinct shards");
    let listed: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/clusters/big/shards",
        server.http_addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(listed["shards"].as_array().unwrap().len(), 300);
    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
}
