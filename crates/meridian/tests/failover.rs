//! Real processes: a server and simulated nodes, each its own process, over real gRPC.
//! Kill a node's process: every shard it led ends on another node, and a client that
//! follows `WatchRoutes` sees the routes move without asking.

mod common;

use common::{eventually, free_port, http};
use meridian_client::MetaClient;
use meridian_client::{lease_overlaps, monotonic_ns, read_lease_log, LeaseInterval};
use meridian_model::{PartitionRule, TableName};
use reqwest::Method;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sim-node process `i`, logging its writable intervals to `log` (one file per process).
fn sim_node(grpc: u16, i: usize, log: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args([
                "sim-node",
                "--meta",
                &format!("127.0.0.1:{grpc}"),
                "--name",
                &format!("p-{i}"),
            ])
            .args([
                "--endpoint",
                &format!("127.0.0.1:{}", 32000 + i),
                "--zone",
                &format!("zone-{}", i % 3),
            ])
            .arg("--lease-log")
            .arg(log)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sim-node starts"),
    )
}

/// shard id -> leader node id, from the admin API.
async fn leaders(base: &str) -> HashMap<u64, Option<u64>> {
    let (_, v) = http(Method::GET, format!("{base}/clusters/default/shards"), None).await;
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["leader"].as_u64()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_process_moves_its_leaders_and_clients_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(
        &config,
        "schedule_interval_ms = 50\nfull_schedule_interval_ms = 200\n[liveness]\nheartbeat_interval_ms = 200\nsuspect_after_ms = 400\noffline_after_ms = 800\ngrace_period_ms = 1000\n",
    )
    .unwrap();
    let (grpc, port) = (free_port(), free_port());
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["server", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--http-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("server starts"),
    );
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let logs = tempfile::tempdir().unwrap();
    let log = |i: usize, life: usize| logs.path().join(format!("p-{i}-{life}.log"));
    let mut nodes: Vec<Option<Proc>> = (0..6)
        .map(|i| Some(sim_node(grpc, i, &log(i, 0))))
        .collect();
    let addr = format!("127.0.0.1:{grpc}");
    let client = eventually(Duration::from_secs(20), || {
        let addr = addr.clone();
        async move { MetaClient::connect(&[addr], "default").await.ok() }
    })
    .await;
    let names: Vec<TableName> = (0..6)
        .map(|i| TableName::new("default", "public", &format!("f{i}")).unwrap())
        .collect();
    for n in &names {
        eventually(Duration::from_secs(20), || {
            let (client, n) = (client.clone(), n.clone());
            async move {
                client
                    .create_table(
                        &n,
                        &PartitionRule::Hash {
                            count: 2,
                            columns: vec![],
                        },
                        true,
                    )
                    .await
                    .ok()
            }
        })
        .await;
    }
    // Every node registered (shards were placed when the first 3 arrived; balance spreads).
    eventually(Duration::from_secs(20), || {
        let base = base.clone();
        async move {
            let (_, v) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
            let online = v["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["state"] == "online")
                .count();
            (online == 6).then_some(())
        }
    })
    .await;
    // Let balancing finish: the first three nodes got every shard, the others receive some.
    eventually(Duration::from_secs(60), || {
        let base = base.clone();
        async move {
            let (_, v) = http(
                Method::GET,
                format!("{base}/clusters/default/operators"),
                None,
            )
            .await;
            let idle = v["operators"].as_array()?.is_empty();
            let (_, n) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
            let leaders: Vec<u64> = n["nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n["leaders"].as_u64())
                .collect();
            let spread = leaders.iter().max()? - leaders.iter().min()?;
            (idle && spread <= 1 && leaders.iter().all(|l| *l > 0)).then_some(())
        }
    })
    .await;
    let _watch = client.watch_routes();
    for n in &names {
        client.invalidate(n);
        client.route(n).await.unwrap();
    }

    // The victim: the node that leads the most shards.
    let before = leaders(&base).await;
    let mut count: HashMap<u64, usize> = HashMap::new();
    for l in before.values().flatten() {
        *count.entry(*l).or_default() += 1;
    }
    let (&victim, _) = count.iter().max_by_key(|(id, c)| (**c, **id)).unwrap();
    let (_, v) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
    let victim_name = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == victim)
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let idx: usize = victim_name.trim_start_matches("p-").parse().unwrap();
    let led: Vec<u64> = before
        .iter()
        .filter(|(_, l)| **l == Some(victim))
        .map(|(s, _)| *s)
        .collect();
    assert!(!led.is_empty());
    drop(nodes[idx].take()); // SIGKILL

    // Meridian moves every leadership off it...
    eventually(Duration::from_secs(20), || {
        let (base, led) = (base.clone(), led.clone());
        async move {
            let now = leaders(&base).await;
            led.iter()
                .all(|s| matches!(now.get(s), Some(Some(l)) if *l != victim))
                .then_some(())
        }
    })
    .await;
    // ...and the watching client's cache follows, without a fetch.
    eventually(Duration::from_secs(10), || {
        let moved = names.iter().all(|n| {
            client.cache().get(n).is_some_and(|r| {
                r.partitions.iter().all(|p| {
                    p.shard
                        .as_ref()
                        .and_then(|s| s.leader.as_ref())
                        .is_some_and(|l| l.node_id != victim)
                })
            })
        });
        async move { moved.then_some(()) }
    })
    .await;
    let (_, v) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
    let state = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == victim)
        .unwrap()["state"]
        .clone();
    assert_eq!(state, "offline");
    let (_, ops) = http(
        Method::GET,
        format!("{base}/clusters/default/operators?history=true"),
        None,
    )
    .await;
    let failovers = ops["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "failover")
        .count()
        + ops["operators"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "failover")
            .count();
    assert!(
        failovers >= led.len(),
        "{failovers} failover operators for {} shards",
        led.len()
    );
    // From the nodes' side: every shard is writable on exactly one process now, the one
    // the metadata names, and no two processes were ever writable for one shard at once
    // (the victim's last lease ran out before its successor's began).
    let (_, v) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
    let name_of: HashMap<u64, String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().unwrap(),
                n["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eventually(Duration::from_secs(10), || {
        let (base, name_of) = (base.clone(), name_of.clone());
        let intervals = read_logs(logs.path());
        async move {
            let now = monotonic_ns();
            let meta = leaders(&base).await;
            meta.iter()
                .all(|(shard, leader)| {
                    let writable: Vec<&str> = intervals
                        .iter()
                        .filter(|i| {
                            u64::from(i.shard) == *shard && i.from_ns <= now && now < i.to_ns
                        })
                        .map(|i| i.node.as_str())
                        .collect();
                    writable.len() == 1
                        && leader.and_then(|l| name_of.get(&l)).map(String::as_str)
                            == Some(writable[0])
                })
                .then_some(())
        }
    })
    .await;
    let overlaps = lease_overlaps(&read_logs(logs.path()));
    assert!(overlaps.is_empty(), "two writers: {overlaps:#?}");

    // The node comes back: it is Online again and holds only what Meridian gives it.
    nodes[idx] = Some(sim_node(grpc, idx, &log(idx, 1)));
    eventually(Duration::from_secs(20), || {
        let base = base.clone();
        async move {
            let (_, v) = http(Method::GET, format!("{base}/clusters/default/nodes"), None).await;
            let n = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == victim)?
                .clone();
            (n["state"] == "online").then_some(())
        }
    })
    .await;
}

/// Every interval of every lease log in `dir`, one source per file (per process).
fn read_logs(dir: &Path) -> Vec<LeaseInterval> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .enumerate()
        .flat_map(|(source, path)| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            read_lease_log(&text, source).unwrap()
        })
        .collect()
}
