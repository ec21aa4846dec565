//! Drop table.

use crate::error::{Result, ServerError};
use crate::meta::catalog::drop_partition;
use crate::meta::cluster::Cluster;
use meridian_model::TableName;
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};

impl Cluster {
    /// Drops a table: durable first, then memory and routes, then the nodes (best effort).
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let table = {
            let state = self.state.read();
            state
                .table_by_name
                .get(name)
                .and_then(|id| state.tables.get(id))
                .cloned()
        };
        let Some(table) = table else {
            self.check_schema(name)?;
            return if if_exists {
                Ok(false)
            } else {
                Err(ServerError::NotFound(format!("table {name} not found")))
            };
        };
        let name_key = keys::table_name(self.id, name);
        let txn = Txn::new()
            .when_equals(name_key.clone(), table.id.0.to_string().into_bytes())
            .then(WriteOp::delete(name_key))
            .then(WriteOp::delete(keys::table(self.id, table.id)));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::Aborted(format!(
                "table {name} changed concurrently; retry"
            )));
        }
        {
            let mut state = self.state.write();
            state.table_by_name.remove(name);
            state.tables.remove(&table.id);
            for p in &table.partitions {
                if let Some(e) = state.shards.get_mut(&p.shard) {
                    e.partitions.remove(&(table.id, p.index));
                }
            }
        }
        self.publish(pb::route_event::Event::TableDropped(pb::TableDropped {
            table_id: table.id.0,
            catalog: name.catalog.clone(),
            schema: name.schema.clone(),
            table: name.table.clone(),
        }));
        for p in &table.partitions {
            if let Err(e) = self
                .instruct_leader(p.shard, drop_partition(&table, p.index))
                .await
            {
                tracing::warn!(table = %name, "drop on node failed (metadata is dropped): {e}");
            }
        }
        metrics::counter!("meridian_tables_dropped_total").increment(1);
        Ok(true)
    }
}
