//! The event log: what happened, with times, in order, kept across a restart, followed
//! live by `ctl events --follow`; an essential scheduler paused is warned about.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use std::time::Duration;

/// The messages of the newest events of the default cluster.
async fn messages(http_addr: &str) -> Vec<(String, String)> {
    let (status, v) = http(
        reqwest::Method::GET,
        format!("http://{http_addr}/api/v1/events?cluster=default&limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                e["at_ms"].as_u64().unwrap() > 1_700_000_000_000,
                "a wall-clock time"
            );
            (
                e["kind"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_tells_what_happened_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = redb_config(dir.path());
    fast_liveness(&mut config);
    let server = start(config.clone()).await;
    let http_addr = server.http_addr.to_string();
    let mut nodes = start_nodes(&server, "ev", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;

    // Follow the log from another process while things happen.
    let follow = {
        let addr = http_addr.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
                .args(["ctl", "--addr", &addr, "events", "--limit", "0"])
                .args(["--follow", "--count", "1"])
                .output()
                .expect("ctl runs")
        })
    };
    // Tables are created until the follower has printed one (it subscribes a moment
    // after it starts).
    let creating = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = TableName::new("default", "public", &format!("ev{i}")).unwrap();
                client
                    .create_table(&name, &PartitionRule::None, false)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let followed = tokio::time::timeout(Duration::from_secs(30), follow)
        .await
        .expect("ctl events --follow printed the event")
        .unwrap();
    creating.abort();
    let printed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.status.success(), "{printed}");
    assert!(
        printed.contains("ddl") && printed.contains("table default.public.ev"),
        "{printed}"
    );
    assert!(printed.contains(" created"), "{printed}");

    // An essential scheduler paused: warned in the answer and in the log.
    let (status, v) = http(
        reqwest::Method::POST,
        format!("http://{http_addr}/api/v1/clusters/default/schedulers/failover/pause"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["warning"].as_str().unwrap().contains("essential"), "{v}");
    let (status, _) = http(
        reqwest::Method::POST,
        format!("http://{http_addr}/api/v1/clusters/default/schedulers/failover/resume"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // A node dies: its state change and the failover, with its duration.
    let victim = nodes.remove(0);
    victim.agent.stop().await;
    let events = eventually(Duration::from_secs(30), || {
        let addr = http_addr.clone();
        async move {
            let m = messages(&addr).await;
            m.iter()
                .any(|(k, msg)| k == "operator_finished" && msg.starts_with("failover"))
                .then_some(m)
        }
    })
    .await;
    let has = |kind: &str, text: &str| events.iter().any(|(k, m)| k == kind && m.contains(text));
    assert!(has("ddl", "table default.public.ev0 created"), "{events:?}");
    assert!(
        has("admin", "scheduler failover paused. WARNING"),
        "{events:?}"
    );
    assert!(has("node_state", "node ev-0"), "{events:?}");
    assert!(has("node_state", "-> offline"), "{events:?}");
    assert!(has("operator_started", "failover on shard-"), "{events:?}");
    // Operators' reasons name nodes as people know them, not by id.
    assert!(has("operator_started", "follower ev-"), "{events:?}");
    assert!(has("operator_finished", "succeeded after"), "{events:?}");

    // Kept across a restart, and numbering goes on.
    drop(nodes);
    server.shutdown().await;
    let server = start(config).await;
    let again = messages(&server.http_addr.to_string()).await;
    assert!(
        again
            .iter()
            .any(|(_, m)| m.contains("table default.public.ev0 created")),
        "{again:?}"
    );
    let (status, v) = http(
        reqwest::Method::GET,
        format!("http://{}/api/v1/events?cluster=nosuch", server.http_addr),
        None,
    )
    .await;
    assert_eq!(status, 404, "{v}");
    server.shutdown().await;
}
