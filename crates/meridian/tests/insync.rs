//! In-sync followers, end to end: a real server on loopback, simulated nodes over gRPC
//! reporting log positions. When every follower of a shard lags and its leader dies, the
//! shard waits (flagged in the shards listing and `ctl shards`, counted in /metrics) instead
//! of promoting a stale follower; `ctl force-promote` promotes one anyway, and a follower
//! that catches up is promoted without help.

mod common;

use common::{
    ctl, eventually, fast_liveness, http, memory_config, shards_ready, start, start_nodes,
};
use meridian_model::{NodeId, ReplicaRole, ShardId};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// One shard of the listing.
async fn shard(base: &str, id: ShardId) -> Value {
    let (_, v) = http(Method::GET, format!("{base}/clusters/default/shards"), None).await;
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_u64() == Some(u64::from(id.0)))
        .cloned()
        .unwrap()
}

fn applied(s: &Value, node: NodeId) -> u64 {
    s["positions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"].as_u64() == Some(node.0))
        .and_then(|p| p["applied"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_is_not_promoted_until_forced_or_caught_up() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    config.scheduler.max_promote_lag = 0;
    let server = start(config).await;
    let base = format!("http://{}/api/v1", server.http_addr);
    let http_addr = server.http_addr.to_string();
    let mut nodes = start_nodes(&server, "lag", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let cluster = server.meta.cluster("default").unwrap();
    let id_of = |i: usize, nodes: &[meridian_sim::node::SimNode]| {
        NodeId(nodes[i].agent.status().node_id.unwrap())
    };
    // The victim leads at least two shards: one is forced, one catches up.
    let (victim, led) = eventually(Duration::from_secs(10), || {
        let entries = cluster.shard_entries();
        let found = (0..nodes.len()).find_map(|i| {
            let me = id_of(i, &nodes);
            let led: Vec<ShardId> = entries
                .iter()
                .filter(|e| e.shard.leader() == Some(me))
                .map(|e| e.shard.id)
                .collect();
            (led.len() >= 2 && nodes[i].shards.leaders().len() >= 2).then_some((i, led))
        });
        async move { found }
    })
    .await;
    let leader = id_of(victim, &nodes);
    let (forced, catches_up) = (led[0], led[1]);
    // Every replica reported a position...
    for s in &led {
        eventually(Duration::from_secs(10), || {
            let (base, s) = (base.clone(), *s);
            async move {
                let v = shard(&base, s).await;
                let positions = v["positions"].as_array().cloned().unwrap_or_default();
                (positions.len() == 3 && positions.iter().all(|p| p["applied"].as_u64() > Some(0)))
                    .then_some(())
            }
        })
        .await;
    }
    // ...then every follower of the victim's shards stops applying.
    for n in &nodes {
        for s in &led {
            n.shards.stall_replication(*s, true);
        }
    }
    // Until Meridian has heard the leader commit past what the followers applied.
    for s in &led {
        eventually(Duration::from_secs(10), || {
            let (base, s) = (base.clone(), *s);
            let followers: Vec<NodeId> = cluster.shard(s).unwrap().followers().collect();
            async move {
                let v = shard(&base, s).await;
                let committed = v["committed"].as_u64().unwrap_or(0);
                followers
                    .iter()
                    .all(|f| {
                        let a = applied(&v, *f);
                        a > 0 && a < committed
                    })
                    .then_some(())
            }
        })
        .await;
    }
    nodes.remove(victim).agent.kill();

    // The shards wait: flagged, counted, still led (in the metadata) by the dead node.
    for s in &led {
        eventually(Duration::from_secs(15), || {
            let (base, s) = (base.clone(), *s);
            async move {
                let v = shard(&base, s).await;
                (v["waiting_for_in_sync_follower"] == Value::Bool(true)).then_some(())
            }
        })
        .await;
        assert_eq!(cluster.shard(*s).unwrap().leader(), Some(leader));
    }
    for n in &nodes {
        for s in &led {
            assert_ne!(n.shards.shards()[s].role, ReplicaRole::Leader);
        }
    }
    let (_, metrics) = http(Method::GET, format!("http://{http_addr}/metrics"), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    let gauge = metrics
        .lines()
        .find(|l| {
            l.starts_with("meridian_shards_waiting_for_in_sync_follower")
                && l.contains("cluster=\"default\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(gauge.is_some_and(|g| g >= led.len() as f64), "{gauge:?}");
    let (ok, listing) = ctl(&http_addr, &["shards"]).await;
    assert!(ok && listing.contains("waiting"), "{listing}");

    // Forced: the admin names a follower; it leads, and the history says who asked.
    let target = cluster.shard(forced).unwrap().followers().next().unwrap();
    let (ok, out) = ctl(
        &http_addr,
        &[
            "force-promote",
            &forced.0.to_string(),
            &target.0.to_string(),
            "--by",
            "test-admin",
        ],
    )
    .await;
    assert!(ok, "{out}");
    eventually(Duration::from_secs(10), || {
        let meta = cluster.shard(forced).unwrap();
        let held = nodes
            .iter()
            .find(|n| n.agent.status().node_id == Some(target.0))
            .map(|n| n.shards.shards());
        async move {
            (meta.leader() == Some(target)
                && held.is_some_and(|h| h[&forced].role == ReplicaRole::Leader))
            .then_some(())
        }
    })
    .await;
    let (_, ops) = http(
        Method::GET,
        format!("{base}/clusters/default/operators?history=true"),
        None,
    )
    .await;
    let forced_op = ops["history"]
        .as_array()
        .unwrap()
        .iter()
        .chain(ops["operators"].as_array().unwrap())
        .find(|o| o["shard"].as_u64() == Some(u64::from(forced.0)))
        .cloned()
        .expect("the forced promotion is in the operators");
    assert_eq!(forced_op["kind"], "forced_promote");
    assert!(
        forced_op["reason"]
            .as_str()
            .unwrap()
            .contains("forced by test-admin"),
        "{forced_op}"
    );
    // The other shard still waits: nothing promoted it.
    assert_eq!(cluster.shard(catches_up).unwrap().leader(), Some(leader));
    assert_eq!(
        shard(&base, catches_up).await["waiting_for_in_sync_follower"],
        Value::Bool(true)
    );

    // Caught up: its followers apply again, and failover promotes one by itself.
    for n in &nodes {
        n.shards.stall_replication(catches_up, false);
    }
    eventually(Duration::from_secs(15), || {
        let meta = cluster.shard(catches_up).unwrap();
        async move { meta.leader().filter(|l| *l != leader).map(|_| ()) }
    })
    .await;
    let follower = cluster
        .shard(catches_up)
        .unwrap()
        .followers()
        .next()
        .unwrap();
    let (ok, out) = ctl(
        &http_addr,
        &[
            "force-promote",
            &catches_up.0.to_string(),
            &follower.0.to_string(),
            "--by",
            "x",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("alive"),
        "refused once a leader is alive: {out}"
    );
    server.shutdown().await;
}
