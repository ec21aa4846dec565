//! `ctl servers`, `ctl clusters` and `ctl create-cluster`: the Meridian servers themselves
//! and the clusters they hold.

use super::http::Http;
use super::output::{cell, print_table, rows};
use clap::Args;
use serde_json::{json, Value};

/// Flags of `ctl create-cluster`.
#[derive(Args, Debug)]
pub(super) struct CreateCluster {
    /// Cluster name.
    name: String,
    /// Number of shards.
    #[arg(long, default_value_t = 8)]
    shards: u32,
    /// Replicas per shard.
    #[arg(long, default_value_t = 3)]
    replicas: u32,
    /// Nodes needed before shards are created.
    #[arg(long, default_value_t = 3)]
    min_nodes: u32,
    /// Use copyset placement with this scatter width.
    #[arg(long)]
    copyset_scatter_width: Option<u32>,
    /// The shards' data lives on shared (object) storage: failover may promote or
    /// reopen any live replica whatever its log position.
    #[arg(long)]
    shared_storage: bool,
}

impl CreateCluster {
    /// Asks for the cluster.
    pub(super) async fn request(&self, http: &Http) -> Result<Value, String> {
        let placement = match self.copyset_scatter_width {
            Some(s) => json!({"mode": "copyset", "scatter_width": s}),
            None => json!({"mode": "spread"}),
        };
        let body = json!({"name": self.name, "shard_count": self.shards, "replication_factor": self.replicas,
            "min_nodes": self.min_nodes, "placement": placement, "shared_storage": self.shared_storage});
        http.call(reqwest::Method::POST, "/api/v1/clusters", Some(body))
            .await
    }

    /// What was created, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        format!(
            "created cluster {} (id {}): {} shards, {} replicas each",
            self.name,
            cell(&v["id"]),
            cell(&v["config"]["shard_count"]),
            cell(&v["config"]["replication_factor"])
        )
    }
}

/// Every cluster.
pub(super) async fn list(http: &Http) -> Result<Value, String> {
    http.get("/api/v1/clusters").await
}

/// Asks each address's `/health` (answered by leader and followers alike).
pub(super) async fn servers(http: &Http) -> Value {
    let mut list = Vec::new();
    for base in http.addrs() {
        let url = format!("{}/health", http.tls.url(base));
        let health = match http.client.get(&url).send().await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(e) => serde_json::json!({ "role": "unreachable", "error": e.to_string() }),
        };
        list.push(serde_json::json!({
            "addr": base,
            "server": health["server"],
            "role": health["role"],
            "term": health["term"],
            "leader": health["leader"]["name"],
            "leader_grpc_addr": health["leader"]["grpc_addr"],
        }));
    }
    serde_json::json!({ "servers": list })
}

/// Prints `servers`' answer.
pub(super) fn print_servers(v: &Value) {
    print_table(
        &["addr", "server", "role", "term", "leader", "leader gRPC"],
        v["servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        vec![
                            cell(&s["addr"]),
                            cell(&s["server"]),
                            cell(&s["role"]),
                            cell(&s["term"]),
                            cell(&s["leader"]),
                            cell(&s["leader_grpc_addr"]),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Prints `clusters`' answer.
pub(super) fn print_list(v: &Value) {
    print_table(
        &[
            "id",
            "name",
            "shards",
            "replicas",
            "shared_storage",
            "nodes",
            "online",
            "tables",
        ],
        rows(
            &v["clusters"],
            &[
                "/id",
                "/config/name",
                "/config/shard_count",
                "/config/replication_factor",
                "/config/shared_storage",
                "/nodes",
                "/nodes_online",
                "/tables",
            ],
        ),
    )
}
