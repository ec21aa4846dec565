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
    nodes: &'a [SimNode],
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
    fn other_leader(&self, shard: ShardId, node: NodeId) -> bool {
        self.nodes.iter().any(|n| {
            n.id != node
                && n.alive
                && n.replicas.get(&shard).is_some_and(|l| {
                    l.role == ReplicaRole::Leader && l.status != ShardStatus::Closed
                })
        })
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
    Ack {
        op: OperatorId,
        node: NodeId,
        version: ShardVersion,
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
    pub controller: OperatorController,
    /// The copyset family the schedulers keep shards in (copyset mode with
    /// `keep_copysets`), updated every tick by the server's rule.
    copysets: Option<Arc<CopysetFamily>>,
    /// The family first placement drew (copyset mode), kept or not.
    placed_copysets: Option<Arc<CopysetFamily>>,
    avail: Vec<Avail>,
    pub moves: MoveStats,
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
        let mut sim = Self {
            liveness: LivenessTracker::new(params.liveness, 0),
            schedulers: SchedulerSet::new(params.scheduler),
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
        match ev {
            Ev::Tick => {
                self.meridian_tick();
                let next = self.now + self.params.tick_ms;
                self.push(next, Ev::Tick);
            }
            Ev::Heartbeat { node, life } => self.heartbeat(node, life),
            Ev::Deliver { life, instr } => self.deliver(life, instr),
            Ev::CaughtUp { node, life, shard } => self.caught_up(node, life, shard),
            Ev::Ack { op, node, version } => {
                self.controller.on_instruction_acked(op, node, version);
            }
        }
    }

    // ---- Meridian's side: the executor loop the server runs too ----

    /// The scheduler's view, exactly as the tick builds it.
    pub fn view(&self) -> ClusterView {
        let nodes = self.node_views();
        let shards = self
            .routes
            .iter()
            .map(|s| self.book.shard_view(s.clone(), 0))
            .collect::<Vec<ShardView>>();
        ClusterView::new(self.config.clone(), nodes, shards)
            .with_copysets(self.copysets.clone())
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
        self.sync_copysets();
        let view = self.view();
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
        let at = self.now + self.latency();
        self.push(at, Ev::Deliver { life, instr });
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
        let id = n.id;
        let now = self.now;
        self.liveness.on_heartbeat(id, now);
        self.advance_logs(node);
        let n = &self.nodes[node];
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
                leased: false,
            })
            .collect();
        for r in &reports {
            self.book.on_report(id, r);
            self.controller.on_shard_report(id, r);
        }
        // The one reconcile path, exactly as the server runs it on every report.
        let ctx = SimReconcile {
            routes: &self.routes,
            controller: &self.controller,
            nodes: &self.nodes,
        };
        let placed = self.routes.iter().filter(|s| s.has_replica_on(id));
        let fixes = reconcile_node(id, &reports, placed, &ctx);
        for f in fixes {
            self.moves.reconciliations += 1;
            self.send(f);
        }
        let next = now + self.params.liveness.heartbeat_interval_ms;
        self.push(next, Ev::Heartbeat { node, life });
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
                ack_now = true;
            }
            InstructionKind::Demote => {
                if let Some(l) = n.replicas.get_mut(&instr.shard) {
                    l.role = ReplicaRole::Follower;
                    l.version = instr.version;
                }
                ack_now = true;
            }
            InstructionKind::OpenShard { .. } | InstructionKind::Promote => {
                let role = match instr.kind {
                    InstructionKind::OpenShard { role } => role,
                    _ => ReplicaRole::Leader,
                };
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
        if ack_now {
            if let Some((op, version)) = owed {
                let at = now + self.latency();
                self.push(
                    at,
                    Ev::Ack {
                        op,
                        node: instr.node,
                        version,
                    },
                );
            }
        }
        self.refresh(instr.shard);
    }

    fn caught_up(&mut self, node: usize, life: u64, shard: ShardId) {
        let n = &mut self.nodes[node];
        if !n.alive || n.life != life {
            return;
        }
        let id = n.id;
        let Some(l) = n.replicas.get_mut(&shard) else {
            return;
        };
        if l.status != ShardStatus::Opening {
            return;
        }
        l.status = ShardStatus::Ready;
        let owed = std::mem::take(&mut l.owed);
        for (op, version) in owed {
            let at = self.now + self.latency();
            self.push(
                at,
                Ev::Ack {
                    op,
                    node: id,
                    version,
                },
            );
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
