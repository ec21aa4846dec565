//! Runtime settings (`ctl config show|set|reset`, `GET/PUT .../config`): a change applies
//! at once (operator limits stop a manual move), dangerous values warn, unsafe and
//! malformed ones are refused and change nothing, every change is an event, and the
//! overrides survive a restart while untouched keys follow the file.

mod common;

use common::*;
use meridian_model::ShardId;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn setting<'a>(config: &'a Value, key: &str) -> &'a Value {
    config["settings"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["key"] == key))
        .unwrap_or_else(|| panic!("{key} missing from {config}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_settings_apply_at_once_warn_refuse_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = start(config.clone()).await;
    let http_addr = server.http_addr.to_string();
    let base = format!("http://{http_addr}/api/v1/clusters/default");
    let nodes = start_nodes(&server, "st", 3, 3).await;
    shards_ready(&server, &nodes).await;
    pause_balancing(&server).await;

    // Show: every setting from the file.
    let (ok, out) = ctl(&http_addr, &["config", "show"]).await;
    assert!(ok, "{out}");
    for key in [
        "limits.per_cluster",
        "liveness.offline_after_ms",
        "scheduler.hot_threshold",
    ] {
        assert!(out.contains(key), "{out}");
    }
    assert!(!out.contains("set at runtime"), "{out}");

    // No operator may start: a manual transfer is refused at once, with a warning first.
    let (ok, out) = ctl(&http_addr, &["config", "set", "limits.per_cluster", "0"]).await;
    assert!(ok && out.contains("limits.per_cluster set to 0"), "{out}");
    assert!(out.contains("WARNING: no operator can start"), "{out}");
    let cluster = server.meta.cluster("default").unwrap();
    let follower = cluster
        .shard(ShardId(1))
        .unwrap()
        .followers()
        .next()
        .unwrap();
    let transfer = |to: u64| {
        http(
            Method::POST,
            format!("{base}/shards/1/transfer-leader"),
            Some(json!({ "to": to.to_string() })),
        )
    };
    let (s, v) = transfer(follower.0).await;
    assert_ne!(s, 200, "{v}");
    assert!(v.to_string().contains("0 operators"), "{v}");

    // Refused: below the leases' floor, a malformed value, an unknown key. Nothing changes.
    for (key, value, says) in [
        (
            "liveness.offline_after_ms",
            json!(1000),
            "cannot go below 2500",
        ),
        ("scheduler.hot_threshold", json!("warm"), "takes a number"),
        ("scheduler.hot", json!(1), "unknown setting"),
    ] {
        let (s, v) = http(
            Method::PUT,
            format!("{base}/config"),
            Some(json!({ "key": key, "value": value })),
        )
        .await;
        assert_eq!(s, 400, "{key}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    let (_, shown) = http(Method::GET, format!("{base}/config"), None).await;
    assert_eq!(setting(&shown, "liveness.offline_after_ms")["value"], 2500);
    assert_eq!(setting(&shown, "scheduler.hot_threshold")["value"], 0.25);
    assert_eq!(setting(&shown, "limits.per_cluster")["overridden"], true);
    assert_eq!(setting(&shown, "limits.per_cluster")["file_value"], 64);

    // Raising the offline timeout is allowed (it only slows failover).
    let (ok, out) = ctl(
        &http_addr,
        &["config", "set", "liveness.offline_after_ms", "4000"],
    )
    .await;
    assert!(ok && out.contains("set to 4000"), "{out}");

    // Every change is in the event log.
    let (ok, out) = ctl(&http_addr, &["events"]).await;
    assert!(
        ok && out.contains("setting limits.per_cluster = 0"),
        "{out}"
    );

    // A restart keeps the overrides, and their effect.
    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
    let server = start(config.clone()).await;
    let (_, shown) = http(Method::GET, format!("{base}/config"), None).await;
    assert_eq!(setting(&shown, "limits.per_cluster")["value"], 0, "{shown}");
    assert_eq!(setting(&shown, "liveness.offline_after_ms")["value"], 4000);
    assert_eq!(
        setting(&shown, "scheduler.hot_threshold")["overridden"],
        false
    );
    let nodes = start_nodes(&server, "st", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let cluster = server.meta.cluster("default").unwrap();
    let follower = cluster
        .shard(ShardId(1))
        .unwrap()
        .followers()
        .next()
        .unwrap();
    let (s, v) = transfer(follower.0).await;
    assert_ne!(s, 200, "{v}");

    // Reset: the file's value again, and the transfer goes through.
    let (ok, out) = ctl(&http_addr, &["config", "reset", "limits.per_cluster"]).await;
    assert!(
        ok && out.contains("back to the configuration file's 64"),
        "{out}"
    );
    let (s, v) = transfer(follower.0).await;
    assert_eq!(s, 200, "{v}");
    eventually(Duration::from_secs(10), || {
        let leader = cluster.shard(ShardId(1)).unwrap().leader();
        async move { (leader == Some(follower)).then_some(()) }
    })
    .await;
    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
}
