//! `meridian ctl`: an admin client over the HTTP API (like pd-ctl). Readable tables by
//! default; `--json` prints the server's JSON answer as is.

use super::CmdResult;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Flags of `meridian ctl`.
mod show;
#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Meridian HTTP addresses, comma-separated (the first that answers; a follower
    /// redirects to the leader)
    #[arg(
        long,
        env = "MERIDIAN_HTTP",
        default_value = "127.0.0.1:7701",
        global = true
    )]
    addr: String,
    /// Cluster to act on
    #[arg(long, default_value = "default", global = true)]
    cluster: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Meridian gRPC addresses, comma-separated (for `watch-routes`)
    #[arg(
        long,
        env = "MERIDIAN_GRPC",
        default_value = "127.0.0.1:7700",
        global = true
    )]
    grpc: String,
    /// Token for a server run with `--tokens` (role reader for reads, admin for changes)
    #[arg(long, env = "MERIDIAN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: super::ClientTlsArgs,
    #[command(subcommand)]
    command: CtlCommand,
}

/// A table as `ctl` names it: its full name, `GET .../tables/...` and its route.
async fn table_and_route(
    http: &Http,
    cluster: &str,
    table: &str,
) -> Result<(String, Value, Value), String> {
    let (cat, sch, t) = split_table(table);
    let found = http
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/clusters/{cluster}/tables/{cat}/{sch}/{t}"),
            None,
        )
        .await?;
    let route = http
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/clusters/{cluster}/routes/{cat}/{sch}/{t}"),
            None,
        )
        .await?;
    Ok((format!("{cat}.{sch}.{t}"), found, route))
}

/// The `authorization` header for `token`, if any.
fn auth_headers(token: Option<&str>) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| "the token must be printable ASCII".to_string())?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Every Meridian server named in --addr: reachable or not, its role (leader or
    /// follower), term, and the leader it names (from each server's /health).
    Servers,
    /// List clusters.
    Clusters,
    /// Create a cluster.
    CreateCluster {
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
    },
    /// List nodes with state, shard and leader counts.
    Nodes,
    /// One node: `node show NODE` (a name, an id or node-4).
    Node {
        #[command(subcommand)]
        action: NodeCmd,
    },
    /// One shard: `shard show SHARD` (3 or shard-3).
    Shard {
        #[command(subcommand)]
        action: ShardCmd,
    },
    /// List shards with leader, followers, version, committed log position and health
    /// (`ok`, or its problems: see `check`).
    Shards,
    /// Shards with problems, by problem, with what to do (like `pd-ctl region check`):
    /// leaderless, waiting_for_in_sync_follower, replica_down, under_replicated,
    /// domain_violation.
    Check {
        /// Only this problem.
        problem: Option<String>,
    },
    /// List tables.
    Tables {
        /// Only this schema.
        #[arg(long)]
        schema: Option<String>,
        /// Only tables whose names start with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Show where a table's partitions live.
    Route {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
    },
    /// Create a schema.
    CreateSchema {
        /// Schema as `name` or `catalog.name`.
        schema: String,
        /// Succeed if it exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Change a table's definition: one of --add-column, --drop-column, --set-option /
    /// --unset-option.
    AlterTable {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
        /// A column to add, as `name:type` (new columns must be nullable or have a default).
        #[arg(long, conflicts_with_all = ["drop_column", "set_option", "unset_option"])]
        add_column: Option<String>,
        /// A column to drop.
        #[arg(long, conflicts_with_all = ["set_option", "unset_option"])]
        drop_column: Option<String>,
        /// An option to set, as `key=value`; repeat for each.
        #[arg(long)]
        set_option: Vec<String>,
        /// An option to remove; repeat for each.
        #[arg(long)]
        unset_option: Vec<String>,
    },
    /// Drop a schema (refused while it holds tables, unless --cascade).
    DropSchema {
        /// Schema as `name` or `catalog.name`.
        schema: String,
        /// Drop its tables first.
        #[arg(long)]
        cascade: bool,
        /// Succeed if it does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Drop a catalog (every schema in it).
    DropCatalog {
        /// Catalog name.
        catalog: String,
        /// Drop its tables first.
        #[arg(long)]
        cascade: bool,
        /// Succeed if it does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Where a row lives: its partition (by the documented function), shard, leader and
    /// followers.
    Locate {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
        /// The row's partition-column values, in column order.
        #[arg(required = true)]
        key: Vec<String>,
    },
    /// Show a table: its definition, and where each partition lives.
    Describe {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
    },
    /// Create a table.
    CreateTable {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
        /// Hash partitions.
        #[arg(long)]
        partitions: Option<u32>,
        /// Range partitions: `column:bound1,bound2,...`.
        #[arg(long, conflicts_with = "partitions")]
        range: Option<String>,
        /// A column as `name:type`, or `name:type:not_null` for one that must hold a value;
        /// repeat for each (types: see docs/http-api.md).
        #[arg(long = "column")]
        columns: Vec<String>,
        /// Primary key columns, comma-separated.
        #[arg(long)]
        primary_key: Option<String>,
        /// The time index column.
        #[arg(long)]
        time_index: Option<String>,
        /// A table option as `key=value`; repeat for each.
        #[arg(long = "option")]
        options: Vec<String>,
        /// Succeed if it exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Drop a table.
    DropTable {
        /// Table as `name`, `schema.name` or `catalog.schema.name`.
        table: String,
        /// Succeed if it does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List running operators (and recent history with --history).
    Operators {
        /// Show finished operators too.
        #[arg(long)]
        history: bool,
    },
    /// Cancel a running operator.
    CancelOperator {
        /// Operator id (`5` or `op-5`).
        #[arg(value_parser = parse_operator)]
        id: u64,
    },
    /// List schedulers and whether they are paused.
    Schedulers,
    /// Pause a scheduler by name.
    PauseScheduler {
        /// Scheduler name (see `schedulers`).
        name: String,
    },
    /// Resume a scheduler by name.
    ResumeScheduler {
        /// Scheduler name.
        name: String,
    },
    /// Set the config fingerprint nodes must present to join the cluster ("" accepts any).
    /// Registered nodes are checked when they next register.
    SetFingerprint {
        /// The fingerprint.
        fingerprint: String,
    },
    /// Runtime settings (scheduler tuning, operator limits, liveness timeouts), like
    /// `pd-ctl config`: stored, kept across restarts, applied at once.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Maintenance mode: only failover and repair run.
    Maintenance {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// Move a shard's leadership to another node holding a replica.
    TransferLeader {
        /// Shard id (`3` or `shard-3`, as logs print it).
        #[arg(value_parser = parse_shard)]
        shard: u32,
        /// Target node (id or name).
        to: String,
    },
    /// Promote a follower of a shard whose leader is down although it is behind the
    /// shard's committed log (for a shard waiting for an in-sync follower): what it has not
    /// applied is lost. Logged and kept in the operator history.
    ForcePromote {
        /// Shard id (`3` or `shard-3`, as logs print it).
        #[arg(value_parser = parse_shard)]
        shard: u32,
        /// The follower to promote (node id or name).
        node: String,
        /// Who asks, for the log and the operator history (default: $USER).
        #[arg(long, env = "USER", default_value = "")]
        by: String,
    },
    /// Move a shard's replica from one node to another.
    MoveShard {
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
    },
    /// Split a shard: half of its partitions go to a new shard on other nodes.
    SplitShard {
        /// Shard id (`3` or `shard-3`, as logs print it).
        #[arg(value_parser = parse_shard)]
        shard: u32,
    },
    /// Merge shard `from` into shard `into` (`from` is deleted).
    MergeShards {
        /// Shard that receives the partitions.
        #[arg(value_parser = parse_shard)]
        into: u32,
        /// Shard that gives them and disappears.
        #[arg(value_parser = parse_shard)]
        from: u32,
    },
    /// The event log: node state changes, refused registrations, operators, DDL, admin
    /// actions, with times (newest last).
    Events {
        /// How many of the newest to show.
        #[arg(long, default_value_t = 30)]
        limit: usize,
        /// Then keep printing events as they happen (until Ctrl-C, or `--count`).
        #[arg(long)]
        follow: bool,
        /// With --follow: stop after this many new events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Follow route changes as Meridian pushes them (leader moves, new and dropped tables).
    WatchRoutes {
        /// Stop after this many events (default: until Ctrl-C).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Move every replica off a node.
    Drain {
        /// Node id or name.
        node: String,
        /// Wait until it holds no replica, printing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Stop new placements on a node.
    Cordon {
        /// Node id or name.
        node: String,
    },
    /// Allow placements on a node again.
    Uncordon {
        /// Node id or name.
        node: String,
    },
    /// Move every leadership off a node (before a planned restart); it keeps its followers.
    EvictLeaders {
        /// Node id or name.
        node: String,
    },
    /// Let a node lead again after `evict-leaders`.
    UnevictLeaders {
        /// Node id or name.
        node: String,
    },
    /// Remove a drained node from the cluster.
    Remove {
        /// Node id or name.
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Its labels, state, load and every shard it holds (with its role there).
    Show {
        /// Name, id, or node-4.
        node: String,
    },
}

#[derive(Subcommand, Debug)]
enum ShardCmd {
    /// Its leader, followers, health, log positions and recent operators.
    Show {
        /// Shard id (`3` or `shard-3`).
        #[arg(value_parser = parse_shard)]
        shard: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Every setting: in force, the configuration file's value, whether set at runtime;
    /// with maintenance mode and paused schedulers.
    Show,
    /// Sets one (`scheduler.hot_threshold 0.5`, `liveness.phi_threshold none`); warns
    /// when the value puts something at risk.
    Set {
        /// The setting, as `config show` lists it.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Goes back to the configuration file's value.
    Reset {
        /// The setting.
        key: String,
    },
}

struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Whether addresses without a scheme mean `https://`.
    tls: super::ClientTlsArgs,
}

impl Http {
    /// `GET path` with every page of the list under `key` followed and joined: the first
    /// page's answer, with `key` holding every entry.
    async fn get_all(&self, path: &str, key: &str) -> Result<Value, String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut first: Option<Value> = None;
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(
                    reqwest::Method::GET,
                    &format!("{path}{sep}limit=10000&page_token={token}"),
                    None,
                )
                .await?;
            all.extend(page[key].as_array().cloned().unwrap_or_default());
            token = page["next_page_token"].as_str().unwrap_or("").to_string();
            first.get_or_insert(page);
            if token.is_empty() {
                break;
            }
        }
        let mut v = first.unwrap_or_else(|| json!({}));
        v[key] = Value::Array(all);
        if let Some(o) = v.as_object_mut() {
            o.remove("next_page_token");
        }
        Ok(v)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        // Several servers: the first that answers (a follower redirects to the leader).
        let mut unreachable = Vec::new();
        let mut answered = None;
        for base in self
            .base
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            let base = self.tls.url(base);
            let url = format!("{base}{path}");
            let mut req = self.client.request(method.clone(), &url);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    answered = Some(resp);
                    break;
                }
                Err(e) => unreachable.push(format!("{base}: {e}")),
            }
        }
        let resp = answered.ok_or_else(|| format!("{UNREACHABLE} {}", unreachable.join("; ")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string();
            let code = value["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string();
            Err(format!("{status} {code}: {msg}"))
        }
    }
}

/// A table definition from `create-table`'s flags (the server validates it).
fn definition_from_flags(
    columns: &[String],
    primary_key: Option<&str>,
    time_index: Option<&str>,
    options: &[String],
) -> Result<Value, String> {
    let columns = columns
        .iter()
        .map(|c| {
            let parts: Vec<&str> = c.split(':').collect();
            match parts.as_slice() {
                [name, ty] => Ok(json!({"name": name, "type": ty})),
                [name, ty, "not_null"] => Ok(json!({"name": name, "type": ty, "nullable": false})),
                _ => Err(format!(
                    "--column wants name:type or name:type:not_null, got {c:?}"
                )),
            }
        })
        .collect::<Result<Vec<Value>, String>>()?;
    let options = options
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .ok_or_else(|| format!("--option wants key=value, got {o:?}"))
        })
        .collect::<Result<serde_json::Map<String, Value>, String>>()?;
    let primary_key: Vec<&str> = primary_key
        .map(|k| k.split(',').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default();
    let mut def = json!({"columns": columns, "primary_key": primary_key, "options": options});
    if let Some(t) = time_index {
        def["time_index"] = json!(t);
    }
    Ok(def)
}

/// `catalog.schema` or `schema` (in the default catalog).
fn split_schema(s: &str) -> (String, String) {
    s.split_once('.')
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .unwrap_or_else(|| ("default".into(), s.to_string()))
}

fn split_table(t: &str) -> (String, String, String) {
    let parts: Vec<&str> = t.split('.').collect();
    match parts.as_slice() {
        [c, s, n] => (c.to_string(), s.to_string(), n.to_string()),
        [s, n] => ("default".into(), s.to_string(), n.to_string()),
        _ => ("default".into(), "public".into(), t.to_string()),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows as an aligned table.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(headers.iter().map(|h| h.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r));
    }
}

fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|item| {
                    fields
                        .iter()
                        .map(|f| cell(&item.pointer(f).cloned().unwrap_or(Value::Null)))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one ctl command.
pub async fn run(args: CtlArgs) -> CmdResult {
    let http = Http {
        // A server that accepts the connection and never answers must not hang ctl: the
        // next address (if any) is tried.
        client: args
            .tls
            .http_client()?
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(10))
            .default_headers(auth_headers(args.token.as_deref())?)
            .build()?,
        base: args.addr.clone(),
        token: args.token.clone(),
        tls: args.tls.clone(),
    };
    let c = &args.cluster;
    use reqwest::Method as M;
    let result = match &args.command {
        CtlCommand::Servers => Ok(servers(&http).await),
        CtlCommand::Clusters => http.call(M::GET, "/api/v1/clusters", None).await,
        CtlCommand::CreateCluster {
            name,
            shards,
            replicas,
            min_nodes,
            copyset_scatter_width,
            shared_storage,
        } => {
            let placement = match copyset_scatter_width {
                Some(s) => json!({"mode": "copyset", "scatter_width": s}),
                None => json!({"mode": "spread"}),
            };
            let body = json!({"name": name, "shard_count": shards, "replication_factor": replicas,
                "min_nodes": min_nodes, "placement": placement, "shared_storage": shared_storage});
            http.call(M::POST, "/api/v1/clusters", Some(body)).await
        }
        CtlCommand::Nodes => {
            http.get_all(&format!("/api/v1/clusters/{c}/nodes"), "nodes")
                .await
        }
        CtlCommand::Check { problem } => {
            let mut v = http
                .call(M::GET, &format!("/api/v1/clusters/{c}/health"), None)
                .await?;
            if let Some(p) = problem {
                let known = [
                    "leaderless",
                    "waiting_for_in_sync_follower",
                    "replica_down",
                    "under_replicated",
                    "domain_violation",
                ];
                if !known.contains(&p.as_str()) {
                    return Err(format!(
                        "unknown problem {p:?}; one of: {}",
                        known.join(", ")
                    )
                    .into());
                }
                let only = v["problems"].get(p.as_str()).cloned();
                v["problems"] = match only {
                    Some(found) => json!({ p.clone(): found }),
                    None => json!({}),
                };
            }
            Ok(v)
        }
        CtlCommand::Shards => {
            http.get_all(&format!("/api/v1/clusters/{c}/shards"), "shards")
                .await
        }
        CtlCommand::Node {
            action: NodeCmd::Show { node },
        } => show::node_show(&http, c, node).await,
        CtlCommand::Shard {
            action: ShardCmd::Show { shard },
        } => show::shard_show(&http, c, *shard).await,
        CtlCommand::Tables { schema, prefix } => {
            let q = format!(
                "?schema={}&prefix={}",
                schema.as_deref().unwrap_or(""),
                prefix.as_deref().unwrap_or("")
            );
            http.get_all(&format!("/api/v1/clusters/{c}/tables{q}"), "tables")
                .await
        }
        CtlCommand::Route { table } => {
            let (cat, sch, t) = split_table(table);
            http.call(
                M::GET,
                &format!("/api/v1/clusters/{c}/routes/{cat}/{sch}/{t}"),
                None,
            )
            .await
        }
        CtlCommand::CreateSchema {
            schema,
            if_not_exists,
        } => {
            let (catalog, name) = split_schema(schema);
            let body = json!({"catalog": catalog, "name": name, "if_not_exists": if_not_exists});
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/schemas"),
                Some(body),
            )
            .await
        }
        CtlCommand::AlterTable {
            table,
            add_column,
            drop_column,
            set_option,
            unset_option,
        } => {
            let (cat, sch, t) = split_table(table);
            let change = if let Some(c) = add_column {
                let def = definition_from_flags(std::slice::from_ref(c), None, None, &[])?;
                json!({"add_column": def["columns"][0]})
            } else if let Some(c) = drop_column {
                json!({"drop_column": c})
            } else if !set_option.is_empty() || !unset_option.is_empty() {
                let mut options = serde_json::Map::new();
                for o in set_option {
                    let (k, v) = o
                        .split_once('=')
                        .ok_or_else(|| format!("--set-option wants key=value, got {o:?}"))?;
                    options.insert(k.to_string(), json!(v));
                }
                for k in unset_option {
                    options.insert(k.clone(), Value::Null);
                }
                json!({"set_options": options})
            } else {
                return Err(
                    "alter-table needs --add-column, --drop-column, --set-option or --unset-option"
                        .into(),
                );
            };
            http.call(
                M::PATCH,
                &format!("/api/v1/clusters/{c}/tables/{cat}/{sch}/{t}"),
                Some(change),
            )
            .await
        }
        CtlCommand::DropCatalog {
            catalog,
            cascade,
            if_exists,
        } => {
            http.call(
                M::DELETE,
                &format!("/api/v1/clusters/{c}/catalogs/{catalog}?cascade={cascade}&if_exists={if_exists}"),
                None,
            )
            .await
        }
        CtlCommand::DropSchema {
            schema,
            cascade,
            if_exists,
        } => {
            let (catalog, name) = split_schema(schema);
            http.call(
                M::DELETE,
                &format!("/api/v1/clusters/{c}/schemas/{catalog}/{name}?cascade={cascade}&if_exists={if_exists}"),
                None,
            )
            .await
        }
        CtlCommand::Locate { table, key } => {
            let (name, found, route) = table_and_route(&http, c, table).await?;
            let rule: meridian_model::PartitionRule =
                serde_json::from_value(found["table"]["rule"].clone()).map_err(|e| {
                    format!("the server sent a partition rule this ctl cannot read: {e}")
                })?;
            let key: Vec<&str> = key.iter().map(String::as_str).collect();
            let partition = rule.partition_of(&key);
            let at = route["partitions"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["partition"] == partition))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(json!({
                "table": name,
                "key": key,
                "partition": partition,
                "shard": at["shard"],
                "version": at["version"],
                "leader": at["leader"],
                "followers": at["followers"],
            }))
        }
        CtlCommand::Describe { table } => {
            let (name, found, route) = table_and_route(&http, c, table).await?;
            let table = &found["table"];
            Ok(json!({
                "table": name,
                "id": table["id"],
                "rule": table["rule"],
                "definition": table["definition"],
                "partitions": route["partitions"],
            }))
        }
        CtlCommand::CreateTable {
            table,
            partitions,
            range,
            columns,
            primary_key,
            time_index,
            options,
            if_not_exists,
        } => {
            let definition = definition_from_flags(
                columns,
                primary_key.as_deref(),
                time_index.as_deref(),
                options,
            )?;
            let (cat, sch, t) = split_table(table);
            let partition = match (partitions, range) {
                (Some(n), _) => json!({"kind": "hash", "count": n, "columns": []}),
                (None, Some(r)) => {
                    let (col, bounds) =
                        r.split_once(':').ok_or("--range wants column:b1,b2,...")?;
                    let bounds: Vec<&str> = bounds.split(',').filter(|b| !b.is_empty()).collect();
                    json!({"kind": "range", "column": col, "bounds": bounds})
                }
                _ => json!({"kind": "none"}),
            };
            let body = json!({"catalog": cat, "schema": sch, "name": t, "partition": partition, "definition": definition, "if_not_exists": if_not_exists});
            http.call(M::POST, &format!("/api/v1/clusters/{c}/tables"), Some(body))
                .await
        }
        CtlCommand::DropTable { table, if_exists } => {
            let (cat, sch, t) = split_table(table);
            http.call(
                M::DELETE,
                &format!("/api/v1/clusters/{c}/tables/{cat}/{sch}/{t}?if_exists={if_exists}"),
                None,
            )
            .await
        }
        CtlCommand::Operators { history } => {
            http.get_all(
                &format!("/api/v1/clusters/{c}/operators?history={history}"),
                "operators",
            )
            .await
        }
        CtlCommand::CancelOperator { id } => {
            http.call(
                M::DELETE,
                &format!("/api/v1/clusters/{c}/operators/{id}"),
                None,
            )
            .await
        }
        CtlCommand::Schedulers => {
            http.call(M::GET, &format!("/api/v1/clusters/{c}/schedulers"), None)
                .await
        }
        CtlCommand::PauseScheduler { name } => {
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/schedulers/{name}/pause"),
                None,
            )
            .await
        }
        CtlCommand::ResumeScheduler { name } => {
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/schedulers/{name}/resume"),
                None,
            )
            .await
        }
        CtlCommand::SetFingerprint { fingerprint } => {
            let body = json!({ "fingerprint": fingerprint });
            http.call(
                M::PUT,
                &format!("/api/v1/clusters/{c}/fingerprint"),
                Some(body),
            )
            .await
        }
        CtlCommand::Config { action } => {
            let path = format!("/api/v1/clusters/{c}/config");
            match action {
                ConfigAction::Show => http.call(M::GET, &path, None).await,
                ConfigAction::Set { key, value } => {
                    let body = json!({"key": key, "value": value});
                    http.call(M::PUT, &path, Some(body)).await
                }
                ConfigAction::Reset { key } => {
                    http.call(M::DELETE, &format!("{path}/{key}"), None).await
                }
            }
        }
        CtlCommand::Maintenance { mode } => {
            let body = json!({"enabled": mode == "on"});
            http.call(
                M::PUT,
                &format!("/api/v1/clusters/{c}/maintenance"),
                Some(body),
            )
            .await
        }
        CtlCommand::TransferLeader { shard, to } => {
            let body = json!({"to": to});
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/shards/{shard}/transfer-leader"),
                Some(body),
            )
            .await
        }
        CtlCommand::ForcePromote { shard, node, by } => {
            let body = json!({"to": node, "by": by});
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/shards/{shard}/force-promote"),
                Some(body),
            )
            .await
        }
        CtlCommand::MoveShard {
            shard,
            from,
            to,
            force,
        } => {
            let body = json!({"from": from, "to": to, "force": force});
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/shards/{shard}/move"),
                Some(body),
            )
            .await
        }
        CtlCommand::SplitShard { shard } => {
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/shards/{shard}/split"),
                None,
            )
            .await
        }
        CtlCommand::MergeShards { into, from } => {
            let body = json!({"with": from});
            http.call(
                M::POST,
                &format!("/api/v1/clusters/{c}/shards/{into}/merge"),
                Some(body),
            )
            .await
        }
        CtlCommand::WatchRoutes { count } => return watch_routes(&args, *count).await,
        CtlCommand::Events {
            limit,
            follow,
            count,
        } => {
            let page = http
                .call(
                    M::GET,
                    &format!("/api/v1/events?cluster={c}&limit={limit}"),
                    None,
                )
                .await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            for e in &events {
                print_event(e, args.json);
            }
            if *follow {
                follow_events(&http, c, *count, args.json).await?;
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        CtlCommand::Drain { node, wait } => {
            let started = node_action(&http, c, node, "drain").await;
            match started {
                Ok(v) if *wait => show::wait_drained(&http, c, node, args.json).await.map(|_| v),
                other => other,
            }
        }
        CtlCommand::Cordon { node } => node_action(&http, c, node, "cordon").await,
        CtlCommand::Uncordon { node } => node_action(&http, c, node, "uncordon").await,
        CtlCommand::EvictLeaders { node } => node_action(&http, c, node, "evict-leaders").await,
        CtlCommand::UnevictLeaders { node } => node_action(&http, c, node, "unevict-leaders").await,
        CtlCommand::Remove { node } => node_action(&http, c, node, "remove").await,
    };
    let mut value = match result {
        Ok(v) => v,
        Err(e) => {
            if args.json {
                println!("{}", json!({"error": e}));
            } else {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(if e.starts_with(UNREACHABLE) {
                EXIT_UNREACHABLE
            } else {
                EXIT_REFUSED
            }));
        }
    };
    // `check` answers whether something is wrong in its exit code too, for scripts.
    let code = match &args.command {
        CtlCommand::Check { .. }
            if value["problems"].as_object().is_some_and(|p| !p.is_empty()) =>
        {
            ExitCode::from(EXIT_PROBLEMS)
        }
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(code);
    }
    // People read node names where the API has ids.
    if matches!(
        &args.command,
        CtlCommand::Shards
            | CtlCommand::Node { .. }
            | CtlCommand::Shard { .. }
            | CtlCommand::Operators { .. }
    ) {
        if let Ok(names) = show::node_names(&http, c).await {
            show::name_nodes(&mut value, &names);
        }
    }
    render(&args.command, &value);
    Ok(code)
}

/// The beginning of the error when no server answered.
const UNREACHABLE: &str = "cannot reach Meridian at";
/// Exit code: the server refused or failed the request (its message is printed).
const EXIT_REFUSED: u8 = 1;
/// Exit code: no server could be reached. (2 is a usage error, from the flag parser.)
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code of `check` when some shard has a problem.
const EXIT_PROBLEMS: u8 = 4;

/// Prints each route event on one line (or as JSON).
async fn watch_routes(args: &CtlArgs, count: Option<usize>) -> CmdResult {
    use meridian_proto::route_event::Event;
    let addrs: Vec<String> = args.grpc.split(',').map(|a| a.trim().to_string()).collect();
    let client = meridian_client::MetaClient::connect_with(
        &addrs,
        &args.cluster,
        args.token.as_deref(),
        args.tls.client_tls()?.as_ref(),
    )
    .await?;
    let mut stream = client.subscribe_routes().await?;
    if !args.json {
        eprintln!(
            "watching routes of cluster {} at {} (Ctrl-C stops)",
            args.cluster, args.grpc
        );
    }
    let mut seen = 0;
    while let Some(event) = stream.message().await? {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let (kind, text, value) = match event.event {
            Some(Event::ShardChanged(s)) => {
                let leader = s
                    .leader
                    .as_ref()
                    .map(|l| format!("node-{} {}", l.node_id, l.endpoint))
                    .unwrap_or_else(|| "none".into());
                let followers: Vec<String> = s
                    .followers
                    .iter()
                    .map(|f| format!("node-{}", f.node_id))
                    .collect();
                let text = format!(
                    "shard-{} v{}: leader {leader}, followers [{}]",
                    s.shard_id,
                    s.version,
                    followers.join(", ")
                );
                let value = json!({"shard": s.shard_id, "version": s.version, "leader": s.leader.map(|l| l.node_id), "followers": s.followers.iter().map(|f| f.node_id).collect::<Vec<_>>()});
                ("shard", text, value)
            }
            Some(Event::TableChanged(t)) => {
                let shards: Vec<String> = t
                    .partitions
                    .iter()
                    .filter_map(|p| p.shard.as_ref().map(|s| s.shard_id.to_string()))
                    .collect();
                let text = format!(
                    "table {}.{}.{} (id {}) on shards [{}]",
                    t.catalog,
                    t.schema,
                    t.table,
                    t.table_id,
                    shards.join(", ")
                );
                (
                    "table",
                    text,
                    json!({"table": t.table, "table_id": t.table_id, "shards": shards}),
                )
            }
            Some(Event::TableDropped(d)) => (
                "dropped",
                format!(
                    "table {}.{}.{} (id {}) dropped",
                    d.catalog, d.schema, d.table, d.table_id
                ),
                json!({"table": d.table, "table_id": d.table_id}),
            ),
            Some(Event::Resync(_)) => (
                "resync",
                "missed events: re-read routes".to_string(),
                json!({}),
            ),
            None => continue,
        };
        if args.json {
            println!(
                "{}",
                json!({"at_ms": now as u64, "event": kind, "detail": value})
            );
        } else {
            let day_ms = now % 86_400_000;
            let (h, m, sec, ms) = (
                day_ms / 3_600_000,
                day_ms / 60_000 % 60,
                day_ms / 1000 % 60,
                day_ms % 1000,
            );
            println!("{h:02}:{m:02}:{sec:02}.{ms:03}Z {text}");
        }
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn node_action(
    http: &Http,
    cluster: &str,
    node: &str,
    action: &str,
) -> Result<Value, String> {
    http.call(
        reqwest::Method::POST,
        &format!("/api/v1/clusters/{cluster}/nodes/{node}/{action}"),
        None,
    )
    .await
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

/// `host:port` or a URL, as a URL without a trailing slash.
/// One event on one line: its time (UTC), kind and message; or its JSON.
fn print_event(e: &Value, json: bool) {
    if json {
        println!("{e}");
        return;
    }
    let at = e["at_ms"].as_u64().map(utc_time).unwrap_or_default();
    println!("{at}  {:<20}  {}", cell(&e["kind"]), cell(&e["message"]));
}

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn utc_time(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Prints events as the server pushes them (server-sent events), `count` at most.
async fn follow_events(
    http: &Http,
    cluster: &str,
    count: Option<usize>,
    json: bool,
) -> Result<(), String> {
    let base = http
        .base
        .split(',')
        .map(str::trim)
        .find(|b| !b.is_empty())
        .map(|b| http.tls.url(b))
        .ok_or("no address")?;
    let url = format!("{base}/api/v1/events/stream?cluster={cluster}");
    // No overall timeout: the stream lasts as long as the user wants.
    let client = http
        .tls
        .http_client()
        .map_err(|e| e.to_string())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .default_headers(auth_headers(http.token.as_deref())?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    let mut pending = String::new();
    let mut seen = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let message: String = pending.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(e) = serde_json::from_str::<Value>(data.trim()) {
                        if e.get("seq").is_some() {
                            print_event(&e, json);
                            seen += 1;
                        }
                    }
                }
            }
            if count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
    }
    Ok(())
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

/// Asks each address's `/health` (answered by leader and followers alike).
async fn servers(http: &Http) -> Value {
    let mut list = Vec::new();
    for base in http
        .base
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
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

fn render(command: &CtlCommand, v: &Value) {
    match command {
        CtlCommand::Locate { .. } => {
            let endpoint = |n: &Value| format!("{} ({})", cell(&n["endpoint"]), cell(&n["zone"]));
            let followers: Vec<String> = v["followers"]
                .as_array()
                .map(|f| f.iter().map(endpoint).collect())
                .unwrap_or_default();
            println!(
                "{} key {}: partition {}, shard-{} v{}",
                cell(&v["table"]),
                v["key"],
                cell(&v["partition"]),
                cell(&v["shard"]),
                cell(&v["version"])
            );
            println!(
                "  leader:    {}",
                if v["leader"].is_null() {
                    "none (failover in progress)".to_string()
                } else {
                    endpoint(&v["leader"])
                }
            );
            println!("  followers: {}", followers.join(", "));
        }
        CtlCommand::Describe { .. } => {
            println!("{} (id {})", cell(&v["table"]), cell(&v["id"]));
            let def = &v["definition"];
            let keys: Vec<&str> = def["primary_key"]
                .as_array()
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let columns = def["columns"].as_array().cloned().unwrap_or_default();
            if columns.is_empty() {
                println!("no definition");
            } else {
                print_table(
                    &["column", "type", "nullable", "default", "key"],
                    columns
                        .iter()
                        .map(|c| {
                            let name = c["name"].as_str().unwrap_or_default();
                            let key = keys
                                .iter()
                                .position(|k| *k == name)
                                .map_or("-".to_string(), |i| format!("pk{}", i + 1));
                            vec![
                                name.to_string(),
                                cell(&c["type"]),
                                cell(&c["nullable"]),
                                cell(&c["default"]),
                                key,
                            ]
                        })
                        .collect(),
                );
                println!(
                    "time index: {}; options: {}; definition version {}",
                    cell(&def["time_index"]),
                    def["options"],
                    cell(&def["version"])
                );
            }
            print_table(
                &["partition", "shard", "version", "leader", "followers"],
                v["partitions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                let node = |r: &Value| cell(&r["node"]);
                                vec![
                                    cell(&p["partition"]),
                                    cell(&p["shard"]),
                                    cell(&p["version"]),
                                    node(&p["leader"]),
                                    p["followers"]
                                        .as_array()
                                        .map(|f| f.iter().map(node).collect::<Vec<_>>().join(","))
                                        .unwrap_or_default(),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        CtlCommand::Servers => print_table(
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
        ),
        CtlCommand::Clusters => print_table(
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
        ),
        CtlCommand::Nodes => print_table(
            &[
                "id", "name", "endpoint", "zone", "state", "shards", "leaders", "cordoned",
                "draining", "evicting", "wu/s",
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
        ),
        CtlCommand::Check { .. } => {
            println!(
                "{} shards: {} healthy, {} with problems",
                cell(&v["shards"]),
                cell(&v["healthy"]),
                cell(&v["unhealthy"])
            );
            if let Some(problems) = v["problems"].as_object() {
                for (name, p) in problems {
                    let shards: Vec<String> = p["shards"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .take(20)
                                .map(|s| format!("shard-{}", cell(s)))
                                .collect()
                        })
                        .unwrap_or_default();
                    let more = p["count"].as_u64().unwrap_or(0).saturating_sub(20);
                    let tail = if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    };
                    println!(
                        "  {name} ({}): {}{tail}",
                        cell(&p["count"]),
                        shards.join(", ")
                    );
                    println!("    what to do: {}", cell(&p["advice"]));
                }
            }
        }
        CtlCommand::Shards => {
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
        CtlCommand::Tables { .. } => {
            let list = v["tables"].as_array().cloned().unwrap_or_default();
            let rows = list
                .iter()
                .map(|t| {
                    let name = format!(
                        "{}.{}.{}",
                        cell(&t["name"]["catalog"]),
                        cell(&t["name"]["schema"]),
                        cell(&t["name"]["table"])
                    );
                    let shards: Vec<String> = t["partitions"]
                        .as_array()
                        .map(|a| a.iter().map(|p| cell(&p["shard"])).collect())
                        .unwrap_or_default();
                    vec![
                        cell(&t["id"]),
                        name,
                        cell(&t["rule"]["kind"]),
                        shards.join(","),
                    ]
                })
                .collect();
            print_table(&["id", "table", "partitioning", "shards"], rows);
        }
        CtlCommand::Route { .. } => {
            println!("{} (id {})", cell(&v["table"]), cell(&v["table_id"]));
            print_table(
                &["partition", "shard", "version", "leader", "followers"],
                v["partitions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                let followers: Vec<String> = p["followers"]
                                    .as_array()
                                    .map(|f| f.iter().map(|x| cell(&x["endpoint"])).collect())
                                    .unwrap_or_default();
                                vec![
                                    cell(&p["partition"]),
                                    cell(&p["shard"]),
                                    cell(&p["version"]),
                                    cell(&p["leader"]["endpoint"]),
                                    followers.join(","),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        CtlCommand::Operators { .. } => {
            let headers = [
                "id", "shard", "kind", "state", "step", "steps", "age_ms", "reason",
            ];
            print_table(&headers, operator_rows(&v["operators"]));
            if let Some(h) = v.get("history") {
                println!("\nhistory (newest last):");
                print_table(&headers, operator_rows(h));
            }
        }
        CtlCommand::Config {
            action: ConfigAction::Show,
        } => {
            println!(
                "cluster {}: maintenance {}, paused schedulers: {}",
                cell(&v["cluster"]),
                if v["maintenance"].as_bool() == Some(true) {
                    "on"
                } else {
                    "off"
                },
                v["paused_schedulers"]
                    .as_array()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.iter().map(cell).collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "none".into())
            );
            let rows = v["settings"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|e| {
                            let source = if e["overridden"].as_bool() == Some(true) {
                                format!("set at runtime (file: {})", cell(&e["file_value"]))
                            } else {
                                "file".to_string()
                            };
                            vec![
                                cell(&e["key"]),
                                cell(&e["value"]),
                                source,
                                cell(&e["about"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["setting", "value", "from", "meaning"], rows);
        }
        CtlCommand::Node { .. } => show::print_node(v),
        CtlCommand::Shard { .. } => show::print_shard(v),
        CtlCommand::Schedulers => {
            println!("maintenance: {}", cell(&v["maintenance"]));
            print_table(
                &["scheduler", "paused"],
                rows(&v["schedulers"], &["/name", "/paused"]),
            );
        }
        other => match summary(other, v) {
            Some(line) => println!("{line}"),
            None => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        },
    }
}

/// One line saying what a mutating command did (`--json` prints the server's answer).
fn summary(command: &CtlCommand, v: &Value) -> Option<String> {
    let done = |flag: &str, yes: String, no: String| {
        if v[flag].as_bool() == Some(true) {
            yes
        } else {
            no
        }
    };
    let operator = || {
        format!(
            "started op-{} (follow it with `meridian ctl operators`)",
            cell(&v["operator"])
        )
    };
    Some(match command {
        CtlCommand::CreateCluster { name, .. } => format!(
            "created cluster {name} (id {}): {} shards, {} replicas each",
            cell(&v["id"]),
            cell(&v["config"]["shard_count"]),
            cell(&v["config"]["replication_factor"])
        ),
        CtlCommand::CreateSchema { schema, .. } => done(
            "created",
            format!("created schema {schema}"),
            format!("schema {schema} exists already; nothing changed"),
        ),
        CtlCommand::CreateTable { table, .. } => done(
            "created",
            format!(
                "created table {table} (id {}, {} partitions)",
                cell(&v["table"]["id"]),
                v["table"]["partitions"].as_array().map_or(0, Vec::len)
            ),
            format!("table {table} exists already; nothing changed"),
        ),
        CtlCommand::AlterTable { table, .. } => format!(
            "altered table {table}: definition version {}",
            cell(&v["table"]["definition"]["version"])
        ),
        CtlCommand::DropTable { table, .. } => done(
            "dropped",
            format!("dropped table {table}"),
            format!("no table {table}; nothing dropped"),
        ),
        CtlCommand::DropSchema { schema, .. } => done(
            "dropped",
            format!("dropped schema {schema}"),
            format!("no schema {schema}; nothing dropped"),
        ),
        CtlCommand::DropCatalog { catalog, .. } => done(
            "dropped",
            format!("dropped catalog {catalog}"),
            format!("no catalog {catalog}; nothing dropped"),
        ),
        CtlCommand::CancelOperator { id } => format!("cancelled op-{id}"),
        CtlCommand::PauseScheduler { .. } | CtlCommand::ResumeScheduler { .. } => {
            let state = if v["paused"].as_bool() == Some(true) {
                "paused"
            } else {
                "resumed"
            };
            let mut line = format!("scheduler {} {state}", cell(&v["scheduler"]));
            if let Some(w) = v["warning"].as_str() {
                line.push_str(&format!("\nWARNING: {w}"));
            }
            line
        }
        CtlCommand::Config {
            action: ConfigAction::Set { .. },
        } => {
            let mut line = format!("{} set to {}", cell(&v["key"]), cell(&v["value"]));
            for w in v["warnings"].as_array().into_iter().flatten() {
                line.push_str(&format!("\nWARNING: {}", cell(w)));
            }
            line
        }
        CtlCommand::Config {
            action: ConfigAction::Reset { .. },
        } => format!(
            "{} back to the configuration file's {}",
            cell(&v["key"]),
            cell(&v["value"])
        ),
        CtlCommand::SetFingerprint { .. } => format!(
            "config fingerprint set to {:?}",
            v["config_fingerprint"].as_str().unwrap_or("")
        ),
        CtlCommand::Maintenance { .. } => {
            let on = v["maintenance"].as_bool() == Some(true);
            format!(
                "maintenance mode {}",
                if on {
                    "on: only failover and repair run"
                } else {
                    "off"
                }
            )
        }
        CtlCommand::TransferLeader { .. }
        | CtlCommand::ForcePromote { .. }
        | CtlCommand::MoveShard { .. }
        | CtlCommand::SplitShard { .. }
        | CtlCommand::MergeShards { .. } => operator(),
        CtlCommand::Drain { .. }
        | CtlCommand::Cordon { .. }
        | CtlCommand::Uncordon { .. }
        | CtlCommand::EvictLeaders { .. }
        | CtlCommand::UnevictLeaders { .. }
        | CtlCommand::Remove { .. } => {
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
        _ => return None,
    })
}
