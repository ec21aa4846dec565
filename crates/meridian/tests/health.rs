//! Shard health: a node dies and its shards show `replica_down` in the shard list,
//! `ctl check` and the gauges, with what to do; before that, everything is healthy.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_shows_as_replica_down_everywhere() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let mut nodes = start_nodes(&server, "hl", 4, 3).await;
    shards_ready(&server, &nodes).await;
    settled(&server).await;
    let http_addr = server.http_addr.to_string();
    let base = format!("http://{http_addr}");

    let (ok, out) = ctl(&http_addr, &["check"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("8 shards: 8 healthy, 0 with problems"),
        "{out}"
    );
    let (_, metrics) = http(reqwest::Method::GET, format!("{base}/metrics"), None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"meridian_shards_unhealthy{cluster="default",problem="replica_down"} 0"#),
        "a zero series from the start"
    );

    // Node hl-0 dies (its agent stops): every shard with a replica there is replica_down.
    let victim = nodes.remove(0);
    let victim_id = victim.agent.status().node_id.unwrap();
    victim.agent.stop().await;
    let cluster = server.meta.cluster("default").unwrap();
    let on_victim: Vec<u32> = cluster
        .shard_entries()
        .iter()
        .filter(|s| s.shard.has_replica_on(meridian_model::NodeId(victim_id)))
        .map(|s| s.shard.id.0)
        .collect();
    assert!(!on_victim.is_empty());
    let v = eventually(Duration::from_secs(20), || {
        let base = base.clone();
        async move {
            let (_, v) = http(
                reqwest::Method::GET,
                format!("{base}/api/v1/clusters/default/health"),
                None,
            )
            .await;
            (v["problems"]["replica_down"]["count"].as_u64() > Some(0)).then_some(v)
        }
    })
    .await;
    let down: Vec<u64> = v["problems"]["replica_down"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    for s in &down {
        assert!(
            on_victim.contains(&(*s as u32)),
            "shard {s} has no replica on the dead node"
        );
    }
    assert!(v["problems"]["replica_down"]["advice"]
        .as_str()
        .unwrap()
        .contains("repair"));

    // Problems found: exit code 4, for scripts.
    let (code, out) = ctl_exit(&http_addr, &["check", "replica_down"]).await;
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("replica_down ("), "{out}");
    assert!(out.contains("what to do:"), "{out}");
    let (ok, out) = ctl(&http_addr, &["check", "bogus"]).await;
    assert!(!ok && out.contains("unknown problem"), "{out}");

    let (_, shards) = http(
        reqwest::Method::GET,
        format!("{base}/api/v1/clusters/default/shards"),
        None,
    )
    .await;
    let flagged = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["health"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "replica_down")
        })
        .count();
    assert!(flagged > 0, "{shards}");
    // The gauge counts them (set by the next scheduling pass).
    eventually(Duration::from_secs(20), || {
        let base = base.clone();
        async move {
            let (_, metrics) = http(reqwest::Method::GET, format!("{base}/metrics"), None).await;
            let zero = r#"meridian_shards_unhealthy{cluster="default",problem="replica_down"} 0"#;
            (!metrics.as_str().unwrap_or_default().contains(zero)).then_some(())
        }
    })
    .await;
    server.shutdown().await;
}
