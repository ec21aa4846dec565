//! The core: nodes join, shards are placed evenly across zones, tables are created, placed
//! and routed, and route changes are pushed.

mod common;

use common::*;
use meridian_model::{PartitionRule, ReplicaRole, TableName};
use meridian_proto as pb;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn name(t: &str) -> TableName {
    TableName::new("default", "public", t).unwrap()
}

/// Whether every shard has 3 replicas in 3 zones, replicas per node differ by at most one
/// and leaders per node by at most `leader_spread`; the counts per node on failure.
fn even_and_zone_distinct(
    cluster: &meridian_server::meta::Cluster,
    leader_spread: usize,
) -> Result<(), String> {
    let zone_of: HashMap<_, _> = cluster
        .node_entries()
        .iter()
        .map(|e| (e.node.id, e.node.labels.zone.clone()))
        .collect();
    let mut per_node: HashMap<_, usize> = zone_of.keys().map(|id| (*id, 0)).collect();
    let mut leaders: HashMap<_, usize> = zone_of.keys().map(|id| (*id, 0)).collect();
    for s in cluster.shard_entries() {
        let zones: HashSet<_> = s
            .shard
            .replicas
            .iter()
            .map(|r| zone_of[&r.node].clone())
            .collect();
        if s.shard.replicas.len() != 3 || zones.len() != 3 {
            return Err(format!("{:?} is not 3 replicas in 3 zones", s.shard));
        }
        for r in &s.shard.replicas {
            *per_node.entry(r.node).or_default() += 1;
            if r.role == ReplicaRole::Leader {
                *leaders.entry(r.node).or_default() += 1;
            }
        }
    }
    let spread = |m: &HashMap<_, usize>| m.values().max().unwrap() - m.values().min().unwrap();
    if spread(&per_node) > 1 || spread(&leaders) > leader_spread {
        return Err(format!(
            "replicas per node {per_node:?}, leaders per node {leaders:?}"
        ));
    }
    Ok(())
}

/// Every replica is open on its node with the role and version the metadata says.
fn replicas_open_as_placed(
    cluster: &meridian_server::meta::Cluster,
    nodes: &[meridian_sim::node::SimNode],
) -> Result<(), String> {
    for s in cluster.shard_entries() {
        for r in &s.shard.replicas {
            let node = nodes
                .iter()
                .find(|n| n.agent.status().node_id == Some(r.node.0))
                .ok_or("unknown node")?;
            let held = node.shards.shards();
            let replica = held
                .get(&s.shard.id)
                .ok_or(format!("{} not open on {}", s.shard.id, r.node))?;
            if (replica.role, replica.version) != (r.role, s.shard.version) {
                return Err(format!(
                    "{} on {}: {replica:?} vs {r:?}",
                    s.shard.id, r.node
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_created_at_min_nodes_evenly_one_replica_per_zone() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "n", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let cluster = server.meta.cluster("default").unwrap();
    assert_eq!(
        cluster.shard_entries().len(),
        8,
        "the default cluster has 8 shards"
    );
    // Initial placement is exactly even: max - min <= 1 for replicas and for leaders.
    even_and_zone_distinct(&cluster, 1).unwrap();
    replicas_open_as_placed(&cluster, &nodes).unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_receive_shards_until_the_spread_is_even() {
    let server = start(memory_config()).await;
    // Six nodes race to register: the first three get every shard (possibly two in one zone,
    // if they are), then balance and domain repair spread them over all six.
    let nodes = start_nodes(&server, "n", 6, 3).await;
    let cluster = server.meta.cluster("default").unwrap();
    // Balancing has hysteresis: it starts at a spread of `balance_start_spread` (3) and
    // then evens out to 1, so a leader spread of 2 that never reached 3 is left alone.
    let tolerance =
        meridian_scheduler::SchedulerConfig::default().balance_start_spread as usize - 1;
    eventually(Duration::from_secs(30), || {
        let idle = server.scheduling.operators(cluster.id, false).0.is_empty();
        let ok = idle
            && even_and_zone_distinct(&cluster, tolerance).is_ok()
            && replicas_open_as_placed(&cluster, &nodes).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_created_on_the_shard_leader_and_routed() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "n", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;

    let (plain, created) = client
        .create_table(&name("users"), &PartitionRule::None, false)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(plain.partitions.len(), 1);
    let hash = PartitionRule::Hash {
        count: 4,
        columns: vec!["host".into()],
    };
    let (hashed, _) = client
        .create_table(&name("metrics"), &hash, false)
        .await
        .unwrap();
    assert_eq!(hashed.partitions.len(), 4);
    let shards: HashSet<u32> = hashed.partitions.iter().map(|p| p.shard_id).collect();
    assert_eq!(
        shards.len(),
        4,
        "partitions of one table go to distinct shards while there are enough"
    );
    let range = PartitionRule::Range {
        column: "ts".into(),
        bounds: vec!["b".into(), "m".into()],
    };
    let (ranged, _) = client
        .create_table(&name("logs"), &range, false)
        .await
        .unwrap();
    assert_eq!(ranged.partitions.len(), 3);
    assert!(ranged.id > hashed.id && hashed.id > plain.id, "ids grow");

    // The leader of each partition's shard holds the partition.
    let route = client.route(&name("metrics")).await.unwrap();
    for p in &route.partitions {
        let shard = p.shard.as_ref().unwrap();
        let leader = shard.leader.as_ref().expect("a leader");
        assert_eq!(shard.followers.len(), 2);
        let node = nodes
            .iter()
            .find(|n| n.agent.status().node_id == Some(leader.node_id))
            .unwrap();
        let held = node.shards.shards();
        let s = held.get(&meridian_model::ShardId(shard.shard_id)).unwrap();
        assert!(
            s.tables.contains(&(hashed.id, p.index)),
            "leader holds partition {}",
            p.index
        );
        assert_eq!(
            leader.endpoint,
            node.agent
                .status()
                .node_id
                .map(|_| format!(
                    "127.0.0.1:{}",
                    30000 + nodes.iter().position(|x| x.name == node.name).unwrap()
                ))
                .unwrap()
        );
    }

    // if_not_exists returns the existing table; without it, a clear error.
    let (again, created) = client
        .create_table(&name("users"), &PartitionRule::None, true)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, plain.id);
    let err = client
        .create_table(&name("users"), &PartitionRule::None, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::AlreadyExists));

    // Batch routing reports missing tables by name.
    let resp = client
        .fetch_routes(
            "default",
            "public",
            vec!["users".into(), "nope".into(), "logs".into()],
        )
        .await
        .unwrap();
    assert_eq!(resp.routes.len(), 2);
    assert_eq!(resp.not_found, vec!["nope".to_string()]);

    // Rename, list, drop.
    let renamed = client.rename_table(&name("users"), "people").await.unwrap();
    assert_eq!(renamed.id, plain.id);
    assert_eq!(
        client.get_table(&name("users")).await.unwrap_err().code(),
        Some(tonic::Code::NotFound)
    );
    let listed: Vec<String> = client
        .list_tables("default", "public")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, vec!["logs", "metrics", "people"]);
    assert!(client.drop_table(&name("people"), false).await.unwrap());
    assert!(!client.drop_table(&name("people"), true).await.unwrap());
    assert_eq!(
        client
            .drop_table(&name("people"), false)
            .await
            .unwrap_err()
            .code(),
        Some(tonic::Code::NotFound)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_spread_over_shards_by_table_count() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "n", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    for i in 0..32 {
        client
            .create_table(&name(&format!("t{i}")), &PartitionRule::None, false)
            .await
            .unwrap();
    }
    let cluster = server.meta.cluster("default").unwrap();
    let counts: Vec<usize> = cluster
        .shard_entries()
        .iter()
        .map(|e| e.partitions.len())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 32);
    assert!(
        counts.iter().all(|c| *c == 4),
        "32 tables on 8 shards: {counts:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_routes_pushes_creates_and_drops_and_the_client_cache_follows() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "n", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    let mut events = client.subscribe_routes().await.unwrap();
    // A client of its own (its own cache): the creating client's cache must not be what
    // the watcher sees.
    let watcher = common::client(&server).await;
    let _task = watcher.watch_routes();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .create_table(&name("pushed"), &PartitionRule::None, false)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev.event {
        Some(pb::route_event::Event::TableChanged(r)) => assert_eq!(r.table, "pushed"),
        other => panic!("expected a table route, got {other:?}"),
    }
    // The watching client's cache got it without asking.
    eventually(Duration::from_secs(5), || {
        let c = watcher.cache().get(&name("pushed"));
        async move { c }
    })
    .await;
    client.drop_table(&name("pushed"), false).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        ev.event,
        Some(pb::route_event::Event::TableDropped(_))
    ));
    eventually(Duration::from_secs(5), || {
        let gone = watcher.cache().get(&name("pushed")).is_none();
        async move { gone.then_some(()) }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clusters_are_managed_independently_over_http() {
    let server = start(memory_config()).await;
    let base = format!("http://{}", server.http_addr);
    let body = serde_json::json!({"name": "analytics", "shard_count": 4, "replication_factor": 1, "min_nodes": 1});
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = http(
        reqwest::Method::GET,
        format!("{base}/api/v1/clusters"),
        None,
    )
    .await;
    let names: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["config"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["analytics", "default"]);
    // A node joins `analytics` only; default keeps no shards.
    let mut c = node_config(&server, "a", 0, 1);
    c.cluster = "analytics".into();
    let node = meridian_sim::node::SimNode::start(c);
    node.agent
        .registered(Duration::from_secs(10))
        .await
        .unwrap();
    let analytics = server.meta.cluster("analytics").unwrap();
    eventually(Duration::from_secs(5), || {
        let n = analytics.shard_entries().len();
        async move { (n == 4).then_some(()) }
    })
    .await;
    assert!(server
        .meta
        .cluster("default")
        .unwrap()
        .shard_entries()
        .is_empty());
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters/analytics/tables"),
        Some(serde_json::json!({"name": "events"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = http(
        reqwest::Method::GET,
        format!("{base}/api/v1/clusters/analytics/routes/default/public/events"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["partitions"][0]["leader"]["endpoint"], "127.0.0.1:30000");
    let (status, _) = http(reqwest::Method::GET, format!("{base}/health"), None).await;
    assert_eq!(status, 200);
    let (status, page) = http(reqwest::Method::GET, format!("{base}/"), None).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("<title>Meridian</title>"));
    let (_, metrics) = http(reqwest::Method::GET, format!("{base}/metrics"), None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("meridian_tables{cluster=\"analytics\"} 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_zones_degrade_placement_openly_with_a_metric() {
    let server = start(memory_config()).await;
    let base = format!("http://{}", server.http_addr);
    let body = serde_json::json!({"name": "twozones", "shard_count": 4, "replication_factor": 3, "min_nodes": 3, "isolation": "zone"});
    let (status, v) = http(
        reqwest::Method::POST,
        format!("{base}/api/v1/clusters"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut c = node_config(&server, "tz", i, 2); // zones 0, 1, 0
        c.cluster = "twozones".into();
        nodes.push(meridian_sim::node::SimNode::start(c));
    }
    let cluster = server.meta.cluster("twozones").unwrap();
    eventually(Duration::from_secs(10), || {
        let n = cluster.shard_entries().len();
        async move { (n == 4).then_some(()) }
    })
    .await;
    // Placement went on (3 replicas on 3 nodes) and said so.
    for e in cluster.shard_entries() {
        assert_eq!(e.shard.replicas.len(), 3);
    }
    let metrics = eventually(Duration::from_secs(5), || {
        let base = base.clone();
        async move {
            let (_, m) = http(reqwest::Method::GET, format!("{base}/metrics"), None).await;
            let text = m.as_str()?.to_string();
            let line = text
                .lines()
                .find(|l| l.starts_with("meridian_shards_domain_degraded{cluster=\"twozones\"}"))?
                .to_string();
            let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
            (value > 0.0).then_some(text)
        }
    })
    .await;
    assert!(
        metrics.contains("meridian_domain_violations_total"),
        "placement warning counted"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_route_is_refreshed_when_the_node_refuses() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    let nodes = start_nodes(&server, "st", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await; // no watch: only the lazy path can refresh
    client
        .create_table(&name("kv"), &PartitionRule::None, false)
        .await
        .unwrap();
    let route = client.route(&name("kv")).await.unwrap();
    let shard = route.partitions[0].shard.clone().unwrap();
    let old_leader = shard.leader.clone().unwrap().node_id;
    let new_leader = shard.followers[0].node_id;
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let (s, v) = http(
        reqwest::Method::POST,
        format!("{base}/shards/{}/transfer-leader", shard.shard_id),
        Some(serde_json::json!({"to": new_leader.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let id = meridian_model::ShardId(shard.shard_id);
    let holder = |node: u64| {
        nodes
            .iter()
            .find(|n| n.agent.status().node_id == Some(node))
            .unwrap()
    };
    eventually(Duration::from_secs(10), || {
        let led = holder(new_leader).shards.shards().get(&id).map(|s| s.role);
        async move { (led == Some(ReplicaRole::Leader)).then_some(()) }
    })
    .await;
    // The cache still names the old leader; a "write" there is refused as stale, the
    // route is fetched again and the write goes to the new leader.
    assert_eq!(
        client.cache().get(&name("kv")).unwrap().partitions[0]
            .shard
            .as_ref()
            .unwrap()
            .leader
            .as_ref()
            .unwrap()
            .node_id,
        old_leader
    );
    let mut tried = Vec::new();
    let result = client
        .with_route(
            &name("kv"),
            |e: &String| e == "not leader",
            |route| {
                let leader = route.partitions[0]
                    .shard
                    .as_ref()
                    .unwrap()
                    .leader
                    .as_ref()
                    .unwrap()
                    .node_id;
                tried.push(leader);
                let leads = holder(leader).shards.shards().get(&id).map(|s| s.role)
                    == Some(ReplicaRole::Leader);
                async move {
                    if leads {
                        Ok(leader)
                    } else {
                        Err("not leader".to_string())
                    }
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(result, Ok(new_leader));
    assert_eq!(tried, vec![old_leader, new_leader]);
    server.shutdown().await;
}

/// Each cluster has a scheduling loop of its own: a cluster whose round is stuck (held at
/// a failpoint here; in life, a long full pass over a huge cluster) delays no other
/// cluster's failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_cluster_does_not_delay_another_clusters_failover() {
    let mut config = memory_config();
    fast_liveness(&mut config);
    let server = start(config).await;
    server
        .meta
        .create_cluster(meridian_model::ClusterConfig {
            name: "other".into(),
            shard_count: 4,
            replication_factor: 3,
            min_nodes: 3,
            isolation: meridian_model::IsolationLevel::Zone,
            placement: meridian_model::PlacementMode::Spread,
            config_fingerprint: String::new(),
            shared_storage: false,
        })
        .await
        .unwrap();
    let addr = server.grpc_addr.to_string();
    let mut nodes = start_nodes(&server, "st", 4, 3).await;
    let _others = start_nodes_in(&addr, "other", "ot", 3, 36200, |_| (20, 100)).await;
    shards_ready(&server, &nodes).await;
    pause_balancing(&server).await;
    settled(&server).await;
    let other = server.meta.cluster("other").unwrap();
    eventually(Duration::from_secs(10), || {
        let ready = other.has_shards();
        async move { ready.then_some(()) }
    })
    .await;

    // Hold the other cluster's round, then kill a leader in the default cluster.
    let gate = other.failpoints().pause("schedule.tick");
    gate.reached().await;
    let cluster = server.meta.cluster("default").unwrap();
    let at = nodes
        .iter()
        .position(|n| !n.shards.leaders().is_empty())
        .expect("a node leads something");
    let victim = nodes.remove(at);
    let victim_id = meridian_model::NodeId(victim.agent.status().node_id.unwrap());
    let led = victim.shards.leaders();
    victim.agent.kill();
    eventually(Duration::from_secs(15), || {
        let moved = led.iter().all(|s| {
            cluster.shard(*s).and_then(|s| s.leader()).is_some_and(|l| {
                l != victim_id
                    && nodes.iter().any(|n| {
                        n.agent.status().node_id == Some(l.0)
                            && n.agent.leases().writable(*s).is_ok()
                    })
            })
        });
        async move { moved.then_some(()) }
    })
    .await;
    gate.release();
    server.shutdown().await;
}
