//! Write leases in the simulator, by the rules the real system uses, and the two-writers
//! audit that checks them at every simulated step.
//!
//! Meridian's side is the scheduler crate's [`LeaseBook`], granting through
//! [`LeaseBook::grant_for_report`] exactly as the server's `Cluster::lease_grants` does (the
//! node's state as the last tick published it, the metadata leader at the reported version,
//! the session). The node's side ([`NodeLeases`]) follows `meridian_client::ShardLeases`:
//! a lease runs until the acknowledged heartbeat's send time plus `leader_lease_ms` on the
//! node's own clock, an ack only counts for a shard the node leads at exactly the granted
//! version, and a demotion or close ends the lease at once.
//!
//! Node clocks may run fast or slow (`drift_ppm`), so "unexpired" is judged on each node's
//! own clock, as the node judges it.
//!
//! ```text
//! node: H sent at t0 (node clock) ──> Meridian: grant_for_report ──> ack ──> node:
//!       writable until t0 + lease (node clock) unless demoted/closed first
//! audit after every event: per shard, at most one live node with role Leader at version v
//!       and an unexpired lease for v
//! ```

use meridian_model::{NodeId, NodeState, ReplicaRole, Shard, ShardId, ShardReport, ShardVersion};
use meridian_scheduler::LeaseBook;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What one node holds of one shard, as far as leases care (the node's mirror of its own
/// replica state, as `ShardLeases::set_held` keeps it).
#[derive(Debug, Clone, Copy)]
struct Held {
    version: ShardVersion,
    role: ReplicaRole,
    /// Granted version and end (node clock, ms).
    lease: Option<(ShardVersion, u64)>,
}

/// One simulated node's write leases.
#[derive(Debug, Clone, Default)]
struct NodeLeases {
    held: BTreeMap<ShardId, Held>,
    /// Clock rate error: the node's clock reads `t + t * drift_ppm / 1e6` at sim time `t`.
    drift_ppm: i64,
    /// The process is alive (a dead one writes nothing, whatever it held).
    alive: bool,
    /// The process is stopped (it holds its leases but serves nothing until it resumes).
    stalled: bool,
}

impl NodeLeases {
    fn clock(&self, t: u64) -> u64 {
        (t as i64 + (t as i64).saturating_mul(self.drift_ppm) / 1_000_000).max(0) as u64
    }

    /// The first sim time at which the node's clock reads at least `node_ms`.
    fn sim_time_of(&self, node_ms: u64) -> u64 {
        let mut t = ((node_ms as i128 * 1_000_000) / (1_000_000 + self.drift_ppm as i128)) as u64;
        while self.clock(t) < node_ms {
            t += 1;
        }
        t
    }

    /// Whether the node may write `shard` at sim time `t` by its own rules.
    fn writable(&self, shard: ShardId, t: u64) -> Option<(ShardVersion, u64)> {
        let h = self.held.get(&shard)?;
        match h.lease {
            Some((v, until))
                if h.role == ReplicaRole::Leader && v == h.version && until > self.clock(t) =>
            {
                Some((v, until))
            }
            _ => None,
        }
    }
}

/// Two nodes that both held a writable lease for one shard at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct TwoWriters {
    /// Simulated time, ms.
    pub at_ms: u64,
    /// The shard.
    pub shard: u32,
    /// Each writer: node id, leased version, lease end on that node's clock.
    pub nodes: Vec<(u64, u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Writability {
    down_since: Option<u64>,
    longest: u64,
}

/// The node-side leases of every simulated node, Meridian's lease book, and the audit.
pub(crate) struct Leases {
    lease_ms: u64,
    nodes: Vec<NodeLeases>,
    /// Nodes with a leader entry for each shard (candidates for writing it).
    leaders: BTreeMap<ShardId, BTreeSet<usize>>,
    /// Shards whose lease state changed since the last audit.
    dirty: BTreeSet<ShardId>,
    /// Meridian's book: who may lead each shard, until when.
    book: LeaseBook,
    /// Node states as Meridian's last tick published them (what `lease_grants` reads).
    published: Vec<Option<NodeState>>,
    writability: Vec<Writability>,
    /// Every two-writers moment found (the first few kept in full).
    pub violations: Vec<TwoWriters>,
    /// How many audits found two writers.
    pub violation_count: u64,
    /// Leases granted and refused by the book, for the report.
    pub granted: u64,
    /// Grants the book refused (another holder, or the start-up quiet period).
    pub denied: u64,
    /// Grants a node refused on arrival (expired, or not leader at that version any more).
    pub stale_acks: u64,
}

const KEEP_VIOLATIONS: usize = 20;

impl Leases {
    /// Leases for `shards` shards; nodes are added with [`Leases::add_node`].
    pub fn new(lease_ms: u64, hold_ms: u64, shards: u32) -> Self {
        Self {
            lease_ms,
            nodes: Vec::new(),
            leaders: BTreeMap::new(),
            dirty: BTreeSet::new(),
            book: LeaseBook::new(hold_ms, 0),
            published: Vec::new(),
            writability: vec![
                Writability {
                    down_since: Some(0),
                    longest: 0,
                };
                shards as usize
            ],
            violations: Vec::new(),
            violation_count: 0,
            granted: 0,
            denied: 0,
            stale_acks: 0,
        }
    }

    /// A registered node (Online from now), its clock off by `drift_ppm`.
    pub fn add_node(&mut self, drift_ppm: i64) {
        self.nodes.push(NodeLeases {
            drift_ppm,
            alive: true,
            ..NodeLeases::default()
        });
        self.published.push(Some(NodeState::Online));
    }

    /// The node's clock at sim time `t`.
    pub fn node_clock(&self, node: usize, t: u64) -> u64 {
        self.nodes[node].clock(t)
    }

    // ---- the node's side ----

    /// The node's replica of `shard` is now `role` at `version` (an instruction applied):
    /// anything but leader ends its lease at once; a leader keeps it at the new version.
    pub fn set_held(
        &mut self,
        node: usize,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
    ) {
        let n = &mut self.nodes[node];
        let h = n.held.entry(shard).or_insert(Held {
            version,
            role,
            lease: None,
        });
        h.version = version;
        h.role = role;
        if role != ReplicaRole::Leader {
            h.lease = None;
            if let Some(set) = self.leaders.get_mut(&shard) {
                set.remove(&node);
            }
        } else {
            if let Some((v, _)) = &mut h.lease {
                *v = version;
            }
            self.leaders.entry(shard).or_default().insert(node);
        }
        self.dirty.insert(shard);
    }

    /// The node closed `shard`: its lease ends now.
    pub fn remove(&mut self, node: usize, shard: ShardId) {
        self.nodes[node].held.remove(&shard);
        if let Some(set) = self.leaders.get_mut(&shard) {
            set.remove(&node);
        }
        self.dirty.insert(shard);
    }

    /// Whether the node holds an unexpired lease for `shard` at `version` now (the `leased`
    /// flag of its reports).
    pub fn is_leased(&self, node: usize, shard: ShardId, version: ShardVersion, t: u64) -> bool {
        self.nodes[node]
            .writable(shard, t)
            .is_some_and(|(v, _)| v == version)
    }

    /// An ack reached the node at `t`: each grant counts until `sent_at` (node clock) plus
    /// the lease, if that is still ahead and the node leads the shard at exactly that
    /// version. Returns the sim time at which the granted leases run out, if any was taken.
    pub fn on_ack(
        &mut self,
        node: usize,
        sent_at: u64,
        grants: &[(ShardId, ShardVersion)],
        t: u64,
    ) -> Option<u64> {
        let until = sent_at + self.lease_ms;
        let n = &mut self.nodes[node];
        let now = n.clock(t);
        let mut taken = false;
        for &(shard, version) in grants {
            let Some(h) = n.held.get_mut(&shard) else {
                self.stale_acks += 1;
                continue;
            };
            if until <= now || h.role != ReplicaRole::Leader || h.version != version {
                self.stale_acks += 1;
                continue;
            }
            let end = match h.lease {
                Some((v, u)) if v == version && u > until => u,
                _ => until,
            };
            h.lease = Some((version, end));
            self.dirty.insert(shard);
            taken = true;
        }
        taken.then(|| n.sim_time_of(until))
    }

    /// Leases of `node` may have run out by now: audit its shards.
    pub fn lapse(&mut self, node: usize) {
        let shards: Vec<ShardId> = self.nodes[node]
            .held
            .iter()
            .filter(|(_, h)| h.lease.is_some())
            .map(|(s, _)| *s)
            .collect();
        self.dirty.extend(shards);
    }

    /// The node process died (`alive = false`) or came back empty-handed (a restart: it
    /// holds no lease, and its replicas as followers until told otherwise).
    pub fn set_alive(&mut self, node: usize, alive: bool) {
        let n = &mut self.nodes[node];
        n.alive = alive;
        let shards: Vec<ShardId> = n.held.keys().copied().collect();
        if alive {
            n.held.clear();
            for s in &shards {
                if let Some(set) = self.leaders.get_mut(s) {
                    set.remove(&node);
                }
            }
            self.published[node] = Some(NodeState::Online);
        }
        self.dirty.extend(shards);
    }

    /// The node process stopped or resumed.
    pub fn set_stalled(&mut self, node: usize, stalled: bool) {
        let n = &mut self.nodes[node];
        n.stalled = stalled;
        let shards: Vec<ShardId> = n.held.keys().copied().collect();
        self.dirty.extend(shards);
    }

    // ---- Meridian's side ----

    /// The node states Meridian's tick publishes (what the grant decision reads).
    pub fn publish(&mut self, node: usize, state: Option<NodeState>) {
        if let Some(p) = self.published.get_mut(node) {
            *p = state;
        }
    }

    /// The grants for one report received at `now_ms`, exactly as the server decides them.
    pub fn grant<'a>(
        &mut self,
        node: usize,
        id: NodeId,
        session: u64,
        reports: &[ShardReport],
        shard: impl Fn(ShardId) -> Option<&'a Shard>,
        now_ms: u64,
    ) -> Vec<(ShardId, ShardVersion)> {
        let state = self.published.get(node).copied().flatten();
        let g = self
            .book
            .grant_for_report(id, session, state, reports, shard, now_ms);
        self.granted += g.granted.len() as u64;
        self.denied += g.denied.len() as u64;
        g.granted
    }

    /// The node acknowledged a demotion or close sent in `session`: its lease is over.
    pub fn release(&mut self, shard: ShardId, id: NodeId, session: u64) {
        self.book.release(shard, id, session);
    }

    /// Whether a node other than `node` may still lead `shard` (the server's answer to
    /// `ReconcileContext::other_leader`).
    pub fn other_leader(&self, shard: ShardId, node: NodeId, now_ms: u64) -> bool {
        self.book
            .held_until(shard)
            .is_some_and(|(holder, until)| holder != node && now_ms < until)
    }

    // ---- the audit ----

    /// Checks every shard whose lease state changed: at most one live node may hold an
    /// unexpired lease while leading it; and records when it became (un)writable (a
    /// writer that is live and not stalled).
    pub fn audit(&mut self, t: u64, node_ids: impl Fn(usize) -> NodeId) {
        let dirty = std::mem::take(&mut self.dirty);
        for shard in dirty {
            let mut writers: Vec<(u64, u64, u64)> = Vec::new();
            let mut serving = false;
            if let Some(set) = self.leaders.get(&shard) {
                for &i in set {
                    let n = &self.nodes[i];
                    if !n.alive {
                        continue;
                    }
                    if let Some((v, until)) = n.writable(shard, t) {
                        writers.push((node_ids(i).0, v.0, until));
                        serving |= !n.stalled;
                    }
                }
            }
            if writers.len() > 1 {
                self.violation_count += 1;
                if self.violations.len() < KEEP_VIOLATIONS {
                    self.violations.push(TwoWriters {
                        at_ms: t,
                        shard: shard.0,
                        nodes: writers,
                    });
                }
            }
            if let Some(w) = self.writability.get_mut(shard.0 as usize) {
                match (serving, w.down_since) {
                    (false, None) => w.down_since = Some(t),
                    (true, Some(since)) => {
                        w.longest = w.longest.max(t - since);
                        w.down_since = None;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Forgets unwritable time before `t` (the end of a warm-up).
    pub fn reset_measurements(&mut self, t: u64) {
        for w in &mut self.writability {
            w.longest = 0;
            if w.down_since.is_some() {
                w.down_since = Some(t);
            }
        }
    }

    /// Shards that no live, running node may write now.
    pub fn unwritable_now(&self) -> usize {
        self.writability
            .iter()
            .filter(|w| w.down_since.is_some())
            .count()
    }

    /// Longest interval any shard had no writer, up to `t` (open intervals included).
    pub fn max_unwritable_ms(&self, t: u64) -> u64 {
        self.writability
            .iter()
            .map(|w| w.longest.max(w.down_since.map_or(0, |s| t - s)))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ShardId = ShardId(4);
    const V: ShardVersion = ShardVersion(2);

    fn one_node(drift_ppm: i64) -> Leases {
        let mut l = Leases::new(2_350, 2_500, 8);
        l.add_node(drift_ppm);
        l.add_node(0);
        l
    }

    #[test]
    fn a_lease_runs_from_the_heartbeats_send_time_and_a_demotion_ends_it_at_once() {
        let mut l = one_node(0);
        l.set_held(0, S, V, ReplicaRole::Leader);
        // Heartbeat sent at 1_000, ack at 1_030.
        assert_eq!(l.on_ack(0, 1_000, &[(S, V)], 1_030), Some(3_350));
        assert!(l.is_leased(0, S, V, 3_349));
        assert!(!l.is_leased(0, S, V, 3_350));
        assert!(l.is_leased(0, S, V, 2_000));
        l.set_held(0, S, ShardVersion(3), ReplicaRole::Follower);
        assert!(!l.is_leased(0, S, ShardVersion(3), 2_001));
    }

    #[test]
    fn stale_or_foreign_grants_are_refused_by_the_node() {
        let mut l = one_node(0);
        l.set_held(0, S, V, ReplicaRole::Leader);
        // An ack that waited past its lease (a stalled node handling its inbox).
        assert_eq!(l.on_ack(0, 1_000, &[(S, V)], 3_400), None);
        // A grant for another version, or for a shard it follows.
        assert_eq!(l.on_ack(0, 3_400, &[(S, ShardVersion(1))], 3_401), None);
        l.set_held(0, ShardId(5), V, ReplicaRole::Follower);
        assert_eq!(l.on_ack(0, 3_400, &[(ShardId(5), V)], 3_401), None);
        assert_eq!(l.stale_acks, 3);
    }

    #[test]
    fn a_slow_clock_keeps_its_lease_longer_in_real_time() {
        // 2% slow: the node's 2_350 ms last 2_398 real ms.
        let mut l = one_node(-20_000);
        l.set_held(0, S, V, ReplicaRole::Leader);
        let sent = l.node_clock(0, 10_000);
        let lapse = l.on_ack(0, sent, &[(S, V)], 10_010).unwrap();
        assert!(lapse > 12_350 && lapse < 12_500, "{lapse}");
        assert!(l.is_leased(0, S, V, lapse - 1));
        assert!(!l.is_leased(0, S, V, lapse));
    }

    #[test]
    fn the_audit_reports_two_writers_and_tracks_writability() {
        let mut l = one_node(0);
        let id = |i: usize| NodeId(i as u64 + 1);
        l.set_held(0, S, V, ReplicaRole::Leader);
        l.on_ack(0, 1_000, &[(S, V)], 1_010);
        l.audit(1_010, id);
        assert_eq!(l.violation_count, 0);
        assert!(l.writability[S.0 as usize].down_since.is_none());
        // A second leader with a lease of its own while the first one's runs: caught.
        l.set_held(1, S, ShardVersion(3), ReplicaRole::Leader);
        l.on_ack(1, 2_000, &[(S, ShardVersion(3))], 2_010);
        l.audit(2_010, id);
        assert_eq!(l.violation_count, 1);
        assert_eq!(l.violations[0].shard, S.0);
        assert_eq!(l.violations[0].nodes.len(), 2);
        // A stalled writer holds its lease but serves nothing; a dead one neither.
        l.set_held(0, S, ShardVersion(3), ReplicaRole::Follower);
        l.set_stalled(1, true);
        l.audit(2_020, id);
        assert_eq!(l.unwritable_now(), 8);
        l.set_stalled(1, false);
        l.audit(2_030, id);
        assert_eq!(l.unwritable_now(), 7);
    }
}
