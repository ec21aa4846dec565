//! A simulated database node over real gRPC, built on [`NodeAgent`]: it keeps its shards
//! and tables in memory, obeys instructions, and reports synthetic load and log positions.
//!
//! Log positions follow the wall clock, one position per millisecond since the Unix epoch,
//! so simulated nodes in different processes agree without talking to each other: a
//! leader has applied and committed everything up to now; a follower has heard and applied
//! up to [`FOLLOWER_LAG_MS`] ago. A follower whose replication is stalled
//! ([`SimShards::stall_replication`]) keeps hearing but applies nothing until resumed.

use meridian_client::{NodeAgent, NodeAgentConfig, ShardHandler, ShardLeases, TableRef};
use meridian_model::{
    LogPosition, NodeStats, ReplicaRole, ShardId, ShardReport, ShardStats, ShardStatus,
    ShardVersion, TableDefinition,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One shard replica held by a simulated node.
#[derive(Debug, Clone)]
pub struct SimShard {
    /// Version applied.
    pub version: ShardVersion,
    /// Role.
    pub role: ReplicaRole,
    /// Table partitions held.
    pub tables: BTreeSet<(u64, u32)>,
    /// Replication progress, as last reported.
    pub log: LogPosition,
}

/// How far behind the leader a simulated follower applies, in ms (= log positions).
pub const FOLLOWER_LAG_MS: u64 = 10;

/// The simulated log's head now: one position per ms of the wall clock.
fn log_head() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// In-memory shards of a simulated node; implements [`ShardHandler`].
#[derive(Default)]
pub struct SimShards {
    shards: Mutex<BTreeMap<ShardId, SimShard>>,
    /// Extra write units per second reported for some shards (to make a shard hot).
    hot: Mutex<BTreeMap<ShardId, f64>>,
    ticks: AtomicU64,
    /// Shards whose follower here hears the leader but applies nothing (a slow disk).
    stalled: Mutex<BTreeSet<ShardId>>,
    /// Drops still to refuse (a fault injected by tests: a node whose drop fails, then
    /// succeeds when retried).
    refuse_drops: AtomicU64,
    /// Synthetic report size: report this many extra shards' worth of zero-load entries
    /// is not done; reports always mirror what is held.
    base_units: f64,
    /// The definition of each table as last received (with a create or an open).
    definitions: Mutex<BTreeMap<u64, TableDefinition>>,
}

impl SimShards {
    /// Empty shard set with a base load per shard.
    pub fn new(base_units: f64) -> Self {
        Self {
            base_units,
            ..Default::default()
        }
    }

    /// The definition this node last received for table `id`, if any.
    pub fn definition(&self, id: u64) -> Option<TableDefinition> {
        self.definitions.lock().get(&id).cloned()
    }

    fn keep_definitions<'a>(&self, tables: impl IntoIterator<Item = &'a TableRef>) {
        let mut defs = self.definitions.lock();
        for t in tables {
            defs.insert(t.id.0, t.definition.clone());
        }
    }

    /// Snapshot of what the node holds.
    pub fn shards(&self) -> BTreeMap<ShardId, SimShard> {
        self.shards.lock().clone()
    }

    /// Makes a shard report extra write load.
    pub fn set_hot(&self, shard: ShardId, write_units: f64) {
        self.hot.lock().insert(shard, write_units);
    }

    /// Stalls (`true`) or resumes the replication of this node's follower of `shard`:
    /// while stalled it falls behind the leader's log; resumed, it catches up at once.
    pub fn stall_replication(&self, shard: ShardId, stalled: bool) {
        let mut set = self.stalled.lock();
        if stalled {
            set.insert(shard);
        } else {
            set.remove(&shard);
        }
    }

    /// Makes the next `count` table drops fail, as a node whose storage is busy would.
    pub fn refuse_next_drops(&self, count: u64) {
        self.refuse_drops.store(count, Ordering::SeqCst);
    }

    /// How many of the drops set by [`SimShards::refuse_next_drops`] are still to refuse.
    pub fn drops_to_refuse(&self) -> u64 {
        self.refuse_drops.load(Ordering::SeqCst)
    }

    /// Shards this node leads.
    pub fn leaders(&self) -> Vec<ShardId> {
        self.shards
            .lock()
            .iter()
            .filter(|(_, s)| s.role == ReplicaRole::Leader)
            .map(|(id, _)| *id)
            .collect()
    }
}

#[async_trait::async_trait]
impl ShardHandler for SimShards {
    async fn open_shard(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
        tables: Vec<TableRef>,
    ) -> Result<(), String> {
        self.keep_definitions(&tables);
        let tables = tables.iter().map(|t| (t.id.0, t.partition)).collect();
        let mut shards = self.shards.lock();
        // A replica opened again (a promotion) keeps its log.
        let log = shards.get(&shard).map(|s| s.log).unwrap_or_default();
        shards.insert(
            shard,
            SimShard {
                version,
                role,
                tables,
                log,
            },
        );
        Ok(())
    }

    async fn close_shard(&self, shard: ShardId, _version: ShardVersion) -> Result<(), String> {
        self.shards.lock().remove(&shard);
        Ok(())
    }

    async fn change_role(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
    ) -> Result<(), String> {
        let mut shards = self.shards.lock();
        let s = shards
            .get_mut(&shard)
            .ok_or_else(|| format!("{shard} is not open here"))?;
        s.role = role;
        s.version = version;
        Ok(())
    }

    async fn create_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        let mut shards = self.shards.lock();
        let s = shards
            .get_mut(&shard)
            .ok_or_else(|| format!("{shard} is not open here"))?;
        if s.role != ReplicaRole::Leader {
            return Err(format!("not the leader of {shard}"));
        }
        s.tables.insert((table.id.0, table.partition));
        drop(shards);
        self.keep_definitions([&table]);
        Ok(())
    }

    async fn alter_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        let leads = self
            .shards
            .lock()
            .get(&shard)
            .map(|s| s.role == ReplicaRole::Leader);
        match leads {
            None => Err(format!("{shard} is not open here")),
            Some(false) => Err(format!("not the leader of {shard}")),
            Some(true) => {
                self.keep_definitions([&table]);
                Ok(())
            }
        }
    }

    async fn drop_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        let refused = self
            .refuse_drops
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(format!(
                "drop of {} on {shard} refused (injected)",
                table.id
            ));
        }
        if let Some(s) = self.shards.lock().get_mut(&shard) {
            s.tables.remove(&(table.id.0, table.partition));
        }
        Ok(())
    }

    fn report(&self) -> (NodeStats, Vec<ShardReport>) {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        let hot = self.hot.lock().clone();
        let stalled = self.stalled.lock().clone();
        let head = log_head();
        let mut shards = self.shards.lock();
        for (id, s) in shards.iter_mut() {
            if s.role == ReplicaRole::Leader {
                let p = s.log.applied.max(head);
                s.log = LogPosition {
                    applied: p,
                    committed: p,
                };
            } else {
                s.log.committed = s.log.committed.max(head.saturating_sub(FOLLOWER_LAG_MS));
                if !stalled.contains(id) {
                    s.log.applied = s.log.applied.max(s.log.committed);
                }
            }
        }
        let mut total = NodeStats {
            disk_total_bytes: 1 << 40,
            ..Default::default()
        };
        let reports: Vec<ShardReport> = shards
            .iter()
            .map(|(id, s)| {
                let tables = s.tables.len() as u64;
                let extra = hot.get(id).copied().unwrap_or(0.0);
                let write = if s.role == ReplicaRole::Leader {
                    self.base_units * (1 + tables) as f64 + extra
                } else {
                    0.0
                };
                let stats = ShardStats {
                    size_bytes: (tables + 1) * (1 << 20) + tick * 1024,
                    rows: tables * 1000 + tick * 10,
                    read_units_per_sec: self.base_units * (1 + tables) as f64,
                    write_units_per_sec: write,
                };
                total.read_units_per_sec += stats.read_units_per_sec;
                total.write_units_per_sec += stats.write_units_per_sec;
                total.disk_used_bytes += stats.size_bytes;
                ShardReport {
                    shard: *id,
                    version: s.version,
                    role: s.role,
                    status: ShardStatus::Ready,
                    stats,
                    log: s.log,
                    leased: false,
                }
            })
            .collect();
        total.cpu_usage = (total.write_units_per_sec / 10_000.0).min(1.0);
        total.memory_used_bytes = 256 << 20;
        (total, reports)
    }
}

/// A simulated node: its shards plus the agent streaming heartbeats for it.
pub struct SimNode {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub shards: Arc<SimShards>,
    /// The heartbeat loop.
    pub agent: NodeAgent,
}

impl SimNode {
    /// Starts a simulated node that joins Meridian at `config.meta_addrs`.
    pub fn start(config: NodeAgentConfig) -> Self {
        Self::start_with_channel(config, None)
    }

    /// Like [`SimNode::start`] over a shared channel.
    pub fn start_with_channel(
        config: NodeAgentConfig,
        channel: Option<tonic::transport::Channel>,
    ) -> Self {
        let leases = ShardLeases::new(config.name.clone(), None);
        Self::start_with_leases(config, channel, leases)
    }

    /// Like [`SimNode::start_with_channel`] with the caller's lease table (e.g. one writing
    /// a lease log).
    pub fn start_with_leases(
        config: NodeAgentConfig,
        channel: Option<tonic::transport::Channel>,
        leases: ShardLeases,
    ) -> Self {
        let shards = Arc::new(SimShards::new(10.0));
        let name = config.name.clone();
        let agent = NodeAgent::start_with_leases(config, shards.clone(), channel, leases);
        Self {
            name,
            shards,
            agent,
        }
    }
}
