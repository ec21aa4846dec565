//! Running the cluster: `ctl check` (shards with problems), schedulers and their pauses,
//! maintenance mode, runtime settings (`ctl config`), and the config fingerprint nodes
//! must present.

use super::http::Http;
use super::output::{cell, print_table, rows};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

/// The problems `ctl check` can be asked about alone, as the server names them.
const PROBLEMS: [&str; 5] = [
    "leaderless",
    "waiting_for_in_sync_follower",
    "replica_down",
    "under_replicated",
    "domain_violation",
];

/// Flags of `ctl check`.
#[derive(Args, Debug)]
pub(super) struct Check {
    /// Only this problem.
    problem: Option<String>,
}

/// Flags of `ctl pause-scheduler`.
#[derive(Args, Debug)]
pub(super) struct PauseScheduler {
    /// Scheduler name (see `schedulers`).
    name: String,
}

/// Flags of `ctl resume-scheduler`.
#[derive(Args, Debug)]
pub(super) struct ResumeScheduler {
    /// Scheduler name.
    name: String,
}

/// Flags of `ctl set-fingerprint`.
#[derive(Args, Debug)]
pub(super) struct SetFingerprint {
    /// The fingerprint.
    fingerprint: String,
}

/// `ctl config ...`.
#[derive(Subcommand, Debug)]
pub(super) enum ConfigAction {
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

/// Flags of `ctl maintenance`.
#[derive(Args, Debug)]
pub(super) struct Maintenance {
    /// on or off.
    #[arg(value_parser = ["on", "off"])]
    mode: String,
}

impl Check {
    /// The cluster's health, narrowed to `problem` if one is named.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let mut v = http
            .get(&format!("/api/v1/clusters/{cluster}/health"))
            .await?;
        if let Some(p) = &self.problem {
            if !PROBLEMS.contains(&p.as_str()) {
                return Err(format!(
                    "unknown problem {p:?}; one of: {}",
                    PROBLEMS.join(", ")
                ));
            }
            let only = v["problems"].get(p.as_str()).cloned();
            v["problems"] = match only {
                Some(found) => json!({ p.clone(): found }),
                None => json!({}),
            };
        }
        Ok(v)
    }
}

/// Whether `check`'s answer names a problem (its exit code says so too, for scripts).
pub(super) fn has_problems(v: &Value) -> bool {
    v["problems"].as_object().is_some_and(|p| !p.is_empty())
}

/// Every scheduler and whether it is paused.
pub(super) async fn schedulers(http: &Http, cluster: &str) -> Result<Value, String> {
    http.get(&format!("/api/v1/clusters/{cluster}/schedulers"))
        .await
}

/// `POST .../schedulers/{name}/{what}`: `pause` or `resume`.
async fn scheduler_action(
    http: &Http,
    cluster: &str,
    name: &str,
    what: &str,
) -> Result<Value, String> {
    http.call(
        Method::POST,
        &format!("/api/v1/clusters/{cluster}/schedulers/{name}/{what}"),
        None,
    )
    .await
}

impl PauseScheduler {
    /// Pauses it.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        scheduler_action(http, cluster, &self.name, "pause").await
    }
}

impl ResumeScheduler {
    /// Resumes it.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        scheduler_action(http, cluster, &self.name, "resume").await
    }
}

/// What a pause or resume did, in one line, and the server's warning if it gave one.
pub(super) fn scheduler_summary(v: &Value) -> String {
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

impl SetFingerprint {
    /// Sets it.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({ "fingerprint": self.fingerprint });
        http.call(
            Method::PUT,
            &format!("/api/v1/clusters/{cluster}/fingerprint"),
            Some(body),
        )
        .await
    }

    /// What it is now, in one line.
    pub(super) fn summary(v: &Value) -> String {
        format!(
            "config fingerprint set to {:?}",
            v["config_fingerprint"].as_str().unwrap_or("")
        )
    }
}

impl ConfigAction {
    /// Reads, sets or resets.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let path = format!("/api/v1/clusters/{cluster}/config");
        match self {
            ConfigAction::Show => http.get(&path).await,
            ConfigAction::Set { key, value } => {
                let body = json!({"key": key, "value": value});
                http.call(Method::PUT, &path, Some(body)).await
            }
            ConfigAction::Reset { key } => {
                http.call(Method::DELETE, &format!("{path}/{key}"), None)
                    .await
            }
        }
    }

    /// Prints the answer: `show`'s table, or one line for what `set` or `reset` did.
    pub(super) fn print(&self, v: &Value) {
        match self {
            ConfigAction::Show => print_config(v),
            ConfigAction::Set { .. } => {
                let mut line = format!("{} set to {}", cell(&v["key"]), cell(&v["value"]));
                for w in v["warnings"].as_array().into_iter().flatten() {
                    line.push_str(&format!("\nWARNING: {}", cell(w)));
                }
                println!("{line}");
            }
            ConfigAction::Reset { .. } => println!(
                "{} back to the configuration file's {}",
                cell(&v["key"]),
                cell(&v["value"])
            ),
        }
    }
}

impl Maintenance {
    /// Turns it on or off.
    pub(super) async fn request(&self, http: &Http, cluster: &str) -> Result<Value, String> {
        let body = json!({"enabled": self.mode == "on"});
        http.call(
            Method::PUT,
            &format!("/api/v1/clusters/{cluster}/maintenance"),
            Some(body),
        )
        .await
    }

    /// What is in force now, in one line.
    pub(super) fn summary(v: &Value) -> String {
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
}

/// Prints `check`'s answer: counts, then each problem with its shards and what to do.
pub(super) fn print_check(v: &Value) {
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

/// Prints `schedulers`' answer.
pub(super) fn print_schedulers(v: &Value) {
    println!("maintenance: {}", cell(&v["maintenance"]));
    print_table(
        &["scheduler", "paused"],
        rows(&v["schedulers"], &["/name", "/paused"]),
    );
}

/// Prints `config show`'s answer: maintenance and pauses, then every setting.
fn print_config(v: &Value) {
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
