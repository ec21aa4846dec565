//! The node's replicas and what it does with them: Meridian's instructions
//! ([`ShardHandler`]), clients' writes and reads, and its leaders' shipments.
//!
//! The rules that keep acknowledged writes:
//! - a write is applied only while the node holds the shard's write lease (at the version
//!   the replica holds), replicated to a majority of the shard's replicas, and acknowledged
//!   only if the lease still holds after that: a write acknowledged here is on a majority,
//!   and no other leader can have been promoted yet (Meridian waits out the lease);
//! - the node reports its log positions, so Meridian promotes the most up-to-date follower;
//! - a replica that stops leading first ships what it has to its followers (a transfer's
//!   target then holds everything), then forgets its rows: it may hold entries no majority
//!   has, and the next leader's snapshot brings it back in line;
//! - a follower takes shipments only from a leader of its version or newer.

use crate::data::{check_row, identity_of_values, ShardData};
use crate::replication::Replicator;
use crate::wire::{
    ErrorCode, NodeError, NodeStatus, ReadReply, ReadRequest, ReplicateReply, ReplicateRequest,
    ShardStatus as WireShardStatus, WriteAck, WriteBatch,
};
use meridian_client::{ShardHandler, ShardLeases, TableRef};
use meridian_model::{
    LogPosition, NodeStats, ReplicaRole, ShardId, ShardReport, ShardStats, ShardStatus,
    ShardVersion, TableName,
};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every replica this node holds, by shard.
pub struct Replicas {
    /// The node's name (in answers).
    pub name: String,
    shards: Mutex<BTreeMap<ShardId, ShardData>>,
}

impl Replicas {
    /// No replicas yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            shards: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs `f` on `shard`'s replica, if held.
    pub fn with_shard<R>(&self, shard: ShardId, f: impl FnOnce(&mut ShardData) -> R) -> Option<R> {
        self.shards.lock().get_mut(&shard).map(f)
    }

    /// The shards this node leads now.
    pub fn led(&self) -> Vec<ShardId> {
        self.shards
            .lock()
            .iter()
            .filter(|(_, d)| d.role == ReplicaRole::Leader)
            .map(|(id, _)| *id)
            .collect()
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) -> NodeError {
        NodeError::new(&self.name, code, message)
    }

    /// Applies one partition's rows as the leader, inside the lease check: the entry's
    /// log position.
    fn append(
        &self,
        leased_version: ShardVersion,
        batch: &WriteBatch,
        index: usize,
    ) -> Result<u64, NodeError> {
        let part = &batch.parts[index];
        let shard = ShardId(part.shard);
        let mut shards = self.shards.lock();
        let data = shards
            .get_mut(&shard)
            .ok_or_else(|| self.error(ErrorCode::NotHere, format!("{shard} is not held here")))?;
        if data.role != ReplicaRole::Leader || data.version != leased_version {
            return Err(self.error(ErrorCode::NotLeader, format!("not the leader of {shard}")));
        }
        if !data.hosted.contains(&(batch.table_id, part.partition)) {
            return Err(self.error(
                ErrorCode::NotHere,
                format!(
                    "partition {} of table {} is not on {shard}",
                    part.partition, batch.table_id
                ),
            ));
        }
        let definition = data
            .definitions
            .get(&batch.table_id)
            .cloned()
            .unwrap_or_default();
        if definition.version != batch.definition_version {
            return Err(self.error(
                ErrorCode::StaleDefinition,
                format!(
                    "table {} is at definition version {} here, the write at {}",
                    batch.table_id, definition.version, batch.definition_version
                ),
            ));
        }
        for (i, row) in part.rows.iter().enumerate() {
            check_row(&definition, row).map_err(|why| {
                self.error(
                    ErrorCode::InvalidRow,
                    format!("row {i} of partition {}: {why}", part.partition),
                )
            })?;
        }
        Ok(data.append(batch.table_id, part.partition, part.rows.clone()))
    }

    /// Answers a read from whatever this replica holds (leader or follower).
    pub fn read(&self, req: &ReadRequest) -> Result<ReadReply, NodeError> {
        let shard = ShardId(req.shard);
        let shards = self.shards.lock();
        let data = shards
            .get(&shard)
            .ok_or_else(|| self.error(ErrorCode::NotHere, format!("{shard} is not held here")))?;
        let rows = data.partitions.get(&(req.table_id, req.partition));
        let rows = match (&req.key, rows) {
            (_, None) => Vec::new(),
            (None, Some(rows)) => rows.values().cloned().collect(),
            (Some(key), Some(rows)) => rows
                .get(&identity_of_values(key))
                .cloned()
                .into_iter()
                .collect(),
        };
        Ok(ReadReply {
            node: self.name.clone(),
            role: role_name(data.role).into(),
            applied: data.applied,
            rows,
        })
    }

    /// Applies a leader's shipment (this replica must follow the shard at the leader's
    /// version or an older one).
    pub fn receive(&self, req: ReplicateRequest) -> Result<ReplicateReply, NodeError> {
        let shard = ShardId(req.shard);
        let mut shards = self.shards.lock();
        let data = shards
            .get_mut(&shard)
            .ok_or_else(|| self.error(ErrorCode::NotHere, format!("{shard} is not held here")))?;
        if data.version.0 > req.version {
            return Err(self.error(
                ErrorCode::StaleLeader,
                format!(
                    "{shard} is at version {} here; the sender leads version {}",
                    data.version.0, req.version
                ),
            ));
        }
        if data.role == ReplicaRole::Leader {
            return Err(self.error(ErrorCode::StaleLeader, format!("this node leads {shard}")));
        }
        let applied_shipment = data.receive(req.shipment);
        data.committed = data.committed.max(req.committed.min(data.applied));
        Ok(ReplicateReply {
            applied_shipment,
            applied: data.applied,
        })
    }

    /// What the node holds, for `GET /v1/status`.
    pub fn status(&self) -> NodeStatus {
        let shards = self.shards.lock();
        NodeStatus {
            node: self.name.clone(),
            shards: shards
                .iter()
                .map(|(id, d)| WireShardStatus {
                    shard: id.0,
                    version: d.version.0,
                    role: role_name(d.role).into(),
                    applied: d.applied,
                    committed: d.committed,
                    rows: d.row_count(),
                    definitions: d
                        .definitions
                        .iter()
                        .map(|(t, def)| (*t, def.version))
                        .collect(),
                })
                .collect(),
        }
    }
}

fn role_name(role: ReplicaRole) -> &'static str {
    match role {
        ReplicaRole::Leader => "leader",
        ReplicaRole::Follower => "follower",
    }
}

/// Writes `batch` (every partition led here) under the leases in `leases`: see the module
/// documentation for when it is acknowledged.
pub async fn write(
    replicas: &Replicas,
    leases: &ShardLeases,
    replicator: &Arc<Replicator>,
    batch: &WriteBatch,
) -> Result<WriteAck, NodeError> {
    let not_leader = |e: meridian_client::NotLeader| {
        NodeError::new(&replicas.name, ErrorCode::NotLeader, e.to_string())
    };
    let mut positions = BTreeMap::new();
    let mut rows = 0;
    for (index, part) in batch.parts.iter().enumerate() {
        let shard = ShardId(part.shard);
        let seq = leases
            .with_lease(shard, |lease| replicas.append(lease.version, batch, index))
            .map_err(not_leader)??;
        replicator.replicate(shard, seq).await?;
        // Still leading after the replication: no other replica has been promoted.
        leases.with_lease(shard, |_| ()).map_err(not_leader)?;
        replicas.with_shard(shard, |d| d.committed = d.committed.max(seq));
        positions.insert(part.shard, seq);
        rows += part.rows.len() as u64;
    }
    Ok(WriteAck {
        node: replicas.name.clone(),
        rows,
        positions,
    })
}

/// Obeys Meridian's instructions on a node's [`Replicas`].
pub struct Handler {
    /// The replicas.
    pub replicas: Arc<Replicas>,
    /// Ships to followers (and flushes on demotion).
    pub replicator: Arc<Replicator>,
}

impl Handler {
    /// If this node leads `shard` and is about to stop: ship everything to the followers,
    /// then forget the rows (see the module documentation).
    async fn step_down(&self, shard: ShardId) {
        let leads = self
            .replicas
            .with_shard(shard, |d| d.role == ReplicaRole::Leader)
            .unwrap_or(false);
        if leads {
            self.replicator.flush(shard).await;
            self.replicas.with_shard(shard, ShardData::reset_rows);
        }
    }

    fn learn_tables(data: &mut ShardData, tables: &[TableRef]) {
        for t in tables {
            data.hosted.insert((t.id.0, t.partition));
            if let Ok(name) = TableName::new(&t.catalog, &t.schema, &t.table) {
                data.names.insert(t.id.0, name);
            }
            let newer = data
                .definitions
                .get(&t.id.0)
                .is_none_or(|d| d.version <= t.definition.version);
            if newer {
                data.definitions.insert(t.id.0, t.definition.clone());
            }
        }
    }

    /// A create or an alter: only a leader takes them (followers learn tables when opened).
    fn learn_as_leader(&self, shard: ShardId, table: TableRef) -> Result<(), String> {
        match self.replicas.with_shard(shard, |d| {
            let leads = d.role == ReplicaRole::Leader;
            if leads {
                Self::learn_tables(d, &[table]);
            }
            leads
        }) {
            None => Err(format!("{shard} is not open here")),
            Some(false) => Err(format!("not the leader of {shard}")),
            Some(true) => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl ShardHandler for Handler {
    async fn open_shard(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
        tables: Vec<TableRef>,
    ) -> Result<(), String> {
        if role == ReplicaRole::Follower {
            self.step_down(shard).await;
        }
        let mut shards = self.replicas.shards.lock();
        let data = shards
            .entry(shard)
            .or_insert_with(|| ShardData::new(version, role));
        data.version = version;
        data.role = role;
        // The open's table list is the shard's at this version.
        data.hosted.clear();
        Self::learn_tables(data, &tables);
        Ok(())
    }

    async fn close_shard(&self, shard: ShardId, _version: ShardVersion) -> Result<(), String> {
        self.step_down(shard).await;
        self.replicas.shards.lock().remove(&shard);
        Ok(())
    }

    async fn change_role(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
    ) -> Result<(), String> {
        if role == ReplicaRole::Follower {
            self.step_down(shard).await;
        }
        self.replicas
            .with_shard(shard, |d| {
                d.role = role;
                d.version = version;
            })
            .ok_or_else(|| format!("{shard} is not open here"))
    }

    async fn create_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        self.learn_as_leader(shard, table)
    }

    async fn drop_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        self.replicas.with_shard(shard, |d| {
            d.hosted.remove(&(table.id.0, table.partition));
            d.partitions.remove(&(table.id.0, table.partition));
        });
        Ok(())
    }

    async fn alter_table(
        &self,
        shard: ShardId,
        _version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        self.learn_as_leader(shard, table)
    }

    fn report(&self) -> (NodeStats, Vec<ShardReport>) {
        let shards = self.replicas.shards.lock();
        let mut total = NodeStats {
            disk_total_bytes: 1 << 40,
            memory_used_bytes: 64 << 20,
            ..Default::default()
        };
        let reports = shards
            .iter()
            .map(|(id, d)| {
                let rows = d.row_count();
                // A rough size: the example keeps rows as JSON maps in memory.
                let stats = ShardStats {
                    size_bytes: rows * 128,
                    rows,
                    ..Default::default()
                };
                total.disk_used_bytes += stats.size_bytes;
                ShardReport {
                    shard: *id,
                    version: d.version,
                    role: d.role,
                    status: ShardStatus::Ready,
                    stats,
                    log: LogPosition {
                        applied: d.applied,
                        committed: d.committed,
                    },
                    leased: false,
                }
            })
            .collect();
        (total, reports)
    }
}
