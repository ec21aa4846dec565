//! The scheduling loop: liveness, schedulers and operator execution, once per tick.
//!
//! Each tick, per cluster: feed heartbeat times to the liveness tracker and mark node
//! states; create the cluster's shards once it has enough nodes; build the scheduler's
//! view; let the schedulers propose operators; let the controller start steps; execute
//! them. Executing a step means: persist the shard's new placement with a compare-and-swap
//! on its version (so a stale step can never overwrite a newer placement), publish the new
//! route, then send the step's instructions and report their acks back.

mod health;
mod history;
mod settings;
mod switches;

pub use settings::SettingsView;

use crate::events::About;
use crate::meta::{Cluster, InstructionOutcome, Meta, RecordChange};
use crate::server::ServingTerm;
use meridian_model::{ClusterId, NodeId, NodeState, OperatorId, ShardId};
use meridian_scheduler::{
    ClusterView, ControllerConfig, ControllerEvent, History, LivenessConfig, LivenessTracker,
    NodeInstruction, Operator, OperatorController, OperatorKind, OperatorState, SchedulerConfig,
    SchedulerSet, SchedulerStatus, Step, WaitingShard,
};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// First wait before an operator's lost instruction is sent again; doubles each time.
const LOST_RESEND_FIRST_MS: u64 = 200;
/// Longest wait between two sends of an operator's lost instruction.
const LOST_RESEND_MAX_MS: u64 = 3_000;

/// Scheduling state of one cluster.
pub struct ClusterScheduling {
    liveness: LivenessTracker,
    /// Last heartbeat time fed to the tracker, per node.
    fed: HashMap<NodeId, u64>,
    schedulers: SchedulerSet,
    controller: OperatorController,
    /// Replicas sharing a failure domain at the last tick (logged when it changes).
    domain_violations: u32,
    /// When the next full scheduling pass is due even if nothing happened.
    next_full_ms: u64,
    /// While operators run, the next full pass is not due before this (ten times the last
    /// pass's duration after it).
    next_busy_full_ms: u64,
    /// Shards whose leader is down and that wait for an in-sync follower, as of the last
    /// full pass (logged when a shard starts or stops waiting).
    waiting: BTreeMap<ShardId, WaitingShard>,
    /// Shards whose running operator has a record in the store (`meta::MoveRecord`): to
    /// delete if the operator ends before its last step.
    recorded: HashSet<ShardId>,
    /// The runtime settings in force (the file's, with `overrides` on top).
    settings: meridian_scheduler::RuntimeSettings,
    /// The admin's overrides, as stored (`settings` module).
    overrides: BTreeMap<String, String>,
    /// Recent figures (`history` module).
    history: History,
    /// Heartbeat and DDL counts at the last history sample, with its time.
    last_counts: Option<(u64, u64, u64)>,
    /// Each shard's mean load over the trend window, as of the last sample, and that
    /// window: the views of the passes in between use it as it is.
    trends: (u64, HashMap<ShardId, f64>),
}

/// Scheduling state of every cluster, and the loop that drives it.
pub struct Scheduling {
    meta: Arc<Meta>,
    liveness: LivenessConfig,
    schedulers: SchedulerConfig,
    operators: ControllerConfig,
    full_interval_ms: u64,
    history_step_ms: u64,
    clusters: Mutex<HashMap<ClusterId, Arc<Mutex<ClusterScheduling>>>>,
    /// Serializes changes of the scheduler switches with their store writes.
    switching: tokio::sync::Mutex<()>,
}

/// An operator as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperatorInfo {
    /// Operator id.
    pub id: OperatorId,
    /// Shard it changes.
    pub shard: ShardId,
    /// What made it.
    pub kind: &'static str,
    /// Why.
    pub reason: String,
    /// Its state.
    pub state: meridian_scheduler::OperatorState,
    /// Index of the current step.
    pub current: usize,
    /// Steps.
    pub steps: Vec<Step>,
    /// Age in ms (running) or duration (finished).
    pub age_ms: u64,
}

impl OperatorInfo {
    fn of(op: &Operator, now: u64) -> Self {
        Self {
            id: op.id,
            shard: op.shard,
            kind: op.kind.name(),
            reason: op.reason.clone(),
            state: op.state.clone(),
            current: op.current,
            steps: op.steps.clone(),
            age_ms: op.finished_ms.unwrap_or(now).saturating_sub(op.created_ms),
        }
    }
}

impl Scheduling {
    /// Scheduling over `meta` with the given tuning; a full scheduling pass runs at least
    /// every `full_interval_ms` (and on every tick while something is happening).
    pub fn new(
        meta: Arc<Meta>,
        liveness: LivenessConfig,
        schedulers: SchedulerConfig,
        operators: ControllerConfig,
        full_interval_ms: u64,
        history_step_ms: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            meta,
            liveness,
            schedulers,
            operators,
            full_interval_ms,
            history_step_ms,
            clusters: Mutex::new(HashMap::new()),
            switching: tokio::sync::Mutex::new(()),
        })
    }

    /// The state of one cluster, created on first use. The liveness tracker starts now, so
    /// the grace period runs from this server's start (or takeover).
    pub fn cluster_state(&self, id: ClusterId) -> Arc<Mutex<ClusterScheduling>> {
        let now = self.meta.now_ms();
        self.clusters
            .lock()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Mutex::new(ClusterScheduling {
                    liveness: LivenessTracker::new(self.liveness, now),
                    fed: HashMap::new(),
                    schedulers: SchedulerSet::new(self.schedulers),
                    controller: OperatorController::new(self.operators),
                    domain_violations: 0,
                    next_full_ms: 0,
                    next_busy_full_ms: 0,
                    waiting: BTreeMap::new(),
                    recorded: HashSet::new(),
                    settings: self.started_settings(),
                    overrides: BTreeMap::new(),
                    history: History::new(self.history_step_ms),
                    last_counts: None,
                    trends: (0, HashMap::new()),
                }))
            })
            .clone()
    }

    /// Runs [`Scheduling::tick`] every `interval` for every cluster until `stop` turns
    /// true. Each cluster has a loop of its own: one cluster's liveness and failover never
    /// wait for another cluster's full scheduling pass. Clusters created later get their
    /// loop within one `interval`.
    pub fn spawn_loop(
        self: Arc<Self>,
        interval: Duration,
        term: ServingTerm,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut loops: HashMap<ClusterId, tokio::task::JoinHandle<()>> = HashMap::new();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                for cluster in self.meta.clusters() {
                    if loops.get(&cluster.id).is_some_and(|h| !h.is_finished()) {
                        continue;
                    }
                    let this = self.clone();
                    let (stop, term) = (stop.clone(), term.clone());
                    loops.insert(
                        cluster.id,
                        tokio::spawn(this.cluster_loop(cluster, interval, term, stop)),
                    );
                }
            }
            for (_, h) in loops {
                let _ = h.await;
            }
        })
    }

    async fn cluster_loop(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        interval: Duration,
        term: ServingTerm,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // A leader that may have lost its election lease (it was paused, or cut off
            // from etcd) decides nothing: it would judge nodes by a silence that was its
            // own, and another server may lead by now.
            if !term.is_valid() {
                continue;
            }
            self.tick(&cluster).await;
        }
    }

    /// One round for one cluster.
    pub async fn tick(&self, cluster: &Arc<Cluster>) {
        // Tests hold one cluster's round here to show the others go on without it.
        cluster.failpoints().hit("schedule.tick").await;
        let now = self.meta.now_ms();
        let started = std::time::Instant::now();
        let state = self.cluster_state(cluster.id);
        if cluster.copysets().is_some() {
            let (nodes, delay) = {
                let s = state.lock();
                (
                    cluster.node_views(|n| s.liveness.state_since(n).unwrap_or(0)),
                    s.settings.scheduler.repair_delay_ms,
                )
            };
            if let Err(e) = cluster.sync_copysets(&nodes, now, delay).await {
                tracing::warn!(cluster = %cluster.id, "updating the copyset family: {e}");
            }
        }
        let events = {
            let mut s = state.lock();
            let s = &mut *s;
            let changes = self.feed_liveness(cluster, s, now);
            if !cluster.has_shards() {
                None
            } else {
                // Progress from heartbeats: reports that show a running step's work done.
                let running: Vec<ShardId> = s.controller.running().map(|o| o.shard).collect();
                for shard in running {
                    for (node, report) in cluster.shard_reports(shard) {
                        s.controller.on_shard_report(node, &report);
                    }
                }
                // The full pass (view + schedulers) costs O(shards): run it at once when a
                // node changed state or a shard waits for a follower to catch up; while
                // operators are in flight, as often as a tenth of a core allows (every tick in
                // a small cluster; a large one always balances something, and its passes must
                // not crowd out everything else on the server); otherwise once per
                // `full_schedule_interval_ms`.
                let urgent = !changes.is_empty() || !s.waiting.is_empty();
                let busy = s.controller.running_count() > 0 && now >= s.next_busy_full_ms;
                let mut fixes = Vec::new();
                if urgent || busy || now >= s.next_full_ms {
                    let pass = std::time::Instant::now();
                    s.next_full_ms = now + self.full_interval_ms;
                    self.full_pass(cluster, s, now);
                    fixes = cluster.reconcile_sweep(now, None);
                    let took = pass.elapsed().as_millis() as u64;
                    s.next_busy_full_ms = now + (took * 10).min(self.full_interval_ms);
                }
                let events = s.controller.tick(now, &mut |id| cluster.shard(id));
                cluster.set_busy_shards(s.controller.running().map(|o| o.shard));
                Some((events, fixes))
            }
        };
        // The decision part of a tick (liveness, view, schedulers, controller), under the
        // cluster's scheduling lock; executing the steps is asynchronous.
        metrics::histogram!("meridian_schedule_tick_seconds", "cluster" => cluster.name())
            .record(started.elapsed().as_secs_f64());
        match events {
            None => {
                let cluster = cluster.clone();
                if let Err(e) = cluster.maybe_create_shards().await {
                    tracing::warn!(cluster = %cluster.id, "creating shards: {e}");
                }
            }
            Some((events, fixes)) => {
                for fix in fixes {
                    let cluster = cluster.clone();
                    tokio::spawn(async move {
                        let outcome = cluster.execute(&fix).await;
                        tracing::info!(node = %fix.node, shard = %fix.shard, kind = ?fix.kind, ?outcome, "reconciled a replica with the metadata");
                    });
                }
                self.execute(cluster, &state, events).await
            }
        }
    }

    /// Feeds heartbeat times to the liveness tracker, lets silence do its work, and mirrors
    /// the resulting state changes into the cluster.
    fn feed_liveness(
        &self,
        cluster: &Cluster,
        s: &mut ClusterScheduling,
        now: u64,
    ) -> Vec<meridian_scheduler::LivenessChange> {
        let mut changes = Vec::new();
        for (node, last, current) in cluster.heartbeats() {
            if current == NodeState::Removed {
                s.liveness.forget(node);
                continue;
            }
            match last {
                Some(t) if s.fed.get(&node) != Some(&t) => {
                    s.fed.insert(node, t);
                    changes.extend(s.liveness.on_heartbeat(node, t));
                }
                Some(_) => {}
                // Known from the store but not heard since start: the grace period
                // gives it time to reconnect before it is declared dead.
                None if s.liveness.state(node).is_none() => s.liveness.track(node, now),
                None => {}
            }
        }
        changes.extend(s.liveness.tick(now));
        if !changes.is_empty() {
            for c in &changes {
                tracing::info!(cluster = %cluster.id, node = %c.node, from = ?c.from, to = ?c.to, "node state changed");
                let name = cluster
                    .find_node(&c.node.0.to_string())
                    .map_or_else(|| c.node.to_string(), |n| n.node.name);
                cluster.event(
                    "node_state",
                    format!("node {name} ({}) {:?} -> {:?}", c.node, c.from, c.to).to_lowercase(),
                    About {
                        node: Some(c.node.0),
                        ..About::default()
                    },
                );
                metrics::counter!("meridian_node_state_changes_total", "cluster" => cluster.name(), "to" => format!("{:?}", c.to).to_lowercase()).increment(1);
            }
            for c in changes.iter().filter(|c| c.to == NodeState::Offline) {
                // Operators waiting on a dead node fail now rather than at their timeout.
                s.controller.on_node_down(c.node, now);
            }
            let states: Vec<(NodeId, NodeState)> = changes.iter().map(|c| (c.node, c.to)).collect();
            cluster.set_node_states(&states);
        }
        changes
    }

    /// Builds the view of every node and shard and lets the schedulers propose operators;
    /// also refreshes the failure-domain gauges.
    fn full_pass(&self, cluster: &Cluster, s: &mut ClusterScheduling, now: u64) {
        let nodes = cluster.node_views(|n| s.liveness.state_since(n).unwrap_or(0));
        let view = ClusterView::new(cluster.config(), nodes, cluster.shard_views())
            .with_copysets(cluster.copysets());
        let sampled = Self::sample_history(cluster, s, &view, now);
        // Load is judged by its recent average, not by one report.
        let window = s.settings.scheduler.hot_trend_window_ms;
        if sampled || s.trends.0 != window {
            s.trends = (window, s.history.shard_trends(window, now));
        }
        let trends = &s.trends.1;
        let view = view
            .with_load_trend(|sv| trends.get(&sv.shard.id).copied())
            .with_controller(&s.controller);
        cluster.report_copyset_violations(&view);
        // Invariant 4: placement may degrade when domains are too few, but never
        // silently.
        let violations = view.domain_violations();
        if violations != s.domain_violations {
            if violations > 0 {
                tracing::warn!(cluster = %cluster.id, violations, "replicas share a failure domain: not enough domains for the isolation level, or a repair is in progress");
            } else {
                tracing::info!(cluster = %cluster.id, "every shard's replicas are in distinct failure domains again");
            }
            s.domain_violations = violations;
        }
        // Shards whose replicas share a domain for any reason, including a topology
        // with fewer domains than replicas (which is not a violation, but degraded).
        let degraded = view
            .shards()
            .iter()
            .filter(|sv| {
                let mut domains: Vec<usize> = sv
                    .shard
                    .replicas
                    .iter()
                    .filter_map(|r| view.domain_of(r.node))
                    .collect();
                let n = domains.len();
                domains.sort_unstable();
                domains.dedup();
                domains.len() < n
            })
            .count();
        let name = cluster.config().name;
        metrics::gauge!("meridian_domain_violations", "cluster" => name.clone())
            .set(f64::from(violations));
        metrics::gauge!("meridian_shards_domain_degraded", "cluster" => name.clone())
            .set(degraded as f64);
        self.note_waiting(cluster, s, &view, &name);
        health::report_health(&view, &s.waiting, &name);
        let mut names = None;
        for op in s.schedulers.schedule(&view, now) {
            let (kind, shard, reason) = (op.kind, op.shard, op.reason.clone());
            match s.controller.try_add(op) {
                Ok(id) => {
                    tracing::info!(cluster = %cluster.id, op = %id, %shard, kind = kind.name(), "operator added");
                    cluster.event(
                        "operator_started",
                        format!("{} on {shard}: {}", kind.name(), {
                            let names = names.get_or_insert_with(|| cluster.node_names());
                            meridian_model::with_node_names(&reason, |id| names.get(&id).cloned())
                        }),
                        About {
                            shard: Some(shard.0),
                            operator: Some(id.0),
                            ..About::default()
                        },
                    );
                    metrics::counter!("meridian_operators_added_total", "cluster" => name.clone(), "kind" => kind.name())
                        .increment(1);
                }
                Err(e) => {
                    tracing::debug!(cluster = %cluster.id, %shard, "operator rejected: {e}")
                }
            }
        }
    }

    /// Records which shards wait for an in-sync follower (the failover scheduler's own
    /// decision), sets the gauge, and logs each shard once when it starts and stops waiting.
    fn note_waiting(
        &self,
        cluster: &Cluster,
        s: &mut ClusterScheduling,
        view: &ClusterView,
        name: &str,
    ) {
        let now: BTreeMap<ShardId, WaitingShard> =
            meridian_scheduler::waiting_shards(view, &s.settings.scheduler)
                .into_iter()
                .map(|w| (w.shard, w))
                .collect();
        for (id, w) in &now {
            if !s.waiting.contains_key(id) {
                tracing::warn!(cluster = %cluster.id, shard = %id, leader = ?w.leader, committed = w.committed, best_follower = ?w.best_follower, "failover waits for an in-sync follower: {}; `meridian ctl force-promote {} NODE` promotes one anyway, losing what it has not applied", w.reason, id.0);
            }
        }
        for id in s.waiting.keys().filter(|id| !now.contains_key(id)) {
            tracing::info!(cluster = %cluster.id, shard = %id, "no longer waiting for an in-sync follower");
        }
        metrics::gauge!("meridian_shards_waiting_for_in_sync_follower", "cluster" => name.to_string())
            .set(now.len() as f64);
        s.waiting = now;
    }

    async fn execute(
        &self,
        cluster: &Arc<Cluster>,
        state: &Arc<Mutex<ClusterScheduling>>,
        events: Vec<ControllerEvent>,
    ) {
        for event in events {
            match event {
                ControllerEvent::StepStarted(step) => {
                    if step.shard_after != step.shard_before {
                        // A multi-step operator is recorded with its steps, so a restart
                        // resumes it (see `meta::MoveRecord`).
                        let record = RecordChange::for_step(
                            &step.operator,
                            step.step_index,
                            &step.shard_before,
                        );
                        let recording = matches!(record, RecordChange::Put(_));
                        let ended = matches!(record, RecordChange::Delete);
                        match cluster
                            .swap_shard_for_step(
                                step.shard_before.version,
                                step.shard_after.clone(),
                                record,
                            )
                            .await
                        {
                            Ok(true) => {
                                let shard = step.shard_after.id;
                                if recording {
                                    state.lock().recorded.insert(shard);
                                    cluster.failpoints().hit("move.after_step").await;
                                } else if ended {
                                    state.lock().recorded.remove(&shard);
                                }
                            }
                            Ok(false) => {
                                state.lock().controller.fail(
                                    step.op,
                                    "the shard changed under the step",
                                    self.meta.now_ms(),
                                );
                                continue;
                            }
                            Err(e) => {
                                state.lock().controller.fail(
                                    step.op,
                                    format!("persisting the step: {e}"),
                                    self.meta.now_ms(),
                                );
                                continue;
                            }
                        }
                    }
                    tracing::info!(cluster = %cluster.id, op = %step.op, shard = %step.shard_after.id, version = %step.shard_after.version, step = ?step.step, "step started");
                    self.send(cluster, state, step.instructions);
                }
                ControllerEvent::Send { instructions, .. } => {
                    self.send(cluster, state, instructions)
                }
                ControllerEvent::Finished {
                    op,
                    shard,
                    kind,
                    state: end,
                    duration_ms,
                } => {
                    // Ended before its last step: the schedulers take it from here, and a
                    // restart must not resume it.
                    if state.lock().recorded.remove(&shard) {
                        if let Err(e) = cluster.forget_move(shard).await {
                            tracing::warn!(cluster = %cluster.id, %op, %shard, "deleting an ended operator's record (the next start deletes it): {e}");
                        }
                    }
                    tracing::info!(cluster = %cluster.id, %op, %shard, kind = kind.name(), state = ?end, "operator finished");
                    let outcome = match &end {
                        OperatorState::Succeeded => "succeeded".to_string(),
                        OperatorState::Failed(why) => format!("failed: {why}"),
                        OperatorState::Cancelled(why) => format!("cancelled: {why}"),
                        other => format!("{other:?}"),
                    };
                    cluster.event(
                        "operator_finished",
                        format!(
                            "{} on {shard} {outcome} after {duration_ms} ms",
                            kind.name()
                        ),
                        About {
                            shard: Some(shard.0),
                            operator: Some(op.0),
                            duration_ms: Some(duration_ms),
                            ..About::default()
                        },
                    );
                    let name = cluster.name();
                    let outcome = crate::metrics::operator_outcome(&end);
                    metrics::counter!("meridian_operators_finished_total", "cluster" => name.clone(), "kind" => kind.name(), "outcome" => outcome)
                        .increment(1);
                    if kind == OperatorKind::Failover {
                        metrics::counter!("meridian_failovers_total", "cluster" => name.clone(), "outcome" => outcome)
                            .increment(1);
                        metrics::histogram!("meridian_failover_duration_seconds", "cluster" => name)
                            .record(duration_ms as f64 / 1000.0);
                    }
                }
            }
        }
    }

    /// Sends instructions in the background; acks go back to the controller. A refused or
    /// failed instruction ends its operator at once; a lost one (no answer, node
    /// disconnected) is sent again with backoff while its operator still waits for it (the
    /// step's timeout bounds that).
    fn send(
        &self,
        cluster: &Arc<Cluster>,
        state: &Arc<Mutex<ClusterScheduling>>,
        instructions: Vec<NodeInstruction>,
    ) {
        for i in instructions {
            let (cluster, state, meta) = (cluster.clone(), state.clone(), self.meta.clone());
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(LOST_RESEND_FIRST_MS);
                loop {
                    let outcome = cluster.execute(&i).await;
                    let Some(op) = i.op else { return };
                    match outcome {
                        InstructionOutcome::Done => {
                            state
                                .lock()
                                .controller
                                .on_instruction_acked(op, i.node, i.version);
                            return;
                        }
                        InstructionOutcome::Failed(why) => {
                            tracing::info!(node = %i.node, shard = %i.shard, %op, "instruction refused: {why}");
                            state.lock().controller.fail(
                                op,
                                format!("{} refused {:?}: {why}", i.node, i.kind),
                                meta.now_ms(),
                            );
                            return;
                        }
                        InstructionOutcome::Lost(why) => {
                            tracing::debug!(node = %i.node, shard = %i.shard, %op, "instruction lost: {why}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_millis(LOST_RESEND_MAX_MS));
                            let waiting = state.lock().controller.get(op).is_some_and(|o| {
                                o.state == meridian_scheduler::OperatorState::Running
                                    && o.steps.get(o.current).is_some()
                                    && cluster
                                        .shard(i.shard)
                                        .is_some_and(|s| s.version == i.version)
                            });
                            if !waiting {
                                return;
                            }
                        }
                    }
                }
            });
        }
    }

    // ----------------------------------------------------------------------------------
    // Admin
    // ----------------------------------------------------------------------------------

    /// Running operators, and with `history` the finished ones too (newest last).
    pub fn operators(
        &self,
        cluster: ClusterId,
        history: bool,
    ) -> (Vec<OperatorInfo>, Vec<OperatorInfo>) {
        let now = self.meta.now_ms();
        let state = self.cluster_state(cluster);
        let s = state.lock();
        let running = s
            .controller
            .running()
            .map(|o| OperatorInfo::of(o, now))
            .collect();
        let done = if history {
            s.controller
                .history()
                .map(|o| OperatorInfo::of(o, now))
                .collect()
        } else {
            Vec::new()
        };
        (running, done)
    }

    /// Cancels a running operator.
    pub fn cancel_operator(&self, cluster: ClusterId, id: OperatorId) -> bool {
        let now = self.meta.now_ms();
        self.cluster_state(cluster)
            .lock()
            .controller
            .cancel(id, now)
    }

    /// Schedulers and their switches.
    pub fn schedulers(&self, cluster: ClusterId) -> (bool, Vec<SchedulerStatus>) {
        let state = self.cluster_state(cluster);
        let s = state.lock();
        (s.schedulers.maintenance(), s.schedulers.status())
    }

    /// Submits an admin operator (transfer leader, move shard).
    pub fn submit(
        &self,
        cluster: &Cluster,
        shard: ShardId,
        steps: Vec<Step>,
        reason: &str,
        force: bool,
    ) -> Result<OperatorId, String> {
        let current = cluster
            .shard(shard)
            .ok_or_else(|| format!("{shard} not found"))?;
        // Check the steps apply now, so a bad request fails at once with a clear reason.
        let mut probe = current.clone();
        for step in &steps {
            probe = step.apply(&probe).map_err(|e| e.to_string())?;
        }
        // A placement repair would undo is refused unless forced: accepted silently, it
        // would be partly undone minutes later.
        if !force {
            let nodes = cluster.node_views(|_| 0);
            let view = ClusterView::new(cluster.config(), nodes, Vec::new());
            if view.shard_violations(&probe) > view.shard_violations(&current) {
                return Err(format!(
                    "this puts two replicas of {shard} in one failure domain ({:?} isolation) although a free one exists, and repair would move one back; choose a node in another domain, or force it (`ctl move-shard --force`, \"force\": true)",
                    cluster.config().isolation
                ));
            }
        }
        let op = Operator::new(
            OperatorKind::Manual,
            &current,
            steps,
            self.meta.now_ms(),
            reason,
        );
        self.cluster_state(cluster.id)
            .lock()
            .controller
            .try_add(op)
            .map_err(|e| e.to_string())
    }

    /// Shards that wait for an in-sync follower, as of the last full scheduling pass.
    pub fn waiting(&self, cluster: ClusterId) -> BTreeMap<ShardId, WaitingShard> {
        self.cluster_state(cluster).lock().waiting.clone()
    }

    /// An admin's forced promotion of follower `to` of `shard` whatever its log position
    /// (`meridian ctl force-promote`; the checks are the scheduler's `force_promote`). `by`
    /// says who asked; it is logged at WARN and kept in the operator's reason (history).
    /// The shard's committed mark drops to what `to` applied: the rest is abandoned.
    pub fn force_promote(
        &self,
        cluster: &Cluster,
        shard: ShardId,
        to: NodeId,
        by: &str,
    ) -> Result<OperatorId, String> {
        let now = self.meta.now_ms();
        let state = self.cluster_state(cluster.id);
        let mut s = state.lock();
        let nodes = cluster.node_views(|n| s.liveness.state_since(n).unwrap_or(0));
        let view = ClusterView::new(cluster.config(), nodes, cluster.shard_views())
            .with_controller(&s.controller);
        let op = meridian_scheduler::force_promote(&view, shard, to, now, by)
            .map_err(|e| e.to_string())?;
        let applied = view.shard(shard).map_or(0, |sv| sv.position(to).applied);
        let reason = op.reason.clone();
        let id = s.controller.try_add(op).map_err(|e| e.to_string())?;
        s.waiting.remove(&shard);
        drop(s);
        cluster.reset_committed(shard, applied);
        tracing::warn!(cluster = %cluster.id, op = %id, %shard, node = %to, by, "forced promotion: {reason}");
        metrics::counter!("meridian_forced_promotions_total", "cluster" => cluster.name())
            .increment(1);
        Ok(id)
    }

    /// Resumes the operators a previous server (or term) left between two steps (see
    /// `meta::MoveRecord`): each goes on from the step it started, if its shard is still
    /// as that step left it; otherwise its record is deleted and the schedulers repair
    /// whatever state is left. Returns how many were resumed.
    pub async fn resume_moves(&self) -> crate::error::Result<usize> {
        let mut resumed = 0;
        for cluster in self.meta.clusters() {
            for record in cluster.move_records().await? {
                let mut op = record.operator;
                op.reason = format!("{} (resumed after a restart)", op.reason);
                let shard = op.shard;
                let state = self.cluster_state(cluster.id);
                let outcome = match cluster.shard(shard) {
                    None => Err(format!("{shard} no longer exists")),
                    Some(current) => {
                        let now = self.meta.now_ms();
                        let mut s = state.lock();
                        let outcome = s
                            .controller
                            .resume(op.clone(), &record.shard_before, &current, now)
                            .map_err(|e| e.to_string());
                        if outcome.is_ok() {
                            s.recorded.insert(shard);
                        }
                        outcome
                    }
                };
                match outcome {
                    Ok(id) => {
                        resumed += 1;
                        tracing::info!(cluster = %cluster.id, op = %id, %shard, kind = op.kind.name(), step = op.current, reason = %op.reason, "resumed an operator interrupted by a restart");
                    }
                    Err(why) => {
                        tracing::info!(cluster = %cluster.id, %shard, kind = op.kind.name(), "not resuming an operator interrupted by a restart: {why}");
                        cluster.forget_move(shard).await?;
                    }
                }
            }
        }
        Ok(resumed)
    }

    /// Liveness state of a node per the tracker.
    pub fn node_state(&self, cluster: ClusterId, node: NodeId) -> Option<NodeState> {
        self.cluster_state(cluster).lock().liveness.state(node)
    }
}
