//! Node liveness from heartbeats: Online, Suspect, Offline.
//!
//! Liveness lives in memory only (no store write per heartbeat); the caller persists state
//! changes if it wants them to survive a restart. Time is the caller's monotonic clock in ms.

use crate::error::SchedulerError;
use meridian_model::{NodeId, NodeState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Liveness timing, all in milliseconds of the caller's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    /// How often nodes send heartbeats (told to nodes; also the phi detector's prior).
    /// Default 1000.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a node is Suspect: no new placements go to it, nothing moves yet.
    /// Default 1500.
    pub suspect_after_ms: u64,
    /// Silence after which a node is Offline and its leaderships fail over. Also the leader
    /// lease (see [`LivenessConfig::leader_lease_ms`]), so it is the floor under failover
    /// time. Default 2500.
    pub offline_after_ms: u64,
    /// After Meridian starts or takes over leadership, no node is declared Offline for this
    /// long: the new leader has not heard anyone yet, and failing over a whole healthy
    /// cluster because the meta leader changed would be the worst outage. Default 5000.
    pub grace_period_ms: u64,
    /// If set, a phi-accrual detector (Hayashibara et al.) over each node's heartbeat
    /// inter-arrival times also declares Suspect when phi reaches this value, which catches
    /// a node whose steady heartbeats stop before the fixed timeout (with steady 1 s
    /// heartbeats phi reaches 3 after ~1.35 s of silence, 8 after ~1.55 s). It never changes when a node goes Offline: Offline must not come
    /// before the lease ran out, and coming later would only slow failover. Default unset.
    pub phi_threshold: Option<f64>,
    /// Allowance for clocks that tick at different rates and for scheduling delays, taken
    /// out of the lease granted to nodes: a node may lead for `offline_after_ms -
    /// lease_drift_margin_ms` from when it *sent* a heartbeat, while Meridian lets nobody
    /// else lead before `offline_after_ms` after it *received* it. Covers a relative clock
    /// rate error of up to margin / lease (6% by default). Default 150.
    pub lease_drift_margin_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 1000,
            suspect_after_ms: 1500,
            offline_after_ms: 2500,
            grace_period_ms: 5000,
            phi_threshold: None,
            lease_drift_margin_ms: 150,
        }
    }
}

impl LivenessConfig {
    /// The defaults of a highly available Meridian (several servers on etcd), used when the
    /// configuration leaves `[liveness]` at its single-server defaults. A node's lease must
    /// outlast a change of Meridian leader (after a crash: the election TTL, 2 s by
    /// default, plus up to about a second to notice, load and reconnect), so leases are
    /// longer: `offline_after_ms` 6000 (lease 5850 ms) with heartbeats every 500 ms. The
    /// price: a dead database node fails over after about 6 s instead of 2.5 s.
    pub fn highly_available() -> Self {
        Self {
            heartbeat_interval_ms: 500,
            suspect_after_ms: 2500,
            offline_after_ms: 6000,
            ..Self::default()
        }
    }

    /// Whether a node's lease outlasts a change of Meridian leader that takes
    /// `takeover_ms` (the lease left after the last heartbeat before the old leader died).
    pub fn lease_outlasts(&self, takeover_ms: u64) -> bool {
        self.leader_lease_ms()
            .saturating_sub(self.heartbeat_interval_ms)
            > takeover_ms
    }

    /// Checks that the timeouts are ordered: interval < suspect <= offline.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |m: String| Err(SchedulerError::InvalidConfig(m));
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat_interval_ms must be > 0".into());
        }
        if self.suspect_after_ms <= self.heartbeat_interval_ms {
            return bad(format!(
                "suspect_after_ms ({}) must exceed heartbeat_interval_ms ({})",
                self.suspect_after_ms, self.heartbeat_interval_ms
            ));
        }
        if self.offline_after_ms < self.suspect_after_ms {
            return bad(format!(
                "offline_after_ms ({}) must be at least suspect_after_ms ({})",
                self.offline_after_ms, self.suspect_after_ms
            ));
        }
        if self.leader_lease_ms() <= self.heartbeat_interval_ms {
            return bad(format!(
                "the lease (offline_after_ms {} - lease_drift_margin_ms {}) must exceed \
                 heartbeat_interval_ms ({}), or leaders lose their lease between heartbeats",
                self.offline_after_ms, self.lease_drift_margin_ms, self.heartbeat_interval_ms
            ));
        }
        if let Some(phi) = self.phi_threshold {
            if !(phi.is_finite() && phi > 0.0) {
                return bad(format!(
                    "phi_threshold must be a positive number, got {phi}"
                ));
            }
        }
        Ok(())
    }

    /// The write lease granted in heartbeat acks: `offline_after_ms` less the drift margin.
    ///
    /// A node measures its lease on its own monotonic clock from when it *sent* the
    /// heartbeat whose ack granted it; Meridian measures from when it *received* that
    /// heartbeat, which is later, and adds the drift margin back: it lets no other node (or
    /// session) lead the shard before `offline_after_ms` after that receipt, and declares a
    /// node Offline (failover) no earlier than that either. So by the time a follower is
    /// promoted, the old leader's lease has run out on its own clock even if that clock runs
    /// slower by up to the margin (DESIGN invariant 1). Returns 0 if the margin is not
    /// smaller than `offline_after_ms` (refused by [`LivenessConfig::validate`]).
    pub fn leader_lease_ms(&self) -> u64 {
        self.offline_after_ms
            .saturating_sub(self.lease_drift_margin_ms)
    }

    /// How long after the receipt of a granting heartbeat Meridian treats the lease as
    /// possibly still held: the lease plus the drift margin, i.e. `offline_after_ms`.
    pub fn lease_hold_ms(&self) -> u64 {
        self.leader_lease_ms() + self.lease_drift_margin_ms
    }
}

/// What happens to a node, as the liveness state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LivenessEvent {
    /// A heartbeat arrived.
    Heartbeat,
    /// A tick found the node silent.
    Silence {
        /// Milliseconds since its last heartbeat.
        silent_ms: u64,
        /// Phi of the accrual detector, if one is configured and has data.
        phi: Option<f64>,
        /// Whether the start-up / takeover grace period is still running.
        in_grace: bool,
    },
}

/// The liveness state machine.
///
/// ```text
///           silent >= suspect_after              silent >= offline_after
///           (or phi >= phi_threshold)            and the grace period is over
///   Online ─────────────────────────> Suspect ──────────────────────────────> Offline
///     ^  <────────── heartbeat ──────────┘                                      │
///     └──────────────────────────── heartbeat ──────────────────────────────────┘
///   Removed: terminal (set by an admin after a drain); heartbeats do not revive it.
/// ```
/// Moved by [`LivenessTracker::on_heartbeat`] (heartbeats) and [`LivenessTracker::tick`]
/// (silence). An Online node silent past `offline_after` goes straight to Offline.
pub fn on_event(state: NodeState, event: LivenessEvent, config: &LivenessConfig) -> NodeState {
    match (state, event) {
        (NodeState::Removed, _) => NodeState::Removed,
        (_, LivenessEvent::Heartbeat) => NodeState::Online,
        (NodeState::Offline, LivenessEvent::Silence { .. }) => NodeState::Offline,
        (
            _,
            LivenessEvent::Silence {
                silent_ms,
                phi,
                in_grace,
            },
        ) => {
            if silent_ms >= config.offline_after_ms && !in_grace {
                NodeState::Offline
            } else if silent_ms >= config.suspect_after_ms
                || matches!((phi, config.phi_threshold), (Some(p), Some(t)) if p >= t)
            {
                NodeState::Suspect
            } else {
                state
            }
        }
    }
}

/// A change of one node's liveness state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessChange {
    /// The node.
    pub node: NodeId,
    /// State before.
    pub from: NodeState,
    /// State after.
    pub to: NodeState,
}

/// Inter-arrival samples kept per node by the phi detector.
const PHI_WINDOW: usize = 100;

/// Phi-accrual failure detector over a sliding window of heartbeat inter-arrival times.
#[derive(Debug, Clone)]
struct PhiDetector {
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl PhiDetector {
    fn new() -> Self {
        Self {
            intervals: VecDeque::with_capacity(PHI_WINDOW),
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    fn record(&mut self, interval_ms: u64) {
        let x = interval_ms as f64;
        if self.intervals.len() == PHI_WINDOW {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.intervals.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// Phi after `silent_ms` of silence: -log10 of the probability that a heartbeat comes
    /// this late, under a normal distribution fitted to the window. Until samples arrive the
    /// configured interval is the mean. The standard deviation is floored at a tenth of the
    /// interval: perfectly regular heartbeats would otherwise make a few ms of delay look
    /// infinitely suspicious.
    fn phi(&self, silent_ms: u64, interval_ms: u64) -> f64 {
        let n = self.intervals.len() as f64;
        let (mean, var) = if n < 1.0 {
            (interval_ms as f64, 0.0)
        } else {
            let mean = self.sum / n;
            (mean, (self.sum_sq / n - mean * mean).max(0.0))
        };
        let std = var.sqrt().max(interval_ms as f64 / 10.0);
        let y = (silent_ms as f64 - mean) / std;
        // Logistic approximation of the normal tail (as in Akka's detector).
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        let p_later = if silent_ms as f64 > mean {
            e / (1.0 + e)
        } else {
            1.0 - 1.0 / (1.0 + e)
        };
        -p_later.max(f64::MIN_POSITIVE).log10()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    state: NodeState,
    since_ms: u64,
    last_heartbeat_ms: u64,
    phi: PhiDetector,
}

/// Tracks every node's liveness from heartbeats and ticks.
#[derive(Debug, Clone)]
pub struct LivenessTracker {
    config: LivenessConfig,
    started_ms: u64,
    nodes: BTreeMap<NodeId, Entry>,
}

impl LivenessTracker {
    /// A tracker started (or taken over) at `now`: the grace period runs from here.
    pub fn new(config: LivenessConfig, now: u64) -> Self {
        Self {
            config,
            started_ms: now,
            nodes: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// Takes new timing (a runtime setting changed); nodes' states and heartbeat history
    /// stay, and the next tick judges silence by the new thresholds.
    pub fn reconfigure(&mut self, config: LivenessConfig) {
        self.config = config;
    }

    fn in_grace(&self, now: u64) -> bool {
        now < self.started_ms.saturating_add(self.config.grace_period_ms)
    }

    /// Starts tracking a known node not heard from yet (loaded from the store at takeover),
    /// as if it was heard at `now`. No-op for a node already tracked.
    pub fn track(&mut self, node: NodeId, now: u64) {
        self.nodes.entry(node).or_insert_with(|| Entry {
            state: NodeState::Online,
            since_ms: now,
            last_heartbeat_ms: now,
            phi: PhiDetector::new(),
        });
    }

    /// Records a heartbeat; returns the state change it caused, if any.
    pub fn on_heartbeat(&mut self, node: NodeId, now: u64) -> Option<LivenessChange> {
        let config = self.config;
        let entry = self.nodes.entry(node).or_insert_with(|| Entry {
            state: NodeState::Online,
            since_ms: now,
            last_heartbeat_ms: now,
            phi: PhiDetector::new(),
        });
        if now > entry.last_heartbeat_ms && entry.state != NodeState::Offline {
            // An Offline period is not a sample of the node's usual rhythm.
            entry.phi.record(now - entry.last_heartbeat_ms);
        }
        entry.last_heartbeat_ms = entry.last_heartbeat_ms.max(now);
        let to = on_event(entry.state, LivenessEvent::Heartbeat, &config);
        Self::set(node, entry, to, now)
    }

    fn set(node: NodeId, entry: &mut Entry, to: NodeState, now: u64) -> Option<LivenessChange> {
        if entry.state == to {
            return None;
        }
        let change = LivenessChange {
            node,
            from: entry.state,
            to,
        };
        entry.state = to;
        entry.since_ms = now;
        Some(change)
    }

    /// Marks a node Removed (terminal), after an admin removed it.
    pub fn mark_removed(&mut self, node: NodeId, now: u64) -> Option<LivenessChange> {
        self.track(node, now);
        let entry = self.nodes.get_mut(&node)?;
        Self::set(node, entry, NodeState::Removed, now)
    }

    /// Stops tracking a node entirely.
    pub fn forget(&mut self, node: NodeId) {
        self.nodes.remove(&node);
    }

    /// Applies silence to every node; returns the changes, in node id order.
    pub fn tick(&mut self, now: u64) -> Vec<LivenessChange> {
        let config = self.config;
        let in_grace = self.in_grace(now);
        let mut changes = Vec::new();
        for (&node, entry) in self.nodes.iter_mut() {
            let silent_ms = now.saturating_sub(entry.last_heartbeat_ms);
            // Phi is consulted only once a heartbeat is actually overdue.
            let phi = config
                .phi_threshold
                .filter(|_| silent_ms > config.heartbeat_interval_ms)
                .map(|_| entry.phi.phi(silent_ms, config.heartbeat_interval_ms));
            let event = LivenessEvent::Silence {
                silent_ms,
                phi,
                in_grace,
            };
            let to = on_event(entry.state, event, &config);
            changes.extend(Self::set(node, entry, to, now));
        }
        changes
    }

    /// A node's state, if tracked.
    pub fn state(&self, node: NodeId) -> Option<NodeState> {
        self.nodes.get(&node).map(|e| e.state)
    }

    /// When a node's state last changed, if tracked.
    pub fn state_since(&self, node: NodeId) -> Option<u64> {
        self.nodes.get(&node).map(|e| e.since_ms)
    }

    /// When a node's last heartbeat arrived, if tracked.
    pub fn last_heartbeat(&self, node: NodeId) -> Option<u64> {
        self.nodes.get(&node).map(|e| e.last_heartbeat_ms)
    }

    /// Phi of a node's detector at `now` (for dashboards), if tracked.
    pub fn phi(&self, node: NodeId, now: u64) -> Option<f64> {
        let e = self.nodes.get(&node)?;
        Some(e.phi.phi(
            now.saturating_sub(e.last_heartbeat_ms),
            self.config.heartbeat_interval_ms,
        ))
    }

    /// Every tracked node with its state, in id order.
    pub fn states(&self) -> impl Iterator<Item = (NodeId, NodeState)> + '_ {
        self.nodes.iter().map(|(&n, e)| (n, e.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> LivenessTracker {
        LivenessTracker::new(LivenessConfig::default(), 0)
    }

    #[test]
    fn silence_moves_online_to_suspect_to_offline_and_a_heartbeat_back() {
        let mut t = tracker();
        // Past the grace period so Offline can be declared.
        t.on_heartbeat(NodeId(1), 10_000);
        assert!(t.tick(11_000).is_empty());
        let c = t.tick(11_500);
        assert_eq!(c[0].to, NodeState::Suspect);
        assert!(t.tick(12_400).is_empty());
        let c = t.tick(12_500);
        assert_eq!(
            c,
            vec![LivenessChange {
                node: NodeId(1),
                from: NodeState::Suspect,
                to: NodeState::Offline
            }]
        );
        let back = t.on_heartbeat(NodeId(1), 20_000).unwrap();
        assert_eq!(back.to, NodeState::Online);
        assert_eq!(t.state_since(NodeId(1)), Some(20_000));
    }

    #[test]
    fn grace_period_delays_offline_after_restart() {
        let mut t = LivenessTracker::new(LivenessConfig::default(), 100_000);
        t.track(NodeId(1), 100_000);
        // Silent for 4 s: past offline_after, but inside the 5 s grace period.
        t.tick(104_000);
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Suspect));
        t.tick(104_999);
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Suspect));
        t.tick(105_000);
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Offline));
    }

    #[test]
    fn removed_is_terminal() {
        let mut t = tracker();
        t.on_heartbeat(NodeId(1), 0);
        t.mark_removed(NodeId(1), 1);
        assert!(t.on_heartbeat(NodeId(1), 2).is_none());
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Removed));
    }

    #[test]
    fn phi_detector_suspects_a_regular_node_before_the_fixed_timeout() {
        let config = LivenessConfig {
            phi_threshold: Some(3.0),
            ..LivenessConfig::default()
        };
        let mut t = LivenessTracker::new(config, 0);
        for i in 0..50 {
            t.on_heartbeat(NodeId(1), 10_000 + i * 1000);
        }
        let last = 10_000 + 49 * 1000;
        assert!(t.tick(last + 1000).is_empty(), "on time is not suspect");
        // 1.4 s of silence: under suspect_after (1.5 s), but four standard deviations
        // out for a steady 1 s rhythm (phi ~4.7).
        let c = t.tick(last + 1400);
        assert_eq!(c.first().map(|c| c.to), Some(NodeState::Suspect));
        // Phi never brings Offline forward: the lease may still be valid.
        t.tick(last + 2400);
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Suspect));
        t.tick(last + 2500);
        assert_eq!(t.state(NodeId(1)), Some(NodeState::Offline));
    }

    #[test]
    fn lease_is_no_longer_than_the_offline_timeout() {
        let c = LivenessConfig::default();
        c.validate().unwrap();
        assert!(c.leader_lease_ms() < c.offline_after_ms);
        assert!(c.lease_hold_ms() <= c.offline_after_ms);
        let bad = LivenessConfig {
            offline_after_ms: 1000,
            ..c
        };
        assert!(bad.validate().is_err());
    }
}
