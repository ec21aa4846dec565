//! Schedulers: pure functions of (cluster view, now) -> proposed operators.
//!
//! Each looks at one concern; the [`SchedulerSet`] runs them in priority order every tick
//! and hands the proposals to the operator controller, which admits, limits and runs them.
//! A scheduler never assumes its proposals were admitted: the next tick's view (with the
//! running operators) shows what actually happened.

mod balance;
mod drain;
mod evict;
mod failover;
mod hot;
mod repair;

pub use balance::{BalanceLeaderScheduler, BalanceShardScheduler};
pub use drain::DrainScheduler;
pub use evict::EvictLeaderScheduler;
pub use failover::{force_promote, waiting_shards, FailoverScheduler, WaitingShard};
pub use hot::HotShardScheduler;
pub use repair::ReplicaRepairScheduler;

use crate::error::SchedulerError;
use crate::operator::Operator;
use crate::view::ClusterView;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Tuning shared by the schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How long a node must be Offline before its replicas are re-created elsewhere. A node
    /// restarting comes back well within it, so a rolling restart moves no data. Leaders
    /// fail over at once regardless. Default 30000.
    pub repair_delay_ms: u64,
    /// Balance starts when max - min (replicas or leaders per node) reaches this...
    /// Default 3.
    pub balance_start_spread: u32,
    /// ...and continues until it is at most this. The gap is the hysteresis: a cluster that
    /// is almost even is left alone, one that is uneven is made fully even. Default 1.
    pub balance_stop_spread: u32,
    /// Most operators one scheduler proposes per tick (failover is not capped). Default 16.
    pub max_ops_per_tick: usize,
    /// A node is hot when the read + write units of the shards it leads exceed the mean over
    /// nodes by this fraction (0.25 = 25% above the mean). Default 0.25.
    pub hot_threshold: f64,
    /// A node must stay hot this long before load is moved off it: load figures are noisy
    /// and a cluster that is re-balancing leaders (after a restart, say) is briefly uneven
    /// without any hot spot. Default 30000.
    pub hot_sustain_ms: u64,
    /// A shard moved for load is not moved for load again within this long, so two hot
    /// spots cannot pass a shard back and forth. Default 60000.
    pub hot_cooldown_ms: u64,
    /// Load is judged by each shard's mean over this long (from the cluster's history),
    /// not by its last report: one busy second does not make a node hot. Default 30000.
    pub hot_trend_window_ms: u64,
    /// Failover promotes a follower only if its applied log position is at most this many
    /// positions behind the shard's last known committed position (the highest any replica
    /// reported, the dead leader's last report included); if no follower qualifies, the
    /// shard waits for one to catch up or for `ctl force-promote`. Positions are the
    /// database's own (raft index, WAL sequence number). Ignored for clusters with
    /// `shared_storage` and for shards whose replicas report no positions. Default 0:
    /// nothing the shard reported committed may be lost.
    pub max_promote_lag: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            repair_delay_ms: 30_000,
            balance_start_spread: 3,
            balance_stop_spread: 1,
            max_ops_per_tick: 16,
            hot_threshold: 0.25,
            hot_sustain_ms: 30_000,
            hot_cooldown_ms: 60_000,
            hot_trend_window_ms: 30_000,
            max_promote_lag: 0,
        }
    }
}

impl SchedulerConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if self.balance_stop_spread >= self.balance_start_spread {
            return Err(SchedulerError::InvalidConfig(format!(
                "balance_stop_spread ({}) must be below balance_start_spread ({})",
                self.balance_stop_spread, self.balance_start_spread
            )));
        }
        if !(self.hot_threshold.is_finite() && self.hot_threshold > 0.0) {
            return Err(SchedulerError::InvalidConfig(format!(
                "hot_threshold must be positive, got {}",
                self.hot_threshold
            )));
        }
        if self.max_ops_per_tick == 0 {
            return Err(SchedulerError::InvalidConfig(
                "max_ops_per_tick must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// One scheduling concern.
pub trait Scheduler: Send {
    /// A stable name (for pause / resume, metrics, the dashboard).
    fn name(&self) -> &'static str;

    /// Whether it keeps running in maintenance mode (failover and repair do: they protect
    /// availability and durability; evict-leader does: an admin is restarting a node;
    /// everything else can wait).
    fn essential(&self) -> bool {
        false
    }

    /// Proposes operators for the cluster as `view` shows it at `now`.
    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator>;

    /// Takes new tuning (a runtime setting changed), keeping what it learnt so far (hot
    /// timers, cooldowns).
    fn reconfigure(&mut self, config: SchedulerConfig);
}

/// A scheduler's switch state, for admin APIs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerStatus {
    /// Its name.
    pub name: String,
    /// Paused by an admin.
    pub paused: bool,
    /// Runs in maintenance mode.
    pub essential: bool,
}

struct Entry {
    scheduler: Box<dyn Scheduler>,
    paused: bool,
}

/// The schedulers of one cluster, run in order (highest priority first), with per-name
/// pause / resume and a maintenance mode in which only essential schedulers run.
pub struct SchedulerSet {
    entries: Vec<Entry>,
    maintenance: bool,
}

impl SchedulerSet {
    /// The standard set: failover, replica repair, leader eviction, drain, hot shard,
    /// leader balance, shard balance.
    pub fn new(config: SchedulerConfig) -> Self {
        let mut set = Self::empty();
        set.push(Box::new(FailoverScheduler::new(config)));
        set.push(Box::new(ReplicaRepairScheduler::new(config)));
        set.push(Box::new(EvictLeaderScheduler::new(config)));
        set.push(Box::new(DrainScheduler::new(config)));
        set.push(Box::new(HotShardScheduler::new(config)));
        set.push(Box::new(BalanceLeaderScheduler::new(config)));
        set.push(Box::new(BalanceShardScheduler::new(config)));
        set
    }

    /// A set with no schedulers.
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            maintenance: false,
        }
    }

    /// Appends a scheduler (it runs after those already present).
    pub fn push(&mut self, scheduler: Box<dyn Scheduler>) {
        self.entries.push(Entry {
            scheduler,
            paused: false,
        });
    }

    fn entry(&mut self, name: &str) -> Result<&mut Entry, SchedulerError> {
        self.entries
            .iter_mut()
            .find(|e| e.scheduler.name() == name)
            .ok_or_else(|| SchedulerError::UnknownScheduler(name.to_string()))
    }

    /// Pauses a scheduler by name.
    pub fn pause(&mut self, name: &str) -> Result<(), SchedulerError> {
        self.entry(name)?.paused = true;
        Ok(())
    }

    /// Resumes a scheduler by name.
    pub fn resume(&mut self, name: &str) -> Result<(), SchedulerError> {
        self.entry(name)?.paused = false;
        Ok(())
    }

    /// Gives every scheduler new tuning (see [`Scheduler::reconfigure`]).
    pub fn reconfigure(&mut self, config: SchedulerConfig) {
        for e in &mut self.entries {
            e.scheduler.reconfigure(config);
        }
    }

    /// Turns maintenance mode on or off.
    pub fn set_maintenance(&mut self, on: bool) {
        self.maintenance = on;
    }

    /// Whether maintenance mode is on.
    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// Every scheduler's switch state, in run order.
    pub fn status(&self) -> Vec<SchedulerStatus> {
        self.entries
            .iter()
            .map(|e| SchedulerStatus {
                name: e.scheduler.name().to_string(),
                paused: e.paused,
                essential: e.scheduler.essential(),
            })
            .collect()
    }

    /// Runs every active scheduler. At most one proposal per shard survives: the first,
    /// from the scheduler that runs earlier (higher priority).
    pub fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut claimed = HashSet::new();
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.paused || (self.maintenance && !e.scheduler.essential()) {
                continue;
            }
            for op in e.scheduler.schedule(view, now) {
                if claimed.insert(op.shard) {
                    out.push(op);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod copyset_tests;
#[cfg(test)]
mod tests;
