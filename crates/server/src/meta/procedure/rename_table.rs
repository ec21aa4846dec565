//! Rename table.
//!
//! States (record: `keys::procedure(.., "rename_table", table)`, a [`RenameRecord`]):
//!
//! ```text
//! Prepared ──────────────────────────────> Committed
//!   record written (which table, from,      one txn: old name -> id, revision as read,
//!   to); nothing changed yet                new name absent; moves the name, writes the
//!                                           table at revision + 1, deletes the record
//! ```
//!
//! Nodes know tables by id, so no node acts. A record found at start never committed (the
//! commit deletes it): it is rolled back by deleting it. A split or merge that read the
//! table before the rename fails its commit on the revision, so it cannot write the old
//! name back or lose the rename.

use crate::error::{Result, ServerError};
use crate::meta::cluster::{encode, Cluster};
use crate::meta::revision::{put_table, Guarded};
use meridian_model::{Table, TableId, TableName};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use serde::{Deserialize, Serialize};

/// The persisted state of a rename in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RenameRecord {
    /// The table.
    pub table: TableId,
    /// Its name before.
    pub from: TableName,
    /// Its name after.
    pub to: TableName,
}

impl Cluster {
    /// Renames a table within its schema.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="rename"}`).
    pub async fn rename_table(&self, name: &TableName, new_name: &str) -> Result<Table> {
        let rename = self.rename_table_unmetered(name, new_name);
        crate::metrics::ddl(&self.name(), crate::metrics::DdlKind::Rename, rename).await
    }

    async fn rename_table_unmetered(&self, name: &TableName, new_name: &str) -> Result<Table> {
        let new = TableName::new(&name.catalog, &name.schema, new_name)?;
        let id = self
            .get_table(name)
            .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?
            .id;
        if self.get_table(&new).is_some() {
            return Err(ServerError::AlreadyExists(format!(
                "table {new} already exists"
            )));
        }
        let record_key = keys::procedure(self.id, "rename_table", id.0);
        let record = RenameRecord {
            table: id,
            from: name.clone(),
            to: new.clone(),
        };
        let prepared = Txn::new()
            .when_absent(record_key.clone())
            .then(WriteOp::put(record_key.clone(), encode(&record)?));
        if !self.store.txn(prepared).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} is being renamed concurrently; retry"
            )));
        }
        self.procedures
            .failpoints
            .hit("rename_table.before_commit")
            .await;
        let result = self.commit_rename(name, &new, id, &record_key).await;
        if result.is_err() {
            // Rolled back: nothing was changed but the record.
            if let Err(e) = self.store.batch(vec![WriteOp::delete(record_key)]).await {
                tracing::warn!(table = %name, "deleting a failed rename's record (the next start does): {e}");
            }
        }
        result
    }

    async fn commit_rename(
        &self,
        name: &TableName,
        new: &TableName,
        id: TableId,
        record_key: &[u8],
    ) -> Result<Table> {
        let _commit = self.procedures.commit.write().await;
        let table = self
            .get_table(name)
            .filter(|t| t.id == id)
            .ok_or_else(|| ServerError::Aborted(format!("table {name} changed concurrently")))?;
        let mut renamed = table.clone();
        renamed.name = new.clone();
        renamed.revision = table.revision + 1;
        let old_key = keys::table_name(self.id, name);
        let new_key = keys::table_name(self.id, new);
        let txn = Txn::new()
            .when_equals(old_key.clone(), table.id.0.to_string().into_bytes())
            .when_absent(new_key.clone())
            .table_at(self.id, table.id, table.revision)
            .then(WriteOp::delete(old_key))
            .then(WriteOp::put(new_key, table.id.0.to_string().into_bytes()))
            .then_all(put_table(self.id, &renamed)?)
            .then(WriteOp::delete(record_key.to_vec()));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} changed concurrently; retry"
            )));
        }
        {
            let mut state = self.state.write();
            state.table_by_name.remove(name);
            state.table_by_name.insert(new.clone(), table.id);
            state.tables.insert(table.id, renamed.clone());
        }
        self.publish(pb::route_event::Event::TableDropped(pb::TableDropped {
            table_id: table.id.0,
            catalog: name.catalog.clone(),
            schema: name.schema.clone(),
            table: name.table.clone(),
        }));
        if let Some(route) = self.table_route(&renamed) {
            self.publish(pb::route_event::Event::TableChanged(route));
        }
        self.event(
            "ddl",
            format!("table {name} renamed to {new}"),
            crate::events::About::default(),
        );
        Ok(renamed)
    }

    /// Rolls back the renames a previous server left uncommitted (their records).
    pub(super) async fn resume_renames(&self) -> Result<usize> {
        let records = self
            .store
            .range(&keys::procedures_prefix(self.id, "rename_table"), 0)
            .await?;
        for kv in &records {
            tracing::info!(key = %String::from_utf8_lossy(&kv.key), "rolling back a rename interrupted by a restart");
            self.store
                .batch(vec![WriteOp::delete(kv.key.clone())])
                .await?;
        }
        Ok(records.len())
    }
}
