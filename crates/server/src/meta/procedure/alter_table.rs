//! Alter table: a change of the table's definition (add or drop a column, set options).
//!
//! States (record: `keys::procedure(.., "alter_table", table)`, the table as it will be):
//!
//! ```text
//! Prepared ──────────────────> Applied ───────────────────> Committed
//!   record written (the table    every partition's shard     one txn: the table at the
//!   with its new definition)     leader has the new          revision as read -> the new
//!                                definition (AlterTable)     table; record deleted
//!       │                              │ a leader refused, or the revision moved
//!       └──────────────────────────────┴──> RollingBack: the leaders get the committed
//!                                           definition back (retried), record deleted
//! ```
//!
//! The client hears "ok" only after the commit, so every leader had the new definition
//! before any client could see it. A record found at start never committed (the commit
//! deletes it): it is rolled back like a failed alter.

use super::Backoff;
use crate::error::{Result, ServerError};
use crate::meta::catalog::table_on_shard;
use crate::meta::cluster::{decode, encode, Cluster};
use crate::meta::revision::{put_table, Guarded};
use meridian_model::{DefinitionChange, Table, TableName};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use std::sync::Arc;

impl Cluster {
    /// Changes the definition of table `name`; returns the table as committed.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="alter"}`).
    pub async fn alter_table(
        self: &Arc<Self>,
        name: &TableName,
        change: DefinitionChange,
    ) -> Result<Table> {
        let alter = self.alter_table_unmetered(name, change);
        crate::metrics::ddl(&self.name(), crate::metrics::DdlKind::Alter, alter).await
    }

    async fn alter_table_unmetered(
        self: &Arc<Self>,
        name: &TableName,
        change: DefinitionChange,
    ) -> Result<Table> {
        let table = self
            .get_table(name)
            .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?;
        let mut altered = table.clone();
        altered.definition = change.apply(&table.definition, &table.rule)?;
        altered.revision = table.revision + 1;
        let record_key = keys::procedure(self.id, "alter_table", table.id.0);
        let prepared = Txn::new()
            .when_absent(record_key.clone())
            .then(WriteOp::put(record_key.clone(), encode(&altered)?));
        if !self.store.txn(prepared).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} is being altered concurrently; retry"
            )));
        }
        // Every leader first: the client must not hear "ok" before they have it.
        let alters = altered
            .partitions
            .iter()
            .map(|p| self.instruct_leader(p.shard, alter_instruction(&altered, p.index)));
        let applied = futures::future::join_all(alters)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>();
        let result = match applied {
            Ok(_) => {
                self.procedures
                    .failpoints
                    .hit("alter_table.before_commit")
                    .await;
                self.commit_alter(&table, &altered, &record_key).await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.roll_back_alter(altered);
        }
        result
    }

    async fn commit_alter(
        &self,
        table: &Table,
        altered: &Table,
        record_key: &[u8],
    ) -> Result<Table> {
        // Shared, like creates: alters of different tables touch disjoint keys, one table
        // has one alter in flight (its record), and the revision compare refuses an alter
        // of a table that a drop, rename, split or merge (which hold the lock alone)
        // changed meanwhile. Sharing lets concurrent alters share redb's group commits.
        let _commit = self.procedures.commit.read().await;
        let txn = Txn::new()
            .table_at(self.id, table.id, table.revision)
            .then_all(put_table(self.id, altered)?)
            .then(WriteOp::delete(record_key.to_vec()));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {} changed during the alter; retry",
                table.name
            )));
        }
        self.state.write().tables.insert(table.id, altered.clone());
        if let Some(route) = self.table_route(altered) {
            self.publish(pb::route_event::Event::TableChanged(route));
        }
        self.event(
            "ddl",
            format!(
                "table {} altered (definition version {})",
                altered.name, altered.definition.version
            ),
            crate::events::About::default(),
        );
        Ok(altered.clone())
    }

    /// Gives the leaders of an uncommitted alter the committed definition back (retried
    /// until each confirmed, or the table is gone), then deletes the record. Runs in the
    /// background; if this server stops first, the next start does it.
    fn roll_back_alter(self: &Arc<Self>, altered: Table) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            loop {
                let Some(current) = this.state.read().tables.get(&altered.id).cloned() else {
                    break;
                };
                let restores = current
                    .partitions
                    .iter()
                    .map(|p| this.instruct_leader(p.shard, alter_instruction(&current, p.index)));
                let ok = futures::future::join_all(restores)
                    .await
                    .iter()
                    .all(Result::is_ok);
                if ok {
                    break;
                }
                backoff.wait().await;
            }
            let key = keys::procedure(this.id, "alter_table", altered.id.0);
            match this.store.batch(vec![WriteOp::delete(key)]).await {
                Ok(()) => tracing::info!(table = %altered.name, "rolled back an alter"),
                Err(e) => {
                    tracing::warn!(table = %altered.name, "deleting a rolled-back alter's record: {e}")
                }
            }
        });
    }

    /// Rolls back the alters a previous server left uncommitted (their records).
    pub(super) async fn resume_alters(self: &Arc<Self>) -> Result<usize> {
        let records = self
            .store
            .range(&keys::procedures_prefix(self.id, "alter_table"), 0)
            .await?;
        for kv in &records {
            let altered: Table = decode(&kv.key, &kv.value)?;
            tracing::info!(table = %altered.name, "rolling back an alter interrupted by a restart");
            self.roll_back_alter(altered);
        }
        Ok(records.len())
    }
}

/// The instruction giving partition `partition`'s leader the definition of `t`.
fn alter_instruction(t: &Table, partition: u32) -> pb::instruction::Kind {
    pb::instruction::Kind::AlterTable(pb::AlterTableOnShard {
        table: Some(table_on_shard(t, partition)),
    })
}
