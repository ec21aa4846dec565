//! The nodes: `ctl nodes`, `ctl node show`, and taking a node out of service (`drain`
//! with its `--wait`, `cordon`, `uncordon`, `evict-leaders`, `unevict-leaders`,
//! `remove`); and every node's name by id, for the other commands' human output.

use super::http::Http;
use super::output::{cell, print_table, rows};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `ctl node ...`.
#[derive(Subcommand, Debug)]
pub(super) enum NodeCmd {
    /// Its labels, state, load and every shard it holds (with its role there).
    Show {
        /// Name, id, or node-4.
        node: String,
    },
}

/// Flags of `ctl drain`.
#[derive(Args, Debug)]
pub(super) struct Drain {
    /// Node id or name.
    node: String,
    /// Wait until it holds no replica, printing progress.
    #[arg(long)]
    wait: bool,
}

/// The node of `ctl cordon`, `uncordon`, `evict-leaders`, `unevict-leaders` and `remove`.
#[derive(Args, Debug)]
pub(super) struct NodeName {
    /// Node id or name.
    node: String,
}

/// Every node of `cluster`.
pub(super) async fn list(http: &Http, cluster: &str) -> Result<Value, String> {
    http.get_all(&format!("/api/v1/clusters/{cluster}/nodes"), "nodes")
        .await
}

/// Every node's name by id.
pub(super) async fn node_names(http: &Http, cluster: &str) -> Result<HashMap<u64, String>, String> {
    let nodes = list(http, cluster).await?;
    Ok(nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_u64()?, n["name"].as_str()?.to_string())))
        .collect())
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

impl NodeCmd {
    /// `node show`: the node, and every shard it holds with its role there.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let NodeCmd::Show { node: key } = self;
        let nodes = list(http, cluster).await?;
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
}

impl Drain {
    /// Starts the drain; with `--wait`, follows it to its end (progress on stderr unless
    /// `quiet`).
    pub(super) async fn request(
        &self,
        http: &Http,
        cluster: &str,
        quiet: bool,
    ) -> Result<Value, String> {
        let started = action(http, cluster, &self.node, "drain").await;
        match started {
            Ok(v) if self.wait => wait_drained(http, cluster, &self.node, quiet)
                .await
                .map(|_| v),
            other => other,
        }
    }
}

impl NodeName {
    /// `POST .../nodes/NODE/{what}`: `cordon`, `uncordon`, `evict-leaders`,
    /// `unevict-leaders` or `remove`.
    pub(super) async fn request(
        &self,
        http: &Http,
        cluster: &str,
        what: &str,
    ) -> Result<Value, String> {
        action(http, cluster, &self.node, what).await
    }
}

async fn action(http: &Http, cluster: &str, node: &str, action: &str) -> Result<Value, String> {
    http.call(
        reqwest::Method::POST,
        &format!("/api/v1/clusters/{cluster}/nodes/{node}/{action}"),
        None,
    )
    .await
}

/// `drain --wait`: polls until the node holds no replica, printing each change of what is
/// left (to stderr, so `--json` output stays one document).
async fn wait_drained(http: &Http, cluster: &str, key: &str, quiet: bool) -> Result<(), String> {
    let mut last = None;
    loop {
        let nodes = list(http, cluster).await?;
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

/// What a node action left: the node's name, id and flags, and the replicas it holds.
pub(super) fn action_summary(v: &Value) -> String {
    let n = &v["node"];
    let mut flags = Vec::new();
    for (key, word) in [
        ("cordoned", "cordoned"),
        ("draining", "draining"),
        ("evict_leaders", "evicting leaders"),
        ("removed", "removed"),
    ] {
        if n[key].as_bool() == Some(true) {
            flags.push(word);
        }
    }
    let flags = if flags.is_empty() {
        "schedulable".to_string()
    } else {
        flags.join(", ")
    };
    format!(
        "node {} (node-{}): {flags}; holds {} replicas",
        cell(&n["name"]),
        cell(&n["id"]),
        cell(&v["replicas"])
    )
}

/// Prints `nodes`' answer.
pub(super) fn print_list(v: &Value) {
    print_table(
        &[
            "id", "name", "endpoint", "zone", "state", "shards", "leaders", "cordoned", "draining",
            "evicting", "wu/s",
        ],
        rows(
            &v["nodes"],
            &[
                "/id",
                "/name",
                "/endpoint",
                "/labels/zone",
                "/state",
                "/shards",
                "/leaders",
                "/cordoned",
                "/draining",
                "/evict_leaders",
                "/stats/write_units_per_sec",
            ],
        ),
    )
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
