//! The shards and the operators that change them: `ctl shards`, `ctl shard show`, the
//! manual operators (`transfer-leader`, `force-promote`, `move-shard`, `split-shard`,
//! `merge-shards`), `ctl operators` and `ctl cancel-operator`.

use super::http::Http;
use super::output::{cell, print_table};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

/// `ctl shard ...`.
#[derive(Subcommand, Debug)]
pub(super) enum ShardCmd {
    /// Its leader, followers, health, log positions and recent operators.
    Show {
        /// Shard id (`3` or `shard-3`).
        #[arg(value_parser = parse_shard)]
        shard: u32,
    },
}

/// Flags of `ctl transfer-leader`.
#[derive(Args, Debug)]
pub(super) struct TransferLeader {
    /// Shard id (`3` or `shard-3`, as logs print it).
    #[arg(value_parser = parse_shard)]
    shard: u32,
    /// Target node (id or name).
    to: String,
}

/// Flags of `ctl force-promote`.
#[derive(Args, Debug)]
pub(super) struct ForcePromote {
    /// Shard id (`3` or `shard-3`, as logs print it).
    #[arg(value_parser = parse_shard)]
    shard: u32,
    /// The follower to promote (node id or name).
    node: String,
    /// Who asks, for the log and the operator history (default: $USER).
    #[arg(long, env = "USER", default_value = "")]
    by: String,
}

/// Flags of `ctl move-shard`.
#[derive(Args, Debug)]
pub(super) struct MoveShard {
    /// Shard id (`3` or `shard-3`, as logs print it).
    #[arg(value_parser = parse_shard)]
    shard: u32,
    /// Node holding the replica (id or name).
    from: String,
    /// Target node (id or name).
    to: String,
    /// Do it even if two replicas end up in one failure domain while a free one exists
    /// (repair will move one back).
    #[arg(long)]
    force: bool,
}

/// Flags of `ctl split-shard`.
#[derive(Args, Debug)]
pub(super) struct SplitShard {
    /// Shard id (`3` or `shard-3`, as logs print it).
    #[arg(value_parser = parse_shard)]
    shard: u32,
}

/// Flags of `ctl merge-shards`.
#[derive(Args, Debug)]
pub(super) struct MergeShards {
    /// Shard that receives the partitions.
    #[arg(value_parser = parse_shard)]
    into: u32,
    /// Shard that gives them and disappears.
    #[arg(value_parser = parse_shard)]
    from: u32,
}

/// Flags of `ctl operators`.
#[derive(Args, Debug)]
pub(super) struct Operators {
    /// Show finished operators too.
    #[arg(long)]
    history: bool,
}

/// Flags of `ctl cancel-operator`.
#[derive(Args, Debug)]
pub(super) struct CancelOperator {
    /// Operator id (`5` or `op-5`).
    #[arg(value_parser = parse_operator)]
    id: u64,
}

/// A shard id as typed: `3`, or `shard-3` as logs and `ctl` print it.
fn parse_shard(s: &str) -> Result<u32, String> {
    s.strip_prefix("shard-")
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not a shard id (3 or shard-3)"))
}

/// An operator id as typed: `5`, or `op-5` as logs print it.
fn parse_operator(s: &str) -> Result<u64, String> {
    s.strip_prefix("op-")
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not an operator id (5 or op-5)"))
}

/// Every shard of `cluster`.
pub(super) async fn list(http: &Http, cluster: &str) -> Result<Value, String> {
    http.get_all(&format!("/api/v1/clusters/{cluster}/shards"), "shards")
        .await
}

impl ShardCmd {
    /// `shard show`: the shard as `shards` lists it, with the operators working on it.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let ShardCmd::Show { shard } = *self;
        let shards = list(http, cluster).await?;
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
}

/// `POST .../shards/{shard}/{what}` with `body`: starts an operator.
async fn start(
    http: &Http,
    cluster: &str,
    shard: u32,
    what: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    http.call(
        Method::POST,
        &format!("/api/v1/clusters/{cluster}/shards/{shard}/{what}"),
        body,
    )
    .await
}

impl TransferLeader {
    /// Starts the transfer.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({"to": self.to});
        start(http, cluster, self.shard, "transfer-leader", Some(body)).await
    }
}

impl ForcePromote {
    /// Starts the promotion.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({"to": self.node, "by": self.by});
        start(http, cluster, self.shard, "force-promote", Some(body)).await
    }
}

impl MoveShard {
    /// Starts the move.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({"from": self.from, "to": self.to, "force": self.force});
        start(http, cluster, self.shard, "move", Some(body)).await
    }
}

impl SplitShard {
    /// Starts the split.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        start(http, cluster, self.shard, "split", None).await
    }
}

impl MergeShards {
    /// Starts the merge.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({"with": self.from});
        start(http, cluster, self.into, "merge", Some(body)).await
    }
}

impl Operators {
    /// The running operators (and the finished ones with `--history`).
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        http.get_all(
            &format!(
                "/api/v1/clusters/{cluster}/operators?history={}",
                self.history
            ),
            "operators",
        )
        .await
    }
}

impl CancelOperator {
    /// Cancels it.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        http.call(
            Method::DELETE,
            &format!("/api/v1/clusters/{cluster}/operators/{}", self.id),
            None,
        )
        .await
    }

    /// What was cancelled, in one line.
    pub(super) fn summary(&self) -> String {
        format!("cancelled op-{}", self.id)
    }
}

/// What a manual operator command started, in one line.
pub(super) fn started_summary(v: &Value) -> String {
    format!(
        "started op-{} (follow it with `meridian ctl operators`)",
        cell(&v["operator"])
    )
}

/// Prints `shards`' answer.
pub(super) fn print_list(v: &Value) {
    let list = v["shards"].as_array().cloned().unwrap_or_default();
    let rows = list
        .iter()
        .map(|sh| {
            // Its problems (worst first), as the server judges them.
            let problems: Vec<String> = sh["health"]
                .as_array()
                .map(|a| a.iter().map(cell).collect())
                .unwrap_or_default();
            let state = if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join(",")
            };
            let applied: Vec<String> = sh["positions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| format!("{}:{}", cell(&p["node"]), cell(&p["applied"])))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                cell(&sh["id"]),
                cell(&sh["version"]),
                cell(&sh["leader"]),
                cell(&sh["followers"]),
                cell(&sh["partitions"]),
                cell(&sh["stats"]["write_units_per_sec"]),
                cell(&sh["committed"]),
                applied.join(","),
                state.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "shard",
            "version",
            "leader",
            "followers",
            "partitions",
            "wu/s",
            "committed",
            "applied",
            "state",
        ],
        rows,
    );
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

/// Prints `operators`' answer: the running ones, then the history if asked for.
pub(super) fn print_operators(v: &Value) {
    let headers = [
        "id", "shard", "kind", "state", "step", "steps", "age_ms", "reason",
    ];
    print_table(&headers, operator_rows(&v["operators"]));
    if let Some(h) = v.get("history") {
        println!("\nhistory (newest last):");
        print_table(&headers, operator_rows(h));
    }
}

/// One line per operator, steps written as `add_follower(node=6) -> remove_replica(node=3)`.
fn operator_rows(list: &Value) -> Vec<Vec<String>> {
    let step = |st: &Value| {
        let name = cell(&st["step"]);
        let args: Vec<String> = ["from", "to", "node", "on"]
            .iter()
            .filter_map(|k| st.get(*k).map(|v| format!("{k}={}", cell(v))))
            .collect();
        format!("{name}({})", args.join(","))
    };
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    let steps: Vec<String> = o["steps"]
                        .as_array()
                        .map(|s| s.iter().map(step).collect())
                        .unwrap_or_default();
                    let state = match o["state"].get("reason") {
                        Some(r) => format!("{} ({})", cell(&o["state"]["state"]), cell(r)),
                        None => cell(&o["state"]["state"]),
                    };
                    vec![
                        cell(&o["id"]),
                        cell(&o["shard"]),
                        cell(&o["kind"]),
                        state,
                        cell(&o["current"]),
                        steps.join(" -> "),
                        cell(&o["age_ms"]),
                        cell(&o["reason"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default()
}
