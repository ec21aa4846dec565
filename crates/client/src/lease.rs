//! Per-shard write leases on the node's side, and the lease log.
//!
//! A node may serve writes for a shard only while it holds a lease for that shard at the
//! version it holds. Leases come from Meridian's heartbeat acks, one per shard and version,
//! measured on this node's monotonic clock from when it *sent* the acknowledged heartbeat.
//! They end when they run out, or at once when the node applies an instruction that makes
//! it anything but the shard's leader (demote, close, reopen as follower). The database
//! asks [`ShardLeases::writable`] (or runs its write inside [`ShardLeases::with_lease`],
//! which is atomic against a demotion) before every write.
//!
//! Timeline of one lease (node clock):
//!
//! ```text
//!   send heartbeat H at t0 ──> Meridian grants (shard, v) ──> ack arrives at t1
//!   writable from t1 until t0 + lease_ms; the next ack extends it; a demote ends it now
//! ```

use meridian_model::{ReplicaRole, ShardId, ShardVersion};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A write lease this node holds for one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLease {
    /// The shard.
    pub shard: ShardId,
    /// The version the lease is for (the version the node holds).
    pub version: ShardVersion,
    /// The lease runs out at this instant of the node's monotonic clock.
    pub until: Instant,
}

/// Why a shard is not writable on this node now. Every case is retryable: the client
/// should refresh its route (the leader may have moved) and try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    /// The node does not hold the shard.
    #[error("{0} is not held by this node")]
    NotHeld(ShardId),
    /// The node holds the shard as a follower.
    #[error("{0} is a follower here: not leader")]
    Follower(ShardId),
    /// The node leads the shard but holds no unexpired lease for it (not granted yet,
    /// or it ran out: Meridian may be promoting another replica).
    #[error("{shard} has no valid write lease here ({why}): not leader")]
    NoLease {
        /// The shard.
        shard: ShardId,
        /// Details.
        why: &'static str,
    },
}

/// What the node holds of one shard, as far as leases care.
#[derive(Debug, Clone, Copy)]
struct Held {
    version: ShardVersion,
    role: ReplicaRole,
    /// The current lease, and when its writable interval began (for the lease log).
    lease: Option<(ShardLease, Instant)>,
}

/// The lease table of one node: cheap to clone, shared with the database.
#[derive(Clone)]
pub struct ShardLeases {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    node: String,
    held: HashMap<ShardId, Held>,
    log: Option<LeaseLog>,
}

impl ShardLeases {
    /// An empty table for node `node`, logging intervals to `log` if given.
    pub fn new(node: impl Into<String>, log: Option<LeaseLog>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                node: node.into(),
                held: HashMap::new(),
                log,
            })),
        }
    }

    /// The lease for `shard` if this node may serve writes for it now.
    pub fn writable(&self, shard: ShardId) -> Result<ShardLease, NotLeader> {
        self.inner.lock().writable(shard, Instant::now())
    }

    /// Runs `write` while holding `shard`'s lease: no demotion, close or expiry can come
    /// between the check and the write (the write should be quick: it blocks instructions
    /// and acks). The lease is checked again after `write` returns, so a write whose
    /// thread stalled past the lease's end is reported as refused, never as done.
    pub fn with_lease<R>(
        &self,
        shard: ShardId,
        write: impl FnOnce(&ShardLease) -> R,
    ) -> Result<R, NotLeader> {
        let inner = self.inner.lock();
        let lease = inner.writable(shard, Instant::now())?;
        let result = write(&lease);
        if Instant::now() >= lease.until {
            return Err(NotLeader::NoLease {
                shard,
                why: "it ran out during the write",
            });
        }
        Ok(result)
    }

    /// Every unexpired lease, by shard.
    pub fn leases(&self) -> Vec<ShardLease> {
        let now = Instant::now();
        let inner = self.inner.lock();
        let mut out: Vec<ShardLease> = inner
            .held
            .values()
            .filter_map(|h| h.lease.map(|(l, _)| l))
            .filter(|l| l.until > now)
            .collect();
        out.sort_by_key(|l| l.shard);
        out
    }

    /// Whether the node holds an unexpired lease for `shard` at `version`.
    pub fn is_leased(&self, shard: ShardId, version: ShardVersion) -> bool {
        self.writable(shard).is_ok_and(|l| l.version == version)
    }

    /// Records what the node holds of a shard after an instruction applied (or at
    /// registration). A role other than leader ends the lease at once. A leader that moves
    /// to a newer version keeps its lease: Meridian named it leader at that version, and no
    /// other node can hold a lease for the shard while this one's runs.
    pub fn set_held(&self, shard: ShardId, version: ShardVersion, role: ReplicaRole) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let held = inner.held.entry(shard).or_insert(Held {
            version,
            role,
            lease: None,
        });
        held.version = version;
        held.role = role;
        if role != ReplicaRole::Leader {
            end_lease(&inner.node, &mut inner.log, held, now, "demoted");
        } else if let Some((lease, _)) = &mut held.lease {
            lease.version = version;
        }
    }

    /// The node no longer holds `shard` (closed): its lease ends now.
    pub fn remove(&self, shard: ShardId) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(mut held) = inner.held.remove(&shard) {
            end_lease(&inner.node, &mut inner.log, &mut held, now, "closed");
        }
    }

    /// Applies a lease grant from an ack: valid only if the node leads `shard` at exactly
    /// `version`. Returns whether it was taken.
    pub fn grant(&self, shard: ShardId, version: ShardVersion, until: Instant) -> bool {
        let now = Instant::now();
        if until <= now {
            return false;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some(held) = inner.held.get_mut(&shard) else {
            return false;
        };
        if held.role != ReplicaRole::Leader || held.version != version {
            return false;
        }
        let from = match held.lease {
            Some((l, from)) if l.until > now => from,
            _ => now,
        };
        let until = match held.lease {
            Some((l, _)) if l.until > until => l.until,
            _ => until,
        };
        held.lease = Some((
            ShardLease {
                shard,
                version,
                until,
            },
            from,
        ));
        if let Some(log) = &mut inner.log {
            log.interval(&inner.node, shard, version, from, until);
        }
        true
    }
}

impl Inner {
    fn writable(&self, shard: ShardId, now: Instant) -> Result<ShardLease, NotLeader> {
        let held = self.held.get(&shard).ok_or(NotLeader::NotHeld(shard))?;
        if held.role != ReplicaRole::Leader {
            return Err(NotLeader::Follower(shard));
        }
        match held.lease {
            None => Err(NotLeader::NoLease {
                shard,
                why: "none granted",
            }),
            Some((l, _)) if l.until <= now => Err(NotLeader::NoLease {
                shard,
                why: "it ran out",
            }),
            Some((l, _)) if l.version != held.version => Err(NotLeader::NoLease {
                shard,
                why: "granted for another version",
            }),
            Some((l, _)) => Ok(l),
        }
    }
}

fn end_lease(node: &str, log: &mut Option<LeaseLog>, held: &mut Held, now: Instant, why: &str) {
    if let Some((lease, from)) = held.lease.take() {
        if lease.until > now {
            tracing::debug!(node, shard = %lease.shard, version = %lease.version, "write lease ended early: {why}");
            if let Some(log) = log {
                log.interval(node, lease.shard, lease.version, from, now);
            }
        }
    }
}

/// Appends one JSON line per change of a writable interval:
/// `{"node":"n1","shard":3,"version":7,"from_ns":..,"to_ns":..}`, in CLOCK_MONOTONIC
/// nanoseconds (one clock for every process on a machine). Lines with the same node, shard
/// and `from_ns` describe one interval; the last of them holds its end (a lease extended
/// by an ack, or cut short by a demotion). A process killed mid-interval leaves the lease's
/// end as the interval's end, which is when it would have stopped writing.
pub struct LeaseLog {
    file: File,
    base: Instant,
    base_ns: u64,
}

impl LeaseLog {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (base, base_ns) = clock_pair();
        Ok(Self {
            file,
            base,
            base_ns,
        })
    }

    fn ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_ns + d.as_nanos() as u64,
            None => self
                .base_ns
                .saturating_sub(self.base.duration_since(t).as_nanos() as u64),
        }
    }

    fn interval(
        &mut self,
        node: &str,
        shard: ShardId,
        version: ShardVersion,
        from: Instant,
        to: Instant,
    ) {
        let line = format!(
            "{{\"node\":{},\"shard\":{},\"version\":{},\"from_ns\":{},\"to_ns\":{}}}\n",
            json_string(node),
            shard.0,
            version.0,
            self.ns(from),
            self.ns(to)
        );
        // One write call per line: appends of a line are not interleaved with others'.
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::warn!("writing the lease log: {e}");
        }
    }
}

/// An `Instant` and the CLOCK_MONOTONIC reading of (nearly) the same moment: of a few
/// readings, each bracketed by two `Instant`s, the tightest, so that logged intervals and
/// write times taken with [`monotonic_ns`] compare to within tens of nanoseconds (a
/// preemption between two plain reads could skew every logged time by milliseconds).
fn clock_pair() -> (Instant, u64) {
    let mut best: Option<(Duration, Instant, u64)> = None;
    for _ in 0..16 {
        let before = Instant::now();
        let ns = monotonic_ns();
        let after = Instant::now();
        let width = after.duration_since(before);
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, ns));
        }
    }
    let (_, base, ns) = best.unwrap_or_else(|| (Duration::ZERO, Instant::now(), monotonic_ns()));
    (base, ns)
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock `Instant` uses on Linux, readable by
/// every process on the machine.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One writable interval read back from a lease log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LeaseInterval {
    /// Which log it came from (the caller's number: one per process).
    #[serde(skip)]
    pub source: usize,
    /// Node name.
    pub node: String,
    /// Shard id.
    pub shard: u32,
    /// Shard version of the lease (the last one, if a leader moved to a newer version).
    pub version: u64,
    /// Start, CLOCK_MONOTONIC ns.
    pub from_ns: u64,
    /// End, CLOCK_MONOTONIC ns.
    pub to_ns: u64,
}

/// Reads a lease log written by [`LeaseLog`]: one interval per (node, shard, from_ns),
/// ending where the last line about it says. A torn last line (a process killed while
/// writing it) is skipped; any other bad line is an error.
pub fn read_lease_log(text: &str, source: usize) -> Result<Vec<LeaseInterval>, String> {
    let mut by_start: HashMap<(String, u32, u64), LeaseInterval> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let mut interval: LeaseInterval = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => continue,
            Err(e) => return Err(format!("line {}: {e}: {line}", i + 1)),
        };
        interval.source = source;
        by_start.insert(
            (interval.node.clone(), interval.shard, interval.from_ns),
            interval,
        );
    }
    let mut out: Vec<LeaseInterval> = by_start.into_values().collect();
    out.sort_by_key(|i| (i.shard, i.from_ns));
    Ok(out)
}

/// Pairs of intervals of one shard from different sources that overlap in time, with the
/// overlap in ns: each pair is two processes that both could accept writes for the shard.
pub fn lease_overlaps(intervals: &[LeaseInterval]) -> Vec<(LeaseInterval, LeaseInterval, u64)> {
    let mut by_shard: HashMap<u32, Vec<&LeaseInterval>> = HashMap::new();
    for i in intervals {
        by_shard.entry(i.shard).or_default().push(i);
    }
    let mut out = Vec::new();
    for list in by_shard.values() {
        for (n, a) in list.iter().enumerate() {
            for b in &list[n + 1..] {
                if a.source == b.source {
                    continue;
                }
                let start = a.from_ns.max(b.from_ns);
                let end = a.to_ns.min(b.to_ns);
                if start < end {
                    out.push(((*a).clone(), (*b).clone(), end - start));
                }
            }
        }
    }
    out
}

/// The instant a lease granted by an ack ends: the acknowledged heartbeat's send time on
/// the node's clock plus the lease length.
pub(crate) fn lease_end(clock: Instant, sent_at_ms: u64, lease_ms: u64) -> Instant {
    clock + Duration::from_millis(sent_at_ms.saturating_add(lease_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_grant_counts_only_for_a_leader_at_the_granted_version() {
        let leases = ShardLeases::new("n1", None);
        let s = ShardId(3);
        assert!(!leases.grant(s, ShardVersion(2), soon()), "not held");
        leases.set_held(s, ShardVersion(2), ReplicaRole::Follower);
        assert!(!leases.grant(s, ShardVersion(2), soon()), "follower");
        leases.set_held(s, ShardVersion(2), ReplicaRole::Leader);
        assert!(!leases.grant(s, ShardVersion(1), soon()), "older version");
        assert!(matches!(leases.writable(s), Err(NotLeader::NoLease { .. })));
        assert!(leases.grant(s, ShardVersion(2), soon()));
        assert_eq!(leases.writable(s).unwrap().version, ShardVersion(2));
    }

    #[test]
    fn a_demotion_ends_the_lease_at_once() {
        let leases = ShardLeases::new("n1", None);
        let s = ShardId(3);
        leases.set_held(s, ShardVersion(2), ReplicaRole::Leader);
        assert!(leases.grant(s, ShardVersion(2), soon()));
        leases.set_held(s, ShardVersion(3), ReplicaRole::Follower);
        assert_eq!(leases.writable(s), Err(NotLeader::Follower(s)));
        // A late ack for the old version does not bring it back.
        leases.set_held(s, ShardVersion(4), ReplicaRole::Leader);
        assert!(!leases.grant(s, ShardVersion(2), soon()));
        assert!(leases.writable(s).is_err());
    }

    #[test]
    fn an_expired_lease_refuses_writes() {
        let leases = ShardLeases::new("n1", None);
        let s = ShardId(1);
        leases.set_held(s, ShardVersion(1), ReplicaRole::Leader);
        assert!(leases.grant(
            s,
            ShardVersion(1),
            Instant::now() + Duration::from_millis(30)
        ));
        assert!(leases.with_lease(s, |_| ()).is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(
            leases.with_lease(s, |_| ()),
            Err(NotLeader::NoLease { .. })
        ));
    }

    #[test]
    fn the_lease_log_records_intervals_and_their_early_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lease.log");
        let leases = ShardLeases::new("n\"1", Some(LeaseLog::open(&path).unwrap()));
        let s = ShardId(5);
        leases.set_held(s, ShardVersion(7), ReplicaRole::Leader);
        assert!(leases.grant(s, ShardVersion(7), soon()));
        assert!(leases.grant(s, ShardVersion(7), soon()));
        leases.remove(s);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("{\"node\":\"n\\\"1\",\"shard\":5,\"version\":7,\"from_ns\":"));
        let field = |l: &str, f: &str| -> u64 {
            let i = l.find(&format!("\"{f}\":")).unwrap() + f.len() + 3;
            l[i..]
                .trim_end_matches('}')
                .split([',', '}'])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        // One interval (same start); the last line cuts it short.
        assert_eq!(field(lines[0], "from_ns"), field(lines[2], "from_ns"));
        assert!(field(lines[2], "to_ns") < field(lines[1], "to_ns"));
        assert!(field(lines[2], "to_ns") <= monotonic_ns());
        let intervals = read_lease_log(&text, 0).unwrap();
        assert_eq!(intervals.len(), 1);
        assert_eq!(intervals[0].to_ns, field(lines[2], "to_ns"));
    }

    #[test]
    fn overlaps_are_found_only_between_sources() {
        let log = |node: &str, from: u64, to: u64| {
            format!("{{\"node\":\"{node}\",\"shard\":1,\"version\":2,\"from_ns\":{from},\"to_ns\":{to}}}\n")
        };
        let a = read_lease_log(&(log("a", 10, 20) + &log("a", 30, 40)), 0).unwrap();
        let b = read_lease_log(&(log("a", 20, 30) + &log("b", 35, 50) + "{\"node\""), 1).unwrap();
        let all: Vec<_> = a.into_iter().chain(b).collect();
        let overlaps = lease_overlaps(&all);
        assert_eq!(overlaps.len(), 1);
        assert_eq!(overlaps[0].2, 5);
    }
}
