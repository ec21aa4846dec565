//! The simulated world: nodes with local replica state, a millisecond clock, an event queue
//! with seeded latencies, and Meridian's real scheduling brain acting as the executor.
//!
//! ```text
//! node --heartbeat (1 s)--> LivenessTracker, ReportBook, controller.on_shard_report,
//!                           reconcile (close / re-promote stray replicas)
//! Meridian tick (100 ms):   liveness.tick -> ClusterView -> SchedulerSet -> controller
//!                           StepStarted: routes[shard] = shard_after, send instructions
//! instruction --latency--> node applies it (refusing older versions) --latency--> ack
//! ```
//! A shard is *available* while its route's leader node is alive and holds the shard as a
//! Ready leader; every other moment counts as leaderless.
//!
//! Log positions: a Ready leader's log reaches `now + 1` (one position per simulated ms) at
//! each of its heartbeats, and it reports that position applied and committed. A Ready
//! follower, at each of its heartbeats, hears what the route's leader last reached (a dead
//! leader's log stays where it was) and applies it, unless its node's replication is
//! stalled ([`Sim::stall_replication`]): then it hears but does not apply, and falls
//! behind until resumed. Followers thus lag by up to one heartbeat interval.
//!
//! Messages between nodes and Meridian cross a [`Network`] (delay, loss, partitions,
//! stalls: `net`), and write leases are granted and held by the real rules (`lease`), with
//! a two-writers audit after every event.

use super::lease::Leases;
use super::net::{Drops, Fault, FaultKind, Msg, NetParams, Network};
use super::{MoveStats, SimError};
use meridian_model::OperatorId;
use meridian_model::{
    ClusterConfig, IsolationLevel, LogPosition, NodeId, NodeLabels, NodeState, PlacementMode,
    ReplicaRole, Shard, ShardId, ShardReport, ShardStats, ShardStatus, ShardVersion,
};
use meridian_scheduler::{
    place_shards, reconcile_node, update_family, ClusterView, ControllerConfig, ControllerEvent,
    CopysetFamily, InstructionKind, LivenessConfig, LivenessTracker, NodeInstruction, NodeView,
    OperatorController, OperatorState, ReconcileContext, ReportBook, SchedulerConfig, SchedulerSet,
    ShardView, Step, WaitingShard,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// Step of the simulated cluster's load history: the server's default.
const HISTORY_STEP_MS: u64 = 5_000;

/// Everything that shapes one simulated cluster.
#[derive(Debug, Clone)]
pub(crate) struct SimParams {
    pub nodes: usize,
    pub zones: usize,
    pub shards: u32,
    pub replication: u32,
    pub isolation: IsolationLevel,
    /// Spread or copyset placement.
    pub placement: PlacementMode,
    /// Copyset mode: keep the family first placement drew, updated as the server updates
    /// it, and hand it to the schedulers (false: they never see it, as before copysets were
    /// persisted; the baseline `copyset-loss` compares against).
    pub keep_copysets: bool,
    pub seed: u64,
    /// Meridian's scheduling tick.
    pub tick_ms: u64,
    /// One-way message latency, uniform in [lo, hi].
    pub latency_ms: (u64, u64),
    /// Time for a new replica to catch up, uniform in [lo, hi] per shard.
    pub catch_up_ms: (u64, u64),
    /// Base read + write units per shard, uniform in [lo, hi].
    pub base_load: (f64, f64),
    pub liveness: LivenessConfig,
    pub scheduler: SchedulerConfig,
    pub controller: ControllerConfig,
    /// The links between nodes and Meridian (default: instant control messages, no loss).
    pub net: NetParams,
}

impl SimParams {
    pub fn new(nodes: usize, zones: usize, shards: u32, seed: u64) -> Self {
        Self {
            nodes,
            zones,
            shards,
            replication: 3,
            isolation: IsolationLevel::Zone,
            placement: PlacementMode::Spread,
            keep_copysets: true,
            seed,
            tick_ms: 100,
            latency_ms: (5, 50),
            catch_up_ms: (2_000, 8_000),
            base_load: (5.0, 15.0),
            liveness: LivenessConfig::default(),
            scheduler: SchedulerConfig::default(),
            controller: ControllerConfig::default(),
            net: NetParams::default(),
        }
    }

    /// The longest a shard may be leaderless after its leader's node dies: the node goes
    /// Offline at most `offline_after` after the kill (its last heartbeat came before), the
    /// next tick sees it and starts the promotion, which reaches the node one latency later.
    pub fn failover_bound_ms(&self) -> u64 {
        self.liveness.offline_after_ms + self.tick_ms + self.latency_ms.1
    }
}

#[derive(Debug, Clone)]
struct Local {
    version: ShardVersion,
    role: ReplicaRole,
    status: ShardStatus,
    /// Acknowledgements owed once the replica is Ready.
    owed: Vec<(OperatorId, ShardVersion)>,
    /// Replication progress (see the module documentation); survives restarts.
    log: LogPosition,
}

#[derive(Debug, Clone)]
struct SimNode {
    id: NodeId,
    labels: NodeLabels,
    alive: bool,
    /// Bumped on every kill and restart, so events of a previous life are dropped.
    life: u64,
    draining: bool,
    /// The admin flag `Node::evict_leaders`: the view the tick builds carries it.
    evict_leaders: bool,
    /// Its followers hear the leader's log but do not apply it (a slow disk).
    replication_stalled: bool,
    replicas: BTreeMap<ShardId, Local>,
}

/// What the reconcile path sees of the simulated cluster: the metadata (routes), the
/// running operators, and what live nodes hold.
struct SimReconcile<'a> {
    routes: &'a [Shard],
    controller: &'a OperatorController,
    leases: &'a Leases,
    now: u64,
}

impl ReconcileContext for SimReconcile<'_> {
    fn shard(&self, shard: ShardId) -> Option<&Shard> {
        self.routes.get(shard.0 as usize)
    }
    fn pending(&self, _: ShardId) -> bool {
        false
    }
    fn busy(&self, shard: ShardId) -> bool {
        self.controller.for_shard(shard).is_some()
    }
    /// From the lease book, as the server answers it.
    fn other_leader(&self, shard: ShardId, node: NodeId) -> bool {
        self.leases.other_leader(shard, node, self.now)
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Tick,
    Heartbeat {
        node: usize,
        life: u64,
    },
    Deliver {
        life: u64,
        instr: NodeInstruction,
    },
    CaughtUp {
        node: usize,
        life: u64,
        shard: ShardId,
    },
    /// An instruction's answer reaches Meridian.
    Answer {
        op: Option<OperatorId>,
        node: NodeId,
        shard: ShardId,
        version: ShardVersion,
        kind: InstructionKind,
        session: u64,
    },
    /// A heartbeat reaches Meridian.
    HeartbeatIn {
        node: usize,
        session: u64,
        sent_at: u64,
        reports: Vec<ShardReport>,
    },
    /// A heartbeat's ack reaches the node.
    AckIn {
        node: usize,
        session: u64,
        sent_at: u64,
        grants: Vec<(ShardId, ShardVersion)>,
    },
    /// Leases a node took may have run out.
    LeaseLapse {
        node: usize,
    },
    /// A node's process stops.
    StallStart {
        node: usize,
    },
    /// A stopped node resumes and handles what waited.
    Resume {
        node: usize,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Avail {
    down_since: Option<u64>,
    total: u64,
    longest: u64,
}

/// Leaderless time over the measured period.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LeaderlessSummary {
    /// Max over shards of the shard's total leaderless time.
    pub max_per_shard_ms: u64,
    /// Sum over shards.
    pub total_ms: u64,
    /// Longest single leaderless interval of any shard.
    pub longest_interval_ms: u64,
    /// Shards that were ever leaderless.
    pub shards_affected: usize,
}

/// One simulated cluster plus the Meridian brain managing it.
pub(crate) struct Sim {
    pub params: SimParams,
    pub now: u64,
    rng: SmallRng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    nodes: Vec<SimNode>,
    config: ClusterConfig,
    liveness: LivenessTracker,
    book: ReportBook,
    routes: Vec<Shard>,
    loads: Vec<f64>,
    catch_up: Vec<u64>,
    pub schedulers: SchedulerSet,
    /// Recent shard loads: views judge load by their trend, as the server's do.
    history: meridian_scheduler::History,
    pub controller: OperatorController,
    /// The copyset family the schedulers keep shards in (copyset mode with
    /// `keep_copysets`), updated every tick by the server's rule.
    copysets: Option<Arc<CopysetFamily>>,
    /// The family first placement drew (copyset mode), kept or not.
    placed_copysets: Option<Arc<CopysetFamily>>,
    avail: Vec<Avail>,
    pub moves: MoveStats,
    net: Network<Ev>,
    leases: Leases,
}

impl Sim {
    /// Builds the cluster, places shards with the real placement code and opens every
    /// replica (as if the initial placement's instructions had been carried out).
    pub fn new(params: SimParams) -> Result<Self, SimError> {
        let mut rng = SmallRng::seed_from_u64(params.seed);
        let config = ClusterConfig {
            name: "sim".into(),
            shard_count: params.shards,
            replication_factor: params.replication,
            min_nodes: params.replication,
            isolation: params.isolation,
            placement: params.placement,
            config_fingerprint: String::new(),
            shared_storage: false,
        };
        let nodes: Vec<SimNode> = (0..params.nodes)
            .map(|i| new_node(i, params.zones))
            .collect();
        let views: Vec<NodeView> = nodes
            .iter()
            .map(|n| NodeView::new(n.id, n.labels.clone()))
            .collect();
        let ids: Vec<ShardId> = (0..params.shards).map(ShardId).collect();
        let placement = place_shards(&views, &ids, &config, params.seed)?;
        let loads = (0..params.shards)
            .map(|_| rng.random_range(params.base_load.0..=params.base_load.1))
            .collect();
        let catch_up = (0..params.shards)
            .map(|_| rng.random_range(params.catch_up_ms.0..=params.catch_up_ms.1))
            .collect();
        let mut net = Network::new(params.net, params.seed);
        let mut leases = Leases::new(
            params.liveness.leader_lease_ms(),
            params.liveness.lease_hold_ms(),
            params.shards,
        );
        for _ in &nodes {
            leases.add_node(net.add_node());
        }
        let mut sim = Self {
            net,
            leases,
            liveness: LivenessTracker::new(params.liveness, 0),
            schedulers: SchedulerSet::new(params.scheduler),
            history: meridian_scheduler::History::new(HISTORY_STEP_MS),
            controller: OperatorController::new(params.controller),
            copysets: placement
                .copysets
                .clone()
                .filter(|_| params.keep_copysets)
                .map(Arc::new),
            placed_copysets: placement.copysets.map(Arc::new),
            avail: vec![Avail::default(); params.shards as usize],
            params,
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            config,
            book: ReportBook::new(),
            routes: placement.shards,
            loads,
            catch_up,
            moves: MoveStats::default(),
        };
        for shard in &sim.routes {
            for r in &shard.replicas {
                let idx = (r.node.0 - 1) as usize;
                sim.leases.set_held(idx, shard.id, shard.version, r.role);
                sim.nodes[idx].replicas.insert(
                    shard.id,
                    Local {
                        version: shard.version,
                        role: r.role,
                        status: ShardStatus::Ready,
                        owed: Vec::new(),
                        log: LogPosition::default(),
                    },
                );
            }
        }
        for i in 0..sim.nodes.len() {
            sim.liveness.track(sim.nodes[i].id, 0);
            let offset = sim
                .rng
                .random_range(0..sim.params.liveness.heartbeat_interval_ms);
            sim.push(offset, Ev::Heartbeat { node: i, life: 0 });
        }
        let tick = sim.params.tick_ms;
        sim.push(tick, Ev::Tick);
        Ok(sim)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.params.latency_ms;
        self.rng.random_range(lo..=hi)
    }

    /// Runs every event up to and including `t`; the clock ends at `t`.
    pub fn run_until(&mut self, t: u64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > t {
                break;
            }
            let Some(Reverse(s)) = self.queue.pop() else {
                break;
            };
            self.now = s.at;
            self.handle(s.ev);
            self.leases.audit(self.now, |i| NodeId(i as u64 + 1));
        }
        self.now = t;
    }

    /// Runs until `cond` holds (checked every `every_ms`) or `deadline`; returns the first
    /// time it held.
    pub fn run_until_cond(
        &mut self,
        deadline: u64,
        every_ms: u64,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<u64> {
        loop {
            if cond(self) {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let next = (self.now + every_ms).min(deadline);
            self.run_until(next);
        }
    }

    fn handle(&mut self, ev: Ev) {
        // A stopped node handles nothing until it resumes.
        let at_node = match &ev {
            Ev::Heartbeat { node, .. } | Ev::CaughtUp { node, .. } | Ev::AckIn { node, .. } => {
                Some(*node)
            }
            Ev::Deliver { instr, .. } => self.node_index(instr.node),
            _ => None,
        };
        let ev = match at_node {
            Some(node) => match self.net.hold_if_stalled(node, self.now, ev) {
                Some(ev) => ev,
                None => return,
            },
            None => ev,
        };
        match ev {
            Ev::Tick => {
                self.meridian_tick();
                let next = self.now + self.params.tick_ms;
                self.push(next, Ev::Tick);
            }
            Ev::Heartbeat { node, life } => self.heartbeat(node, life),
            Ev::Deliver { life, instr } => self.deliver(life, instr),
            Ev::CaughtUp { node, life, shard } => self.caught_up(node, life, shard),
            Ev::Answer {
                op,
                node,
                shard,
                version,
                kind,
                session,
            } => {
                if self.node_index(node).map(|i| self.nodes[i].life) != Some(session) {
                    // A replaced session's answers count for nothing.
                    return;
                }
                if let Some(op) = op {
                    self.controller.on_instruction_acked(op, node, version);
                }
                if matches!(kind, InstructionKind::Demote | InstructionKind::CloseShard) {
                    // The node confirmed it no longer leads the shard (as `Cluster::execute`).
                    self.leases.release(shard, node, session);
                }
            }
            Ev::HeartbeatIn {
                node,
                session,
                sent_at,
                reports,
            } => self.heartbeat_in(node, session, sent_at, reports),
            Ev::AckIn {
                node,
                session,
                sent_at,
                grants,
            } => {
                let n = &self.nodes[node];
                if !n.alive || n.life != session {
                    return;
                }
                if let Some(lapse) = self.leases.on_ack(node, sent_at, &grants, self.now) {
                    self.push(lapse.max(self.now), Ev::LeaseLapse { node });
                }
            }
            Ev::LeaseLapse { node } => self.leases.lapse(node),
            Ev::StallStart { node } => self.leases.set_stalled(node, true),
            Ev::Resume { node } => {
                self.leases.set_stalled(node, false);
                for ev in self.net.take_inbox(node) {
                    self.handle(ev);
                    // Each waiting event is a step of its own for the audit.
                    self.leases.audit(self.now, |i| NodeId(i as u64 + 1));
                }
            }
        }
    }

    /// Schedules a fault (a partition or stall of one node).
    pub fn inject(&mut self, fault: Fault) {
        self.net.add_fault(fault);
        if fault.kind == FaultKind::Stall {
            self.push(fault.from_ms, Ev::StallStart { node: fault.node });
            self.push(fault.until_ms, Ev::Resume { node: fault.node });
        }
    }

    /// The leases, their book and the two-writers audit.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Messages the network lost so far.
    pub fn drops(&self) -> Drops {
        self.net.drops
    }

    // ---- Meridian's side: the executor loop the server runs too ----

    /// The view of the last reports, without trends or operators (what history samples).
    fn raw_view(&self) -> ClusterView {
        let nodes = self.node_views();
        let shards = self
            .routes
            .iter()
            .map(|s| self.book.shard_view(s.clone(), 0))
            .collect::<Vec<ShardView>>();
        ClusterView::new(self.config.clone(), nodes, shards).with_copysets(self.copysets.clone())
    }

    /// The scheduler's view, exactly as the tick builds it: loads judged by their trend,
    /// as the server's are.
    pub fn view(&self) -> ClusterView {
        self.judged(self.raw_view())
    }

    /// `raw` with loads judged by their trend and the running operators added.
    fn judged(&self, raw: ClusterView) -> ClusterView {
        raw.with_history_trend(
            &self.history,
            self.params.scheduler.hot_trend_window_ms,
            self.now,
        )
        .with_operators(
            self.controller.running(),
            Some(self.params.controller.limits.per_node),
        )
    }

    fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|n| NodeView {
                id: n.id,
                labels: n.labels.clone(),
                state: self.liveness.state(n.id).unwrap_or(NodeState::Offline),
                state_since_ms: self.liveness.state_since(n.id).unwrap_or(0),
                cordoned: false,
                draining: n.draining,
                evict_leaders: n.evict_leaders,
                stats: Default::default(),
            })
            .collect()
    }

    fn meridian_tick(&mut self) {
        let now = self.now;
        for change in self.liveness.tick(now) {
            if change.to == NodeState::Offline {
                self.book.forget_node(change.node);
                self.controller.on_node_down(change.node, now);
            }
        }
        // What lease grants read until the next tick, as the server's `set_node_states`.
        for (i, n) in self.nodes.iter().enumerate() {
            self.leases.publish(i, self.liveness.state(n.id));
        }
        self.sync_copysets();
        let raw = self.raw_view();
        if self.history.due(now) {
            let samples: Vec<_> = meridian_scheduler::history::shard_load_samples(&raw).collect();
            self.history.record(now, samples);
        }
        let view = self.judged(raw);
        for op in self.schedulers.schedule(&view, now) {
            match self.controller.try_add(op) {
                Ok(_) => self.moves.operators += 1,
                Err(_) => self.moves.rejected += 1,
            }
        }
        let routes = &self.routes;
        let events = self
            .controller
            .tick(now, &mut |id| routes.get(id.0 as usize).cloned());
        for e in events {
            match e {
                ControllerEvent::StepStarted(st) => {
                    self.moves.count_step(&st.step);
                    let id = st.shard_after.id.0 as usize;
                    self.routes[id] = st.shard_after;
                    self.refresh(st.shard_before.id);
                    for i in st.instructions {
                        self.send(i);
                    }
                }
                ControllerEvent::Send { instructions, .. } => {
                    for i in instructions {
                        self.send(i);
                    }
                }
                ControllerEvent::Finished { kind, state, .. } => {
                    self.moves.count_finished(kind, &state);
                }
            }
        }
    }

    /// What the server's `Cluster::sync_copysets` does each tick: the family follows nodes
    /// that joined, drained, died past the repair delay or left.
    fn sync_copysets(&mut self) {
        let Some(family) = &self.copysets else {
            return;
        };
        if let Some(u) = update_family(
            family,
            &self.node_views(),
            self.params.replication as usize,
            self.params.isolation,
            self.now,
            self.params.scheduler.repair_delay_ms,
            self.params.seed ^ self.now,
        ) {
            self.copysets = Some(Arc::new(u.family));
        }
    }

    /// The copyset family the schedulers use now (copyset mode with `keep_copysets`).
    pub fn copysets(&self) -> Option<&Arc<CopysetFamily>> {
        self.copysets.as_ref()
    }

    /// The family first placement drew (copyset mode), whether the schedulers see it or not.
    pub fn placed_copysets(&self) -> Option<&Arc<CopysetFamily>> {
        self.placed_copysets.as_ref()
    }

    fn send(&mut self, instr: NodeInstruction) {
        let Some(node) = self.node_index(instr.node) else {
            return;
        };
        if !self.nodes[node].alive {
            // Lost; a returning node is reconciled from its reports.
            return;
        }
        let life = self.nodes[node].life;
        let latency = self.latency();
        if let Some(at) = self.net.carry(node, Msg::Instruction, self.now, latency) {
            self.push(at, Ev::Deliver { life, instr });
        }
    }

    /// The node answers an instruction it applied (sent in session `life`).
    fn answer(
        &mut self,
        node: usize,
        life: u64,
        op: Option<OperatorId>,
        shard: ShardId,
        version: ShardVersion,
        kind: InstructionKind,
    ) {
        // Operators' answers keep the scenario's latency; reconcile answers are control
        // messages.
        let delay = match op {
            Some(_) => self.latency(),
            None => self.net.control_delay(),
        };
        if let Some(at) = self.net.carry(node, Msg::Answer, self.now, delay) {
            self.push(
                at,
                Ev::Answer {
                    op,
                    node: self.nodes[node].id,
                    shard,
                    version,
                    kind,
                    session: life,
                },
            );
        }
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        let i = id.0.checked_sub(1)? as usize;
        (i < self.nodes.len()).then_some(i)
    }

    fn heartbeat(&mut self, node: usize, life: u64) {
        let n = &self.nodes[node];
        if !n.alive || n.life != life {
            return;
        }
        self.advance_logs(node);
        self.send_report(node);
        let next = self.now + self.params.liveness.heartbeat_interval_ms;
        self.push(next, Ev::Heartbeat { node, life });
    }

    /// The node sends its shard reports (on its heartbeat timer, or at once when it just
    /// became a leader and needs its lease, as `NodeAgent` does).
    fn send_report(&mut self, node: usize) {
        let n = &self.nodes[node];
        let life = n.life;
        let now = self.now;
        let leases = &self.leases;
        let reports: Vec<ShardReport> = n
            .replicas
            .iter()
            .map(|(&shard, l)| ShardReport {
                shard,
                version: l.version,
                role: l.role,
                status: l.status,
                stats: if l.role == ReplicaRole::Leader && l.status == ShardStatus::Ready {
                    let load = self.loads[shard.0 as usize];
                    ShardStats {
                        read_units_per_sec: load * 0.7,
                        write_units_per_sec: load * 0.3,
                        ..ShardStats::default()
                    }
                } else {
                    ShardStats::default()
                },
                log: l.log,
                leased: l.role == ReplicaRole::Leader
                    && leases.is_leased(node, shard, l.version, now),
            })
            .collect();
        let sent_at = self.leases.node_clock(node, now);
        let delay = self.net.control_delay();
        if let Some(at) = self.net.carry(node, Msg::Heartbeat, now, delay) {
            self.push(
                at,
                Ev::HeartbeatIn {
                    node,
                    session: life,
                    sent_at,
                    reports,
                },
            );
        }
    }

    /// Meridian handles a heartbeat as the server does: liveness, reports, the reconcile
    /// path, then the ack with its lease grants.
    fn heartbeat_in(&mut self, node: usize, session: u64, sent_at: u64, reports: Vec<ShardReport>) {
        if self.nodes[node].life != session {
            // A replaced session's stream counts for nothing.
            return;
        }
        let id = self.nodes[node].id;
        let now = self.now;
        self.liveness.on_heartbeat(id, now);
        for r in &reports {
            self.book.on_report(id, r);
            self.controller.on_shard_report(id, r);
        }
        // The one reconcile path, exactly as the server runs it on every report.
        let ctx = SimReconcile {
            routes: &self.routes,
            controller: &self.controller,
            leases: &self.leases,
            now,
        };
        let placed = self.routes.iter().filter(|s| s.has_replica_on(id));
        let fixes = reconcile_node(id, &reports, placed, &ctx);
        for f in fixes {
            self.moves.reconciliations += 1;
            self.send(f);
        }
        let routes = &self.routes;
        let grants = self.leases.grant(
            node,
            id,
            session,
            &reports,
            |s| routes.get(s.0 as usize),
            now,
        );
        let delay = self.net.control_delay();
        if let Some(at) = self.net.carry(node, Msg::Ack, now, delay) {
            self.push(
                at,
                Ev::AckIn {
                    node,
                    session,
                    sent_at,
                    grants,
                },
            );
        }
    }

    // ---- the nodes' side ----

    /// Moves node `node`'s replicas' log positions forward (module documentation).
    fn advance_logs(&mut self, node: usize) {
        let now = self.now;
        let stalled = self.nodes[node].replication_stalled;
        let heard: Vec<(ShardId, u64)> = self.nodes[node]
            .replicas
            .iter()
            .filter(|(_, l)| l.role == ReplicaRole::Follower && l.status == ShardStatus::Ready)
            .filter_map(|(&shard, _)| {
                let leader = self.routes.get(shard.0 as usize)?.leader()?;
                let l = self
                    .nodes
                    .get(self.node_index(leader)?)?
                    .replicas
                    .get(&shard)?;
                (l.role == ReplicaRole::Leader).then_some((shard, l.log.committed))
            })
            .collect();
        let n = &mut self.nodes[node];
        for (shard, l) in n.replicas.iter_mut() {
            if l.status != ShardStatus::Ready {
                continue;
            }
            if l.role == ReplicaRole::Leader {
                let p = l.log.applied.max(now + 1);
                l.log = LogPosition {
                    applied: p,
                    committed: p,
                };
            } else if let Some(&(_, c)) = heard.iter().find(|(s, _)| s == shard) {
                l.log.committed = l.log.committed.max(c);
                if !stalled {
                    l.log.applied = l.log.applied.max(l.log.committed);
                }
            }
        }
    }

    fn deliver(&mut self, life: u64, instr: NodeInstruction) {
        let Some(node) = self.node_index(instr.node) else {
            return;
        };
        if !self.nodes[node].alive || self.nodes[node].life != life {
            return;
        }
        let now = self.now;
        let catch_up = self.catch_up[instr.shard.0 as usize];
        let owed = instr.op.map(|op| (op, instr.version));
        let n = &mut self.nodes[node];
        if let Some(l) = n.replicas.get(&instr.shard) {
            if l.version > instr.version {
                // Nodes refuse instructions older than what they hold.
                return;
            }
        }
        let mut ack_now = false;
        let mut opening = false;
        match instr.kind {
            InstructionKind::CloseShard => {
                n.replicas.remove(&instr.shard);
                self.leases.remove(node, instr.shard);
                ack_now = true;
            }
            InstructionKind::Demote => {
                if let Some(l) = n.replicas.get_mut(&instr.shard) {
                    l.role = ReplicaRole::Follower;
                    l.version = instr.version;
                    self.leases
                        .set_held(node, instr.shard, instr.version, ReplicaRole::Follower);
                }
                ack_now = true;
            }
            InstructionKind::OpenShard { .. } | InstructionKind::Promote => {
                let role = match instr.kind {
                    InstructionKind::OpenShard { role } => role,
                    _ => ReplicaRole::Leader,
                };
                self.leases.set_held(node, instr.shard, instr.version, role);
                match n.replicas.get_mut(&instr.shard) {
                    Some(l) => {
                        l.role = role;
                        l.version = instr.version;
                        if l.status == ShardStatus::Ready {
                            ack_now = true;
                        } else {
                            l.owed.extend(owed);
                        }
                    }
                    None => {
                        n.replicas.insert(
                            instr.shard,
                            Local {
                                version: instr.version,
                                role,
                                status: ShardStatus::Opening,
                                owed: owed.into_iter().collect(),
                                log: LogPosition::default(),
                            },
                        );
                        opening = true;
                    }
                }
            }
        }
        if opening {
            self.push(
                now + catch_up,
                Ev::CaughtUp {
                    node,
                    life,
                    shard: instr.shard,
                },
            );
        }
        let leads = self.nodes[node]
            .replicas
            .get(&instr.shard)
            .is_some_and(|l| l.role == ReplicaRole::Leader && l.status == ShardStatus::Ready);
        if leads
            && matches!(
                instr.kind,
                InstructionKind::Promote | InstructionKind::OpenShard { .. }
            )
        {
            self.send_report(node);
        }
        if ack_now {
            let demotes = matches!(
                instr.kind,
                InstructionKind::Demote | InstructionKind::CloseShard
            );
            if owed.is_some() || demotes {
                let op = owed.map(|(op, _)| op);
                self.answer(node, life, op, instr.shard, instr.version, instr.kind);
            }
        }
        self.refresh(instr.shard);
    }

    fn caught_up(&mut self, node: usize, life: u64, shard: ShardId) {
        let n = &mut self.nodes[node];
        if !n.alive || n.life != life {
            return;
        }
        let Some(l) = n.replicas.get_mut(&shard) else {
            return;
        };
        if l.status != ShardStatus::Opening {
            return;
        }
        l.status = ShardStatus::Ready;
        let owed = std::mem::take(&mut l.owed);
        let kind = InstructionKind::OpenShard { role: l.role };
        let leads = l.role == ReplicaRole::Leader;
        if leads {
            self.send_report(node);
        }
        for (op, version) in owed {
            self.answer(node, life, Some(op), shard, version, kind);
        }
        self.refresh(shard);
    }

    // ---- availability bookkeeping ----

    fn available(&self, shard: ShardId) -> bool {
        let Some(s) = self.routes.get(shard.0 as usize) else {
            return false;
        };
        s.leader()
            .and_then(|l| self.node_index(l))
            .map(|i| &self.nodes[i])
            .is_some_and(|n| {
                n.alive
                    && n.replicas.get(&shard).is_some_and(|l| {
                        l.role == ReplicaRole::Leader && l.status == ShardStatus::Ready
                    })
            })
    }

    fn refresh(&mut self, shard: ShardId) {
        let ok = self.available(shard);
        let now = self.now;
        let Some(a) = self.avail.get_mut(shard.0 as usize) else {
            return;
        };
        match (ok, a.down_since) {
            (false, None) => a.down_since = Some(now),
            (true, Some(since)) => {
                let d = now - since;
                a.total += d;
                a.longest = a.longest.max(d);
                a.down_since = None;
            }
            _ => {}
        }
    }

    /// Starts measuring leaderless time from now (after warm-up).
    pub fn reset_measurements(&mut self) {
        let now = self.now;
        for a in &mut self.avail {
            a.total = 0;
            a.longest = 0;
            if a.down_since.is_some() {
                a.down_since = Some(now);
            }
        }
        self.moves = MoveStats::default();
        self.leases.reset_measurements(now);
    }

    /// Leaderless time so far (open intervals counted up to now).
    pub fn leaderless(&self) -> LeaderlessSummary {
        let mut s = LeaderlessSummary::default();
        for a in &self.avail {
            let open = a.down_since.map_or(0, |t| self.now - t);
            let total = a.total + open;
            s.max_per_shard_ms = s.max_per_shard_ms.max(total);
            s.total_ms += total;
            s.longest_interval_ms = s.longest_interval_ms.max(a.longest.max(open));
            s.shards_affected += usize::from(total > 0);
        }
        s
    }

    /// Shards without an available leader right now.
    pub fn leaderless_now(&self) -> usize {
        self.avail.iter().filter(|a| a.down_since.is_some()).count()
    }

    // ---- scenario controls ----

    /// Kills a node: it stops heartbeating and answering; its local state survives on disk.
    pub fn kill(&mut self, id: NodeId) {
        let Some(i) = self.node_index(id) else {
            return;
        };
        self.nodes[i].alive = false;
        self.nodes[i].life += 1;
        self.leases.set_alive(i, false);
        let affected: Vec<ShardId> = self.nodes[i].replicas.keys().copied().collect();
        for s in affected {
            self.refresh(s);
        }
    }

    /// Restarts a killed node: it keeps its replicas and versions but no leadership (its
    /// leases lapsed), and heartbeats at once.
    pub fn restart(&mut self, id: NodeId) {
        let Some(i) = self.node_index(id) else {
            return;
        };
        let n = &mut self.nodes[i];
        n.alive = true;
        n.life += 1;
        for l in n.replicas.values_mut() {
            l.role = ReplicaRole::Follower;
            l.owed.clear();
            if l.status == ShardStatus::Opening {
                // A copy cut short starts over: treat it as not held.
                l.status = ShardStatus::Closed;
            }
        }
        n.replicas.retain(|_, l| l.status != ShardStatus::Closed);
        let life = n.life;
        // A new process: no lease, registered (Online) in a new session.
        self.leases.set_alive(i, true);
        let now = self.now;
        self.push(now, Ev::Heartbeat { node: i, life });
    }

    /// Adds `count` empty nodes, round-robin over zones; returns their ids.
    pub fn add_nodes(&mut self, count: usize) -> Vec<NodeId> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let i = self.nodes.len();
            let node = new_node(i, self.params.zones);
            ids.push(node.id);
            // Registered: Meridian knows it from now (its first heartbeat follows at once).
            self.liveness.track(node.id, self.now);
            self.nodes.push(node);
            let drift = self.net.add_node();
            self.leases.add_node(drift);
            let now = self.now;
            self.push(now, Ev::Heartbeat { node: i, life: 0 });
        }
        ids
    }

    /// Stalls or resumes the replication of node `id`'s followers: while stalled they hear
    /// the leader's log but apply nothing (see the module documentation).
    pub fn stall_replication(&mut self, id: NodeId, on: bool) {
        if let Some(i) = self.node_index(id) {
            self.nodes[i].replication_stalled = on;
        }
    }

    /// Shards whose leader is down and that wait for an in-sync follower: the failover
    /// scheduler's own decision on the current view.
    pub fn waiting(&self) -> Vec<WaitingShard> {
        meridian_scheduler::waiting_shards(&self.view(), &self.params.scheduler)
    }

    /// Whether a shard has an available leader right now.
    pub fn is_available(&self, shard: ShardId) -> bool {
        self.available(shard)
    }

    /// Marks a node draining.
    pub fn set_draining(&mut self, id: NodeId) {
        if let Some(i) = self.node_index(id) {
            self.nodes[i].draining = true;
        }
    }

    /// Sets or clears a node's evict-leaders flag (what `POST /nodes/{node}/evict-leaders`
    /// does on a server).
    pub fn set_evict_leaders(&mut self, id: NodeId, on: bool) {
        if let Some(i) = self.node_index(id) {
            self.nodes[i].evict_leaders = on;
        }
    }

    /// Whether `id` leads some shard, in the metadata or in its own state (a demotion may
    /// not have reached it yet).
    pub fn leads_anything(&self, id: NodeId) -> bool {
        self.routes.iter().any(|s| s.leader() == Some(id))
            || self.node_index(id).is_some_and(|i| {
                self.nodes[i]
                    .replicas
                    .values()
                    .any(|l| l.role == ReplicaRole::Leader)
            })
    }

    /// Sets a shard's read + write load.
    pub fn set_load(&mut self, shard: ShardId, units_per_sec: f64) {
        if let Some(l) = self.loads.get_mut(shard.0 as usize) {
            *l = units_per_sec;
        }
    }

    /// Current metadata of every shard.
    pub fn routes(&self) -> &[Shard] {
        &self.routes
    }

    /// Node ids of one zone.
    pub fn nodes_in_zone(&self, zone: &str) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.labels.zone == zone)
            .map(|n| n.id)
            .collect()
    }

    /// Ids of every node.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// True load each node serves as leader (from the nodes' own state, not the view).
    pub fn leader_loads(&self) -> Vec<(NodeId, f64)> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| {
                let load = n
                    .replicas
                    .iter()
                    .filter(|(_, l)| l.role == ReplicaRole::Leader)
                    .map(|(s, _)| self.loads[s.0 as usize])
                    .sum();
                (n.id, load)
            })
            .collect()
    }

    /// Every shard has RF replicas, all on alive nodes, Ready at the current version in the
    /// right role, and an available leader; and no operator runs.
    pub fn healthy(&self) -> bool {
        let rf = self.params.replication as usize;
        self.controller.running_count() == 0
            && self.routes.iter().all(|s| {
                s.replicas.len() == rf
                    && self.available(s.id)
                    && s.replicas.iter().all(|r| {
                        self.node_index(r.node)
                            .map(|i| &self.nodes[i])
                            .is_some_and(|n| {
                                n.alive
                                    && n.replicas.get(&s.id).is_some_and(|l| {
                                        l.version == s.version
                                            && l.role == r.role
                                            && l.status == ShardStatus::Ready
                                    })
                            })
                    })
            })
    }

    /// Operators that ended in a state other than success.
    pub fn unsuccessful_operators(&self) -> u64 {
        self.moves.failed + self.moves.timed_out
    }
}

fn new_node(i: usize, zones: usize) -> SimNode {
    let id = NodeId(i as u64 + 1);
    SimNode {
        id,
        labels: NodeLabels {
            zone: format!("z{}", i % zones.max(1)),
            rack: format!("r{i}"),
            host: format!("h{i}"),
        },
        alive: true,
        life: 0,
        draining: false,
        evict_leaders: false,
        replication_stalled: false,
        replicas: BTreeMap::new(),
    }
}

impl MoveStats {
    fn count_step(&mut self, step: &Step) {
        self.steps += 1;
        match step {
            Step::TransferLeader { .. } => self.leader_transfers += 1,
            Step::PromoteFollower { .. } => self.promotions += 1,
            Step::AddFollower { .. } => self.replicas_added += 1,
            Step::RemoveReplica { .. } => self.replicas_removed += 1,
            Step::ReopenShard { .. } => self.reopens += 1,
        }
    }

    fn count_finished(&mut self, kind: meridian_scheduler::OperatorKind, state: &OperatorState) {
        match state {
            OperatorState::Succeeded => {
                self.succeeded += 1;
                *self.by_kind.entry(kind.name().to_string()).or_default() += 1;
            }
            OperatorState::Failed(_) => self.failed += 1,
            OperatorState::TimedOut => self.timed_out += 1,
            OperatorState::Cancelled(_) => self.cancelled += 1,
            OperatorState::Running => {}
        }
    }
}
