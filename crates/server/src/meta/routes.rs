//! Routes: table -> partitions -> shard -> leader and followers, served from memory, and
//! the stream of route changes pushed to watchers.

use super::cluster::{Cluster, ClusterState};
use meridian_model::{NodeId, Shard, Table, TableName};
use meridian_proto as pb;
use tokio::sync::broadcast;

impl Cluster {
    /// Subscribes to route changes.
    pub fn subscribe_routes(&self) -> broadcast::Receiver<pb::RouteEvent> {
        self.routes.subscribe()
    }

    /// Publishes a shard's new route.
    pub(super) fn publish_shard(&self, shard: &Shard) {
        self.publish(pb::route_event::Event::ShardChanged(
            self.shard_route_of(shard),
        ));
    }

    /// Publishes a table's new route.
    pub(super) fn publish_table(&self, table: &Table) {
        if let Some(route) = self.table_route(table) {
            self.publish(pb::route_event::Event::TableChanged(route));
        }
    }

    pub(super) fn publish(&self, event: pb::route_event::Event) {
        // No subscriber is fine: routes are also served on request.
        let _ = self.routes.send(pb::RouteEvent { event: Some(event) });
    }

    /// Routes for a batch of tables of one schema, from memory.
    pub fn route_tables(
        &self,
        catalog: &str,
        schema: &str,
        tables: &[String],
    ) -> pb::RouteTablesResponse {
        let state = self.state.read();
        let mut resp = pb::RouteTablesResponse {
            routes: Vec::with_capacity(tables.len()),
            not_found: Vec::new(),
        };
        let mut key = TableName {
            catalog: catalog.into(),
            schema: schema.into(),
            table: String::new(),
        };
        for t in tables {
            key.table.clone_from(t);
            match state
                .table_by_name
                .get(&key)
                .and_then(|id| state.tables.get(id))
            {
                Some(table) => resp.routes.push(route_of(&state, table)),
                None => resp.not_found.push(t.clone()),
            }
        }
        resp
    }

    pub(super) fn table_route(&self, table: &Table) -> Option<pb::TableRoute> {
        let state = self.state.read();
        Some(route_of(&state, table))
    }

    /// The route of one shard.
    pub fn shard_route_of(&self, shard: &Shard) -> pb::ShardRoute {
        shard_route(&self.state.read(), shard)
    }
}

fn address(state: &ClusterState, node: NodeId) -> pb::NodeAddress {
    let entry = state.nodes.get(&node);
    pb::NodeAddress {
        node_id: node.0,
        endpoint: entry.map(|n| n.node.endpoint.clone()).unwrap_or_default(),
        zone: entry
            .map(|n| n.node.labels.zone.clone())
            .unwrap_or_default(),
    }
}

fn shard_route(state: &ClusterState, shard: &Shard) -> pb::ShardRoute {
    pb::ShardRoute {
        shard_id: shard.id.0,
        version: shard.version.0,
        leader: shard.leader().map(|l| address(state, l)),
        followers: shard.followers().map(|f| address(state, f)).collect(),
    }
}

fn route_of(state: &ClusterState, table: &Table) -> pb::TableRoute {
    pb::TableRoute {
        table_id: table.id.0,
        catalog: table.name.catalog.clone(),
        schema: table.name.schema.clone(),
        table: table.name.table.clone(),
        definition_version: table.definition.version,
        partition_rule: meridian_proto::convert::rule_to_wire(&table.rule),
        partitions: table
            .partitions
            .iter()
            .map(|p| pb::PartitionRoute {
                index: p.index,
                shard: state
                    .shards
                    .get(&p.shard)
                    .map(|s| shard_route(state, &s.shard)),
            })
            .collect(),
    }
}
