//! `meridian ctl` as a person and a script use it: node names in human output (ids in
//! `--json`), `node show` and `shard show`, and exit codes that tell a refusal (1), an
//! unreachable server (3) and a cluster with problems (4, from `check`) apart.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_speaks_in_node_names_shows_one_node_or_shard_and_exits_meaningfully() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "ct", 4, 3).await;
    shards_ready(&server, &nodes).await;
    let addr = server.http_addr.to_string();

    // --json keeps ids. Which node leads shard 1 depends on which nodes had connected
    // when the shards were placed, so the test asks rather than assumes.
    let (ok, out) = ctl(&addr, &["--json", "shards"]).await;
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["shards"][0]["leader"]
        .as_u64()
        .expect("a numeric leader id");
    let name = nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.agent.status().node_id == Some(id))
        .map(|(i, _)| (format!("ct-{i}"), format!("zone-{}", i % 3)))
        .expect("the leader is one of the test's nodes");
    let (name, zone) = name;

    // Human output names the nodes.
    let (ok, out) = ctl(&addr, &["shards"]).await;
    assert!(ok && out.contains(&name), "{out}");

    // node show, by name and by id as logs print it.
    for key in [name.clone(), format!("node-{id}"), id.to_string()] {
        let (ok, out) = ctl(&addr, &["node", "show", &key]).await;
        assert!(ok, "{key}: {out}");
        assert!(out.contains(&format!("{name} (node-{id})")), "{out}");
        assert!(
            out.contains(&format!("zone {zone}"))
                && out.contains("leader")
                && out.contains("shard-"),
            "{out}"
        );
    }
    let (code, out) = ctl_exit(&addr, &["node", "show", "ct-9"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no node \"ct-9\""), "{out}");

    // shard show: leader and followers by name.
    let (ok, out) = ctl(&addr, &["shard", "show", "shard-1"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("shard-1 v") && out.contains("healthy"),
        "{out}"
    );
    let leader_line = out
        .lines()
        .find(|l| l.contains("leader:"))
        .unwrap_or_default();
    assert!(leader_line.contains("ct-"), "{out}");
    let (code, _) = ctl_exit(&addr, &["shard", "show", "99"]).await;
    assert_eq!(code, Some(1));

    // drain --wait follows the drain to its end.
    let (ok, out) = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        ctl(&addr, &["drain", "ct-3", "--wait"]),
    )
    .await
    .expect("the drain ends");
    assert!(ok, "{out}");
    assert!(
        out.contains("draining ct-3:") && out.contains("ct-3 holds no replica"),
        "{out}"
    );
    let (_, out) = ctl(&addr, &["node", "show", "ct-3"]).await;
    assert!(out.contains("0 replicas, 0 leaders"), "{out}");

    // Exit codes: a healthy check is 0; nobody at the address is 3; bad usage is 2.
    let (code, out) = ctl_exit(&addr, &["check"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = ctl_exit(&format!("127.0.0.1:{}", free_port()), &["nodes"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("cannot reach Meridian"), "{out}");
    let (code, _) = ctl_exit(&addr, &["shard", "show", "x"]).await;
    assert_eq!(code, Some(2));
    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
}
