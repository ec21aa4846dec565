//! `MetaClient`: DDL and routing with a route cache, and the services for nodes (elections,
//! namespaced KV).

use crate::token::{AuthedChannel, BearerToken};
use crate::{following_channel, ClientError};
use meridian_model::{DefinitionChange, PartitionRule, TableDefinition, TableName};
use meridian_proto as pb;
use meridian_proto::convert::{column_to_wire, definition_to_wire, rule_to_wire};
use parking_lot::RwLock;
use pb::catalog_service_client::CatalogServiceClient;
use pb::election_service_client::ElectionServiceClient;
use pb::kv_service_client::KvServiceClient;
use pb::route_service_client::RouteServiceClient;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Cached routes by table name; shared by the client and its watch task.
#[derive(Default)]
pub struct RouteCache {
    routes: RwLock<HashMap<TableName, pb::TableRoute>>,
}

impl RouteCache {
    /// A cached route.
    pub fn get(&self, name: &TableName) -> Option<pb::TableRoute> {
        self.routes.read().get(name).cloned()
    }

    /// Number of cached routes.
    pub fn len(&self) -> usize {
        self.routes.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.routes.read().is_empty()
    }

    fn insert(&self, route: pb::TableRoute) {
        let name = TableName {
            catalog: route.catalog.clone(),
            schema: route.schema.clone(),
            table: route.table.clone(),
        };
        self.routes.write().insert(name, route);
    }

    /// Applies one pushed change. Shard changes replace a cached shard route only with a
    /// newer version: an old event never overwrites a newer route.
    pub fn apply(&self, event: pb::RouteEvent) {
        match event.event {
            Some(pb::route_event::Event::ShardChanged(shard)) => {
                let mut routes = self.routes.write();
                for route in routes.values_mut() {
                    for p in &mut route.partitions {
                        if let Some(s) = &mut p.shard {
                            if s.shard_id == shard.shard_id && s.version < shard.version {
                                *s = shard.clone();
                            }
                        }
                    }
                }
            }
            Some(pb::route_event::Event::TableChanged(route)) => self.insert(route),
            Some(pb::route_event::Event::TableDropped(d)) => {
                let name = TableName {
                    catalog: d.catalog,
                    schema: d.schema,
                    table: d.table,
                };
                let mut routes = self.routes.write();
                if routes.get(&name).is_some_and(|r| r.table_id == d.table_id) {
                    routes.remove(&name);
                }
            }
            Some(pb::route_event::Event::Resync(_)) => self.routes.write().clear(),
            None => {}
        }
    }
}

/// A client for DDL and routes of one cluster.
#[derive(Clone)]
pub struct MetaClient {
    cluster: String,
    catalog: CatalogServiceClient<AuthedChannel>,
    route: RouteServiceClient<AuthedChannel>,
    election: ElectionServiceClient<AuthedChannel>,
    kv: KvServiceClient<AuthedChannel>,
    cache: Arc<RouteCache>,
}

impl MetaClient {
    /// Connects to the Meridian leader among `addrs` (several servers: it follows leader
    /// changes by itself); `cluster` empty means `default`.
    pub async fn connect(addrs: &[String], cluster: &str) -> Result<Self, ClientError> {
        Self::connect_with_token(addrs, cluster, None).await
    }

    /// Like [`MetaClient::connect`], presenting `token` on every call (a server run with
    /// `--tokens`).
    pub async fn connect_with_token(
        addrs: &[String],
        cluster: &str,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addrs, cluster, token, None).await
    }

    /// Like [`MetaClient::connect_with_token`], over TLS when `tls` is given (servers run
    /// with `[tls]`; addresses without a scheme then mean `https://`).
    pub async fn connect_with(
        addrs: &[String],
        cluster: &str,
        token: Option<&str>,
        tls: Option<&crate::ClientTls>,
    ) -> Result<Self, ClientError> {
        Ok(Self::with_channel_and_token(
            following_channel(addrs, tls).await?,
            cluster,
            BearerToken::new(token),
        ))
    }

    /// A client over an existing channel.
    pub fn with_channel(channel: Channel, cluster: &str) -> Self {
        Self::with_channel_and_token(channel, cluster, BearerToken::default())
    }

    /// A client over an existing channel, presenting `token`.
    pub fn with_channel_and_token(channel: Channel, cluster: &str, token: BearerToken) -> Self {
        let limit = 64 << 20;
        let authed = |c: &Channel| InterceptedService::new(c.clone(), token.clone());
        Self {
            cluster: cluster.to_string(),
            catalog: CatalogServiceClient::new(authed(&channel)).max_decoding_message_size(limit),
            route: RouteServiceClient::new(authed(&channel)).max_decoding_message_size(limit),
            election: ElectionServiceClient::new(authed(&channel)).max_decoding_message_size(limit),
            kv: KvServiceClient::new(authed(&channel)).max_decoding_message_size(limit),
            cache: Arc::new(RouteCache::default()),
        }
    }

    /// The cluster this client works on (empty: `default`).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The election service's client, on the leader-following channel.
    pub(crate) fn election_client(&self) -> ElectionServiceClient<AuthedChannel> {
        self.election.clone()
    }

    /// The KV service's client, on the leader-following channel.
    pub(crate) fn kv_client(&self) -> KvServiceClient<AuthedChannel> {
        self.kv.clone()
    }

    /// The route cache.
    pub fn cache(&self) -> &Arc<RouteCache> {
        &self.cache
    }

    /// Creates a schema.
    pub async fn create_schema(
        &self,
        catalog: &str,
        schema: &str,
        if_not_exists: bool,
    ) -> Result<bool, ClientError> {
        let r = self
            .catalog
            .clone()
            .create_schema(pb::CreateSchemaRequest {
                cluster: self.cluster.clone(),
                catalog: catalog.into(),
                schema: schema.into(),
                if_not_exists,
            })
            .await?;
        Ok(r.into_inner().created)
    }

    /// Creates a table; returns it and whether it was created (false: it existed and
    /// `if_not_exists` was set).
    pub async fn create_table(
        &self,
        name: &TableName,
        rule: &PartitionRule,
        if_not_exists: bool,
    ) -> Result<(pb::TableInfo, bool), ClientError> {
        self.create_table_with(name, rule, &TableDefinition::default(), if_not_exists)
            .await
    }

    /// Creates a table with a definition (columns, keys, options); see
    /// [`MetaClient::create_table`].
    pub async fn create_table_with(
        &self,
        name: &TableName,
        rule: &PartitionRule,
        definition: &TableDefinition,
        if_not_exists: bool,
    ) -> Result<(pb::TableInfo, bool), ClientError> {
        let r = self
            .catalog
            .clone()
            .create_table(pb::CreateTableRequest {
                cluster: self.cluster.clone(),
                catalog: name.catalog.clone(),
                schema: name.schema.clone(),
                table: name.table.clone(),
                partition_rule: rule_to_wire(rule),
                if_not_exists,
                definition: definition_to_wire(definition),
            })
            .await?
            .into_inner();
        let table = r
            .table
            .ok_or_else(|| ClientError::Malformed("create answer without table".into()))?;
        Ok((table, r.created))
    }

    /// Changes a table's definition; the shard leaders have the new one when this returns.
    pub async fn alter_table(
        &self,
        name: &TableName,
        change: &DefinitionChange,
    ) -> Result<pb::TableInfo, ClientError> {
        use pb::alter_table_request::Change;
        let change = match change {
            DefinitionChange::AddColumn(c) => Change::AddColumn(column_to_wire(c)),
            DefinitionChange::DropColumn(c) => Change::DropColumn(c.clone()),
            DefinitionChange::SetOptions(o) => Change::SetOptions(pb::OptionsChange {
                set: o
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .collect(),
                unset: o
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k.clone())
                    .collect(),
            }),
        };
        let r = self
            .catalog
            .clone()
            .alter_table(pb::AlterTableRequest {
                cluster: self.cluster.clone(),
                catalog: name.catalog.clone(),
                schema: name.schema.clone(),
                table: name.table.clone(),
                change: Some(change),
            })
            .await?
            .into_inner();
        self.invalidate(name);
        r.table
            .ok_or_else(|| ClientError::Malformed("alter answer without table".into()))
    }

    /// Drops a table; returns whether it existed.
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool, ClientError> {
        let r = self
            .catalog
            .clone()
            .drop_table(pb::DropTableRequest {
                cluster: self.cluster.clone(),
                catalog: name.catalog.clone(),
                schema: name.schema.clone(),
                table: name.table.clone(),
                if_exists,
            })
            .await?;
        self.cache.routes.write().remove(name);
        Ok(r.into_inner().dropped)
    }

    /// Renames a table within its schema.
    pub async fn rename_table(
        &self,
        name: &TableName,
        new_name: &str,
    ) -> Result<pb::TableInfo, ClientError> {
        let r = self
            .catalog
            .clone()
            .rename_table(pb::RenameTableRequest {
                cluster: self.cluster.clone(),
                catalog: name.catalog.clone(),
                schema: name.schema.clone(),
                table: name.table.clone(),
                new_name: new_name.into(),
            })
            .await?;
        self.cache.routes.write().remove(name);
        r.into_inner()
            .table
            .ok_or_else(|| ClientError::Malformed("rename answer without table".into()))
    }

    /// One table's metadata.
    pub async fn get_table(&self, name: &TableName) -> Result<pb::TableInfo, ClientError> {
        let r = self
            .catalog
            .clone()
            .get_table(pb::GetTableRequest {
                cluster: self.cluster.clone(),
                catalog: name.catalog.clone(),
                schema: name.schema.clone(),
                table: name.table.clone(),
            })
            .await?;
        r.into_inner()
            .table
            .ok_or_else(|| ClientError::Malformed("answer without table".into()))
    }

    /// Every table of `catalog`.`schema` (empty: all), fetched page by page.
    pub async fn list_tables(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<pb::TableInfo>, ClientError> {
        let mut tables = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .list_tables_page(catalog, schema, "", 0, &token)
                .await?;
            tables.extend(page.tables);
            if page.next_page_token.is_empty() {
                return Ok(tables);
            }
            token = page.next_page_token;
        }
    }

    /// One page of the tables of `catalog`.`schema` (empty: all) whose names start with
    /// `prefix`: at most `page_size` (0: the server's default), after `page_token` (empty:
    /// the first page; else the previous page's `next_page_token`).
    pub async fn list_tables_page(
        &self,
        catalog: &str,
        schema: &str,
        prefix: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<pb::ListTablesResponse, ClientError> {
        let r = self
            .catalog
            .clone()
            .list_tables(pb::ListTablesRequest {
                cluster: self.cluster.clone(),
                catalog: catalog.into(),
                schema: schema.into(),
                page_size,
                page_token: page_token.into(),
                name_prefix: prefix.into(),
            })
            .await?;
        Ok(r.into_inner())
    }

    /// Routes of tables of one schema, from the server (no cache), as one batch.
    pub async fn fetch_routes(
        &self,
        catalog: &str,
        schema: &str,
        tables: Vec<String>,
    ) -> Result<pb::RouteTablesResponse, ClientError> {
        let r = self
            .route
            .clone()
            .route_tables(pb::RouteTablesRequest {
                cluster: self.cluster.clone(),
                catalog: catalog.into(),
                schema: schema.into(),
                tables,
            })
            .await?
            .into_inner();
        for route in &r.routes {
            self.cache.insert(route.clone());
        }
        Ok(r)
    }

    /// The route of a table: from the cache, else fetched (and cached).
    pub async fn route(&self, name: &TableName) -> Result<pb::TableRoute, ClientError> {
        if let Some(r) = self.cache.get(name) {
            return Ok(r);
        }
        let mut resp = self
            .fetch_routes(&name.catalog, &name.schema, vec![name.table.clone()])
            .await?;
        resp.routes.pop().ok_or_else(|| {
            ClientError::Status(tonic::Status::not_found(format!("table {name} not found")))
        })
    }

    /// Drops a cached route, e.g. after a node answered "stale route"; the next
    /// [`MetaClient::route`] fetches it again.
    pub fn invalidate(&self, name: &TableName) {
        self.cache.routes.write().remove(name);
    }

    /// Runs `op` against the table's route (from the cache when there is one). If the answer
    /// is an error that `is_stale` recognises as "this route is out of date" (the node no
    /// longer leads the shard, or refuses the version), the route is fetched again and `op`
    /// runs once more with it: the lazy refresh of the route cache.
    pub async fn with_route<T, E, F, Fut>(
        &self,
        name: &TableName,
        is_stale: impl Fn(&E) -> bool,
        mut op: F,
    ) -> Result<Result<T, E>, ClientError>
    where
        F: FnMut(pb::TableRoute) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let route = self.route(name).await?;
        match op(route).await {
            Err(e) if is_stale(&e) => {
                self.invalidate(name);
                let fresh = self.route(name).await?;
                Ok(op(fresh).await)
            }
            other => Ok(other),
        }
    }

    /// Starts applying `WatchRoutes` pushes to the cache (eager refresh). The task ends
    /// when the stream ends; on an error it resynchronises by clearing the cache and
    /// re-subscribing after a short pause.
    pub fn watch_routes(&self) -> tokio::task::JoinHandle<()> {
        let client = self.route.clone();
        let cluster = self.cluster.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            loop {
                let req = pb::WatchRoutesRequest {
                    cluster: cluster.clone(),
                };
                match client.clone().watch_routes(req).await {
                    Ok(resp) => {
                        let mut stream = resp.into_inner();
                        while let Ok(Some(event)) = stream.message().await {
                            cache.apply(event);
                        }
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => return,
                    Err(_) => {}
                }
                // Whatever happened while we were not watching is unknown: start afresh.
                cache.routes.write().clear();
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    }

    /// Subscribes to raw route events (for tools that show them).
    pub async fn subscribe_routes(&self) -> Result<tonic::Streaming<pb::RouteEvent>, ClientError> {
        let r = self
            .route
            .clone()
            .watch_routes(pb::WatchRoutesRequest {
                cluster: self.cluster.clone(),
            })
            .await?;
        Ok(r.into_inner())
    }
}
