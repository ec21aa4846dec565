//! Meridian's scheduling brain, pure: no I/O, no async runtime, no wall clock.
//!
//! Time enters as `now: u64` milliseconds of a monotonic clock the caller owns, so the same
//! code runs in unit tests, the simulator and the server.
//!
//! ```text
//!  heartbeats ──> liveness::LivenessTracker ──> NodeState per node ─┐
//!  shard reports ──> view::ReportBook ──> in-sync followers, log positions, load ──┤
//!  routes (current Shard metadata) ─────────────────────────────────┴─> view::ClusterView
//!                                                                           │
//!  schedulers::SchedulerSet (failover, repair, evict, drain, hot, balance) <┘
//!        │ Vec<Operator>
//!        v
//!  controller::OperatorController ── tick(now) ──> StepStarted { shard_after, instructions }
//!        ^                                              │ executor persists + publishes the
//!        └── acks / shard reports ──────────────────────┘ new Shard, sends the instructions
//! ```
//!
//! Placement of new shards (`placement`, `copyset`) is separate from scheduling: it runs
//! once, when a cluster first reaches `min_nodes`, and when tables are created.
//!
//! Copyset mode: the family drawn at first placement is persisted by the caller, kept valid
//! by `copyset::update_family` as nodes join, drain, die or leave, and handed to the
//! schedulers through `ClusterView::with_copysets`, so repair, drain, balance (expansion)
//! and hot-shard moves keep every replica set inside a copyset.

#![warn(missing_docs)]

pub mod controller;
pub mod copyset;
pub mod domain;
pub mod election;
pub mod error;
pub mod health;
pub mod history;
pub mod lease;
pub mod liveness;
pub mod operator;
pub mod placement;
pub mod reconcile;
pub mod schedulers;
pub mod settings;
pub mod testing;
pub mod token_bucket;
pub mod view;

pub use controller::{
    ControllerConfig, ControllerEvent, OperatorController, OperatorLimits, Rejected, StepStart,
};
pub use copyset::{
    build_copysets, loss_probability, update_family, CopysetFamily, FamilyUpdate, LossEstimate,
    LossModel,
};
pub use domain::{domain_key, IsolationDomains};
pub use election::{Campaign, CampaignDecision, ElectionState, Holder, ResignRefused};
pub use error::{SchedulerError, StepError};
pub use health::{shard_problems, unhealthy_shards, ShardProblem};
pub use history::{History, Series};
pub use lease::{LeaseBook, LeaseDenied, LeaseGrants};
pub use liveness::{LivenessChange, LivenessConfig, LivenessTracker};
pub use operator::{
    reconcile, reconcile_missing, InstructionKind, NodeInstruction, Operator, OperatorKind,
    OperatorState, Priority, Step,
};
pub use placement::{
    pick_replica_target, pick_shard_for_table, place_new_shard, place_shards, DomainWarning,
    Placement,
};
pub use reconcile::{reconcile_node, ReconcileContext};
pub use schedulers::{
    force_promote, waiting_shards, BalanceLeaderScheduler, BalanceShardScheduler, DrainScheduler,
    EvictLeaderScheduler, FailoverScheduler, HotShardScheduler, ReplicaRepairScheduler, Scheduler,
    SchedulerConfig, SchedulerSet, SchedulerStatus, WaitingShard,
};
pub use settings::{RuntimeSettings, SettingInfo, SettingValue, SETTINGS};
pub use view::{
    replica_progress, ClusterView, CommittedMark, NodeView, ReportBook, ShardView, Spread,
};
