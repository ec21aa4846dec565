//! `meridian bench route|ddl|heartbeat|failover|takeover`: load against a real server over
//! loopback (`takeover`: against three highly available servers on etcd).
//!
//! Unless `--addr` is given, each bench starts its own `meridian server` process in a
//! temporary directory (embedded redb store), so client and server do not share a process.
//! Each prints a readable summary and, with `--json`, one JSON object as its last line.
//! While it runs, it says on stderr what it is doing and how far it is, once a second
//! (`--quiet`: not at all); stdout holds only the results.

use super::progress::Progress;
use super::CmdResult;
use crate::procs::free_addr;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use meridian_client::{MetaClient, NodeAgentConfig};
use meridian_model::{NodeLabels, PartitionRule, ShardId, TableName};
use meridian_proto as pb;
use meridian_sim::node::SimNode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags of `meridian bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: BenchKind,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// gRPC address of a running server (default: start one in a temp dir).
    #[arg(long)]
    addr: Option<String>,
    /// HTTP address of that server (for metrics and cluster creation).
    #[arg(long)]
    http: Option<String>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Print no progress on stderr (what runs, how far it is, once a second).
    #[arg(long)]
    quiet: bool,
}

impl Common {
    /// Progress on stderr, unless `--quiet`.
    fn progress(&self) -> Progress {
        Progress::new(self.quiet)
    }
}

#[derive(Subcommand, Debug)]
enum BenchKind {
    /// Route lookups: batched throughput and single-table latency.
    Route {
        #[command(flatten)]
        common: Common,
        /// Tables to create and route.
        #[arg(long, default_value_t = 10_000)]
        tables: usize,
        /// Tables per batched request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Instead: keys located per second by the client router from its cache, on one
        /// core (`ops_per_sec`), for a table of 64 hash partitions.
        #[arg(long)]
        locate: bool,
    },
    /// Table creates (durable) with concurrent clients.
    Ddl {
        #[command(flatten)]
        common: Common,
        /// Tables to create.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Creates (or alters) in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Time ALTER TABLE (add a column to each of `count` tables created first) instead
        /// of creates.
        #[arg(long)]
        alter: bool,
        /// Store of the server the bench starts: redb, or etcd (a one-member etcd started
        /// in the temp dir, and the server in highly available mode on it).
        #[arg(long, default_value = "redb", value_parser = ["redb", "etcd"])]
        store: String,
    },
    /// Heartbeats from many simulated nodes, each reporting its shards once a second.
    Heartbeat {
        #[command(flatten)]
        common: Common,
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Shard replicas per node.
        #[arg(long, default_value_t = 50)]
        shards_per_node: usize,
        /// Measured seconds (after every node has its shards).
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// gRPC connections shared by the simulated nodes.
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// Failover: kill the busiest leader repeatedly; time from its last heartbeat until
    /// every shard it led is writable (leased) on the node its route names.
    Failover {
        #[command(flatten)]
        common: Common,
        /// Simulated nodes (3 zones).
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Kills; each is one sample, measured to the last of the shards its victim led.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Shards of a second cluster heartbeating on the same server during the kills
        /// (0: none).
        #[arg(long, default_value_t = 0)]
        neighbour_shards: usize,
        /// Shard replicas per simulated node of that second cluster.
        #[arg(long, default_value_t = 50)]
        neighbour_shards_per_node: usize,
        /// gRPC connections shared by the second cluster's simulated nodes.
        #[arg(long, default_value_t = 32)]
        neighbour_connections: usize,
    },
    /// Takeover: three servers on a local three-member etcd; kill the leader repeatedly
    /// (and optionally pause it, or kill an etcd member); time until DDL is answered again,
    /// and check nothing acknowledged was lost and no node lease lapsed.
    Takeover(super::takeover::TakeoverArgs),
}

/// A `meridian server` child process in a temporary directory, killed on drop (with the
/// etcd it ran on, if any).
struct ServerProcess {
    child: std::process::Child,
    _etcd: Option<meridian_store::etcd::LocalEtcd>,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Target {
    grpc: String,
    http: Option<String>,
    _server: Option<ServerProcess>,
}

async fn target(common: &Common) -> Result<Target, Box<dyn std::error::Error + Send + Sync>> {
    target_on(common, "redb").await
}

/// Like [`target`], with the started server on `store` (`redb`, or `etcd`: a one-member
/// etcd in the temp dir).
async fn target_on(
    common: &Common,
    store: &str,
) -> Result<Target, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(addr) = &common.addr {
        return Ok(Target {
            grpc: addr.clone(),
            http: common.http.clone(),
            _server: None,
        });
    }
    common.progress().say(format!(
        "starting a meridian server (store {store}) in a temp dir..."
    ));
    let dir = tempfile::tempdir()?;
    let (gp, hp) = (free_addr()?.port(), free_addr()?.port());
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["server", "--data-dir"]).arg(dir.path());
    let etcd = if store == "etcd" {
        let etcd_dir = dir.path().join("etcd");
        std::fs::create_dir_all(&etcd_dir)?;
        let etcd = meridian_store::etcd::LocalEtcd::start(1, &etcd_dir).await?;
        command.args([
            "--store",
            "etcd",
            "--etcd-endpoints",
            &etcd.endpoints().join(","),
        ]);
        Some(etcd)
    } else {
        None
    };
    let child = command
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{gp}"),
            "--http-addr",
            &format!("127.0.0.1:{hp}"),
        ])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let server = ServerProcess {
        child,
        _etcd: etcd,
        _dir: dir,
    };
    let http = format!("http://127.0.0.1:{hp}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let health = client.get(format!("{http}/health")).send().await;
        let leading = match health {
            Ok(r) if r.status().is_success() => {
                r.json::<Value>().await.is_ok_and(|v| v["role"] == "leader")
            }
            _ => false,
        };
        if leading {
            return Ok(Target {
                grpc: format!("127.0.0.1:{gp}"),
                http: Some(http),
                _server: Some(server),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the bench server did not come up within 10 s".into())
}

fn labels(i: usize) -> NodeLabels {
    NodeLabels {
        zone: format!("zone-{}", i % 3),
        rack: format!("rack-{}", i % 6),
        host: format!("host-{i}"),
    }
}

async fn start_nodes(
    grpc: &str,
    cluster: &str,
    prefix: &str,
    n: usize,
    connections: usize,
    progress: Progress,
) -> Result<Vec<SimNode>, Box<dyn std::error::Error + Send + Sync>> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(meridian_client::connect_channel(&[grpc.to_string()], None).await?);
    }
    let nodes: Vec<SimNode> = (0..n)
        .map(|i| {
            let mut c = NodeAgentConfig::new(
                grpc,
                format!("{prefix}-{i}"),
                format!("127.0.0.1:{}", 20000 + i),
            );
            c.cluster = cluster.to_string();
            c.labels = labels(i);
            SimNode::start_with_channel(c, Some(channels[i % channels.len()].clone()))
        })
        .collect();
    await_registered(nodes.iter(), n, Duration::from_secs(60), progress).await?;
    Ok(nodes)
}

/// Waits until each of the `n` `nodes` has registered, for at most `within` each.
async fn await_registered<'a>(
    nodes: impl Iterator<Item = &'a SimNode>,
    n: usize,
    within: Duration,
    progress: Progress,
) -> Result<(), String> {
    let (phase, registered) =
        progress.counting(format!("registering {n} simulated nodes"), Some(n), "");
    for node in nodes {
        if node.agent.registered(within).await.is_none() {
            return Err(format!(
                "{} did not register: {:?}",
                node.name,
                node.agent.status().last_error
            ));
        }
        registered.fetch_add(1, Ordering::Relaxed);
    }
    phase.done();
    Ok(())
}

/// Creates cluster `name` of `shards` shards (replication factor 3) through the HTTP admin
/// API, starts `nodes` simulated nodes for it over `connections` shared channels, and waits
/// until every replica is open. Returns the nodes and how long opening took.
async fn start_cluster(
    grpc: &str,
    http: &str,
    name: &str,
    shards: usize,
    nodes: usize,
    connections: usize,
    progress: Progress,
) -> Result<(Vec<SimNode>, Duration), Box<dyn std::error::Error + Send + Sync>> {
    let body = json!({"name": name, "shard_count": shards, "replication_factor": 3, "min_nodes": nodes.max(3)});
    let resp = reqwest::Client::new()
        .post(format!("{http}/api/v1/clusters"))
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!(
            "creating cluster {name}: {}",
            resp.text().await.unwrap_or_default()
        )
        .into());
    }
    let sims = start_nodes(grpc, name, name, nodes, connections, progress).await?;
    let want = shards * 3;
    let settle = Instant::now();
    // Large clusters take a while to place and open; allow a second per 200 replicas.
    let limit = Duration::from_secs(120).max(Duration::from_secs((want / 200) as u64));
    let (phase, opened) =
        progress.counting(format!("opening the replicas of {name}"), Some(want), "");
    loop {
        let held: usize = sims.iter().map(|n| n.shards.shards().len()).sum();
        opened.store(held as u64, Ordering::Relaxed);
        if held >= want {
            phase.done();
            return Ok((sims, settle.elapsed()));
        }
        if settle.elapsed() > limit {
            return Err(format!(
                "only {held} of {want} replicas of {name} opened after {} s",
                limit.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long a cluster must stay quiet before `bench failover` kills beside it.
const QUIET: Duration = Duration::from_secs(5);

/// Waits until cluster `name` is quiet: every node Online and no operator running but
/// balance moves, for [`QUIET`] in a row (within two minutes). A cluster of thousands of nodes just placed can
/// still be failing over nodes whose first heartbeats were late while the others
/// registered; the failover bench measures beside a cluster in its steady state, not
/// beside its start-up. Returns how long it waited.
async fn await_quiet(
    http: &str,
    name: &str,
    progress: Progress,
) -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
    let client = reqwest::Client::new();
    let base = format!("{http}/api/v1/clusters/{name}");
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    let phase = progress.phase(format!("waiting for {name} to settle"), String::new);
    loop {
        let get = |url| super::get_json(&client, url);
        let nodes = super::get_all(&format!("{base}/nodes"), "nodes", get).await?;
        let ops = super::get_all(&format!("{base}/operators"), "operators", get).await?;
        let all_online = entries(&nodes, "nodes").all(|n| n["state"] == "online");
        // Balancing never stops in a large cluster (hot shards come and go): it is part of
        // the steady state. Failovers and repairs are not.
        let idle = entries(&ops, "operators").all(|op| {
            matches!(
                op["kind"].as_str(),
                Some("balance_leader" | "balance_shard" | "hot_shard" | "expansion")
            )
        });
        if all_online && idle {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET {
                phase.done();
                return Ok(started.elapsed());
            }
        } else {
            quiet_since = None;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("cluster {name} did not settle within 120 s").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The entries of the list under `key` of a [`super::get_all`] answer.
fn entries<'a>(list: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    list[key].as_array().into_iter().flatten()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Reads family `name` from Prometheus text: the sum of its samples over every label set
/// (e.g. every cluster), if it has any.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let family = key.split('{').next().unwrap_or(key);
        if family == name {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

/// Quantile `q` of histogram `name` over what was recorded between two scrapes (every label
/// set merged), interpolated within its bucket as Prometheus' `histogram_quantile` does.
fn histogram_quantile(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let buckets = |text: &str| {
        let mut by_le: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = l.rsplit_once(' ') else {
                continue;
            };
            if key.split('{').next() != Some(&format!("{name}_bucket")) {
                continue;
            }
            let Some(le) = key.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = value.parse().ok()?;
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += count;
        }
        let mut v: Vec<(f64, f64)> = by_le.into_values().collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(v)
    };
    let (before, after) = (buckets(before)?, buckets(after)?);
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, n) in counts {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = if n > lower.1 {
                (rank - lower.1) / (n - lower.1)
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, n);
    }
    None
}

async fn scrape(http: &Option<String>) -> Option<String> {
    let http = http.as_ref()?;
    reqwest::get(format!("{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Creates `names` (unpartitioned, if absent) with `concurrency` in flight: each create's
/// latency. Creates refused because shards are not there yet are retried.
async fn create_tables(
    client: &MetaClient,
    names: &[String],
    concurrency: usize,
    progress: Progress,
) -> Result<Histogram<u64>, Box<dyn std::error::Error + Send + Sync>> {
    let phase = (progress, "creating tables");
    timed_per_table(
        names,
        concurrency,
        client,
        phase,
        |client, table| async move {
            let mut tries = 0;
            loop {
                match client
                    .create_table(&table, &PartitionRule::None, true)
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Shards are created a moment after the third node registers.
                    Err(e) if tries < 100 && e.code() == Some(tonic::Code::FailedPrecondition) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(format!("create {table}: {e}")),
                }
            }
        },
    )
    .await
}

/// Runs `op` once per table of `names` (schema `default.public`) with `concurrency` in
/// flight: the histogram of their latencies in microseconds. Progress: a phase of that
/// name, counting the tables done.
async fn timed_per_table<F, Fut>(
    names: &[String],
    concurrency: usize,
    client: &MetaClient,
    (progress, phase): (Progress, &str),
    op: F,
) -> Result<Histogram<u64>, Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(MetaClient, TableName) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let hist = Arc::new(parking_lot_free::Mutex::new(Histogram::<u64>::new(3)?));
    let next = Arc::new(AtomicU64::new(0));
    let (phase, done) = progress.counting(phase, Some(names.len()), "");
    let names = Arc::new(names.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, hist, next, names, op, done) = (
            client.clone(),
            hist.clone(),
            next.clone(),
            names.clone(),
            op.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(name) = names.get(i) else {
                    return Ok::<_, String>(());
                };
                let table = TableName::new("default", "public", name).map_err(|e| e.to_string())?;
                let started = Instant::now();
                op(client.clone(), table).await?;
                let _ = hist.lock().record(started.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    phase.done();
    let h = hist.lock().clone();
    Ok(h)
}

/// A std mutex under a name that says why: no contention worth a faster lock here.
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

fn finish(json_out: bool, summary: String, value: Value) -> CmdResult {
    println!("{summary}");
    if json_out {
        println!("{}", serde_json::to_string(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one bench.
pub async fn run(args: BenchArgs) -> CmdResult {
    match args.kind {
        BenchKind::Takeover(args) => super::takeover::run(args).await,
        BenchKind::Route {
            common,
            duration,
            locate: true,
            ..
        } => route_locate(common, duration).await,
        BenchKind::Route {
            common,
            tables,
            batch,
            duration,
            locate: false,
        } => route(common, tables, batch, duration).await,
        BenchKind::Ddl {
            common,
            count,
            concurrency,
            store,
            alter,
        } => ddl(common, count, concurrency, &store, alter).await,
        BenchKind::Heartbeat {
            common,
            nodes,
            shards_per_node,
            duration,
            connections,
        } => heartbeat(common, nodes, shards_per_node, duration, connections).await,
        BenchKind::Failover {
            common,
            nodes,
            rounds,
            neighbour_shards,
            neighbour_shards_per_node,
            neighbour_connections,
        } => {
            let neighbour = Neighbour {
                shards: neighbour_shards,
                shards_per_node: neighbour_shards_per_node,
                connections: neighbour_connections,
            };
            failover(common, nodes, rounds, neighbour).await
        }
    }
}

/// Keys located per second by the client router, from a cached route, on one core.
async fn route_locate(common: Common, duration: u64) -> CmdResult {
    let progress = common.progress();
    let t = target(&common).await?;
    let _nodes = start_nodes(&t.grpc, "default", "bench-locate", 3, 1, progress).await?;
    let client = MetaClient::connect(std::slice::from_ref(&t.grpc), "default").await?;
    let name = TableName::new(
        "default",
        "public",
        &format!("locate_{}", std::process::id()),
    )?;
    let rule = PartitionRule::Hash {
        count: 64,
        columns: vec!["host".into()],
    };
    let mut created = false;
    for _ in 0..100 {
        if client.create_table(&name, &rule, true).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !created {
        return Err("could not create the table (no shards yet?)".into());
    }
    let locator = client.locator(&name).await?;
    let keys: Vec<String> = (0..100_000).map(|i| format!("host-{i}")).collect();
    progress.say(format!(
        "locating keys of a 64-partition table for {duration}s on one core..."
    ));
    let run = Duration::from_secs(duration.max(1));
    let (phase, located) = progress.counting(format!("locating for {duration} s"), None, "keys");
    let (ops, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut ops: u64 = 0;
        let mut sum: u64 = 0;
        while started.elapsed() < run {
            for k in &keys {
                if let Ok(at) = locator.locate(&[k.as_str()]) {
                    sum = sum.wrapping_add(u64::from(at.shard));
                }
            }
            ops += keys.len() as u64;
            located.store(ops, Ordering::Relaxed);
        }
        std::hint::black_box(sum);
        (ops, started.elapsed())
    })
    .await?;
    phase.done();
    let rate = ops as f64 / elapsed.as_secs_f64();
    let summary = format!(
        "route locate: {rate:.0} keys/s on one core (64 hash partitions, 100,000 distinct keys, from the cached route); {} cores",
        cores()
    );
    let value = json!({
        "bench": "route_locate", "cores": cores(), "partitions": 64, "keys": 100_000,
        "ops": ops, "seconds": elapsed.as_secs_f64(), "ops_per_sec": rate,
    });
    finish(common.json, summary, value)
}

async fn route(common: Common, tables: usize, batch: usize, duration: u64) -> CmdResult {
    let progress = common.progress();
    let t = target(&common).await?;
    let _nodes = start_nodes(&t.grpc, "default", "bench-route", 6, 2, progress).await?;
    let client = MetaClient::connect(std::slice::from_ref(&t.grpc), "default").await?;
    let run = std::process::id();
    let names: Vec<String> = (0..tables).map(|i| format!("route_{run}_{i}")).collect();
    progress.say(format!("creating {tables} tables..."));
    create_tables(&client, &names, 64, progress).await?;

    // Batched throughput: 4 clients, each asking for `batch` tables per request.
    progress.say(format!(
        "batched phase: {duration}s, {batch} tables per request..."
    ));
    let (phase, routed) = progress.counting(
        format!("batched phase of {duration} s"),
        None,
        "tables routed",
    );
    let deadline = Instant::now() + Duration::from_secs(duration);
    let names = Arc::new(names);
    let mut tasks = Vec::new();
    let started = Instant::now();
    for w in 0..4 {
        let (client, routed, names) = (client.clone(), routed.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            let mut offset = w * batch;
            while Instant::now() < deadline {
                let chunk: Vec<String> = (0..batch)
                    .map(|i| names[(offset + i) % names.len()].clone())
                    .collect();
                offset += batch;
                let r = client
                    .fetch_routes("default", "public", chunk)
                    .await
                    .map_err(|e| e.to_string())?;
                routed.fetch_add(r.routes.len() as u64, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let batched = routed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    phase.done();

    // Single-table latency, one request in flight.
    progress.say(format!("single-table phase: {duration}s..."));
    let (phase, requests) = progress.counting(
        format!("single-table phase of {duration} s"),
        None,
        "requests",
    );
    let mut hist = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(duration);
    let started = Instant::now();
    let mut i = 0;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        client
            .fetch_routes("default", "public", vec![names[i % names.len()].clone()])
            .await?;
        hist.record(t0.elapsed().as_micros() as u64)?;
        i += 1;
        requests.store(i as u64, Ordering::Relaxed);
    }
    let single_rate = i as f64 / started.elapsed().as_secs_f64();
    phase.done();

    // The floor, measured in this run: the same RPC naming no table (a round trip through
    // tonic and the cluster lookup, no route built).
    progress.say(format!("floor phase: {duration}s of empty requests..."));
    let (phase, requests) =
        progress.counting(format!("floor phase of {duration} s"), None, "requests");
    let mut floor = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(duration);
    while Instant::now() < deadline {
        let t0 = Instant::now();
        client.fetch_routes("default", "public", Vec::new()).await?;
        floor.record(t0.elapsed().as_micros() as u64)?;
        requests.fetch_add(1, Ordering::Relaxed);
    }
    phase.done();
    let value = json!({
        "bench": "route", "cores": cores(), "tables": tables, "batch": batch,
        "ops_per_sec": batched.round(), "p50_ms": ms(&hist, 0.5), "p99_ms": ms(&hist, 0.99),
        "single_requests_per_sec": single_rate.round(),
        "floor_p50_ms": ms(&floor, 0.5), "floor_p99_ms": ms(&floor, 0.99),
    });
    let summary = format!(
        "route: {batched:.0} tables/s batched ({batch} per request, 4 clients); single-table p50 {:.3} ms, p99 {:.3} ms, {single_rate:.0} req/s (1 in flight); floor (empty request) p50 {:.3} ms, p99 {:.3} ms; {} cores",
        ms(&hist, 0.5), ms(&hist, 0.99), ms(&floor, 0.5), ms(&floor, 0.99), cores()
    );
    finish(common.json, summary, value)
}

async fn ddl(
    common: Common,
    count: usize,
    concurrency: usize,
    store: &str,
    alter: bool,
) -> CmdResult {
    let progress = common.progress();
    let t = target_on(&common, store).await?;
    let _nodes = start_nodes(&t.grpc, "default", "bench-ddl", 6, 2, progress).await?;
    let client = MetaClient::connect(std::slice::from_ref(&t.grpc), "default").await?;
    let run = std::process::id();
    // Warm up: make sure shards exist before timing.
    progress.say("waiting for the shards (one create)...");
    create_tables(
        &client,
        &[format!("ddl_warmup_{run}")],
        1,
        Progress::silent(),
    )
    .await?;
    let names: Vec<String> = (0..count).map(|i| format!("ddl_{run}_{i}")).collect();
    let what = if alter { "alters" } else { "creates" };
    let hist;
    let started;
    if alter {
        progress.say(format!("creating {count} tables to alter..."));
        create_tables(&client, &names, concurrency, progress).await?;
        progress.say(format!(
            "altering {count} tables (one added column each) with {concurrency} in flight..."
        ));
        started = Instant::now();
        let phase = (progress, "altering tables");
        hist = timed_per_table(
            &names,
            concurrency,
            &client,
            phase,
            |client, table| async move {
                let column =
                    meridian_model::Column::new("added", meridian_model::ColumnType::Float64, true);
                client
                    .alter_table(&table, &meridian_model::DefinitionChange::AddColumn(column))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("alter {table}: {e}"))
            },
        )
        .await?;
    } else {
        progress.say(format!(
            "creating {count} tables with {concurrency} in flight..."
        ));
        started = Instant::now();
        hist = create_tables(&client, &names, concurrency, progress).await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let value = json!({
        "bench": "ddl", "cores": cores(), "count": count, "concurrency": concurrency, "store": store,
        "alter": alter,
        "ops_per_sec": rate.round(), "p50_ms": ms(&hist, 0.5), "p99_ms": ms(&hist, 0.99),
    });
    let summary = format!(
        "ddl: {rate:.0} {what}/s ({concurrency} in flight, durable on {store}, each acknowledged by the shard leader); p50 {:.2} ms, p99 {:.2} ms; {} cores",
        ms(&hist, 0.5), ms(&hist, 0.99), cores()
    );
    finish(common.json, summary, value)
}

async fn heartbeat(
    common: Common,
    nodes: usize,
    spn: usize,
    duration: u64,
    connections: usize,
) -> CmdResult {
    let progress = common.progress();
    let t = target(&common).await?;
    let http = t
        .http
        .clone()
        .ok_or("bench heartbeat needs --http with --addr (to create its cluster)")?;
    let cluster = format!("bench-hb-{}", std::process::id());
    let shards = (nodes * spn).div_ceil(3).max(1);
    progress.say(format!("starting {nodes} simulated nodes over {connections} connections ({shards} shards x 3 replicas)..."));
    let (sims, settled) = start_cluster(
        &t.grpc,
        &http,
        &cluster,
        shards,
        nodes,
        connections,
        progress,
    )
    .await?;
    progress.say(format!(
        "all {} replicas open after {:.1}s; measuring {duration}s...",
        shards * 3,
        settled.as_secs_f64()
    ));
    let before = scrape(&t.http).await.unwrap_or_default();
    let started = Instant::now();
    let phase = progress.phase(format!("measuring for {duration} s"), String::new);
    tokio::time::sleep(Duration::from_secs(duration)).await;
    phase.done();
    let after = scrape(&t.http).await.unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    let delta =
        |name: &str| metric(&after, name).unwrap_or(0.0) - metric(&before, name).unwrap_or(0.0);
    let hb_rate = delta("meridian_heartbeats_total") / secs;
    let report_rate = delta("meridian_shard_reports_total") / secs;
    let q = |q: f64| {
        histogram_quantile(&before, &after, "meridian_heartbeat_handle_seconds", q)
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    let rss = metric(&after, "meridian_process_resident_memory_bytes").unwrap_or(f64::NAN)
        / (1 << 20) as f64;
    let tick_p99 = histogram_quantile(&before, &after, "meridian_schedule_tick_seconds", 0.99)
        .unwrap_or(f64::NAN)
        * 1000.0;
    let value = json!({
        "bench": "heartbeat", "cores": cores(), "nodes": nodes, "shards_per_node": spn,
        "ops_per_sec": hb_rate.round(), "shard_reports_per_sec": report_rate.round(),
        "p50_ms": q(0.5), "p99_ms": q(0.99), "server_rss_mb": rss.round(),
        "schedule_tick_p99_ms": tick_p99,
    });
    let summary = format!(
        "heartbeat: {nodes} nodes x {spn} shards: {hb_rate:.0} heartbeats/s, {report_rate:.0} shard reports/s; server handling p50 {:.3} ms, p99 {:.3} ms; server RSS {rss:.0} MiB; scheduling tick p99 {tick_p99:.1} ms; {} cores (client and server share them)",
        q(0.5), q(0.99), cores()
    );
    drop(sims);
    finish(common.json, summary, value)
}

/// The second cluster of `bench failover --neighbour-shards`.
struct Neighbour {
    shards: usize,
    shards_per_node: usize,
    connections: usize,
}

/// Leader node id per shard of the default cluster, from the HTTP admin API.
async fn shard_leaders(
    http_client: &reqwest::Client,
    http: &str,
) -> Result<HashMap<u32, u64>, Box<dyn std::error::Error + Send + Sync>> {
    let shards = super::get_all(
        &format!("{http}/api/v1/clusters/default/shards"),
        "shards",
        |url| super::get_json(http_client, url),
    )
    .await?;
    let mut leaders = HashMap::new();
    for s in entries(&shards, "shards") {
        if let (Some(id), Some(l)) = (s["id"].as_u64(), s["leader"].as_u64()) {
            leaders.insert(id as u32, l);
        }
    }
    Ok(leaders)
}

/// One kill: how long after the victim's last heartbeat each shard it led was routed to
/// another node, and writable there.
struct KillTimes {
    routed: Vec<Duration>,
    writable: Vec<Duration>,
    /// Some shard was not writable within [`ROUND_LIMIT`]: the kill counts as that long.
    timed_out: bool,
}

/// How long one kill may take before it is counted as this long and the bench moves on.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

async fn failover(common: Common, n: usize, rounds: usize, neighbour: Neighbour) -> CmdResult {
    let progress = common.progress();
    let t = target(&common).await?;
    let http = t
        .http
        .clone()
        .ok_or("bench failover needs --http with --addr")?;
    let grpc = t.grpc.clone();
    // The neighbour first, so the kills run while it heartbeats at full size.
    let mut neighbour_nodes = 0;
    let _neighbour_sims = if neighbour.shards > 0 {
        neighbour_nodes = (neighbour.shards * 3)
            .div_ceil(neighbour.shards_per_node.max(1))
            .max(3);
        progress.say(format!(
            "neighbour cluster: {} shards x 3 replicas on {neighbour_nodes} simulated nodes over {} connections...",
            neighbour.shards, neighbour.connections
        ));
        let name = format!("bench-nb-{}", std::process::id());
        let (sims, settled) = start_cluster(
            &grpc,
            &http,
            &name,
            neighbour.shards,
            neighbour_nodes,
            neighbour.connections,
            progress,
        )
        .await?;
        progress.say(format!(
            "neighbour: all replicas open after {:.1}s",
            settled.as_secs_f64()
        ));
        let quiet = await_quiet(&http, &name, progress).await?;
        progress.say(format!(
            "neighbour: every node online and only balance moves running for {} s, {:.1}s later",
            QUIET.as_secs(),
            quiet.as_secs_f64()
        ));
        sims
    } else {
        Vec::new()
    };
    let node_config = |i: usize| {
        let mut c = NodeAgentConfig::new(
            grpc.clone(),
            format!("fo-{i}"),
            format!("127.0.0.1:{}", 10000 + i),
        );
        c.labels = labels(i);
        c
    };
    let mut nodes: Vec<Option<SimNode>> = (0..n)
        .map(|i| Some(SimNode::start(node_config(i))))
        .collect();
    await_registered(nodes.iter().flatten(), n, Duration::from_secs(30), progress).await?;
    let client = MetaClient::connect(std::slice::from_ref(&grpc), "default").await?;
    progress.say("waiting for the shards (one create)...");
    let warmup = [format!("fo_{}", std::process::id())];
    create_tables(&client, &warmup, 1, Progress::silent()).await?;
    // Let the start-up grace period pass: no node is declared dead during it.
    progress.say("waiting 6 s for the start-up grace period to pass...");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (phase, kills) = progress.counting("kills", Some(rounds), "");
    let mut hist = Histogram::<u64>::new(3)?;
    let mut routed_hist = Histogram::<u64>::new(3)?;
    let mut shard_hist = Histogram::<u64>::new(3)?;
    let http_client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut shards_per_kill = Vec::new();
    let mut timed_out = Vec::new();
    for round in 0..rounds {
        let leaders = shard_leaders(&http_client, &http).await?;
        // The victim: the node leading the most shards.
        let mut per: HashMap<u64, usize> = HashMap::new();
        for l in leaders.values() {
            *per.entry(*l).or_default() += 1;
        }
        let Some((&victim_id, _)) = per.iter().max_by_key(|(id, c)| (**c, **id)) else {
            return Err("no shard has a leader".into());
        };
        let Some(idx) = nodes
            .iter()
            .position(|x| x.as_ref().and_then(|x| x.agent.status().node_id) == Some(victim_id))
        else {
            return Err(format!("leader node {victim_id} is not one of ours").into());
        };
        let led: Vec<u32> = leaders
            .iter()
            .filter(|(_, l)| **l == victim_id)
            .map(|(s, _)| *s)
            .collect();
        let mut watch = client.subscribe_routes().await?;
        let Some(victim) = nodes[idx].take() else {
            continue;
        };
        let last = victim
            .agent
            .status()
            .last_heartbeat_at
            .unwrap_or_else(Instant::now);
        victim.agent.kill();
        let times = await_writable(
            &nodes,
            victim_id,
            &led,
            last,
            &mut watch,
            &http_client,
            &http,
        )
        .await
        .map_err(|e| format!("round {round}: {e}"))?;
        let took = if times.timed_out {
            timed_out.push(round);
            ROUND_LIMIT
        } else {
            times.writable.iter().max().copied().unwrap_or_default()
        };
        let routed = if times.routed.len() < led.len() {
            ROUND_LIMIT
        } else {
            times.routed.iter().max().copied().unwrap_or_default()
        };
        hist.record(took.as_micros() as u64)?;
        routed_hist.record(routed.as_micros() as u64)?;
        for w in &times.writable {
            shard_hist.record(w.as_micros() as u64)?;
        }
        samples.push(took.as_millis() as u64);
        shards_per_kill.push(led.len());
        kills.fetch_add(1, Ordering::Relaxed);
        progress.say(format!(
            "round {round}: node {victim_id} led {} shards; all routed {} ms and writable {} ms after its last heartbeat",
            led.len(),
            routed.as_millis(),
            took.as_millis()
        ));
        // Bring it back (empty) and let it settle before the next kill.
        nodes[idx] = Some(SimNode::start(node_config(idx)));
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    phase.done();
    let value = json!({
        "bench": "failover", "cores": cores(), "nodes": n, "rounds": rounds,
        "neighbour_shards": neighbour.shards, "neighbour_nodes": neighbour_nodes,
        "sample": "one per kill: from the victim's last heartbeat until every shard it led holds a write lease on the node its route names (a kill not done within round_limit_ms counts as that long)",
        "samples": samples.len(),
        "p50_ms": ms(&hist, 0.5), "p99_ms": ms(&hist, 0.99), "max_ms": ms(&hist, 1.0),
        "samples_ms": samples, "shards_per_kill": shards_per_kill,
        "timed_out_rounds": timed_out, "round_limit_ms": ROUND_LIMIT.as_millis() as u64,
        "per_shard_p50_ms": ms(&shard_hist, 0.5), "per_shard_p99_ms": ms(&shard_hist, 0.99),
        "routed_p50_ms": ms(&routed_hist, 0.5), "routed_p99_ms": ms(&routed_hist, 0.99),
    });
    let beside = if neighbour.shards > 0 {
        format!(
            " beside a {}-shard cluster of {neighbour_nodes} nodes",
            neighbour.shards
        )
    } else {
        String::new()
    };
    let summary = format!(
        "failover: {rounds} kills of the busiest leader among {n} nodes{beside}: p50 {:.0} ms, p99 {:.0} ms from the last heartbeat until every shard it led is writable on its new leader (routed: p50 {:.0} ms, p99 {:.0} ms); {} kills timed out at {} s; {} cores",
        ms(&hist, 0.5), ms(&hist, 0.99), ms(&routed_hist, 0.5), ms(&routed_hist, 0.99), timed_out.len(), ROUND_LIMIT.as_secs(), cores()
    );
    finish(common.json, summary, value)
}

/// Waits until every shard in `led` is routed to a node other than `victim` and that node
/// holds a write lease for it, following `watch` for the route and polling the node's lease
/// table (same process) every 2 ms.
async fn await_writable(
    nodes: &[Option<SimNode>],
    victim: u64,
    led: &[u32],
    last: Instant,
    watch: &mut tonic::Streaming<pb::RouteEvent>,
    http_client: &reqwest::Client,
    http: &str,
) -> Result<KillTimes, Box<dyn std::error::Error + Send + Sync>> {
    let mut named: HashMap<u32, u64> = HashMap::new();
    let mut routed_at: HashMap<u32, Duration> = HashMap::new();
    let mut writable_at: HashMap<u32, Duration> = HashMap::new();
    let mut poll = tokio::time::interval(Duration::from_millis(2));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
    // The watch can lag or miss a change under load; the shard list is read every 500 ms
    // as well, and whichever spoke last names the leader.
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while writable_at.len() < led.len() {
        tokio::select! {
            _ = refresh.tick() => {
                let leaders = shard_leaders(http_client, http).await?;
                for s in led {
                    if let Some(&l) = leaders.get(s).filter(|l| **l != victim) {
                        named.insert(*s, l);
                        routed_at.entry(*s).or_insert_with(|| last.elapsed());
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // Say where each late shard stands: what the route names, what Meridian's
                // shard list says, and what every live node's lease table says.
                let listed = shard_leaders(http_client, http).await.unwrap_or_default();
                let late: Vec<String> = led
                    .iter()
                    .filter(|s| !writable_at.contains_key(s))
                    .map(|s| {
                        let held: Vec<String> = nodes
                            .iter()
                            .flatten()
                            .map(|x| format!("{}: {:?}", x.name, x.agent.leases().writable(ShardId(*s))))
                            .collect();
                        format!(
                            "shard {s}: route names {:?}, shard list {:?}, leases [{}]",
                            named.get(s),
                            listed.get(s),
                            held.join("; ")
                        )
                    })
                    .collect();
                eprintln!(
                    "shards of node {victim} not all writable on a new leader within {} s: {}",
                    ROUND_LIMIT.as_secs(),
                    late.join(" | ")
                );
                return Ok(KillTimes {
                    routed: routed_at.into_values().collect(),
                    writable: Vec::new(),
                    timed_out: true,
                });
            }
            ev = watch.message() => {
                let Some(ev) = ev? else {
                    return Err("the route watch ended".into());
                };
                match ev.event {
                    Some(pb::route_event::Event::ShardChanged(s)) if led.contains(&s.shard_id) => {
                        match s.leader {
                            Some(l) if l.node_id != victim => {
                                named.insert(s.shard_id, l.node_id);
                                routed_at.entry(s.shard_id).or_insert_with(|| last.elapsed());
                            }
                            _ => {
                                named.remove(&s.shard_id);
                            }
                        }
                    }
                    // Events were missed: read the routes afresh.
                    Some(pb::route_event::Event::Resync(_)) => {
                        let leaders = shard_leaders(http_client, http).await?;
                        for s in led {
                            match leaders.get(s) {
                                Some(&l) if l != victim => {
                                    named.insert(*s, l);
                                    routed_at.entry(*s).or_insert_with(|| last.elapsed());
                                }
                                _ => {
                                    named.remove(s);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ = poll.tick() => {
                for s in led {
                    if writable_at.contains_key(s) {
                        continue;
                    }
                    let Some(&leader) = named.get(s) else { continue };
                    let node = nodes
                        .iter()
                        .flatten()
                        .find(|x| x.agent.status().node_id == Some(leader));
                    if let Some(node) = node {
                        if node.agent.leases().writable(ShardId(*s)).is_ok() {
                            writable_at.insert(*s, last.elapsed());
                        }
                    }
                }
            }
        }
    }
    Ok(KillTimes {
        routed: routed_at.into_values().collect(),
        writable: writable_at.into_values().collect(),
        timed_out: false,
    })
}
