//! Drop table.
//!
//! States (record: `keys::procedure(.., "drop_table", table)`, a [`DropRecord`]):
//!
//! ```text
//! Committed ───────────────────────────> CleaningNodes ─────────────> Done
//!   one txn (name and revision as read)    each partition's shard       record deleted
//!   deletes name, table, revision and      leader drops it, retried
//!   writes the record; memory and routes   with backoff until it
//!   follow at once                         confirms or the shard is gone
//! ```
//!
//! The metadata goes first, so no client is routed to a half-dropped table; the record
//! written in the same transaction makes the node-side drop survive a restart: a record
//! found at start resumes CleaningNodes. A split or merge that read the table before the
//! drop fails its commit on the revision and rolls back, so it never brings the table back.

use super::Backoff;
use crate::error::{Result, ServerError};
use crate::meta::catalog::drop_partition;
use crate::meta::cluster::{decode, encode, Cluster};
use crate::meta::revision::{delete_table, Guarded};
use meridian_model::{Table, TableName};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The persisted state of a drop: the table as it was when it was dropped (its partitions
/// say which shards still have to drop it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DropRecord {
    /// The dropped table.
    pub table: Table,
}

impl Cluster {
    /// Drops a table: durable first (with its procedure record), then memory and routes,
    /// then the nodes, retried in the background until each partition's shard confirmed.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="drop"}`).
    pub async fn drop_table(self: &Arc<Self>, name: &TableName, if_exists: bool) -> Result<bool> {
        let drop = self.drop_table_unmetered(name, if_exists);
        crate::metrics::ddl(&self.name(), crate::metrics::DdlKind::Drop, drop).await
    }

    async fn drop_table_unmetered(
        self: &Arc<Self>,
        name: &TableName,
        if_exists: bool,
    ) -> Result<bool> {
        let table = {
            let _commit = self.procedures.commit.write().await;
            let table = self.get_table(name);
            let Some(table) = table else {
                self.check_schema(name)?;
                return if if_exists {
                    Ok(false)
                } else {
                    Err(ServerError::NotFound(format!("table {name} not found")))
                };
            };
            let name_key = keys::table_name(self.id, name);
            let record = DropRecord {
                table: table.clone(),
            };
            let txn = Txn::new()
                .when_equals(name_key.clone(), table.id.0.to_string().into_bytes())
                .table_at(self.id, table.id, table.revision)
                .then(WriteOp::delete(name_key))
                .then_all(delete_table(self.id, table.id))
                .then(WriteOp::put(
                    keys::procedure(self.id, "drop_table", table.id.0),
                    encode(&record)?,
                ));
            if !self.store.txn(txn).await?.succeeded {
                return Err(ServerError::Aborted(format!(
                    "table {name} changed concurrently; retry"
                )));
            }
            let mut state = self.state.write();
            state.table_by_name.remove(name);
            state.tables.remove(&table.id);
            for p in &table.partitions {
                if let Some(e) = state.shards.get_mut(&p.shard) {
                    e.partitions.remove(&(table.id, p.index));
                }
            }
            table
        };
        self.publish(pb::route_event::Event::TableDropped(pb::TableDropped {
            table_id: table.id.0,
            catalog: name.catalog.clone(),
            schema: name.schema.clone(),
            table: name.table.clone(),
        }));
        metrics::counter!("meridian_tables_dropped_total", "cluster" => self.name()).increment(1);
        self.event(
            "ddl",
            format!("table {name} dropped"),
            crate::events::About::default(),
        );
        self.procedures
            .failpoints
            .hit("drop_table.after_commit")
            .await;
        // One pass now, so a healthy cluster has dropped the partitions when we answer;
        // whatever is left is retried in the background.
        let left = self.drop_partitions_once(&table, None).await;
        if left.is_empty() {
            self.finish_drop(&table).await;
        } else {
            self.clean_up_drop(table, left);
        }
        Ok(true)
    }

    /// Tells each partition's shard leader (of `only`, or all) to drop it; returns the
    /// partitions not confirmed yet. A partition whose shard no longer exists is done: the
    /// shard was merged away and closed on its nodes.
    pub(super) async fn drop_partitions_once(
        &self,
        table: &Table,
        only: Option<&[u32]>,
    ) -> Vec<u32> {
        let mut left = Vec::new();
        for p in &table.partitions {
            if only.is_some_and(|o| !o.contains(&p.index)) || self.shard(p.shard).is_none() {
                continue;
            }
            if let Err(e) = self
                .instruct_leader(p.shard, drop_partition(table, p.index))
                .await
            {
                tracing::debug!(table = %table.name, partition = p.index, "drop on node failed; will retry: {e}");
                left.push(p.index);
            }
        }
        left
    }

    /// Retries the node-side drop of `left` in the background until done, then deletes the
    /// record.
    fn clean_up_drop(self: &Arc<Self>, table: Table, left: Vec<u32>) {
        let this = self.clone();
        tokio::spawn(async move {
            let (mut left, mut backoff) = (left, Backoff::default());
            while !left.is_empty() {
                backoff.wait().await;
                left = this.drop_partitions_once(&table, Some(&left)).await;
            }
            this.finish_drop(&table).await;
        });
    }

    async fn finish_drop(&self, table: &Table) {
        let key = keys::procedure(self.id, "drop_table", table.id.0);
        match self.store.batch(vec![WriteOp::delete(key)]).await {
            Ok(()) => tracing::info!(table = %table.name, id = %table.id, "dropped on every node"),
            Err(e) => {
                tracing::warn!(table = %table.name, "deleting a finished drop's record (the next start retries): {e}")
            }
        }
    }

    /// Resumes the node-side drops a previous server left unfinished.
    pub(super) async fn resume_drops(self: &Arc<Self>) -> Result<usize> {
        let records = self
            .store
            .range(&keys::procedures_prefix(self.id, "drop_table"), 0)
            .await?;
        for kv in &records {
            let record: DropRecord = decode(&kv.key, &kv.value)?;
            tracing::info!(table = %record.table.name, "resuming a drop interrupted by a restart");
            let all = record.table.partitions.iter().map(|p| p.index).collect();
            self.clean_up_drop(record.table, all);
        }
        Ok(records.len())
    }
}
