//! `meridian bench takeover`: a highly available Meridian under leader faults, measured and
//! checked from the side that would suffer.
//!
//! It starts a local etcd cluster (3 members, Debian's `etcd-server`), 3 `meridian server
//! --store etcd` processes, `--nodes` `sim-node` processes that write lease logs, and a
//! client doing table creates (and route reads) throughout through every server's address.
//! Then, one at a time, with a few quiet seconds between:
//!
//! - `--kills` times: SIGKILL the leader, restart it as a follower. One sample each: from
//!   the kill until a create started after it is acknowledged (a new leader answers DDL).
//! - with `--pause`: SIGSTOP the leader for 8 s (past its election lease and the nodes'
//!   leases), then SIGCONT: it must have stepped down, and nothing it does after waking
//!   may land.
//! - with `--etcd-fault`: SIGKILL one etcd member for 5 s, then restart it.
//! - with `--restart-all`: SIGKILL every Meridian server at once, then start them all.
//!
//! Then it checks: every acknowledged create is present exactly once and table ids are
//! unique; no two nodes' lease logs overlap for one shard; no shard lost its writable
//! leader inside a fault's window (`lease_lapses`: a node lease that ran out during a
//! takeover); every shard has a leader and a writable node at the end; the client saw
//! errors only inside fault windows.

use super::progress::Progress;
use super::CmdResult;
use crate::procs::{free_addr, leading_server, spawn, BoxError, Proc};
use clap::Args;
use meridian_client::{lease_overlaps, monotonic_ns, read_lease_log, LeaseInterval, MetaClient};
use meridian_model::{PartitionRule, TableName};
use meridian_store::etcd::LocalEtcd;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the leader is paused: past its election lease (2 s) and past the nodes'
/// leases (5.85 s with the highly available defaults), so that a node that stays with the
/// paused leader loses its lease.
const PAUSE: Duration = Duration::from_secs(8);
/// After a fault, how long the cluster gets before the next one.
const QUIET: Duration = Duration::from_secs(3);
/// How long after its end (recovery) a fault's window still covers client errors.
const WINDOW_TAIL_NS: u64 = 1_500_000_000;

/// Flags of `meridian bench takeover`.
#[derive(Args, Debug)]
pub struct TakeoverArgs {
    /// Leader kills; each is one sample.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// `sim-node` processes (3 zones).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Creates per second from the client.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Also pause (SIGSTOP) the leader past its election lease, then resume it.
    #[arg(long)]
    pause: bool,
    /// Also kill one etcd member for 5 s.
    #[arg(long)]
    etcd_fault: bool,
    /// Also SIGKILL every Meridian server at once, then start them all again.
    #[arg(long)]
    restart_all: bool,
    /// Keep every log here (default: a temp dir, removed after the run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Print no progress on stderr (what runs, each fault as it ends); the findings are
    /// printed still.
    #[arg(long)]
    quiet: bool,
}

/// One Meridian server process and its addresses.
struct ServerSlot {
    name: String,
    grpc: SocketAddr,
    http: SocketAddr,
    proc: Option<Proc>,
}

/// One create the client attempted.
struct Attempt {
    name: String,
    started_ns: u64,
    ended_ns: u64,
    result: Result<u64, String>,
}

/// A fault's window: from the fault until the cluster recovered (plus a tail).
#[derive(Debug, Clone, Copy)]
struct Window {
    from_ns: u64,
    to_ns: u64,
}

struct Harness {
    exe: PathBuf,
    dir: PathBuf,
    etcd: LocalEtcd,
    servers: Vec<ServerSlot>,
    nodes: Vec<Proc>,
    web: reqwest::Client,
}

impl Harness {
    fn start_server(&mut self, i: usize) -> Result<(), BoxError> {
        let s = &self.servers[i];
        let args = vec![
            "server".to_string(),
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            self.etcd.endpoints().join(","),
            "--grpc-addr".into(),
            s.grpc.to_string(),
            "--http-addr".into(),
            s.http.to_string(),
            "--name".into(),
            s.name.clone(),
        ];
        let proc = spawn(&self.exe, &args, &self.dir.join(format!("{}.log", s.name)))?;
        self.servers[i].proc = Some(proc);
        Ok(())
    }

    fn grpc_addrs(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.grpc.to_string()).collect()
    }

    /// The server whose `/health` says it leads, if one does.
    async fn leader(&self) -> Option<usize> {
        let http: Vec<SocketAddr> = self.servers.iter().map(|s| s.http).collect();
        leading_server(&self.web, &http).await
    }

    async fn wait_leader(&self, within: Duration) -> Result<usize, BoxError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no Meridian leader within {within:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The shards' metadata leaders, through any server (followers redirect).
    async fn shard_leaders(&self) -> Result<Vec<(u64, bool)>, BoxError> {
        for s in &self.servers {
            let url = format!("http://{}/api/v1/clusters/default/shards", s.http);
            let get = |url| super::get_json(&self.web, url);
            let Ok(shards) = super::get_all(&url, "shards", get).await else {
                continue;
            };
            return Ok(shards["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["id"].as_u64().unwrap_or(0), !s["leader"].is_null()))
                .collect());
        }
        Err("no server answered the shard list".into())
    }
}

/// Every interval of the nodes' lease logs so far.
fn lease_intervals(dir: &Path, nodes: usize) -> Result<Vec<LeaseInterval>, BoxError> {
    let mut intervals = Vec::new();
    for i in 0..nodes {
        let text = std::fs::read_to_string(dir.join(format!("n{i}.jsonl"))).unwrap_or_default();
        intervals.extend(read_lease_log(&text, i)?);
    }
    Ok(intervals)
}

/// Waits until a node holds a lease for each of `shards` (all writable), for at most
/// `within`; returns whether they all were.
async fn wait_all_writable(dir: &Path, nodes: usize, shards: &[u64], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = monotonic_ns();
        if let Ok(intervals) = lease_intervals(dir, nodes) {
            let all = shards.iter().all(|s| {
                intervals
                    .iter()
                    .any(|i| u64::from(i.shard) == *s && i.from_ns <= now && i.to_ns > now)
            });
            if all {
                return true;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client: creates tables at `rate` per second until `stop`, recording every attempt.
async fn ddl_client(
    client: MetaClient,
    rate: u64,
    stop: Arc<AtomicBool>,
    log: Arc<parking_lot::Mutex<Vec<Attempt>>>,
) {
    let period = Duration::from_millis(1000 / rate.max(1));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("t{n:06}");
        let started_ns = monotonic_ns();
        let result = match TableName::new("default", "public", &name) {
            Ok(table) => {
                let create = client.create_table(&table, &PartitionRule::None, false);
                match tokio::time::timeout(Duration::from_secs(10), create).await {
                    Ok(Ok((info, _))) => Ok(info.id),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 10 s".into()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        // A route read after every create, as a front-end would.
        let read = client
            .fetch_routes("default", "public", vec![name.clone()])
            .await;
        let result = match (result, read) {
            (Ok(id), Err(e)) => {
                // The create was acknowledged; the read failing is an error of its own.
                log.lock().push(Attempt {
                    name: String::new(),
                    started_ns,
                    ended_ns: monotonic_ns(),
                    result: Err(format!("route read: {e}")),
                });
                Ok(id)
            }
            (r, _) => r,
        };
        log.lock().push(Attempt {
            name,
            started_ns,
            ended_ns: monotonic_ns(),
            result,
        });
        tokio::time::sleep(period).await;
    }
}

/// After a fault: every shard must be writable again before the next one.
async fn settle(dir: &Path, nodes: usize, shards: &[u64], violations: &mut Vec<String>) {
    if !wait_all_writable(dir, nodes, shards, Duration::from_secs(30)).await {
        violations.push("shards were not all writable within 30 s of a fault's end".into());
    }
}

/// From `from_ns` on, when the first create started after it was acknowledged.
async fn first_ack_after(
    log: &parking_lot::Mutex<Vec<Attempt>>,
    from_ns: u64,
    within: Duration,
) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let found = log
            .lock()
            .iter()
            .filter(|a| a.started_ns > from_ns && a.result.is_ok() && !a.name.is_empty())
            .map(|a| a.ended_ns)
            .min();
        if found.is_some() {
            return found;
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per shard, the moments inside `windows` when no node held a lease for it although one
/// did when the window opened: (shard, gap in ns). Intervals are every node's.
fn lapses(intervals: &[LeaseInterval], windows: &[Window]) -> Vec<(u32, u64)> {
    let mut by_shard: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for i in intervals {
        by_shard
            .entry(i.shard)
            .or_default()
            .push((i.from_ns, i.to_ns));
    }
    let mut out = Vec::new();
    for (shard, mut list) in by_shard {
        list.sort_unstable();
        // The union of the intervals, as disjoint covered spans.
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for (from, to) in list {
            match covered.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => covered.push((from, to)),
            }
        }
        for w in windows {
            let held_at_start = covered
                .iter()
                .any(|&(f, t)| f <= w.from_ns && w.from_ns < t);
            if !held_at_start {
                continue;
            }
            let gap: u64 = covered
                .windows(2)
                .filter_map(|pair| {
                    let (end, next) = (pair[0].1, pair[1].0);
                    let (start, stop) = (end.max(w.from_ns), next.min(w.to_ns));
                    (start < stop).then(|| stop - start)
                })
                .sum::<u64>()
                + covered
                    .last()
                    .filter(|last| last.1 > w.from_ns && last.1 < w.to_ns)
                    .map_or(0, |last| w.to_ns - last.1);
            if gap > 0 {
                out.push((shard, gap));
            }
        }
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 10.0).round() / 10.0
}

/// Runs the benchmark.
pub async fn run(args: TakeoverArgs) -> CmdResult {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let report = run_in(&args, &dir).await?;
    let violations = report["violations"].as_array().map_or(0, Vec::len);
    if args.json {
        println!("{report}");
    }
    if args.dir.is_some() {
        eprintln!("logs kept in {}", dir.display());
    }
    Ok(if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_in(args: &TakeoverArgs, dir: &Path) -> Result<serde_json::Value, BoxError> {
    let progress = Progress::new(args.quiet);
    progress.say("starting a 3-member etcd...");
    let etcd_dir = dir.join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    let etcd = LocalEtcd::start(3, &etcd_dir).await?;
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(ServerSlot {
            name: format!("meridian-{i}"),
            grpc: free_addr()?,
            http: free_addr()?,
            proc: None,
        });
    }
    let mut h = Harness {
        exe: std::env::current_exe()?,
        dir: dir.to_path_buf(),
        etcd,
        servers,
        nodes: Vec::new(),
        web: reqwest::Client::new(),
    };
    progress.say("starting 3 meridian servers on it...");
    for i in 0..3 {
        h.start_server(i)?;
    }
    let phase = progress.phase("electing a leader", String::new);
    h.wait_leader(Duration::from_secs(30)).await?;
    phase.done();
    progress.say(format!("starting {} sim-node processes...", args.nodes));
    let meta = h.grpc_addrs().join(",");
    for i in 0..args.nodes {
        let node_args = vec![
            "sim-node".to_string(),
            "--meta".into(),
            meta.clone(),
            "--name".into(),
            format!("n{i}"),
            "--endpoint".into(),
            free_addr()?.to_string(),
            "--zone".into(),
            format!("zone-{}", i % 3),
            "--host".into(),
            format!("host-{i}"),
            "--lease-log".into(),
            dir.join(format!("n{i}.jsonl")).display().to_string(),
        ];
        h.nodes
            .push(spawn(&h.exe, &node_args, &dir.join(format!("n{i}.log")))?);
    }
    let client = MetaClient::connect(&h.grpc_addrs(), "default").await?;
    // Ready: a create is acknowledged (shards exist, leaders hold leases).
    let phase = progress.phase("waiting for a create and every shard writable", String::new);
    let probe = TableName::new("default", "public", "probe")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client
        .create_table(&probe, &PartitionRule::None, true)
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            return Err("the cluster did not take a create within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every shard writable before the first fault: a takeover must keep them so.
    let shard_ids: Vec<u64> = h.shard_leaders().await?.iter().map(|(id, _)| *id).collect();
    if !wait_all_writable(dir, args.nodes, &shard_ids, Duration::from_secs(60)).await {
        return Err("the shards' leaders did not all hold leases within 60 s".into());
    }
    phase.done();
    let log = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(ddl_client(
        client.clone(),
        args.rate,
        stop.clone(),
        log.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut windows = Vec::new();
    let mut samples_ns = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    for k in 0..args.kills {
        let leader = h.wait_leader(Duration::from_secs(15)).await?;
        let from_ns = monotonic_ns();
        progress.say(format!("fault at {from_ns}"));
        if let Some(p) = &h.servers[leader].proc {
            p.signal(libc::SIGKILL);
        }
        let acked = first_ack_after(&log, from_ns, Duration::from_secs(30)).await;
        let to_ns = acked.unwrap_or_else(monotonic_ns);
        match acked {
            Some(t) => {
                samples_ns.push(t - from_ns);
                progress.say(format!(
                    "kill {}/{}: {} killed; DDL answered again after {} ms",
                    k + 1,
                    args.kills,
                    h.servers[leader].name,
                    ms(t - from_ns)
                ));
            }
            None => violations.push(format!(
                "kill {}: no create was acknowledged within 30 s of killing {}",
                k + 1,
                h.servers[leader].name
            )),
        }
        windows.push(Window {
            from_ns,
            to_ns: to_ns + WINDOW_TAIL_NS,
        });
        h.servers[leader].proc = None;
        h.start_server(leader)?;
        tokio::time::sleep(QUIET).await;
        settle(dir, args.nodes, &shard_ids, &mut violations).await;
    }

    let mut pause_report = serde_json::Value::Null;
    if args.pause {
        let leader = h.wait_leader(Duration::from_secs(15)).await?;
        let from_ns = monotonic_ns();
        progress.say(format!("pause at {from_ns}"));
        if let Some(p) = &h.servers[leader].proc {
            p.signal(libc::SIGSTOP);
        }
        let acked = first_ack_after(&log, from_ns, Duration::from_secs(30)).await;
        tokio::time::sleep(PAUSE.saturating_sub(Duration::from_nanos(monotonic_ns() - from_ns)))
            .await;
        if let Some(p) = &h.servers[leader].proc {
            p.signal(libc::SIGCONT);
        }
        let resumed_ns = monotonic_ns();
        tokio::time::sleep(QUIET).await;
        let now_leader = h.leader().await;
        let stepped_down = now_leader.is_some_and(|l| l != leader);
        if !stepped_down {
            violations.push(format!(
                "the paused leader {} still leads after it woke",
                h.servers[leader].name
            ));
        }
        let takeover_ms = acked.map(|t| ms(t - from_ns));
        if acked.is_none() {
            violations.push(format!(
                "no create was acknowledged within 30 s of pausing {}",
                h.servers[leader].name
            ));
        }
        progress.say(format!(
            "pause: {} stopped for {} s; DDL answered again after {takeover_ms:?} ms; \
             after SIGCONT it {}",
            h.servers[leader].name,
            PAUSE.as_secs(),
            if stepped_down {
                "follows"
            } else {
                "still leads"
            }
        ));
        windows.push(Window {
            from_ns,
            to_ns: acked.unwrap_or(resumed_ns) + WINDOW_TAIL_NS,
        });
        // Waking up may cost the client a request or two that the old leader held.
        windows.push(Window {
            from_ns: resumed_ns,
            to_ns: resumed_ns + WINDOW_TAIL_NS,
        });
        settle(dir, args.nodes, &shard_ids, &mut violations).await;
        pause_report = json!({
            "takeover_ms": takeover_ms,
            "deposed_leader_stepped_down": stepped_down,
        });
    }

    if args.etcd_fault {
        let victim = 1;
        let from_ns = monotonic_ns();
        h.etcd.kill(victim);
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.etcd.restart(victim).await?;
        let to_ns = monotonic_ns();
        progress.say(format!(
            "etcd: member {victim} killed for 5 s and restarted"
        ));
        windows.push(Window {
            from_ns,
            to_ns: to_ns + WINDOW_TAIL_NS,
        });
        tokio::time::sleep(QUIET).await;
        settle(dir, args.nodes, &shard_ids, &mut violations).await;
    }

    let mut restart_report = serde_json::Value::Null;
    if args.restart_all {
        let from_ns = monotonic_ns();
        for s in &mut h.servers {
            s.proc = None;
        }
        for i in 0..h.servers.len() {
            h.start_server(i)?;
        }
        let acked = first_ack_after(&log, from_ns, Duration::from_secs(30)).await;
        let back_ms = acked.map(|t| ms(t - from_ns));
        progress.say(format!("restart-all: every server killed and restarted; DDL answered again after {back_ms:?} ms"));
        if acked.is_none() {
            violations
                .push("no create was acknowledged within 30 s of restarting every server".into());
        }
        windows.push(Window {
            from_ns,
            to_ns: acked.unwrap_or_else(monotonic_ns) + WINDOW_TAIL_NS,
        });
        tokio::time::sleep(QUIET).await;
        settle(dir, args.nodes, &shard_ids, &mut violations).await;
        restart_report = json!({ "ddl_back_ms": back_ms });
    }

    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    let end_ns = monotonic_ns();

    // Acknowledged creates: each present once, under the id it was acknowledged with.
    let attempts = std::mem::take(&mut *log.lock());
    let acked: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.result.is_ok() && !a.name.is_empty())
        .collect();
    let mut lost = 0;
    let mut ids = BTreeSet::new();
    let mut duplicate_ids = 0;
    for a in &acked {
        let id = a.result.clone().unwrap_or_default();
        if !ids.insert(id) {
            duplicate_ids += 1;
        }
        let table = TableName::new("default", "public", &a.name)?;
        match client.get_table(&table).await {
            Ok(t) if t.id == id => {}
            Ok(t) => {
                lost += 1;
                violations.push(format!(
                    "{} was acknowledged as id {id}, is id {}",
                    a.name, t.id
                ));
            }
            Err(e) => {
                lost += 1;
                violations.push(format!("{} was acknowledged, then lost: {e}", a.name));
            }
        }
    }
    let listed = client.list_tables("default", "public").await?;
    let listed_ids: BTreeSet<u64> = listed.iter().map(|t| t.id).collect();
    if listed_ids.len() != listed.len() {
        duplicate_ids += listed.len() - listed_ids.len();
        violations.push("two tables share an id".into());
    }
    let errors: Vec<&Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    let error_lines: Vec<String> = errors
        .iter()
        .map(|a| {
            let e = a.result.clone().err().unwrap_or_default();
            format!("{} {} {e}", a.started_ns, a.ended_ns)
        })
        .collect();
    std::fs::write(dir.join("client-errors.txt"), error_lines.join("\n"))?;
    let outside: Vec<String> = errors
        .iter()
        .filter(|a| {
            !windows
                .iter()
                .any(|w| a.ended_ns >= w.from_ns && a.started_ns <= w.to_ns)
        })
        .map(|a| a.result.clone().err().unwrap_or_default())
        .collect();
    for e in outside.iter().take(5) {
        violations.push(format!("client error outside any fault window: {e}"));
    }

    // The nodes' side: lease logs.
    let intervals = lease_intervals(dir, args.nodes)?;
    let overlaps = lease_overlaps(&intervals);
    for (a, b, ns) in overlaps.iter().take(5) {
        violations.push(format!(
            "shard {}: {} and {} both held a lease for {} ms",
            a.shard,
            a.node,
            b.node,
            ms(*ns)
        ));
    }
    let lapsed = lapses(&intervals, &windows);
    let max_lapse_ns = lapsed.iter().map(|&(_, g)| g).max().unwrap_or(0);
    let shard_leaders = h.shard_leaders().await?;
    let leaderless: Vec<u64> = shard_leaders
        .iter()
        .filter(|(_, has)| !has)
        .map(|(id, _)| *id)
        .collect();
    let unwritable: Vec<u64> = shard_leaders
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| {
            !intervals
                .iter()
                .any(|i| u64::from(i.shard) == *id && i.to_ns + 2_000_000_000 > end_ns)
        })
        .collect();
    if !leaderless.is_empty() {
        violations.push(format!(
            "shards without a leader at the end: {leaderless:?}"
        ));
    }
    if !unwritable.is_empty() {
        violations.push(format!(
            "shards no node could write at the end: {unwritable:?}"
        ));
    }

    let mut sorted: Vec<f64> = samples_ns.iter().map(|&n| ms(n)).collect();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "takeover: {} kills; DDL answered again after p50 {p50} ms, p99 {p99} ms (max {} ms); \
         node leases lapsed in {} shard-windows (longest {} ms); {} creates acknowledged, {lost} \
         lost, {} client errors ({} outside fault windows); {} lease overlaps; {cores} cores",
        sorted.len(),
        sorted.last().copied().unwrap_or(0.0),
        lapsed.len(),
        ms(max_lapse_ns),
        acked.len(),
        errors.len(),
        outside.len(),
        overlaps.len(),
    );
    for v in &violations {
        eprintln!("VIOLATION: {v}");
    }
    Ok(json!({
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": sorted.last().copied().unwrap_or(0.0),
        "samples": sorted.len(),
        "lease_lapses": lapsed.len(),
        "max_lapse_ms": ms(max_lapse_ns),
        "lease_overlaps": overlaps.len(),
        "acked_creates": acked.len(),
        "lost_creates": lost,
        "duplicate_ids": duplicate_ids,
        "client_errors": errors.len(),
        "client_errors_outside_windows": outside.len(),
        "shards_without_leader": leaderless.len(),
        "shards_unwritable": unwritable.len(),
        "pause": pause_report,
        "etcd_member_killed": args.etcd_fault,
        "restart_all": restart_report,
        "nodes": args.nodes,
        "cores": cores,
        "violations": violations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(source: usize, shard: u32, from_ns: u64, to_ns: u64) -> LeaseInterval {
        LeaseInterval {
            source,
            node: format!("n{source}"),
            shard,
            version: 1,
            from_ns,
            to_ns,
        }
    }

    #[test]
    fn a_gap_inside_a_window_is_a_lapse_and_one_outside_is_not() {
        let w = [Window {
            from_ns: 100,
            to_ns: 200,
        }];
        // Continuous across the window (renewed, or handed to another node seamlessly).
        let steady = [interval(0, 1, 0, 150), interval(1, 1, 150, 400)];
        assert!(lapses(&steady, &w).is_empty());
        // A gap of 20 inside the window.
        let gap = [interval(0, 1, 0, 150), interval(0, 1, 170, 400)];
        assert_eq!(lapses(&gap, &w), vec![(1, 20)]);
        // Ran out inside the window and never came back before it closed.
        let ended = [interval(0, 1, 0, 180)];
        assert_eq!(lapses(&ended, &w), vec![(1, 20)]);
        // Not held when the window opened: nothing to lose.
        let later = [interval(0, 1, 120, 400)];
        assert!(lapses(&later, &w).is_empty());
        // A gap outside the window does not count.
        let before = [interval(0, 1, 0, 50), interval(0, 1, 60, 400)];
        assert!(lapses(&before, &w).is_empty());
    }
}
