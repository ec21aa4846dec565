//! The catalog: schemas and tables as clients see them, and where new partitions go.
//!
//! Changes to tables (create, drop, rename) are procedures, in [`super::procedure`]; this
//! module holds the reads and the schema writes, which touch no node.

use super::cluster::{encode, Cluster, ClusterState};
use super::paging::{encode_token, Page, PageRequest};
use crate::error::{Result, ServerError};
use meridian_model::{ClusterId, NodeId, NodeState, ShardId, Table, TableName};
use meridian_proto as pb;
use meridian_store::{keys, Txn, WriteOp};
use std::collections::HashSet;
use std::ops::Bound;

/// Default catalog and schema, created with every cluster.
pub const DEFAULT_CATALOG: &str = "default";
/// See [`DEFAULT_CATALOG`].
pub const DEFAULT_SCHEMA: &str = "public";

use crate::metrics::DdlKind;

impl Cluster {
    /// Creates the default catalog and schema if missing.
    pub async fn ensure_default_schema(&self) -> Result<()> {
        self.create_schema_unmetered(DEFAULT_CATALOG, DEFAULT_SCHEMA, true)
            .await
            .map(|_| ())
    }

    /// Creates a schema (and its catalog implicitly). Returns whether it was created.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="create_schema"}`).
    pub async fn create_schema(
        &self,
        catalog: &str,
        schema: &str,
        if_not_exists: bool,
    ) -> Result<bool> {
        let create = self.create_schema_unmetered(catalog, schema, if_not_exists);
        crate::metrics::ddl(&self.name(), DdlKind::CreateSchema, create).await
    }

    async fn create_schema_unmetered(
        &self,
        catalog: &str,
        schema: &str,
        if_not_exists: bool,
    ) -> Result<bool> {
        meridian_model::validate_name("catalog", catalog)?;
        meridian_model::validate_name("schema", schema)?;
        let pair = (catalog.to_string(), schema.to_string());
        if self.state.read().schemas.contains(&pair) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(ServerError::AlreadyExists(format!(
                    "schema {catalog}.{schema} already exists"
                )))
            };
        }
        let key = keys::schema(self.id, catalog, schema);
        let txn = Txn::new()
            .when_absent(key.clone())
            .then(WriteOp::put(key, encode(&pair)?));
        let created = self.store.txn(txn).await?.succeeded;
        self.state.write().schemas.insert(pair);
        if created {
            self.event(
                "ddl",
                format!("schema {catalog}.{schema} created"),
                crate::events::About::default(),
            );
        }
        if !created && !if_not_exists {
            return Err(ServerError::AlreadyExists(format!(
                "schema {catalog}.{schema} already exists"
            )));
        }
        Ok(created)
    }

    /// Schemas of a catalog.
    pub fn list_schemas(&self, catalog: &str) -> Vec<String> {
        self.state
            .read()
            .schemas
            .iter()
            .filter(|(c, _)| c == catalog)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Drops schema `catalog`.`schema`. Refused while it holds tables unless `cascade`,
    /// which drops them first (each a drop procedure). Returns whether it existed.
    /// Timed and counted as DDL (`meridian_ddl_*{kind="drop_schema"}`).
    pub async fn drop_schema(
        self: &std::sync::Arc<Self>,
        catalog: &str,
        schema: &str,
        cascade: bool,
        if_exists: bool,
    ) -> Result<bool> {
        let drop = self.drop_schema_unmetered(catalog, schema, cascade, if_exists);
        crate::metrics::ddl(&self.name(), DdlKind::DropSchema, drop).await
    }

    async fn drop_schema_unmetered(
        self: &std::sync::Arc<Self>,
        catalog: &str,
        schema: &str,
        cascade: bool,
        if_exists: bool,
    ) -> Result<bool> {
        let pair = (catalog.to_string(), schema.to_string());
        if !self.state.read().schemas.contains(&pair) {
            return if if_exists {
                Ok(false)
            } else {
                Err(ServerError::NotFound(format!(
                    "schema {catalog}.{schema} not found"
                )))
            };
        }
        if cascade {
            for t in self.list_tables(catalog, schema) {
                self.drop_table(&t.name, true).await?;
            }
        }
        // Out of the catalog first, under the lock creates take their names under: no create
        // can begin in it from here, and none is in flight.
        {
            let mut state = self.state.write();
            let in_use = state
                .table_by_name
                .keys()
                .chain(state.creating.iter())
                .filter(|n| n.catalog == catalog && n.schema == schema)
                .count();
            if in_use > 0 {
                return Err(ServerError::FailedPrecondition(format!(
                    "schema {catalog}.{schema} holds {in_use} table(s): drop them first, or drop it with cascade"
                )));
            }
            state.schemas.remove(&pair);
        }
        let key = keys::schema(self.id, catalog, schema);
        if let Err(e) = self.store.batch(vec![WriteOp::delete(key)]).await {
            self.state.write().schemas.insert(pair);
            return Err(e.into());
        }
        self.event(
            "ddl",
            format!("schema {catalog}.{schema} dropped"),
            crate::events::About::default(),
        );
        Ok(true)
    }

    /// Drops catalog `catalog`: every schema in it (a catalog exists through its schemas).
    /// Refused, changing nothing, while any of them holds tables unless `cascade`, which
    /// drops the tables first. Returns whether it existed. Timed and counted as DDL
    /// (`meridian_ddl_*{kind="drop_catalog"}`).
    pub async fn drop_catalog(
        self: &std::sync::Arc<Self>,
        catalog: &str,
        cascade: bool,
        if_exists: bool,
    ) -> Result<bool> {
        let drop = self.drop_catalog_unmetered(catalog, cascade, if_exists);
        crate::metrics::ddl(&self.name(), DdlKind::DropCatalog, drop).await
    }

    async fn drop_catalog_unmetered(
        self: &std::sync::Arc<Self>,
        catalog: &str,
        cascade: bool,
        if_exists: bool,
    ) -> Result<bool> {
        let schemas = self.list_schemas(catalog);
        if schemas.is_empty() {
            return if if_exists {
                Ok(false)
            } else {
                Err(ServerError::NotFound(format!(
                    "catalog {catalog} not found"
                )))
            };
        }
        if !cascade {
            let state = self.state.read();
            let in_use = state
                .table_by_name
                .keys()
                .chain(state.creating.iter())
                .filter(|n| n.catalog == catalog)
                .count();
            if in_use > 0 {
                return Err(ServerError::FailedPrecondition(format!(
                    "catalog {catalog} holds {in_use} table(s): drop them first, or drop it with cascade"
                )));
            }
        }
        for schema in schemas {
            self.drop_schema_unmetered(catalog, &schema, cascade, true)
                .await?;
        }
        Ok(true)
    }

    pub(super) fn check_schema(&self, name: &TableName) -> Result<()> {
        if self
            .state
            .read()
            .schemas
            .contains(&(name.catalog.clone(), name.schema.clone()))
        {
            Ok(())
        } else {
            Err(ServerError::NotFound(format!(
                "schema {}.{} not found",
                name.catalog, name.schema
            )))
        }
    }

    /// A table by name.
    pub fn get_table(&self, name: &TableName) -> Option<Table> {
        let state = self.state.read();
        state
            .table_by_name
            .get(name)
            .and_then(|id| state.tables.get(id))
            .cloned()
    }

    /// Tables of a schema (or all, when both are empty), ordered by name.
    pub fn list_tables(&self, catalog: &str, schema: &str) -> Vec<Table> {
        let state = self.state.read();
        let mut tables: Vec<Table> = state
            .tables
            .values()
            .filter(|t| {
                (catalog.is_empty() || t.name.catalog == catalog)
                    && (schema.is_empty() || t.name.schema == schema)
            })
            .cloned()
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// One page of the tables of `catalog`.`schema` (empty: every catalog / schema) whose
    /// names start with `req.prefix`, in name order (see `meta::paging`).
    pub fn list_tables_page(
        &self,
        catalog: &str,
        schema: &str,
        req: &PageRequest,
    ) -> Result<Page<Table>> {
        let start = match req.after.as_deref() {
            Some([c, s, t]) => Bound::Excluded(TableName {
                catalog: c.clone(),
                schema: s.clone(),
                table: t.clone(),
            }),
            Some(_) => return Err(ServerError::InvalidArgument(
                "invalid page token: not a token of a table list (pass the next_page_token of the previous page unchanged)".into(),
            )),
            None => Bound::Included(TableName {
                catalog: catalog.to_string(),
                schema: if catalog.is_empty() { String::new() } else { schema.to_string() },
                table: if catalog.is_empty() || schema.is_empty() {
                    String::new()
                } else {
                    req.prefix.clone()
                },
            }),
        };
        let state = self.state.read();
        let mut items = Vec::with_capacity(req.size.min(state.table_by_name.len()));
        let mut next_page_token = String::new();
        for (name, id) in state.table_by_name.range((start, Bound::Unbounded)) {
            // Names are ordered by catalog, schema, table: past the asked catalog (or schema,
            // or prefix within it) nothing more can match.
            if !catalog.is_empty() && name.catalog != catalog {
                break;
            }
            if !catalog.is_empty() && !schema.is_empty() {
                if name.schema != schema {
                    break;
                }
                if !name.table.starts_with(&req.prefix) && name.table.as_str() > req.prefix.as_str()
                {
                    break;
                }
            }
            if (!schema.is_empty() && name.schema != schema) || !name.table.starts_with(&req.prefix)
            {
                continue;
            }
            if items.len() == req.size {
                // There is at least one more: the next page starts after the last one here.
                if let Some(last) = items.last().map(|t: &Table| &t.name) {
                    next_page_token = encode_token(&[&last.catalog, &last.schema, &last.table]);
                }
                break;
            }
            if let Some(t) = state.tables.get(id) {
                items.push(t.clone());
            }
        }
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// One page of the schemas of `catalog` whose names start with `req.prefix`, in name
    /// order (see `meta::paging`).
    pub fn list_schemas_page(&self, catalog: &str, req: &PageRequest) -> Result<Page<String>> {
        let start = match req.after.as_deref() {
            Some([c, s]) => Bound::Excluded((c.clone(), s.clone())),
            Some(_) => return Err(ServerError::InvalidArgument(
                "invalid page token: not a token of a schema list (pass the next_page_token of the previous page unchanged)".into(),
            )),
            None => Bound::Included((catalog.to_string(), req.prefix.clone())),
        };
        let state = self.state.read();
        let mut items: Vec<String> = Vec::new();
        let mut next_page_token = String::new();
        for (c, s) in state.schemas.range((start, Bound::Unbounded)) {
            if c != catalog || !s.starts_with(&req.prefix) {
                break;
            }
            if items.len() == req.size {
                if let Some(last) = items.last() {
                    next_page_token = encode_token(&[catalog, last]);
                }
                break;
            }
            items.push(s.clone());
        }
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Number of tables.
    pub fn table_count(&self) -> usize {
        self.state.read().tables.len()
    }
}

/// The instruction to drop partition `partition` of `t` from its shard.
pub(super) fn drop_partition(t: &Table, partition: u32) -> pb::instruction::Kind {
    pb::instruction::Kind::DropTable(pb::DropTableOnShard {
        table: Some(table_on_shard(t, partition)),
    })
}

/// Every schema of every catalog of a cluster.
pub(super) fn all_schemas_prefix(id: ClusterId) -> Vec<u8> {
    let mut prefix = keys::cluster_prefix(id);
    prefix.extend_from_slice(b"schemas/");
    prefix
}

pub(super) fn table_on_shard(t: &Table, partition: u32) -> pb::TableOnShard {
    pb::TableOnShard {
        table_id: t.id.0,
        catalog: t.name.catalog.clone(),
        schema: t.name.schema.clone(),
        table: t.name.table.clone(),
        partition,
        definition: meridian_proto::convert::definition_to_wire(&t.definition),
    }
}

/// Picks `count` shards for a new table's partitions: fewest partitions (counting creates
/// in flight), then least write load; only shards whose leader is online and that no merge
/// is taking away (`excluded`). Partitions of
/// one table go to distinct shards while there are enough.
pub(super) fn pick_shards(
    state: &ClusterState,
    count: usize,
    excluded: &HashSet<ShardId>,
    connected: &HashSet<NodeId>,
) -> Option<Vec<ShardId>> {
    let mut candidates: Vec<(usize, u64, ShardId)> = state
        .shards
        .values()
        .filter(|e| !excluded.contains(&e.shard.id))
        .filter_map(|e| {
            let leader = e.shard.leader()?;
            let node = state.nodes.get(&leader)?;
            if node.state != NodeState::Online || !connected.contains(&leader) {
                return None;
            }
            let load = node
                .reports
                .get(&e.shard.id)
                .map(|r| (r.stats.write_units_per_sec + r.stats.read_units_per_sec) as u64)
                .unwrap_or(0);
            Some((e.partitions.len() + e.reserved as usize, load, e.shard.id))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        candidates.sort_unstable();
        let take = (count - picked.len()).min(candidates.len());
        for c in candidates.iter_mut().take(take) {
            picked.push(c.2);
            c.0 += 1;
        }
    }
    Some(picked)
}
