//! `meridian chaos`: a fault harness with real processes that checks the promise "never two
//! writers for one shard, nothing acknowledged outside a lease".
//!
//! It starts a `meridian server` process (redb store in the run's directory), `--nodes`
//! `sim-node` processes in 3 zones, each writing a lease log and reaching Meridian through
//! its own TCP proxy inside the harness ([`proxy`]), creates a cluster and a few tables, and
//! runs a writer that writes through routes (refreshing a route when a node answers "not
//! leader"; one write in ten goes to a random node instead, as a client with a stale route
//! would). Once every shard took a write, a fault injector seeded by `--seed` runs one
//! fault at a time, with quiet time between faults for the cluster to recover:
//!
//! | fault | what | checkpoints (each shard writable within the limit after) |
//! |---|---|---|
//! | `kill-node` | SIGKILL a node, restart it 2-6 s later | the kill, the restart |
//! | `stall-node` | SIGSTOP a node for 1-10 s, then SIGCONT (a stall past its lease) | the stop, the SIGCONT |
//! | `partition` | cut a node's link to Meridian for 1-10 s: both ways, or one way; then let held bytes through or reset the connections | the cut (both ways or node-to-Meridian), the heal |
//! | `delay` | 100-1200 ms more latency each way on a node's link for 2-8 s | the end |
//! | `kill-meridian` | SIGKILL the server, restart it on the same data dir 0.5-3 s later | Meridian serving again |
//!
//! With `--meta 3 --etcd 3` it runs three highly available servers on a local three-member
//! etcd instead (each node reaches every server through its own proxies), and adds faults
//! of the brain; a change of Meridian leader must leave every shard writable throughout:
//!
//! | fault | what | checkpoints |
//! |---|---|---|
//! | `kill-meridian` | SIGKILL the leading server, restart it 0.5-3 s later | the kill, the restart |
//! | `stall-meridian` | SIGSTOP the leading server for 1-8 s (past its 2 s election lease), then SIGCONT | the stop, the SIGCONT |
//! | `kill-etcd` | SIGKILL one etcd member, restart it 2-6 s later | the kill, the restart |
//!
//! After the run, [`check`] reads every lease log and acknowledged write. The recovery limit
//! is `offline_after_ms` (2500, or 6000 with etcd: detection, which is also the lease plus
//! its drift margin)
//! plus `--allowance-ms` (default 2500: reconnect backoff, the scheduling pass, the promote,
//! the heartbeat that brings the new lease). A cut from Meridian to the node only (acks
//! lost, heartbeats delivered) and a delay leave the node Online and leaseless, so they are
//! checked only after they end.

mod check;
mod proxy;

use super::CmdResult;
use crate::procs::{free_addr, leading_server, log_tail, spawn, BoxError, Proc};
use check::{Ack, CheckInput};
use clap::Args;
use meridian_client::{monotonic_ns, MetaClient};
use meridian_model::{PartitionRule, TableName};
use meridian_sim::write::{WriteAck, WriteRequest};
use proxy::{Direction, LinkFault, Proxy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The cluster the harness creates.
const CLUSTER: &str = "chaos";
/// Meridian's default `offline_after_ms`, which the harness's single server runs with.
const OFFLINE_AFTER_MS: u64 = 2500;
/// The same with `--etcd` (the highly available defaults).
const HA_OFFLINE_AFTER_MS: u64 = 6000;

/// Flags of `meridian chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Seconds of writes and faults after start-up.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seed of the fault injector (which faults, on which node, how long).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Keep every process's log and every lease log in this directory (default: a temp
    /// dir, removed after the run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// `sim-node` processes (3 zones).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Shards of the cluster.
    #[arg(long, default_value_t = 12)]
    shards: u32,
    /// Writes per second, all writers together.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Added to offline_after_ms (2500; 6000 with etcd) to give the limit within which every
    /// shard must be writable again after a fault clears.
    #[arg(long, default_value_t = 2500)]
    allowance_ms: u64,
    /// Meridian servers: 1 (redb), or several on etcd (needs `--etcd`).
    #[arg(long, default_value_t = 1)]
    meta: usize,
    /// etcd members to start for the servers (0: none, redb). Needs Debian's etcd-server.
    #[arg(long, default_value_t = 0)]
    etcd: usize,
    /// Only these faults (comma-separated names from the tables above; default: every
    /// fault the set-up allows).
    #[arg(long, value_delimiter = ',')]
    faults: Option<Vec<String>>,
}

/// Every fault, in the injector's order.
const FAULTS: [&str; 7] = [
    "kill-node",
    "stall-node",
    "partition",
    "delay",
    "kill-meridian",
    "stall-meridian",
    "kill-etcd",
];

/// The summary; the first six fields are the contract of `--json`'s last line.
#[derive(Debug, Serialize)]
struct Summary {
    faults: usize,
    overlap_ms: u64,
    max_leaderless_ms: u64,
    writes_acked: u64,
    writes_refused: u64,
    pass: bool,
    seed: u64,
    duration_s: u64,
    nodes: usize,
    shards: usize,
    overlap_ns: u64,
    writes_outside_interval: usize,
    writes_failed: u64,
    writes_stray: u64,
    max_recovery_ms: u64,
    recovery_limit_ms: u64,
    late_recoveries: usize,
    lease_intervals: usize,
    lease_logs_unreadable: Vec<String>,
    faults_by_kind: BTreeMap<String, usize>,
    fault_log: Vec<String>,
    violations: Vec<String>,
    dir: Option<String>,
}

/// One simulated node: its proxies to the Meridian servers (one each), its data-plane
/// endpoint, its process.
struct NodeSlot {
    name: String,
    zone: String,
    endpoint: SocketAddr,
    proxies: Vec<Proxy>,
    proc: Option<Proc>,
    /// Runs so far (each writes its own lease log, `{name}-{run}.jsonl`).
    runs: u32,
}

/// One Meridian server: its addresses and process.
struct ServerSlot {
    grpc: SocketAddr,
    http: SocketAddr,
    proc: Option<Proc>,
}

/// The processes of one run.
struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    servers: Vec<ServerSlot>,
    etcd: Option<meridian_store::etcd::LocalEtcd>,
    nodes: Vec<NodeSlot>,
    web: reqwest::Client,
}

impl Cluster {
    fn start_server(&mut self, i: usize) -> Result<(), BoxError> {
        let s = &self.servers[i];
        let mut args = vec![
            "server".to_string(),
            "--data-dir".into(),
            self.dir.join(format!("meta-{i}")).display().to_string(),
            "--grpc-addr".into(),
            s.grpc.to_string(),
            "--http-addr".into(),
            s.http.to_string(),
            "--name".into(),
            format!("meridian-{i}"),
        ];
        if let Some(etcd) = &self.etcd {
            args.extend([
                "--store".into(),
                "etcd".into(),
                "--etcd-endpoints".into(),
                etcd.endpoints().join(","),
            ]);
        }
        let log = self.dir.join(format!("server-{i}.log"));
        self.servers[i].proc = Some(spawn(&self.exe, &args, &log)?);
        Ok(())
    }

    /// The server whose `/health` says it leads (a single server always does).
    async fn leader(&self) -> Option<usize> {
        let http: Vec<SocketAddr> = self.servers.iter().map(|s| s.http).collect();
        leading_server(&self.web, &http).await
    }

    async fn wait_server(&mut self, within: Duration) -> Result<usize, BoxError> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Say why: a server that exited (a port taken meanwhile, a bad flag) left its
        // reason at the end of its log.
        let mut why = Vec::new();
        for (i, s) in self.servers.iter_mut().enumerate() {
            if let Some(status) = s.proc.as_mut().and_then(Proc::exited) {
                let log = self.dir.join(format!("server-{i}.log"));
                why.push(format!(
                    "server {i} exited ({status}); its log ends:\n{}",
                    log_tail(&log, 5)
                ));
            }
        }
        Err(format!("no meridian server led within {within:?}; {}", why.join("; ")).into())
    }

    /// The leader's HTTP address (any server's while none leads: followers redirect).
    async fn http(&self) -> SocketAddr {
        let i = self.leader().await.unwrap_or(0);
        self.servers[i].http
    }

    fn start_node(&mut self, i: usize) -> Result<(), BoxError> {
        let slot = &mut self.nodes[i];
        let meta: Vec<String> = slot.proxies.iter().map(|p| p.addr().to_string()).collect();
        let args = [
            "sim-node".to_string(),
            "--meta".into(),
            meta.join(","),
            "--cluster".into(),
            CLUSTER.into(),
            "--name".into(),
            slot.name.clone(),
            "--endpoint".into(),
            slot.endpoint.to_string(),
            "--zone".into(),
            slot.zone.clone(),
            "--host".into(),
            format!("host-{}", slot.name),
            "--lease-log".into(),
            self.dir
                .join(format!("{}-{}.jsonl", slot.name, slot.runs))
                .display()
                .to_string(),
        ];
        slot.runs += 1;
        let log = self.dir.join(format!("{}.log", slot.name));
        slot.proc = Some(spawn(&self.exe, &args, &log)?);
        Ok(())
    }

    async fn api(&self, path: &str) -> Result<serde_json::Value, BoxError> {
        let r = self
            .web
            .get(format!("http://{}/api/v1/{path}", self.http().await))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(r.json().await?)
    }
}

/// What the writers saw.
#[derive(Default)]
struct WriteLog {
    acks: parking_lot::Mutex<Vec<Ack>>,
    acked: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    stray: AtomicU64,
    /// Shards that took at least one write (start-up ends when all did).
    written: parking_lot::Mutex<BTreeSet<u32>>,
}

/// One write: to the route's leader, or (stray) to `stray_to`.
async fn write_once(
    web: &reqwest::Client,
    client: &MetaClient,
    table: &TableName,
    rng: &mut StdRng,
    endpoints: &[SocketAddr],
    log: &WriteLog,
) {
    let route = match client.route(table).await {
        Ok(r) => r,
        Err(_) => {
            log.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
    };
    if route.partitions.is_empty() {
        return;
    }
    let p = &route.partitions[rng.random_range(0..route.partitions.len())];
    let Some(shard) = &p.shard else {
        return;
    };
    let stray = rng.random_bool(0.1);
    let endpoint = if stray {
        endpoints[rng.random_range(0..endpoints.len())].to_string()
    } else {
        match &shard.leader {
            Some(l) => l.endpoint.clone(),
            None => {
                // Failover in progress: ask again a little later.
                client.invalidate(table);
                log.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
    };
    if stray {
        log.stray.fetch_add(1, Ordering::Relaxed);
    }
    let req = WriteRequest {
        shard: shard.shard_id,
        table: table.table.clone(),
        key: rng.random::<u64>().to_string(),
    };
    let answer = web
        .post(format!("http://{endpoint}/write"))
        .json(&req)
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => match r.json::<WriteAck>().await {
            Ok(ack) => {
                log.acked.fetch_add(1, Ordering::Relaxed);
                log.written.lock().insert(ack.shard);
                log.acks.lock().push(Ack {
                    node: ack.node,
                    shard: ack.shard,
                    accepted_ns: ack.accepted_ns,
                });
            }
            Err(_) => {
                log.failed.fetch_add(1, Ordering::Relaxed);
            }
        },
        Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
            log.refused.fetch_add(1, Ordering::Relaxed);
            if !stray {
                client.invalidate(table);
            }
        }
        _ => {
            log.failed.fetch_add(1, Ordering::Relaxed);
            if !stray {
                client.invalidate(table);
            }
        }
    }
}

/// A fault's record: what, when it cleared, and the checkpoints it sets.
struct FaultRecord {
    kind: &'static str,
    line: String,
    checkpoints: Vec<(u64, String)>,
}

/// Runs the harness.
pub async fn run(args: ChaosArgs) -> CmdResult {
    if args.nodes < 3 {
        return Err("--nodes must be at least 3 (3 zones)".into());
    }
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.canonicalize()?
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let t0 = monotonic_ns();
    let rel = move |ns: u64| ns.saturating_sub(t0) as f64 / 1e9;
    let say = |json: bool, msg: String| {
        if json {
            eprintln!("[chaos] {msg}");
        } else {
            println!("[chaos] {msg}");
        }
    };
    if args.meta == 0 || (args.meta > 1 && args.etcd == 0) {
        return Err("--meta must be 1, or more with --etcd (several servers need etcd)".into());
    }
    let etcd = match args.etcd {
        0 => None,
        n => {
            let etcd_dir = dir.join("etcd");
            std::fs::create_dir_all(&etcd_dir)?;
            Some(meridian_store::etcd::LocalEtcd::start(n, &etcd_dir).await?)
        }
    };
    let mut servers = Vec::new();
    for _ in 0..args.meta {
        servers.push(ServerSlot {
            grpc: free_addr()?,
            http: free_addr()?,
            proc: None,
        });
    }
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let mut proxies = Vec::new();
        for s in &servers {
            proxies.push(Proxy::start(s.grpc).await?);
        }
        nodes.push(NodeSlot {
            name: format!("n{}", i + 1),
            zone: format!("zone-{}", ["a", "b", "c"][i % 3]),
            endpoint: free_addr()?,
            proxies,
            proc: None,
            runs: 0,
        });
    }
    // Pausing the brain needs a second server to take over; losing an etcd member is a
    // fault to survive only when a quorum remains.
    let possible = match &etcd {
        Some(e) if e.len() >= 3 && args.meta > 1 => 7,
        Some(_) if args.meta > 1 => 6,
        _ => 5,
    };
    let allowed: Vec<usize> = match &args.faults {
        None => (0..possible).collect(),
        Some(names) => {
            let mut picked = Vec::new();
            for n in names {
                match FAULTS.iter().position(|f| f == n) {
                    Some(i) if i < possible => picked.push(i),
                    Some(_) => {
                        return Err(format!(
                            "fault {n} needs more servers or etcd members (--meta 3 --etcd 3)"
                        )
                        .into())
                    }
                    None => {
                        return Err(
                            format!("unknown fault {n}; known: {}", FAULTS.join(", ")).into()
                        )
                    }
                }
            }
            if picked.is_empty() {
                return Err("--faults names no fault".into());
            }
            picked
        }
    };
    let offline_after_ms = if etcd.is_some() {
        HA_OFFLINE_AFTER_MS
    } else {
        OFFLINE_AFTER_MS
    };
    let mut cluster = Cluster {
        exe: std::env::current_exe()?,
        dir: dir.clone(),
        servers,
        etcd,
        nodes,
        web: reqwest::Client::builder()
            .pool_max_idle_per_host(16)
            .build()?,
    };

    // Start-up: servers, cluster, nodes, tables.
    for i in 0..args.meta {
        cluster.start_server(i)?;
    }
    cluster.wait_server(Duration::from_secs(30)).await?;
    let created = cluster
        .web
        .post(format!("http://{}/api/v1/clusters", cluster.http().await))
        .json(&serde_json::json!({
            "name": CLUSTER,
            "shard_count": args.shards,
            "replication_factor": 3,
            "min_nodes": args.nodes,
            "isolation": "zone",
        }))
        .send()
        .await?;
    if !created.status().is_success() {
        return Err(format!("creating the cluster: {}", created.text().await?).into());
    }
    for i in 0..args.nodes {
        cluster.start_node(i)?;
    }
    let grpc_addrs: Vec<String> = cluster.servers.iter().map(|s| s.grpc.to_string()).collect();
    let client = MetaClient::connect(&grpc_addrs, CLUSTER).await?;
    let _ = client.create_schema("default", "public", true).await;
    // More partitions than shards, so that every shard holds some and takes writes.
    let counts = [
        args.shards.div_ceil(2).max(1),
        args.shards.div_ceil(3).max(1),
        args.shards.div_ceil(4).max(1),
        1,
    ];
    let mut tables = Vec::new();
    for (i, count) in counts.into_iter().enumerate() {
        let name = TableName::new("default", "public", &format!("t{i}"))?;
        let rule = if count == 1 {
            PartitionRule::None
        } else {
            PartitionRule::Hash {
                count,
                columns: vec!["k".into()],
            }
        };
        let mut tries = 0;
        loop {
            match client.create_table(&name, &rule, true).await {
                Ok(_) => break,
                Err(e) if tries < 300 => {
                    tracing::debug!("create {name}: {e}");
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("creating table {name}: {e}").into()),
            }
        }
        tables.push(name);
    }
    let shards: Vec<u32> = cluster.api(&format!("clusters/{CLUSTER}/shards")).await?["shards"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_u64().map(|v| v as u32))
                .collect()
        })
        .unwrap_or_default();
    let mut routed = BTreeSet::new();
    for t in &tables {
        for p in client.route(t).await?.partitions {
            if let Some(s) = p.shard {
                routed.insert(s.shard_id);
            }
        }
    }
    say(
        args.json,
        format!(
            "{} nodes, {} shards ({} with partitions), {} tables; dir {}",
            args.nodes,
            shards.len(),
            routed.len(),
            tables.len(),
            dir.display()
        ),
    );

    // Writers.
    let log = Arc::new(WriteLog::default());
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.endpoint).collect();
    let period = Duration::from_micros(1_000_000 * args.writers.max(1) as u64 / args.rate.max(1));
    let mut writers = Vec::new();
    for w in 0..args.writers.max(1) {
        let (web, client, log, stop, tables, endpoints) = (
            cluster.web.clone(),
            client.clone(),
            log.clone(),
            stop.clone(),
            tables.clone(),
            endpoints.clone(),
        );
        let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1000).wrapping_add(w as u64));
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let table = &tables[rng.random_range(0..tables.len())];
                write_once(&web, &client, table, &mut rng, &endpoints, &log).await;
                tokio::time::sleep(period).await;
            }
        }));
    }
    let startup_deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !routed.is_subset(&log.written.lock()) {
        if tokio::time::Instant::now() > startup_deadline {
            stop.store(true, Ordering::Relaxed);
            return Err(format!(
                "start-up: not every shard took a write within 90 s (written {:?} of {:?}); logs in {}",
                log.written.lock(),
                routed,
                dir.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = monotonic_ns();
    say(
        args.json,
        format!(
            "t+{:.1}s: every shard took a write; faults begin",
            rel(started)
        ),
    );

    // Faults, one at a time.
    let limit = Duration::from_millis(offline_after_ms + args.allowance_ms);
    let end = tokio::time::Instant::now() + Duration::from_secs(args.duration);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut faults: Vec<FaultRecord> = Vec::new();
    // The longest a fault takes (a 10 s cut, or a kill and restart, plus a slow restart).
    let longest = Duration::from_secs(12);
    loop {
        let quiet = Duration::from_millis(rng.random_range(1000..3000));
        tokio::time::sleep(quiet).await;
        if tokio::time::Instant::now() + longest + limit > end {
            break;
        }
        let record = inject(&mut cluster, &allowed, &mut rng, rel).await?;
        say(args.json, record.line.clone());
        faults.push(record);
        // Recovery time before the next fault: checkpoints stay unambiguous.
        tokio::time::sleep(limit).await;
    }
    tokio::time::sleep_until(end).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let finished = monotonic_ns();
    // Stop everything; a killed node's interval ends with its lease, which is when it
    // would have stopped writing anyway.
    for n in &mut cluster.nodes {
        n.proc = None;
    }
    for s in &mut cluster.servers {
        s.proc = None;
    }

    // Check.
    let logs = check::read_lease_logs(&dir)?;
    let acks = std::mem::take(&mut *log.acks.lock());
    let checkpoints: Vec<(u64, String)> = faults
        .iter()
        .flat_map(|f| f.checkpoints.iter().cloned())
        .collect();
    let findings = check::check(&CheckInput {
        logs: &logs,
        shards: &shards,
        acks: &acks,
        checkpoints: &checkpoints,
        recovery_limit_ns: limit.as_nanos() as u64,
        window_from_ns: started,
        window_to_ns: finished,
        t0_ns: t0,
    });
    let mut faults_by_kind = BTreeMap::new();
    for f in &faults {
        *faults_by_kind.entry(f.kind.to_string()).or_insert(0) += 1;
    }
    let pass = findings.overlap_ns == 0
        && findings.writes_outside == 0
        && findings.late_recoveries == 0
        && logs.bad_logs.is_empty();
    let summary = Summary {
        faults: faults.len(),
        overlap_ms: findings.overlap_ns.div_ceil(1_000_000),
        max_leaderless_ms: findings.max_leaderless_ns / 1_000_000,
        writes_acked: log.acked.load(Ordering::Relaxed),
        writes_refused: log.refused.load(Ordering::Relaxed),
        pass,
        seed: args.seed,
        duration_s: args.duration,
        nodes: args.nodes,
        shards: shards.len(),
        overlap_ns: findings.overlap_ns,
        writes_outside_interval: findings.writes_outside,
        writes_failed: log.failed.load(Ordering::Relaxed),
        writes_stray: log.stray.load(Ordering::Relaxed),
        max_recovery_ms: findings.max_recovery_ns / 1_000_000,
        recovery_limit_ms: limit.as_millis() as u64,
        late_recoveries: findings.late_recoveries,
        lease_intervals: logs.intervals.len(),
        lease_logs_unreadable: logs.bad_logs.clone(),
        faults_by_kind,
        fault_log: faults.iter().map(|f| f.line.clone()).collect(),
        violations: findings.violations.clone(),
        dir: args.dir.as_ref().map(|_| dir.display().to_string()),
    };
    let leaderless_at = findings
        .max_leaderless_at
        .map(|(s, at)| format!(" (shard {s} from t+{:.1}s)", rel(at)))
        .unwrap_or_default();
    println!(
        "chaos seed {}: {} faults in {} s; {} writes acknowledged, {} refused ({} stray), {} failed",
        args.seed,
        summary.faults,
        args.duration,
        summary.writes_acked,
        summary.writes_refused,
        summary.writes_stray,
        summary.writes_failed
    );
    println!(
        "  overlap {} ns; writes outside an interval {}; max leaderless {} ms{leaderless_at}; max recovery {} ms (limit {} ms, {} late)",
        summary.overlap_ns,
        summary.writes_outside_interval,
        summary.max_leaderless_ms,
        summary.max_recovery_ms,
        summary.recovery_limit_ms,
        summary.late_recoveries
    );
    for v in &summary.violations {
        println!("  violation: {v}");
    }
    println!("  {}", if pass { "PASS" } else { "FAIL" });
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Injects one fault, waits for it to clear, and records it.
async fn inject(
    cluster: &mut Cluster,
    allowed: &[usize],
    rng: &mut StdRng,
    rel: impl Fn(u64) -> f64,
) -> Result<FaultRecord, BoxError> {
    let i = rng.random_range(0..cluster.nodes.len());
    let name = cluster.nodes[i].name.clone();
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..=hi));
    let record = match allowed[rng.random_range(0..allowed.len())] {
        0 => {
            let down = ms(rng, 2000, 6000);
            let at = monotonic_ns();
            if let Some(p) = cluster.nodes[i].proc.take() {
                p.signal(libc::SIGKILL);
            }
            tokio::time::sleep(down).await;
            cluster.start_node(i)?;
            let back = monotonic_ns();
            FaultRecord {
                kind: "kill-node",
                line: format!(
                    "t+{:.1}s: SIGKILL {name}, restarted at t+{:.1}s",
                    rel(at),
                    rel(back)
                ),
                checkpoints: vec![
                    (at, format!("SIGKILL {name}")),
                    (back, format!("restart of {name}")),
                ],
            }
        }
        1 => {
            let stall = ms(rng, 1000, 10_000);
            let at = monotonic_ns();
            if let Some(p) = &cluster.nodes[i].proc {
                p.signal(libc::SIGSTOP);
            }
            tokio::time::sleep(stall).await;
            if let Some(p) = &cluster.nodes[i].proc {
                p.signal(libc::SIGCONT);
            }
            let back = monotonic_ns();
            FaultRecord {
                kind: "stall-node",
                line: format!(
                    "t+{:.1}s: SIGSTOP {name} for {} ms",
                    rel(at),
                    stall.as_millis()
                ),
                checkpoints: vec![
                    (at, format!("SIGSTOP {name}")),
                    (back, format!("SIGCONT {name}")),
                ],
            }
        }
        2 => {
            let (fault, what) = match rng.random_range(0..3u32) {
                0 => (LinkFault::Blackhole, "both ways"),
                1 => (LinkFault::OneWay(Direction::ToMeta), "node to meridian"),
                _ => (LinkFault::OneWay(Direction::FromMeta), "meridian to node"),
            };
            let cut = ms(rng, 1000, 10_000);
            let reset = rng.random_bool(0.5);
            let at = monotonic_ns();
            cluster.nodes[i].proxies.iter().for_each(|p| p.set(fault));
            tokio::time::sleep(cut).await;
            cluster.nodes[i].proxies.iter().for_each(|p| p.heal(reset));
            let back = monotonic_ns();
            let mut checkpoints = vec![(back, format!("heal of {name}'s link"))];
            // Meridian fails the node over when it stops hearing it; with only acks cut it
            // keeps hearing it, and the node waits leaseless until the link heals.
            if fault != LinkFault::OneWay(Direction::FromMeta) {
                checkpoints.insert(0, (at, format!("cut of {name}'s link")));
            }
            FaultRecord {
                kind: "partition",
                line: format!(
                    "t+{:.1}s: cut {name}'s link {what} for {} ms, then {}",
                    rel(at),
                    cut.as_millis(),
                    if reset {
                        "reset its connections"
                    } else {
                        "let held bytes through"
                    }
                ),
                checkpoints,
            }
        }
        3 => {
            let delay = ms(rng, 100, 1200);
            let span = ms(rng, 2000, 8000);
            let at = monotonic_ns();
            cluster.nodes[i]
                .proxies
                .iter()
                .for_each(|p| p.set(LinkFault::Delay(delay)));
            tokio::time::sleep(span).await;
            cluster.nodes[i].proxies.iter().for_each(|p| p.heal(false));
            let back = monotonic_ns();
            FaultRecord {
                kind: "delay",
                line: format!(
                    "t+{:.1}s: delay {name}'s link by {} ms each way for {} ms",
                    rel(at),
                    delay.as_millis(),
                    span.as_millis()
                ),
                checkpoints: vec![(back, format!("end of {name}'s delay"))],
            }
        }
        4 => {
            let down = ms(rng, 500, 3000);
            let victim = cluster.leader().await.unwrap_or(0);
            let at = monotonic_ns();
            if let Some(p) = cluster.servers[victim].proc.take() {
                p.signal(libc::SIGKILL);
            }
            tokio::time::sleep(down).await;
            cluster.start_server(victim)?;
            cluster.wait_server(Duration::from_secs(30)).await?;
            let back = monotonic_ns();
            // Several servers: another one leads on; no shard may stop taking writes.
            let mut checkpoints = vec![(back, "restart of meridian".to_string())];
            if cluster.servers.len() > 1 {
                checkpoints.insert(0, (at, format!("SIGKILL meridian-{victim} (leader)")));
            }
            FaultRecord {
                kind: "kill-meridian",
                line: format!(
                    "t+{:.1}s: SIGKILL meridian-{victim}, restarted, a leader serving at t+{:.1}s",
                    rel(at),
                    rel(back)
                ),
                checkpoints,
            }
        }
        5 => {
            let stall = ms(rng, 1000, 8000);
            let victim = cluster.leader().await.unwrap_or(0);
            let at = monotonic_ns();
            if let Some(p) = &cluster.servers[victim].proc {
                p.signal(libc::SIGSTOP);
            }
            tokio::time::sleep(stall).await;
            if let Some(p) = &cluster.servers[victim].proc {
                p.signal(libc::SIGCONT);
            }
            let back = monotonic_ns();
            FaultRecord {
                kind: "stall-meridian",
                line: format!(
                    "t+{:.1}s: SIGSTOP meridian-{victim} (leader) for {} ms",
                    rel(at),
                    stall.as_millis()
                ),
                checkpoints: vec![
                    (at, format!("SIGSTOP meridian-{victim}")),
                    (back, format!("SIGCONT meridian-{victim}")),
                ],
            }
        }
        _ => {
            let down = ms(rng, 2000, 6000);
            let Some(etcd) = cluster.etcd.as_mut() else {
                return Err("kill-etcd without etcd".into());
            };
            let member = rng.random_range(0..etcd.len());
            let at = monotonic_ns();
            etcd.kill(member);
            tokio::time::sleep(down).await;
            etcd.restart(member).await?;
            let back = monotonic_ns();
            FaultRecord {
                kind: "kill-etcd",
                line: format!(
                    "t+{:.1}s: SIGKILL etcd member {member}, restarted at t+{:.1}s",
                    rel(at),
                    rel(back)
                ),
                checkpoints: vec![
                    (at, format!("SIGKILL etcd member {member}")),
                    (back, format!("restart of etcd member {member}")),
                ],
            }
        }
    };
    Ok(record)
}
