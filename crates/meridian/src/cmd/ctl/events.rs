//! Following what happens: `ctl events` (the event log, and with `--follow` its live
//! stream of server-sent events) and `ctl watch-routes` (route changes pushed over gRPC).

use super::http::Http;
use super::output::cell;
use super::CtlArgs;
use crate::cmd::CmdResult;
use clap::Args;
use serde_json::{json, Value};
use std::process::ExitCode;

/// Flags of `ctl events`.
#[derive(Args, Debug)]
pub(super) struct Events {
    /// How many of the newest to show.
    #[arg(long, default_value_t = 30)]
    limit: usize,
    /// Then keep printing events as they happen (until Ctrl-C, or `--count`).
    #[arg(long)]
    follow: bool,
    /// With --follow: stop after this many new events.
    #[arg(long)]
    count: Option<usize>,
}

/// Flags of `ctl watch-routes`.
#[derive(Args, Debug)]
pub(super) struct WatchRoutes {
    /// Stop after this many events (default: until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

impl Events {
    /// Prints the newest events, then (with `--follow`) the new ones as they happen.
    pub(super) async fn run(&self, http: &Http, cluster: &str, json: bool) -> CmdResult {
        let limit = self.limit;
        let page = match http
            .get(&format!("/api/v1/events?cluster={cluster}&limit={limit}"))
            .await
        {
            Ok(page) => page,
            // Refused or unreachable: the exit code says which, as for every command.
            Err(e) => return Ok(super::http::print_failure(&e, json)),
        };
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            print_event(e, json);
        }
        if self.follow {
            follow_events(http, cluster, self.count, json).await?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl WatchRoutes {
    /// Prints each route event on one line (or as JSON), over gRPC (`--grpc`).
    pub(super) async fn run(&self, args: &CtlArgs) -> CmdResult {
        let count = self.count;
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
}

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
        .addrs()
        .next()
        .map(|b| http.tls.url(b))
        .ok_or("no address")?;
    let url = format!("{base}/api/v1/events/stream?cluster={cluster}");
    // No overall timeout: the stream lasts as long as the user wants.
    let client = http
        .tls
        .http_client()
        .map_err(|e| e.to_string())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .default_headers(http.auth_headers()?)
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
