//! Clusters, nodes, shards, tables and routes over HTTP.

use super::{body, AppState};
use crate::error::ServerError;
use crate::meta::paging::{page_by_id, PageRequest};
use crate::meta::{detached, DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::meta::{NodeInfo, ShardInfo};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meridian_model::{
    ClusterConfig, ClusterId, DefinitionChange, NodeId, PartitionRule, ShardId, Table,
    TableDefinition, TableId, TableName,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clusters", get(list_clusters).post(create_cluster))
        .route("/api/v1/clusters/{cluster}/nodes", get(list_nodes))
        .route("/api/v1/clusters/{cluster}/shards", get(list_shards))
        .route("/api/v1/clusters/{cluster}/health", get(cluster_health))
        .route(
            "/api/v1/clusters/{cluster}/tables",
            get(list_tables).post(create_table),
        )
        .route(
            "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}",
            get(get_table).delete(drop_table).patch(alter_table),
        )
        .route(
            "/api/v1/clusters/{cluster}/routes/{catalog}/{schema}/{table}",
            get(route_table),
        )
        .route(
            "/api/v1/clusters/{cluster}/schemas",
            get(list_schemas).post(create_schema),
        )
        .route(
            "/api/v1/clusters/{cluster}/schemas/{catalog}/{schema}",
            axum::routing::delete(drop_schema),
        )
        .route(
            "/api/v1/clusters/{cluster}/catalogs/{catalog}",
            axum::routing::delete(drop_catalog),
        )
}

/// A cluster and its size, as listed and as created.
#[derive(Serialize, ToSchema)]
pub(super) struct ClusterSummary {
    /// Its id.
    id: ClusterId,
    /// Its configuration.
    config: ClusterConfig,
    /// Nodes registered (removed ones included).
    nodes: usize,
    /// Nodes online.
    nodes_online: usize,
    /// Shards.
    shards: usize,
    /// Tables.
    tables: usize,
}

impl ClusterSummary {
    fn of(c: &crate::meta::Cluster) -> Self {
        let nodes = c.node_infos();
        Self {
            id: c.id,
            config: c.config(),
            nodes: nodes.len(),
            nodes_online: nodes
                .iter()
                .filter(|n| n.state == meridian_model::NodeState::Online)
                .count(),
            shards: c.shard_entries().len(),
            tables: c.table_count(),
        }
    }
}

/// The answer of `GET /api/v1/clusters`.
#[derive(Serialize, ToSchema)]
pub(super) struct ClusterList {
    /// Every cluster.
    clusters: Vec<ClusterSummary>,
}

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters",
    responses((status = 200, description = "Every cluster", body = ClusterList)))]
async fn list_clusters(State(s): State<AppState>) -> Json<ClusterList> {
    let clusters = s
        .meta
        .clusters()
        .iter()
        .map(|c| ClusterSummary::of(c))
        .collect();
    Json(ClusterList { clusters })
}

#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", request_body = ClusterConfig,
    responses((status = 201, description = "The cluster, as in the list", body = ClusterSummary)))]
async fn create_cluster(
    State(s): State<AppState>,
    req: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, Response> {
    // `ClusterConfig` is also the stored record, which must accept fields a newer binary
    // wrote; a request must not, or a typo ("replicas") would silently take the default.
    let raw = body(req)?;
    let known = serde_json::to_value(ClusterConfig::default_cluster())
        .map_err(|e| ServerError::Corrupt(e.to_string()).into_response())?;
    if let (Some(fields), Some(known)) = (raw.as_object(), known.as_object()) {
        let unknown: Vec<&String> = fields.keys().filter(|k| !known.contains_key(*k)).collect();
        if !unknown.is_empty() {
            let mut names: Vec<&String> = known.keys().collect();
            names.sort();
            return Err(ServerError::InvalidArgument(format!(
                "unknown field(s) {unknown:?}; a cluster takes {names:?}"
            ))
            .into_response());
        }
    }
    let config: ClusterConfig = serde_json::from_value(raw).map_err(|e| {
        ServerError::InvalidArgument(format!("invalid cluster: {e}")).into_response()
    })?;
    let meta = s.meta.clone();
    let c = detached(async move { meta.create_cluster(config).await })
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(ClusterSummary::of(&c))).into_response())
}

/// Query of the lists ordered by id (`GET .../nodes`, `.../shards`, `.../operators`): a
/// page (see `meta::paging`) and, for nodes, a name prefix.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct IdPageQuery {
    /// Only names starting with this (nodes).
    #[serde(default)]
    prefix: String,
    /// Page size (0 or absent: 1,000; at most 10,000).
    #[serde(default)]
    limit: u64,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    page_token: String,
    /// Operators: also the finished ones (not paged: a bounded recent history).
    #[serde(default)]
    pub(super) history: bool,
}

impl IdPageQuery {
    pub(super) fn page(&self) -> Result<PageRequest, ServerError> {
        PageRequest::new(self.limit, &self.page_token, &self.prefix)
    }
}

/// A page of `GET .../nodes`.
#[derive(Serialize, ToSchema)]
pub(super) struct NodePage {
    /// The nodes, by id.
    nodes: Vec<NodeInfo>,
    /// Pass it as `page_token` for the next page; empty on the last.
    next_page_token: String,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/nodes", tag = "nodes",
    params(("cluster" = String, Path, description = "Cluster name"), IdPageQuery),
    responses((status = 200, description = "A page of nodes", body = NodePage)))]
async fn list_nodes(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<IdPageQuery>,
) -> Result<Json<NodePage>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let nodes = c
        .node_infos()
        .into_iter()
        .filter(|n| n.name.starts_with(&q.prefix))
        .map(|n| (n.id.0, n));
    let page = page_by_id(nodes, &q.page()?)?;
    Ok(Json(NodePage {
        nodes: page.items,
        next_page_token: page.next_page_token,
    }))
}

/// The answer of `GET .../health`.
#[derive(Serialize, ToSchema)]
pub(super) struct ClusterHealth {
    /// Shards in the cluster.
    shards: usize,
    /// Shards with no problem.
    healthy: usize,
    /// Shards with at least one.
    unhealthy: usize,
    /// By problem name (`leaderless`, `waiting_for_in_sync_follower`, `replica_down`,
    /// `under_replicated`, `domain_violation`), in name order; only the problems some
    /// shard has.
    problems: BTreeMap<&'static str, ProblemShards>,
}

/// The shards that have one problem.
#[derive(Serialize, ToSchema)]
pub(super) struct ProblemShards {
    /// How many.
    count: usize,
    /// Which.
    shards: Vec<ShardId>,
    /// What an operator can do about it.
    advice: &'static str,
}

/// `GET .../health`: the shards with problems, by problem (like `pd-ctl region check`).
#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/health", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, description = "The shards with problems, by problem", body = ClusterHealth)))]
async fn cluster_health(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
) -> Result<Json<ClusterHealth>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let total = c.shard_entries().len();
    let unhealthy = s.scheduling.unhealthy(&c);
    let mut problems = BTreeMap::new();
    for p in meridian_scheduler::ShardProblem::ALL {
        let shards: Vec<ShardId> = unhealthy
            .iter()
            .filter(|(_, ps)| ps.contains(&p))
            .map(|(id, _)| *id)
            .collect();
        if !shards.is_empty() {
            problems.insert(
                p.name(),
                ProblemShards {
                    count: shards.len(),
                    shards,
                    advice: p.advice(),
                },
            );
        }
    }
    Ok(Json(ClusterHealth {
        shards: total,
        healthy: total - unhealthy.len(),
        unhealthy: unhealthy.len(),
        problems,
    }))
}

/// A page of `GET .../shards`.
#[derive(Serialize, ToSchema)]
pub(super) struct ShardPage {
    /// The shards, by id.
    shards: Vec<ShardInfo>,
    /// Pass it as `page_token` for the next page; empty on the last.
    next_page_token: String,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/shards", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), IdPageQuery),
    responses((status = 200, description = "A page of shards", body = ShardPage)))]
async fn list_shards(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<IdPageQuery>,
) -> Result<Json<ShardPage>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let waiting = s.scheduling.waiting(c.id);
    let mut unhealthy = s.scheduling.unhealthy(&c);
    let shards = c.shard_infos().into_iter().map(|mut info| {
        info.waiting_for_in_sync_follower = waiting.contains_key(&info.id);
        info.health = unhealthy.remove(&info.id).unwrap_or_default();
        (u64::from(info.id.0), info)
    });
    let page = page_by_id(shards, &q.page()?)?;
    Ok(Json(ShardPage {
        shards: page.items,
        next_page_token: page.next_page_token,
    }))
}

/// Query of `GET .../tables`: filters and a page (see `meta::paging`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TableFilter {
    #[serde(default)]
    catalog: String,
    #[serde(default)]
    schema: String,
    /// Only names starting with this.
    #[serde(default)]
    prefix: String,
    /// Page size (0 or absent: 1,000; at most 10,000).
    #[serde(default)]
    limit: u64,
    /// The previous page's `next_page_token`.
    #[serde(default)]
    page_token: String,
}

/// A page of `GET .../tables`.
#[derive(Serialize, ToSchema)]
pub(super) struct TablePage {
    /// The tables, by name.
    tables: Vec<Table>,
    /// Pass it as `page_token` for the next page; empty on the last.
    next_page_token: String,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/tables", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), TableFilter),
    responses((status = 200, description = "A page of tables", body = TablePage)))]
async fn list_tables(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(f): Query<TableFilter>,
) -> Result<Json<TablePage>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let req = PageRequest::new(f.limit, &f.page_token, &f.prefix)?;
    let page = c.list_tables_page(&f.catalog, &f.schema, &req)?;
    Ok(Json(TablePage {
        tables: page.items,
        next_page_token: page.next_page_token,
    }))
}

fn default_catalog() -> String {
    DEFAULT_CATALOG.into()
}
fn default_schema() -> String {
    DEFAULT_SCHEMA.into()
}

/// Body of `POST .../tables`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTableBody {
    #[serde(default = "default_catalog")]
    catalog: String,
    #[serde(default = "default_schema")]
    schema: String,
    name: String,
    #[serde(default)]
    partition: PartitionRule,
    /// Columns, keys and options (see `meridian_model::TableDefinition`).
    #[serde(default)]
    definition: TableDefinition,
    #[serde(default)]
    if_not_exists: bool,
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/tables", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name")), request_body = CreateTableBody,
    responses((status = 201, description = "Created (`created`: true)", body = TableCreated),
        (status = 200, description = "It existed (`if_not_exists`; `created`: false)", body = TableCreated)))]
async fn create_table(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    req: Result<Json<CreateTableBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let run = async {
        let name = TableName::new(&b.catalog, &b.schema, &b.name)?;
        let c = s.meta.cluster(&cluster)?;
        detached(async move {
            c.create_table_with(name, b.partition, b.definition, b.if_not_exists)
                .await
        })
        .await
    };
    let (table, created) = run.await.map_err(IntoResponse::into_response)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(TableCreated { table, created })).into_response())
}

/// The answer of `POST .../tables`.
#[derive(Serialize, ToSchema)]
pub(super) struct TableCreated {
    /// The table as stored (the existing one when it existed).
    table: Table,
    /// Whether this call created it.
    created: bool,
}

/// A table, as `GET .../tables/{catalog}/{schema}/{table}` and `PATCH` answer.
#[derive(Serialize, ToSchema)]
pub(super) struct TableAnswer {
    /// The table as stored.
    table: Table,
}

/// The answer of the drops (tables, schemas, catalogs).
#[derive(Serialize, ToSchema)]
pub(super) struct Dropped {
    /// Whether something was dropped (false: it did not exist, with `if_exists`).
    dropped: bool,
}

/// The answer of `POST .../schemas`.
#[derive(Serialize, ToSchema)]
pub(super) struct SchemaCreated {
    /// Whether this call created it (false: it existed, with `if_not_exists`).
    created: bool,
}

/// A page of `GET .../schemas`.
#[derive(Serialize, ToSchema)]
pub(super) struct SchemaPage {
    /// The schema names of the catalog, in order.
    schemas: Vec<String>,
    /// Pass it as `page_token` for the next page; empty on the last.
    next_page_token: String,
}

/// Body of `POST .../schemas`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSchemaBody {
    #[serde(default = "default_catalog")]
    catalog: String,
    name: String,
    #[serde(default)]
    if_not_exists: bool,
}

/// Query of `GET .../schemas`: a catalog and a page (see `meta::paging`).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SchemaFilter {
    #[serde(default = "default_catalog")]
    catalog: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: u64,
    #[serde(default)]
    page_token: String,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/schemas", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), SchemaFilter),
    responses((status = 200, description = "A page of schema names", body = SchemaPage)))]
async fn list_schemas(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(f): Query<SchemaFilter>,
) -> Result<Json<SchemaPage>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let req = PageRequest::new(f.limit, &f.page_token, &f.prefix)?;
    let page = c.list_schemas_page(&f.catalog, &req)?;
    Ok(Json(SchemaPage {
        schemas: page.items,
        next_page_token: page.next_page_token,
    }))
}

/// Query of `DELETE .../schemas/{catalog}/{schema}` and `DELETE .../catalogs/{catalog}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DropSchemaQuery {
    #[serde(default)]
    cascade: bool,
    #[serde(default)]
    if_exists: bool,
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/schemas/{catalog}/{schema}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), DropSchemaQuery),
    responses((status = 200, description = "Dropped, or not there (`if_exists`)", body = Dropped)))]
async fn drop_schema(
    State(s): State<AppState>,
    Path((cluster, catalog, schema)): Path<(String, String, String)>,
    Query(q): Query<DropSchemaQuery>,
) -> Result<Json<Dropped>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let dropped = detached(async move {
        c.drop_schema(&catalog, &schema, q.cascade, q.if_exists)
            .await
    })
    .await?;
    Ok(Json(Dropped { dropped }))
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/catalogs/{catalog}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), DropSchemaQuery),
    responses((status = 200, description = "Dropped, or not there (`if_exists`)", body = Dropped)))]
async fn drop_catalog(
    State(s): State<AppState>,
    Path((cluster, catalog)): Path<(String, String)>,
    Query(q): Query<DropSchemaQuery>,
) -> Result<Json<Dropped>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let dropped =
        detached(async move { c.drop_catalog(&catalog, q.cascade, q.if_exists).await }).await?;
    Ok(Json(Dropped { dropped }))
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/schemas", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name")), request_body = CreateSchemaBody,
    responses((status = 201, description = "Created, or it existed (`if_not_exists`)", body = SchemaCreated)))]
async fn create_schema(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    req: Result<Json<CreateSchemaBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let run = async {
        let c = s.meta.cluster(&cluster)?;
        detached(async move { c.create_schema(&b.catalog, &b.name, b.if_not_exists).await }).await
    };
    let created = run.await.map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(SchemaCreated { created })).into_response())
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")),
    responses((status = 200, description = "The table", body = TableAnswer)))]
async fn get_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
) -> Result<Json<TableAnswer>, ServerError> {
    let name = TableName::new(&catalog, &schema, &table)?;
    let c = s.meta.cluster(&cluster)?;
    let t = c
        .get_table(&name)
        .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?;
    Ok(Json(TableAnswer { table: t }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DropQuery {
    #[serde(default)]
    if_exists: bool,
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table"), DropQuery),
    responses((status = 200, description = "Dropped, or not there (`if_exists`)", body = Dropped)))]
async fn drop_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
    Query(q): Query<DropQuery>,
) -> Result<Json<Dropped>, ServerError> {
    let name = TableName::new(&catalog, &schema, &table)?;
    let c = s.meta.cluster(&cluster)?;
    let dropped = detached(async move { c.drop_table(&name, q.if_exists).await }).await?;
    Ok(Json(Dropped { dropped }))
}

/// `PATCH .../tables/{catalog}/{schema}/{table}` with one change:
/// `{"add_column": Column}`, `{"drop_column": "name"}` or `{"set_options": {"k": "v" | null}}`.
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")), request_body = DefinitionChange,
    responses((status = 200, description = "The table, with its definition at the next version", body = TableAnswer)))]
async fn alter_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
    req: Result<Json<DefinitionChange>, JsonRejection>,
) -> Result<Response, Response> {
    let change = body(req)?;
    let run = async {
        let name = TableName::new(&catalog, &schema, &table)?;
        let c = s.meta.cluster(&cluster)?;
        detached(async move { c.alter_table(&name, change).await }).await
    };
    let table = run.await.map_err(IntoResponse::into_response)?;
    Ok(Json(TableAnswer { table }).into_response())
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/routes/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")),
    responses((status = 200, description = "Where each partition of the table is served", body = TableRouteAnswer)))]
async fn route_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
) -> Result<Json<TableRouteAnswer>, ServerError> {
    let name = TableName::new(&catalog, &schema, &table)?;
    let c = s.meta.cluster(&cluster)?;
    let resp = c.route_tables(
        &name.catalog,
        &name.schema,
        std::slice::from_ref(&name.table),
    );
    let Some(route) = resp.routes.first() else {
        return Err(ServerError::NotFound(format!("table {name} not found")));
    };
    let partitions = route
        .partitions
        .iter()
        .map(|p| {
            let shard = p.shard.clone().unwrap_or_default();
            PartitionRoute {
                partition: p.index,
                shard: ShardId(shard.shard_id),
                version: shard.version,
                leader: shard.leader.map(ReplicaAddress::from),
                followers: shard
                    .followers
                    .into_iter()
                    .map(ReplicaAddress::from)
                    .collect(),
            }
        })
        .collect();
    Ok(Json(TableRouteAnswer {
        table: name.to_string(),
        table_id: TableId(route.table_id),
        partitions,
    }))
}

/// The answer of `GET .../routes/{catalog}/{schema}/{table}`.
#[derive(Serialize, ToSchema)]
pub(super) struct TableRouteAnswer {
    /// `catalog.schema.table`.
    table: String,
    /// Its id.
    table_id: TableId,
    /// Every partition, by index.
    partitions: Vec<PartitionRoute>,
}

/// Where one partition is served.
#[derive(Serialize, ToSchema)]
pub(super) struct PartitionRoute {
    /// Its index in the table.
    partition: u32,
    /// The shard holding it.
    shard: ShardId,
    /// The shard's version.
    version: u64,
    /// The shard's leader; null while it has none (failover in progress).
    leader: Option<ReplicaAddress>,
    /// Its followers.
    followers: Vec<ReplicaAddress>,
}

/// A replica's node and how to reach it.
#[derive(Serialize, ToSchema)]
pub(super) struct ReplicaAddress {
    /// The node.
    node: NodeId,
    /// Its address (host:port).
    endpoint: String,
    /// Its zone label ("" if none).
    zone: String,
}

impl From<meridian_proto::NodeAddress> for ReplicaAddress {
    fn from(a: meridian_proto::NodeAddress) -> Self {
        Self {
            node: NodeId(a.node_id),
            endpoint: a.endpoint,
            zone: a.zone,
        }
    }
}
