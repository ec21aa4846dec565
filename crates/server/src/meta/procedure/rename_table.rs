//! Rename table.

use crate::error::{Result, ServerError};
use crate::meta::cluster::{encode, Cluster};
use meridian_model::{Table, TableName};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};

impl Cluster {
    /// Renames a table within its schema.
    pub async fn rename_table(&self, name: &TableName, new_name: &str) -> Result<Table> {
        let new = TableName::new(&name.catalog, &name.schema, new_name)?;
        let table = self
            .get_table(name)
            .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?;
        if self.get_table(&new).is_some() {
            return Err(ServerError::AlreadyExists(format!(
                "table {new} already exists"
            )));
        }
        let mut renamed = table.clone();
        renamed.name = new.clone();
        let old_key = keys::table_name(self.id, name);
        let new_key = keys::table_name(self.id, &new);
        let txn = Txn::new()
            .when_equals(old_key.clone(), table.id.0.to_string().into_bytes())
            .when_absent(new_key.clone())
            .then(WriteOp::delete(old_key))
            .then(WriteOp::put(new_key, table.id.0.to_string().into_bytes()))
            .then(WriteOp::put(
                keys::table(self.id, table.id),
                encode(&renamed)?,
            ));
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
        Ok(renamed)
    }
}
