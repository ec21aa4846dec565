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

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One line of a lease log.
#[derive(Debug, Deserialize)]
struct LeaseLine {
    node: String,
    shard: u32,
    version: u64,
    from_ns: u64,
    to_ns: u64,
}

/// One writable interval of one node process for one shard.
#[derive(Debug, Clone)]
pub struct Interval {
    /// The process: its lease log's name (`n3-1` is node n3's second run).
    pub owner: String,
    /// The node's name.
    pub node: String,
    /// The shard version the interval began at.
    pub version: u64,
    /// Start.
    pub from_ns: u64,
    /// End (the last line of the interval).
    pub to_ns: u64,
}

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

/// Every interval, by shard; and lines that could not be read.
pub struct LeaseLogs {
    /// Intervals per shard, sorted by start.
    pub by_shard: BTreeMap<u32, Vec<Interval>>,
    /// Lines that were not valid JSON (e.g. cut by a SIGKILL mid-write).
    pub bad_lines: usize,
}

/// Reads every `*.jsonl` lease log in `dir`; the file stem names the process.
pub fn read_lease_logs(dir: &Path) -> std::io::Result<LeaseLogs> {
    let mut by_key: HashMap<(String, u32, u64), Interval> = HashMap::new();
    let mut bad_lines = 0;
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        let owner = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(l) = serde_json::from_str::<LeaseLine>(line) else {
                bad_lines += 1;
                continue;
            };
            // Lines of one interval share node, shard and start; the last holds its end.
            let key = (owner.clone(), l.shard, l.from_ns);
            by_key
                .entry(key)
                .and_modify(|i| i.to_ns = l.to_ns)
                .or_insert(Interval {
                    owner: owner.clone(),
                    node: l.node,
                    version: l.version,
                    from_ns: l.from_ns,
                    to_ns: l.to_ns,
                });
        }
    }
    let mut by_shard: BTreeMap<u32, Vec<Interval>> = BTreeMap::new();
    for ((_, shard, _), interval) in by_key {
        if interval.to_ns > interval.from_ns {
            by_shard.entry(shard).or_default().push(interval);
        }
    }
    for list in by_shard.values_mut() {
        list.sort_by_key(|i| (i.from_ns, i.to_ns));
    }
    Ok(LeaseLogs {
        by_shard,
        bad_lines,
    })
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
    let empty = Vec::new();
    // Overlap: time covered twice or more, and the pairs that did it.
    for (shard, list) in &input.logs.by_shard {
        let mut events: Vec<(u64, i32)> = Vec::with_capacity(list.len() * 2);
        for i in list {
            events.push((i.from_ns, 1));
            events.push((i.to_ns, -1));
        }
        // Ends before starts at one instant: touching intervals do not overlap.
        events.sort();
        let (mut depth, mut last) = (0i32, 0u64);
        for (t, d) in events {
            if depth >= 2 {
                f.overlap_ns += t - last;
            }
            depth += d;
            last = t;
        }
        for (a_idx, a) in list.iter().enumerate() {
            for b in &list[a_idx + 1..] {
                if b.from_ns >= a.to_ns {
                    break;
                }
                let overlap = a.to_ns.min(b.to_ns) - b.from_ns;
                let msg = format!(
                    "shard {shard}: {} (v{}, {:.3}..{:.3}s) and {} (v{}, {:.3}..{:.3}s) both writable for {:.3} ms",
                    a.owner,
                    a.version,
                    rel(a.from_ns),
                    rel(a.to_ns),
                    b.owner,
                    b.version,
                    rel(b.from_ns),
                    rel(b.to_ns),
                    ms(overlap)
                );
                note(&mut f, msg);
            }
        }
    }
    // Writes inside their node's intervals.
    for ack in input.acks {
        let list = input.logs.by_shard.get(&ack.shard).unwrap_or(&empty);
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
        let union = union(input.logs.by_shard.get(&shard).unwrap_or(&empty));
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
fn union(list: &[Interval]) -> Vec<(u64, u64)> {
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

    fn interval(owner: &str, from: u64, to: u64) -> Interval {
        Interval {
            owner: owner.into(),
            node: owner.split('-').next().unwrap_or(owner).into(),
            version: 1,
            from_ns: from,
            to_ns: to,
        }
    }

    fn logs(list: Vec<Interval>) -> LeaseLogs {
        LeaseLogs {
            by_shard: BTreeMap::from([(1, list)]),
            bad_lines: 0,
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
        let ok = logs(vec![interval("n1-0", 0, 500), interval("n2-0", 500, 1000)]);
        let f = run(&ok, &[], &[]);
        assert_eq!((f.overlap_ns, f.violations.len()), (0, 0));
        let bad = logs(vec![
            interval("n1-0", 0, 520),
            interval("n2-0", 500, 1000),
            interval("n3-0", 510, 515),
        ]);
        let f = run(&bad, &[], &[]);
        assert_eq!(f.overlap_ns, 20, "time covered at least twice");
        assert_eq!(f.violations.len(), 3, "{:?}", f.violations);
    }

    #[test]
    fn a_write_outside_its_nodes_interval_is_caught() {
        let l = logs(vec![interval("n1-0", 0, 500), interval("n2-0", 600, 1000)]);
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
            interval("n1-0", 0, 300),
            interval("n1-0", 250, 400),
            interval("n2-0", 650, 1000),
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
