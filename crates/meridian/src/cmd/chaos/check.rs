//! The chaos harness's checker: reads every lease log and every acknowledged write after
//! the run and decides whether the promise held.
//!
//! - **Overlap**: per shard, no two writable intervals (of any two node processes) may
//!   intersect; `overlap_ns` is the total time during which two or more did.
//! - **Writes**: every acknowledged write lies inside a writable interval of the node that
//!   accepted it, for its shard, by its accept time.
//! - **Recovery**: after each fault clears (at each of its checkpoints), every shard is
//!   writable again within the recovery limit.
//! - **Leaderless**: the longest time any shard had no writable interval between the end of
//!   start-up and the end of the run (a figure, not a pass condition).
//!
//! All times are CLOCK_MONOTONIC nanoseconds, the clock of every process on the machine.

use meridian_client::{lease_overlaps, read_lease_log, LeaseInterval};
use std::collections::BTreeMap;
use std::path::Path;

/// An acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The node that accepted it.
    pub node: String,
    /// Its shard.
    pub shard: u32,
    /// When it was accepted (inside the node's lease).
    pub accepted_ns: u64,
}

/// Every interval of every lease log of a run.
pub struct LeaseLogs {
    /// The processes, by source number: each lease log's name (`n3-1` is node n3's
    /// second run).
    pub owners: Vec<String>,
    /// Every interval, sorted by shard and start.
    pub intervals: Vec<LeaseInterval>,
    /// Logs that could not be read, with why.
    pub bad_logs: Vec<String>,
}

impl LeaseLogs {
    fn by_shard(&self) -> BTreeMap<u32, Vec<&LeaseInterval>> {
        let mut out: BTreeMap<u32, Vec<&LeaseInterval>> = BTreeMap::new();
        for i in self.intervals.iter().filter(|i| i.to_ns > i.from_ns) {
            out.entry(i.shard).or_default().push(i);
        }
        out
    }

    fn owner(&self, i: &LeaseInterval) -> &str {
        self.owners.get(i.source).map_or("?", String::as_str)
    }
}

/// Reads every `*.jsonl` lease log in `dir` (one per node process).
pub fn read_lease_logs(dir: &Path) -> std::io::Result<LeaseLogs> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut logs = LeaseLogs {
        owners: Vec::new(),
        intervals: Vec::new(),
        bad_logs: Vec::new(),
    };
    for path in files {
        let owner = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)?;
        match read_lease_log(&text, logs.owners.len()) {
            Ok(list) => logs.intervals.extend(list),
            Err(e) => logs.bad_logs.push(format!("{}: {e}", path.display())),
        }
        logs.owners.push(owner);
    }
    logs.intervals
        .sort_by_key(|i| (i.shard, i.from_ns, i.to_ns));
    Ok(logs)
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Total time, over all shards, during which two or more intervals were writable.
    pub overlap_ns: u64,
    /// Acknowledged writes outside every interval of their node for their shard.
    pub writes_outside: usize,
    /// Longest time a shard had no writable interval, in the checked window.
    pub max_leaderless_ns: u64,
    /// The shard with that gap, and when it began.
    pub max_leaderless_at: Option<(u32, u64)>,
    /// Longest time from a checkpoint until every shard was writable again.
    pub max_recovery_ns: u64,
    /// Checkpoints after which some shard was not writable within the limit.
    pub late_recoveries: usize,
    /// Descriptions of the first violations found.
    pub violations: Vec<String>,
}

/// What to check.
pub struct CheckInput<'a> {
    /// Intervals.
    pub logs: &'a LeaseLogs,
    /// Shards that must be writable (those of the cluster after start-up).
    pub shards: &'a [u32],
    /// Acknowledged writes.
    pub acks: &'a [Ack],
    /// Checkpoints (fault clears), each with a label.
    pub checkpoints: &'a [(u64, String)],
    /// Recovery limit after each checkpoint.
    pub recovery_limit_ns: u64,
    /// The checked window: end of start-up ..
    pub window_from_ns: u64,
    /// .. end of the run.
    pub window_to_ns: u64,
    /// Run start, to print times relative to it.
    pub t0_ns: u64,
}

const MAX_VIOLATIONS: usize = 20;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Runs every check.
pub fn check(input: &CheckInput<'_>) -> Findings {
    let mut f = Findings::default();
    let rel = |ns: u64| ms(ns.saturating_sub(input.t0_ns)) / 1000.0;
    let note = |f: &mut Findings, v: String| {
        if f.violations.len() < MAX_VIOLATIONS {
            f.violations.push(v);
        }
    };
    let by_shard = input.logs.by_shard();
    let empty = Vec::new();
    // Overlap: pairs of intervals of one shard from two processes.
    for (a, b, overlap) in lease_overlaps(&input.logs.intervals) {
        f.overlap_ns += overlap;
        let msg = format!(
            "shard {}: {} (v{}, {:.3}..{:.3}s) and {} (v{}, {:.3}..{:.3}s) both writable for {:.3} ms",
            a.shard,
            input.logs.owner(&a),
            a.version,
            rel(a.from_ns),
            rel(a.to_ns),
            input.logs.owner(&b),
            b.version,
            rel(b.from_ns),
            rel(b.to_ns),
            ms(overlap)
        );
        note(&mut f, msg);
    }
    // Writes inside their node's intervals.
    for ack in input.acks {
        let list = by_shard.get(&ack.shard).unwrap_or(&empty);
        let inside = list.iter().any(|i| {
            i.node == ack.node && i.from_ns <= ack.accepted_ns && ack.accepted_ns <= i.to_ns
        });
        if !inside {
            f.writes_outside += 1;
            let msg = format!(
                "shard {}: write acknowledged by {} at {:.3}s outside its writable intervals",
                ack.shard,
                ack.node,
                rel(ack.accepted_ns)
            );
            note(&mut f, msg);
        }
    }
    // Leaderless gaps and recovery, on the union of every shard's intervals.
    for &shard in input.shards {
        let union = union(by_shard.get(&shard).unwrap_or(&empty));
        let mut cursor = input.window_from_ns;
        for &(from, to) in &union {
            if to <= cursor {
                continue;
            }
            if from > cursor {
                note_gap(&mut f, shard, cursor, from.min(input.window_to_ns));
            }
            cursor = cursor.max(to);
            if cursor >= input.window_to_ns {
                break;
            }
        }
        if cursor < input.window_to_ns {
            note_gap(&mut f, shard, cursor, input.window_to_ns);
        }
        for (at, label) in input.checkpoints {
            let back = union
                .iter()
                .find(|&&(_, to)| to > *at)
                .map(|&(from, _)| from.max(*at));
            let recovery = back.map(|b| b - at);
            match recovery {
                Some(r) if r <= input.recovery_limit_ns => {
                    f.max_recovery_ns = f.max_recovery_ns.max(r);
                }
                _ => {
                    f.late_recoveries += 1;
                    if let Some(r) = recovery {
                        f.max_recovery_ns = f.max_recovery_ns.max(r);
                    }
                    let msg = format!(
                        "shard {shard}: not writable within {:.0} ms of {label} at {:.3}s ({})",
                        ms(input.recovery_limit_ns),
                        rel(*at),
                        match recovery {
                            Some(r) => format!("writable after {:.0} ms", ms(r)),
                            None => "never again".into(),
                        }
                    );
                    note(&mut f, msg);
                }
            }
        }
    }
    f
}

fn note_gap(f: &mut Findings, shard: u32, from: u64, to: u64) {
    let gap = to.saturating_sub(from);
    if gap > f.max_leaderless_ns {
        f.max_leaderless_ns = gap;
        f.max_leaderless_at = Some((shard, from));
    }
}

/// The union of intervals sorted by start, as disjoint `(from, to)` pairs.
fn union(list: &[&LeaseInterval]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for i in list {
        match out.last_mut() {
            Some(last) if i.from_ns <= last.1 => last.1 = last.1.max(i.to_ns),
            _ => out.push((i.from_ns, i.to_ns)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(source: usize, from: u64, to: u64) -> LeaseInterval {
        LeaseInterval {
            source,
            node: format!("n{source}"),
            shard: 1,
            version: 1,
            from_ns: from,
            to_ns: to,
        }
    }

    fn logs(intervals: Vec<LeaseInterval>) -> LeaseLogs {
        LeaseLogs {
            owners: (0..4).map(|i| format!("n{i}-0")).collect(),
            intervals,
            bad_logs: Vec::new(),
        }
    }

    fn run(logs: &LeaseLogs, acks: &[Ack], checkpoints: &[(u64, String)]) -> Findings {
        check(&CheckInput {
            logs,
            shards: &[1],
            acks,
            checkpoints,
            recovery_limit_ns: 100,
            window_from_ns: 0,
            window_to_ns: 1000,
            t0_ns: 0,
        })
    }

    #[test]
    fn touching_intervals_do_not_overlap_and_crossing_ones_do() {
        let ok = logs(vec![interval(1, 0, 500), interval(2, 500, 1000)]);
        let f = run(&ok, &[], &[]);
        assert_eq!((f.overlap_ns, f.violations.len()), (0, 0));
        let bad = logs(vec![
            interval(1, 0, 520),
            interval(2, 500, 1000),
            interval(3, 510, 515),
        ]);
        let f = run(&bad, &[], &[]);
        assert_eq!(f.overlap_ns, 20 + 5 + 5, "the overlaps of every pair");
        assert_eq!(f.violations.len(), 3, "{:?}", f.violations);
    }

    #[test]
    fn a_write_outside_its_nodes_interval_is_caught() {
        let l = logs(vec![interval(1, 0, 500), interval(2, 600, 1000)]);
        let ack = |node: &str, at| Ack {
            node: node.into(),
            shard: 1,
            accepted_ns: at,
        };
        let f = run(&l, &[ack("n1", 500), ack("n2", 700)], &[]);
        assert_eq!(f.writes_outside, 0);
        let f = run(&l, &[ack("n1", 700), ack("n2", 550)], &[]);
        assert_eq!(f.writes_outside, 2);
    }

    #[test]
    fn gaps_and_late_recovery_are_measured() {
        let l = logs(vec![
            interval(1, 0, 300),
            interval(1, 250, 400),
            interval(2, 650, 1000),
        ]);
        let f = run(&l, &[], &[(420, "heal".into())]);
        assert_eq!(f.max_leaderless_ns, 250);
        assert_eq!(f.max_leaderless_at, Some((1, 400)));
        assert_eq!(f.late_recoveries, 1, "writable 230 ns after, limit 100");
        assert_eq!(f.max_recovery_ns, 230);
        let f = run(&l, &[], &[(100, "heal".into())]);
        assert_eq!((f.late_recoveries, f.max_recovery_ns), (0, 0));
    }
}
