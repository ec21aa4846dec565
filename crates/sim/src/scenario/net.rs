//! The network between each simulated node and Meridian, and the faults injected into it.
//!
//! Each node has one link to Meridian, FIFO in each direction if `fifo` (one stream, as the
//! gRPC heartbeat stream is): a message arrives after its delay, never before an earlier one
//! on the same link and direction. A message is lost with its kind's loss probability, or if
//! its node is partitioned at any moment between its send and its arrival.
//!
//! Faults, each on one node for a window `[from_ms, until_ms)`:
//! - `Partition`: the link drops everything both ways; healed at `until_ms`.
//! - `Stall`: the node process stops (SIGSTOP): it sends no heartbeats and handles nothing;
//!   what reaches it waits in its inbox. Its clock runs on. At `until_ms` it handles its
//!   inbox in arrival order (stale acks and instructions included), then runs normally.
//!
//! With no faults, no loss and no control delay (`NetParams::default()`), heartbeats and
//! acks cross instantly and instructions take the scenario's latency, as before leases.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::VecDeque;

/// The kinds of message on a link, each with its own loss probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Node to Meridian: a heartbeat with the node's shard reports.
    Heartbeat,
    /// Meridian to node: a heartbeat's ack, carrying lease grants.
    Ack,
    /// Meridian to node: an instruction.
    Instruction,
    /// Node to Meridian: the answer to an instruction.
    Answer,
}

impl Msg {
    fn to_meridian(self) -> bool {
        matches!(self, Msg::Heartbeat | Msg::Answer)
    }
}

/// Loss probability per kind of message, in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Loss {
    pub heartbeat: f64,
    pub ack: f64,
    pub instruction: f64,
    pub answer: f64,
}

impl Loss {
    /// The same probability for every kind.
    pub fn all(p: f64) -> Self {
        Self {
            heartbeat: p,
            ack: p,
            instruction: p,
            answer: p,
        }
    }

    fn of(&self, m: Msg) -> f64 {
        match m {
            Msg::Heartbeat => self.heartbeat,
            Msg::Ack => self.ack,
            Msg::Instruction => self.instruction,
            Msg::Answer => self.answer,
        }
    }
}

/// How the links behave when no fault is active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct NetParams {
    /// One-way delay of heartbeats and acks, uniform in [lo, hi] ms ((0, 0): instant).
    pub control_delay_ms: (u64, u64),
    /// Random loss.
    pub loss: Loss,
    /// Node clocks run fast or slow by up to this many parts per million each (uniform).
    pub max_drift_ppm: u64,
    /// Messages on one link and direction arrive in order (a stream). Off by default so
    /// scenarios without faults keep their independent latencies.
    pub fifo: bool,
}

/// What a fault does to its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FaultKind {
    /// Cut off from Meridian both ways.
    Partition,
    /// The process stops.
    Stall,
}

/// One fault on one node (by index) for `[from_ms, until_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Fault {
    pub node: usize,
    pub kind: FaultKind,
    pub from_ms: u64,
    pub until_ms: u64,
}

/// Messages lost, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Drops {
    pub random: u64,
    pub partition: u64,
}

#[derive(Debug)]
struct Link<E> {
    last_to_meridian: u64,
    last_to_node: u64,
    /// Events that reached the node while it was stalled, in arrival order.
    inbox: VecDeque<E>,
}

/// Every node's link, and the faults.
#[derive(Debug)]
pub(crate) struct Network<E> {
    params: NetParams,
    rng: SmallRng,
    links: Vec<Link<E>>,
    faults: Vec<Fault>,
    /// Messages lost so far.
    pub drops: Drops,
}

impl<E> Network<E> {
    /// A network with its own random stream (so faults do not shift other draws).
    pub fn new(params: NetParams, seed: u64) -> Self {
        Self {
            params,
            rng: SmallRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b21),
            links: Vec::new(),
            faults: Vec::new(),
            drops: Drops::default(),
        }
    }

    /// The link of a new node; returns its clock drift in ppm.
    pub fn add_node(&mut self) -> i64 {
        self.links.push(Link {
            last_to_meridian: 0,
            last_to_node: 0,
            inbox: VecDeque::new(),
        });
        let d = self.params.max_drift_ppm as i64;
        if d == 0 {
            0
        } else {
            self.rng.random_range(-d..=d)
        }
    }

    /// Schedules a fault.
    pub fn add_fault(&mut self, f: Fault) {
        self.faults.push(f);
    }

    fn partitioned(&self, node: usize, from: u64, to: u64) -> bool {
        self.faults.iter().any(|f| {
            f.node == node && f.kind == FaultKind::Partition && f.from_ms <= to && from < f.until_ms
        })
    }

    /// Whether the node's process is stopped at `t`.
    pub fn stalled(&self, node: usize, t: u64) -> bool {
        self.faults.iter().any(|f| {
            f.node == node && f.kind == FaultKind::Stall && f.from_ms <= t && t < f.until_ms
        })
    }

    /// A heartbeat's or ack's one-way delay.
    pub fn control_delay(&mut self) -> u64 {
        let (lo, hi) = self.params.control_delay_ms;
        if hi == 0 {
            0
        } else {
            self.rng.random_range(lo..=hi)
        }
    }

    /// Sends `msg` on `node`'s link at `now` with `delay`: its arrival time, or `None` if
    /// it is lost.
    pub fn carry(&mut self, node: usize, msg: Msg, now: u64, delay: u64) -> Option<u64> {
        let p = self.params.loss.of(msg);
        if p > 0.0 && self.rng.random_bool(p.min(1.0)) {
            self.drops.random += 1;
            return None;
        }
        let link = self.links.get(node)?;
        let last = if msg.to_meridian() {
            link.last_to_meridian
        } else {
            link.last_to_node
        };
        let at = if self.params.fifo {
            (now + delay).max(last)
        } else {
            now + delay
        };
        if self.partitioned(node, now, at) {
            self.drops.partition += 1;
            return None;
        }
        let link = self.links.get_mut(node)?;
        if msg.to_meridian() {
            link.last_to_meridian = at;
        } else {
            link.last_to_node = at;
        }
        Some(at)
    }

    /// Keeps `ev` for when the node resumes, if it is stalled at `t` (or still has older
    /// events waiting); gives it back otherwise.
    pub fn hold_if_stalled(&mut self, node: usize, t: u64, ev: E) -> Option<E> {
        let waiting = self.links.get(node).is_some_and(|l| !l.inbox.is_empty());
        if waiting || self.stalled(node, t) {
            if let Some(l) = self.links.get_mut(node) {
                l.inbox.push_back(ev);
                return None;
            }
        }
        Some(ev)
    }

    /// The events that waited for the node to resume, oldest first.
    pub fn take_inbox(&mut self, node: usize) -> VecDeque<E> {
        self.links
            .get_mut(node)
            .map(|l| std::mem::take(&mut l.inbox))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(fifo: bool) -> Network<u32> {
        let mut n = Network::new(
            NetParams {
                fifo,
                ..NetParams::default()
            },
            1,
        );
        n.add_node();
        n.add_node();
        n
    }

    #[test]
    fn a_partition_drops_what_crosses_it_both_ways_and_heals() {
        let mut n = net(false);
        n.add_fault(Fault {
            node: 0,
            kind: FaultKind::Partition,
            from_ms: 1_000,
            until_ms: 2_000,
        });
        // In flight when it starts: lost.
        assert_eq!(n.carry(0, Msg::Instruction, 990, 20), None);
        assert_eq!(n.carry(0, Msg::Heartbeat, 1_500, 0), None);
        assert_eq!(n.carry(1, Msg::Heartbeat, 1_500, 0), Some(1_500));
        assert_eq!(n.carry(0, Msg::Ack, 2_000, 5), Some(2_005));
        assert_eq!(n.drops.partition, 2);
    }

    #[test]
    fn a_stream_delivers_in_order() {
        let mut n = net(true);
        assert_eq!(n.carry(0, Msg::Instruction, 0, 50), Some(50));
        assert_eq!(n.carry(0, Msg::Ack, 1, 5), Some(50));
        // The other direction is another stream.
        assert_eq!(n.carry(0, Msg::Answer, 1, 5), Some(6));
        let mut n = net(false);
        n.carry(0, Msg::Instruction, 0, 50);
        assert_eq!(n.carry(0, Msg::Ack, 1, 5), Some(6));
    }

    #[test]
    fn a_stalled_node_keeps_what_reaches_it_for_when_it_resumes() {
        let mut n = net(false);
        n.add_fault(Fault {
            node: 1,
            kind: FaultKind::Stall,
            from_ms: 100,
            until_ms: 200,
        });
        assert_eq!(n.hold_if_stalled(1, 99, 1), Some(1));
        assert_eq!(n.hold_if_stalled(1, 100, 2), None);
        assert_eq!(n.hold_if_stalled(1, 199, 3), None);
        // At the end but before its resume is handled: still after what waits.
        assert_eq!(n.hold_if_stalled(1, 200, 4), None);
        assert_eq!(n.hold_if_stalled(0, 150, 5), Some(5));
        assert_eq!(n.take_inbox(1), [2, 3, 4]);
        assert_eq!(n.hold_if_stalled(1, 200, 6), Some(6));
    }

    #[test]
    fn loss_drops_about_its_share() {
        let mut n: Network<u32> = Network::new(
            NetParams {
                loss: Loss {
                    heartbeat: 0.1,
                    ..Loss::default()
                },
                ..NetParams::default()
            },
            3,
        );
        n.add_node();
        let lost = (0..10_000)
            .filter(|&t| n.carry(0, Msg::Heartbeat, t, 0).is_none())
            .count();
        assert!((800..1_200).contains(&lost), "{lost}");
        assert!((0..1_000).all(|t| n.carry(0, Msg::Ack, t, 0).is_some()));
    }
}
