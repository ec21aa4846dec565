//! Create table.
//!
//! States (record: `keys::create_table_procedure`, the `Table` being created):
//!
//! ```text
//! Reserved ──> Prepared ──> Created on nodes ──> Committed (record deleted)
//!   name and       record       every partition's      one txn: name absent, no merge
//!   shards held    written      shard leader created   of any chosen shard in flight;
//!   in memory                   it                     puts name, table, revision
//!                     │               │                    │ fails
//!                     └───────────────┴────────────────────┴──> RollingBack: leaders drop
//!                                                               the partitions (retried),
//!                                                               then the record is deleted
//! ```
//!
//! A record found at start is rolled back unless its table committed. Shards reserved by a
//! create in flight cannot be merged away (see [`super::merge`]).

use super::Backoff;
use crate::error::{Result, ServerError};
use crate::meta::catalog::{pick_shards, table_on_shard};
use crate::meta::cluster::{encode, Cluster};
use crate::meta::revision::{put_table, Guarded};
use meridian_model::{NodeId, NodeState};
use meridian_model::{
    Partition, PartitionRule, ShardId, Table, TableDefinition, TableId, TableName,
};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a create waits for shard leaders to reconnect (after a restart or a change of
/// Meridian leader) before it fails.
const LEADERS_RECONNECT_WAIT: Duration = Duration::from_secs(5);

impl Cluster {
    /// The connected nodes, once some shard's leader is Online and connected (or `within`
    /// has passed).
    async fn wait_for_connected_leaders(&self, within: Duration) -> HashSet<NodeId> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Sessions first, then the shards: never both locks at once.
            let connected = self.sessions.connected_nodes();
            let (any_online, any_connected) = {
                let state = self.state.read();
                let mut any_online = false;
                let any_connected = state
                    .shards
                    .values()
                    .filter_map(|e| e.shard.leader())
                    .filter(|l| {
                        state
                            .nodes
                            .get(l)
                            .is_some_and(|n| n.state == NodeState::Online)
                    })
                    .any(|l| {
                        any_online = true;
                        connected.contains(&l)
                    });
                (any_online, any_connected)
            };
            if !any_online || any_connected || tokio::time::Instant::now() >= deadline {
                return connected;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a table: reserves its name, allocates its id, picks the least loaded shard
    /// for each partition, has each shard's leader create it, persists the metadata, and
    /// only then answers. Returns the table and whether it was created (false when
    /// `if_not_exists` found it).
    pub async fn create_table(
        self: &Arc<Self>,
        name: TableName,
        rule: PartitionRule,
        if_not_exists: bool,
    ) -> Result<(Table, bool)> {
        self.create_table_with(name, rule, TableDefinition::default(), if_not_exists)
            .await
    }

    /// [`Cluster::create_table`] with a definition (columns, keys, options): validated,
    /// stored with the table at version 1, and sent to the shard leaders with the create.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="create"}`).
    pub async fn create_table_with(
        self: &Arc<Self>,
        name: TableName,
        rule: PartitionRule,
        definition: TableDefinition,
        if_not_exists: bool,
    ) -> Result<(Table, bool)> {
        let create = self.create_table_unmetered(name, rule, definition, if_not_exists);
        crate::metrics::ddl(&self.name(), crate::metrics::DdlKind::Create, create).await
    }

    async fn create_table_unmetered(
        self: &Arc<Self>,
        name: TableName,
        rule: PartitionRule,
        mut definition: TableDefinition,
        if_not_exists: bool,
    ) -> Result<(Table, bool)> {
        rule.validate()?;
        definition.validate()?;
        definition.check_rule(&rule)?;
        definition.version = u64::from(!definition.is_empty());
        self.check_schema(&name)?;
        let count = rule.partition_count();
        // After a restart or a change of Meridian leader, nodes are presumed Online before
        // they have reconnected: wait for shard leaders to come back rather than fail.
        let connected = self
            .wait_for_connected_leaders(LEADERS_RECONNECT_WAIT)
            .await;
        // Reserve the name and the shards under one lock, so concurrent creates spread.
        let shards = {
            let mut state = self.state.write();
            // Again under the lock a drop of the schema takes: it may have begun meanwhile.
            if !state
                .schemas
                .contains(&(name.catalog.clone(), name.schema.clone()))
            {
                return Err(ServerError::NotFound(format!(
                    "schema {}.{} not found",
                    name.catalog, name.schema
                )));
            }
            if let Some(id) = state.table_by_name.get(&name) {
                let table = state.tables.get(id).cloned();
                return match (table, if_not_exists) {
                    (Some(t), true) => Ok((t, false)),
                    _ => Err(ServerError::AlreadyExists(format!(
                        "table {name} already exists"
                    ))),
                };
            }
            if state.shards.is_empty() {
                let min = self.config.read().min_nodes;
                return Err(ServerError::FailedPrecondition(format!(
                    "cluster {} has no shards yet: it needs {min} online nodes first",
                    self.config.read().name
                )));
            }
            if !state.creating.insert(name.clone()) {
                return Err(ServerError::Aborted(format!(
                    "table {name} is being created concurrently"
                )));
            }
            let merging = self.procedures.merging.lock().clone();
            let picked = pick_shards(&state, count as usize, &merging, &connected);
            match picked {
                Some(p) => {
                    for s in &p {
                        if let Some(e) = state.shards.get_mut(s) {
                            e.reserved += 1;
                        }
                    }
                    p
                }
                None => {
                    state.creating.remove(&name);
                    return Err(ServerError::Unavailable(format!(
                        "no shard of cluster {} has an online, connected leader (waited {} ms)",
                        self.config.read().name,
                        LEADERS_RECONNECT_WAIT.as_millis()
                    )));
                }
            }
        };
        // The rest runs in its own task: if the client goes away mid-create, the create
        // still completes or fails cleanly, and the reservations above are always released.
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = this
                .create_table_reserved(&name, rule, definition, &shards)
                .await;
            this.finish_create(&name, &shards, result)
        });
        let (table, versions) = task
            .await
            .map_err(|e| ServerError::Unavailable(format!("create task failed: {e}")))??;
        // A leader change that raced with the create opened the new leader with the table
        // list from before this table was in memory: tell the new leader too (creates are
        // idempotent). Any later open includes the table.
        for (p, used) in table.partitions.iter().zip(versions) {
            if self.shard(p.shard).is_some_and(|s| s.version != used) {
                let this = self.clone();
                let kind = pb::instruction::Kind::CreateTable(pb::CreateTableOnShard {
                    table: Some(table_on_shard(&table, p.index)),
                });
                let shard = p.shard;
                tokio::spawn(async move {
                    if let Err(e) = this.instruct_leader(shard, kind).await {
                        tracing::warn!(%shard, "re-creating a table on a new leader: {e}");
                    }
                });
            }
        }
        self.publish_table(&table);
        metrics::counter!("meridian_tables_created_total", "cluster" => self.name()).increment(1);
        self.event(
            "ddl",
            format!(
                "table {} created ({} partitions)",
                table.name,
                table.partitions.len()
            ),
            crate::events::About::default(),
        );
        Ok((table, true))
    }

    /// Releases a create's reservations (a committed table is already visible).
    fn finish_create(
        &self,
        name: &TableName,
        shards: &[ShardId],
        result: Result<(Table, Vec<meridian_model::ShardVersion>)>,
    ) -> Result<(Table, Vec<meridian_model::ShardVersion>)> {
        let mut state = self.state.write();
        state.creating.remove(name);
        for s in shards {
            if let Some(e) = state.shards.get_mut(s) {
                e.reserved = e.reserved.saturating_sub(1);
            }
        }
        result
    }

    async fn create_table_reserved(
        self: &Arc<Self>,
        name: &TableName,
        rule: PartitionRule,
        definition: TableDefinition,
        shards: &[ShardId],
    ) -> Result<(Table, Vec<meridian_model::ShardVersion>)> {
        let id = TableId(self.table_ids.next().await?);
        let table = Table {
            id,
            name: name.clone(),
            rule,
            partitions: shards
                .iter()
                .enumerate()
                .map(|(i, s)| Partition {
                    index: i as u32,
                    shard: *s,
                })
                .collect(),
            created_at_ms: wall_ms(),
            revision: 1,
            definition,
        };
        // The procedure record goes first: if this server dies from here until the commit,
        // the next start finds it and rolls the create back on the nodes (invariant 3).
        let procedure = keys::create_table_procedure(self.id, id);
        self.store
            .batch(vec![WriteOp::put(procedure.clone(), encode(&table)?)])
            .await?;
        // Every partition's shard leader must create it before we say ok.
        let creates = table.partitions.iter().map(|p| {
            let kind = pb::instruction::Kind::CreateTable(pb::CreateTableOnShard {
                table: Some(table_on_shard(&table, p.index)),
            });
            self.instruct_leader(p.shard, kind)
        });
        let outcomes = futures::future::join_all(creates).await;
        let mut versions = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Ok(v) => versions.push(v),
                Err(err) => {
                    self.roll_back_create(&table);
                    return Err(err);
                }
            }
        }
        self.procedures
            .failpoints
            .hit("create_table.before_commit")
            .await;
        // Shared: creates commute (see the module's doc).
        let _commit = self.procedures.commit.read().await;
        // A shard merged away meanwhile cannot take the partition (merges refuse reserved
        // shards, so this is a second line of defence).
        let gone = {
            let state = self.state.read();
            table
                .partitions
                .iter()
                .find(|p| !state.shards.contains_key(&p.shard))
                .map(|p| p.shard)
        };
        if let Some(shard) = gone {
            self.roll_back_create(&table);
            return Err(ServerError::Aborted(format!(
                "{shard} was merged away during the create of {name}; retry"
            )));
        }
        let name_key = keys::table_name(self.id, name);
        let mut txn = Txn::new()
            .when_absent(name_key.clone())
            .then(WriteOp::put(name_key, id.0.to_string().into_bytes()))
            .then_all(put_table(self.id, &table)?)
            .then(WriteOp::delete(procedure));
        let mut shards_used: Vec<ShardId> = table.partitions.iter().map(|p| p.shard).collect();
        shards_used.sort_unstable();
        shards_used.dedup();
        // No merge may be taking one of these shards away. A table over more shards than the
        // store takes compares in one transaction (etcd: 128) asks instead that no merge at
        // all is in flight in the cluster.
        if shards_used.len() + 2 > self.store.max_batch_ops() {
            txn = txn.when_prefix_empty(keys::procedures_prefix(self.id, "merge"));
        } else {
            for shard in shards_used {
                txn = txn.when_absent(keys::procedure(self.id, "merge", u64::from(shard.0)));
            }
        }
        match self.store.txn(txn).await {
            Ok(r) if r.succeeded => {
                let mut state = self.state.write();
                state.table_by_name.insert(table.name.clone(), table.id);
                for p in &table.partitions {
                    if let Some(e) = state.shards.get_mut(&p.shard) {
                        e.partitions.insert((table.id, p.index));
                    }
                }
                state.tables.insert(table.id, table.clone());
                Ok((table, versions))
            }
            Ok(_) => {
                self.roll_back_create(&table);
                Err(ServerError::Aborted(format!(
                    "table {name} was created concurrently or a merge of its shards began; retry"
                )))
            }
            Err(e) => {
                self.roll_back_create(&table);
                Err(e.into())
            }
        }
    }

    /// Rolls a failed (or interrupted) create back: tells each partition's shard leader to
    /// drop it, retrying until every leader confirmed (or the shard is gone), then deletes
    /// the create's procedure record. Runs in the background; if this server stops first,
    /// the record is still there and the next start resumes the rollback.
    pub(super) fn roll_back_create(self: &Arc<Self>, table: &Table) {
        let this = self.clone();
        let table = table.clone();
        tokio::spawn(async move {
            // Retried until done, never given up: an orphan partition is what this avoids.
            let mut left = this.drop_partitions_once(&table, None).await;
            let mut backoff = Backoff::default();
            while !left.is_empty() {
                backoff.wait().await;
                left = this.drop_partitions_once(&table, Some(&left)).await;
            }
            let key = keys::create_table_procedure(this.id, table.id);
            match this.store.batch(vec![WriteOp::delete(key)]).await {
                Ok(()) => {
                    tracing::info!(table = %table.name, id = %table.id, "rolled back a create")
                }
                Err(e) => {
                    tracing::warn!(table = %table.name, "deleting a rolled-back create's record: {e}")
                }
            }
        });
    }
}

/// Milliseconds since the Unix epoch, for creation stamps.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
