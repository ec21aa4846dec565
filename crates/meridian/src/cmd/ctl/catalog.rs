//! The catalog: reading it (`ctl tables`, `route`, `describe`, `locate`) and changing it
//! (`create-schema`, `create-table`, `alter-table`, `drop-table`, `drop-schema`,
//! `drop-catalog`). Names are typed as `name`, `schema.name` or `catalog.schema.name`.

use super::http::Http;
use super::output::{cell, print_table};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

/// Flags of `ctl tables`.
#[derive(Args, Debug)]
pub(super) struct Tables {
    /// Only this schema.
    #[arg(long)]
    schema: Option<String>,
    /// Only tables whose names start with this.
    #[arg(long)]
    prefix: Option<String>,
}

/// The table of `ctl route` and `ctl describe`.
#[derive(Args, Debug)]
pub(super) struct TableArg {
    /// Table as `name`, `schema.name` or `catalog.schema.name`.
    table: String,
}

/// Flags of `ctl create-schema`.
#[derive(Args, Debug)]
pub(super) struct CreateSchema {
    /// Schema as `name` or `catalog.name`.
    schema: String,
    /// Succeed if it exists.
    #[arg(long)]
    if_not_exists: bool,
}

/// Flags of `ctl alter-table`.
#[derive(Args, Debug)]
pub(super) struct AlterTable {
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
}

/// Flags of `ctl drop-schema`.
#[derive(Args, Debug)]
pub(super) struct DropSchema {
    /// Schema as `name` or `catalog.name`.
    schema: String,
    /// Drop its tables first.
    #[arg(long)]
    cascade: bool,
    /// Succeed if it does not exist.
    #[arg(long)]
    if_exists: bool,
}

/// Flags of `ctl drop-catalog`.
#[derive(Args, Debug)]
pub(super) struct DropCatalog {
    /// Catalog name.
    catalog: String,
    /// Drop its tables first.
    #[arg(long)]
    cascade: bool,
    /// Succeed if it does not exist.
    #[arg(long)]
    if_exists: bool,
}

/// Flags of `ctl locate`.
#[derive(Args, Debug)]
pub(super) struct Locate {
    /// Table as `name`, `schema.name` or `catalog.schema.name`.
    table: String,
    /// The row's partition-column values, in column order.
    #[arg(required = true)]
    key: Vec<String>,
}

/// Flags of `ctl create-table`.
#[derive(Args, Debug)]
pub(super) struct CreateTable {
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
}

/// Flags of `ctl drop-table`.
#[derive(Args, Debug)]
pub(super) struct DropTable {
    /// Table as `name`, `schema.name` or `catalog.schema.name`.
    table: String,
    /// Succeed if it does not exist.
    #[arg(long)]
    if_exists: bool,
}

/// `catalog.schema` or `schema` (in the default catalog).
fn split_schema(s: &str) -> (String, String) {
    s.split_once('.')
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .unwrap_or_else(|| ("default".into(), s.to_string()))
}

/// `catalog.schema.name`, `schema.name` (default catalog) or `name` (`default.public`).
fn split_table(t: &str) -> (String, String, String) {
    let parts: Vec<&str> = t.split('.').collect();
    match parts.as_slice() {
        [c, s, n] => (c.to_string(), s.to_string(), n.to_string()),
        [s, n] => ("default".into(), s.to_string(), n.to_string()),
        _ => ("default".into(), "public".into(), t.to_string()),
    }
}

/// A table as `ctl` names it: its full name, `GET .../tables/...` and its route.
async fn table_and_route(
    http: &Http,
    cluster: &str,
    table: &str,
) -> Result<(String, Value, Value), String> {
    let (cat, sch, t) = split_table(table);
    let found = http
        .get(&format!(
            "/api/v1/clusters/{cluster}/tables/{cat}/{sch}/{t}"
        ))
        .await?;
    let route = http
        .get(&format!(
            "/api/v1/clusters/{cluster}/routes/{cat}/{sch}/{t}"
        ))
        .await?;
    Ok((format!("{cat}.{sch}.{t}"), found, route))
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

/// `yes` if the answer's `flag` is true (something changed), else `no`.
fn done(v: &Value, flag: &str, yes: String, no: String) -> String {
    if v[flag].as_bool() == Some(true) {
        yes
    } else {
        no
    }
}

impl Tables {
    /// The tables, filtered by `--schema` and `--prefix`.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let q = format!(
            "?schema={}&prefix={}",
            self.schema.as_deref().unwrap_or(""),
            self.prefix.as_deref().unwrap_or("")
        );
        http.get_all(&format!("/api/v1/clusters/{cluster}/tables{q}"), "tables")
            .await
    }
}

impl TableArg {
    /// `ctl route`: where the table's partitions live.
    pub(super) async fn route(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (cat, sch, t) = split_table(&self.table);
        http.get(&format!(
            "/api/v1/clusters/{cluster}/routes/{cat}/{sch}/{t}"
        ))
        .await
    }

    /// `ctl describe`: the table's definition, and where each partition lives.
    pub(super) async fn describe(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (name, found, route) = table_and_route(http, cluster, &self.table).await?;
        let table = &found["table"];
        Ok(json!({
            "table": name,
            "id": table["id"],
            "rule": table["rule"],
            "definition": table["definition"],
            "partitions": route["partitions"],
        }))
    }
}

impl CreateSchema {
    /// Asks for the schema.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (catalog, name) = split_schema(&self.schema);
        let body = json!({"catalog": catalog, "name": name, "if_not_exists": self.if_not_exists});
        http.call(
            Method::POST,
            &format!("/api/v1/clusters/{cluster}/schemas"),
            Some(body),
        )
        .await
    }

    /// What was created, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        let schema = &self.schema;
        done(
            v,
            "created",
            format!("created schema {schema}"),
            format!("schema {schema} exists already; nothing changed"),
        )
    }
}

impl AlterTable {
    /// Asks for the one change the flags name.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (cat, sch, t) = split_table(&self.table);
        let change = if let Some(c) = &self.add_column {
            let def = definition_from_flags(std::slice::from_ref(c), None, None, &[])?;
            json!({"add_column": def["columns"][0]})
        } else if let Some(c) = &self.drop_column {
            json!({"drop_column": c})
        } else if !self.set_option.is_empty() || !self.unset_option.is_empty() {
            let mut options = serde_json::Map::new();
            for o in &self.set_option {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("--set-option wants key=value, got {o:?}"))?;
                options.insert(k.to_string(), json!(v));
            }
            for k in &self.unset_option {
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
            Method::PATCH,
            &format!("/api/v1/clusters/{cluster}/tables/{cat}/{sch}/{t}"),
            Some(change),
        )
        .await
    }

    /// What changed, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        format!(
            "altered table {}: definition version {}",
            self.table,
            cell(&v["table"]["definition"]["version"])
        )
    }
}

impl DropCatalog {
    /// Asks for the drop.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let catalog = &self.catalog;
        let path = format!("/api/v1/clusters/{cluster}/catalogs/{catalog}");
        drop_request(http, &path, self.cascade, self.if_exists).await
    }

    /// What was dropped, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        dropped(v, "catalog", &self.catalog)
    }
}

impl DropSchema {
    /// Asks for the drop.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (catalog, name) = split_schema(&self.schema);
        let path = format!("/api/v1/clusters/{cluster}/schemas/{catalog}/{name}");
        drop_request(http, &path, self.cascade, self.if_exists).await
    }

    /// What was dropped, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        dropped(v, "schema", &self.schema)
    }
}

/// `DELETE path?cascade=...&if_exists=...`: drops a catalog or a schema.
async fn drop_request(
    http: &Http,
    path: &str,
    cascade: bool,
    if_exists: bool,
) -> Result<Value, String> {
    http.call(
        Method::DELETE,
        &format!("{path}?cascade={cascade}&if_exists={if_exists}"),
        None,
    )
    .await
}

/// What a drop did, in one line: `dropped KIND NAME`, or that there was none.
fn dropped(v: &Value, kind: &str, name: &str) -> String {
    done(
        v,
        "dropped",
        format!("dropped {kind} {name}"),
        format!("no {kind} {name}; nothing dropped"),
    )
}

impl Locate {
    /// The row's partition (by the documented function, computed here from the table's
    /// rule), and that partition's shard, leader and followers from the route.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (name, found, route) = table_and_route(http, cluster, &self.table).await?;
        let rule: meridian_model::PartitionRule =
            serde_json::from_value(found["table"]["rule"].clone()).map_err(|e| {
                format!("the server sent a partition rule this ctl cannot read: {e}")
            })?;
        let key: Vec<&str> = self.key.iter().map(String::as_str).collect();
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
}

impl CreateTable {
    /// Asks for the table the flags describe.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let definition = definition_from_flags(
            &self.columns,
            self.primary_key.as_deref(),
            self.time_index.as_deref(),
            &self.options,
        )?;
        let (cat, sch, t) = split_table(&self.table);
        let partition = match (&self.partitions, &self.range) {
            (Some(n), _) => json!({"kind": "hash", "count": n, "columns": []}),
            (None, Some(r)) => {
                let (col, bounds) = r.split_once(':').ok_or("--range wants column:b1,b2,...")?;
                let bounds: Vec<&str> = bounds.split(',').filter(|b| !b.is_empty()).collect();
                json!({"kind": "range", "column": col, "bounds": bounds})
            }
            _ => json!({"kind": "none"}),
        };
        let body = json!({"catalog": cat, "schema": sch, "name": t, "partition": partition, "definition": definition, "if_not_exists": self.if_not_exists});
        http.call(
            Method::POST,
            &format!("/api/v1/clusters/{cluster}/tables"),
            Some(body),
        )
        .await
    }

    /// What was created, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        let table = &self.table;
        done(
            v,
            "created",
            format!(
                "created table {table} (id {}, {} partitions)",
                cell(&v["table"]["id"]),
                v["table"]["partitions"].as_array().map_or(0, Vec::len)
            ),
            format!("table {table} exists already; nothing changed"),
        )
    }
}

impl DropTable {
    /// Asks for the drop.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let (cat, sch, t) = split_table(&self.table);
        http.call(
            Method::DELETE,
            &format!(
                "/api/v1/clusters/{cluster}/tables/{cat}/{sch}/{t}?if_exists={}",
                self.if_exists
            ),
            None,
        )
        .await
    }

    /// What was dropped, in one line.
    pub(super) fn summary(&self, v: &Value) -> String {
        dropped(v, "table", &self.table)
    }
}

/// Prints `tables`' answer.
pub(super) fn print_tables(v: &Value) {
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

/// Prints `route`'s answer.
pub(super) fn print_route(v: &Value) {
    println!("{} (id {})", cell(&v["table"]), cell(&v["table_id"]));
    print_partitions(&v["partitions"], "endpoint");
}

/// Prints where each partition of `partitions` lives, naming each replica by its `field`
/// (`endpoint` or `node`).
fn print_partitions(partitions: &Value, field: &str) {
    print_table(
        &["partition", "shard", "version", "leader", "followers"],
        partitions
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let followers: Vec<String> = p["followers"]
                            .as_array()
                            .map(|f| f.iter().map(|x| cell(&x[field])).collect())
                            .unwrap_or_default();
                        vec![
                            cell(&p["partition"]),
                            cell(&p["shard"]),
                            cell(&p["version"]),
                            cell(&p["leader"][field]),
                            followers.join(","),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
}

/// Prints `locate`'s answer.
pub(super) fn print_locate(v: &Value) {
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

/// Prints `describe`'s answer: the columns, then where each partition lives.
pub(super) fn print_describe(v: &Value) {
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
    print_partitions(&v["partitions"], "node");
}
