//! `ctl node show`, `ctl shard show`, and node names in human output: ids stay in `--json`
//! (scripts), people read names.

use super::{cell, print_table, Http};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Every node's name by id.
pub(super) async fn node_names(http: &Http, cluster: &str) -> Result<HashMap<u64, String>, String> {
    let nodes = http
        .get_all(&format!("/api/v1/clusters/{cluster}/nodes"), "nodes")
        .await?;
    Ok(nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_u64()?, n["name"].as_str()?.to_string())))
        .collect())
}

/// Replaces the node ids in `v` (a shard, an operator step, a position) with names, under
/// the keys that hold node ids.
pub(super) fn name_nodes(v: &mut Value, names: &HashMap<u64, String>) {
    const NODE_KEYS: [&str; 6] = ["leader", "followers", "node", "from", "to", "on"];
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if NODE_KEYS.contains(&k.as_str()) {
                    rename(child, names);
                } else {
                    name_nodes(child, names);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|c| name_nodes(c, names)),
        _ => {}
    }
}

fn rename(v: &mut Value, names: &HashMap<u64, String>) {
    match v {
        Value::Number(n) => {
            if let Some(name) = n.as_u64().and_then(|id| names.get(&id)) {
                *v = json!(name);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|c| rename(c, names)),
        _ => {}
    }
}

/// The node named `key` (a name, an id, `node-4` or `#4`).
fn find_node<'a>(nodes: &'a Value, key: &str) -> Option<&'a Value> {
    let id = key
        .trim_start_matches("node-")
        .trim_start_matches('#')
        .parse::<u64>()
        .ok();
    let list = nodes["nodes"].as_array()?;
    list.iter()
        .find(|n| n["name"] == key)
        .or_else(|| list.iter().find(|n| id.is_some() && n["id"].as_u64() == id))
}

/// `drain --wait`: polls until the node holds no replica, printing each change of what is
/// left (to stderr, so `--json` output stays one document).
pub(super) async fn wait_drained(
    http: &Http,
    cluster: &str,
    key: &str,
    quiet: bool,
) -> Result<(), String> {
    let mut last = None;
    loop {
        let nodes = http
            .get_all(&format!("/api/v1/clusters/{cluster}/nodes"), "nodes")
            .await?;
        let node = find_node(&nodes, key)
            .ok_or_else(|| format!("node {key:?} is gone from cluster {cluster}"))?;
        let left = (
            node["shards"].as_u64().unwrap_or(0),
            node["leaders"].as_u64().unwrap_or(0),
        );
        if last != Some(left) && !quiet {
            eprintln!(
                "draining {}: {} replicas left ({} leaders)",
                cell(&node["name"]),
                left.0,
                left.1
            );
        }
        if left.0 == 0 {
            if !quiet {
                eprintln!(
                    "{} holds no replica: `meridian ctl remove {}` takes it out",
                    cell(&node["name"]),
                    cell(&node["name"])
                );
            }
            return Ok(());
        }
        last = Some(left);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `node show`: the node, and every shard it holds with its role there.
pub(super) async fn node_show(http: &Http, cluster: &str, key: &str) -> Result<Value, String> {
    let nodes = http
        .get_all(&format!("/api/v1/clusters/{cluster}/nodes"), "nodes")
        .await?;
    let node = find_node(&nodes, key).cloned().ok_or_else(|| {
        format!("no node {key:?} in cluster {cluster} (see `meridian ctl nodes`)")
    })?;
    let id = node["id"].as_u64().unwrap_or(0);
    let shards = http
        .get_all(&format!("/api/v1/clusters/{cluster}/shards"), "shards")
        .await?;
    let held: Vec<Value> = shards["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let role = if s["leader"].as_u64() == Some(id) {
                "leader"
            } else if s["followers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x.as_u64() == Some(id)))
            {
                "follower"
            } else {
                return None;
            };
            Some(json!({"shard": s["id"], "role": role, "version": s["version"], "health": s["health"]}))
        })
        .collect();
    Ok(json!({ "node": node, "shards": held }))
}

/// `shard show`: the shard as `shards` lists it, with the operators working on it.
pub(super) async fn shard_show(http: &Http, cluster: &str, shard: u32) -> Result<Value, String> {
    let shards = http
        .get_all(&format!("/api/v1/clusters/{cluster}/shards"), "shards")
        .await?;
    let found = shards["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"].as_u64() == Some(u64::from(shard)))
        .cloned()
        .ok_or_else(|| {
            format!("no shard-{shard} in cluster {cluster} (see `meridian ctl shards`)")
        })?;
    let ops = http
        .get_all(
            &format!("/api/v1/clusters/{cluster}/operators?history=true"),
            "operators",
        )
        .await?;
    let on_it: Vec<Value> = ops["operators"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["shard"].as_u64() == Some(u64::from(shard)))
        .cloned()
        .collect();
    Ok(json!({ "shard": found, "operators": on_it }))
}

/// Prints `node show`'s answer (names already put in).
pub(super) fn print_node(v: &Value) {
    let n = &v["node"];
    println!(
        "{} (node-{}) at {}",
        cell(&n["name"]),
        cell(&n["id"]),
        cell(&n["endpoint"])
    );
    let labels = &n["labels"];
    println!(
        "  state {}{}{}{} · zone {} rack {} host {}",
        cell(&n["state"]),
        if n["cordoned"] == true {
            ", cordoned"
        } else {
            ""
        },
        if n["draining"] == true {
            ", draining"
        } else {
            ""
        },
        if n["evict_leaders"] == true {
            ", evicting leaders"
        } else {
            ""
        },
        cell(&labels["zone"]),
        cell(&labels["rack"]),
        cell(&labels["host"])
    );
    println!(
        "  {} replicas, {} leaders · load {} write + {} read units/s",
        cell(&n["shards"]),
        cell(&n["leaders"]),
        cell(&n["stats"]["write_units_per_sec"]),
        cell(&n["stats"]["read_units_per_sec"])
    );
    let rows = v["shards"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    let health = s["health"].as_array().filter(|h| !h.is_empty());
                    vec![
                        format!("shard-{}", cell(&s["shard"])),
                        cell(&s["role"]),
                        cell(&s["version"]),
                        health.map_or("ok".into(), |h| {
                            h.iter().map(cell).collect::<Vec<_>>().join(",")
                        }),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print_table(&["shard", "role", "version", "health"], rows);
}

/// Prints `shard show`'s answer (names already put in).
pub(super) fn print_shard(v: &Value) {
    let s = &v["shard"];
    let health = s["health"].as_array().filter(|h| !h.is_empty());
    println!(
        "shard-{} v{}: {}",
        cell(&s["id"]),
        cell(&s["version"]),
        health.map_or("healthy".into(), |h| h
            .iter()
            .map(cell)
            .collect::<Vec<_>>()
            .join(", "))
    );
    println!("  leader:    {}", cell(&s["leader"]));
    println!("  followers: {}", cell(&s["followers"]));
    println!(
        "  {} partitions · {} write units/s · committed log position {}",
        cell(&s["partitions"]),
        cell(&s["stats"]["write_units_per_sec"]),
        cell(&s["committed"])
    );
    if let Some(p) = s["positions"].as_array().filter(|p| !p.is_empty()) {
        let applied: Vec<String> = p
            .iter()
            .map(|x| format!("{} {}", cell(&x["node"]), cell(&x["applied"])))
            .collect();
        println!("  applied:   {}", applied.join(", "));
    }
    let ops = v["operators"].as_array().cloned().unwrap_or_default();
    if ops.is_empty() {
        println!("  no operator has worked on it lately");
    } else {
        println!("  operators (newest last):");
        for o in ops {
            println!(
                "    op-{} {} {}: {}",
                cell(&o["id"]),
                cell(&o["kind"]),
                cell(&o["state"]["state"]),
                cell(&o["reason"])
            );
        }
    }
}
