//! Clusters, nodes, shards, tables and routes over HTTP.

use super::{body, AppState};
use crate::error::ServerError;
use crate::meta::paging::{page_by_id, PageRequest};
use crate::meta::{detached, DEFAULT_CATALOG, DEFAULT_SCHEMA};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meridian_model::{ClusterConfig, DefinitionChange, PartitionRule, TableDefinition, TableName};
use serde::Deserialize;
use serde_json::json;

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

fn cluster_json(c: &crate::meta::Cluster) -> serde_json::Value {
    let nodes = c.node_infos();
    json!({
        "id": c.id,
        "config": c.config(),
        "nodes": nodes.len(),
        "nodes_online": nodes.iter().filter(|n| n.state == meridian_model::NodeState::Online).count(),
        "shards": c.shard_entries().len(),
        "tables": c.table_count(),
    })
}

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters",
    responses((status = 200, description = "`{\"clusters\": [{\"id\", \"config\", \"nodes\", \"nodes_online\", \"shards\", \"tables\"}]}`", body = Object)))]
async fn list_clusters(State(s): State<AppState>) -> Json<serde_json::Value> {
    let clusters: Vec<_> = s.meta.clusters().iter().map(|c| cluster_json(c)).collect();
    Json(json!({ "clusters": clusters }))
}

#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", request_body = ClusterConfig,
    responses((status = 201, description = "The cluster, as in the list", body = Object)))]
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
    Ok((StatusCode::CREATED, Json(cluster_json(&c))).into_response())
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

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/nodes", tag = "nodes",
    params(("cluster" = String, Path, description = "Cluster name"), IdPageQuery),
    responses((status = 200, description = "`{\"nodes\": [Node], \"next_page_token\"}`", body = Object)))]
async fn list_nodes(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<IdPageQuery>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let nodes = c
        .node_infos()
        .into_iter()
        .filter(|n| n.name.starts_with(&q.prefix))
        .map(|n| (n.id.0, n));
    let page = page_by_id(nodes, &q.page()?)?;
    Ok(Json(
        json!({ "nodes": page.items, "next_page_token": page.next_page_token }),
    ))
}

/// `GET .../health`: the shards with problems, by problem (like `pd-ctl region check`).
#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/health", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, description = "`{\"shards\", \"healthy\", \"unhealthy\", \"problems\": {problem: {\"count\", \"shards\", \"advice\"}}}`", body = Object)))]
async fn cluster_health(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let total = c.shard_entries().len();
    let unhealthy = s.scheduling.unhealthy(&c);
    let mut problems = serde_json::Map::new();
    for p in meridian_scheduler::ShardProblem::ALL {
        let shards: Vec<u32> = unhealthy
            .iter()
            .filter(|(_, ps)| ps.contains(&p))
            .map(|(id, _)| id.0)
            .collect();
        if !shards.is_empty() {
            problems.insert(
                p.name().into(),
                json!({ "count": shards.len(), "shards": shards, "advice": p.advice() }),
            );
        }
    }
    Ok(Json(json!({
        "shards": total,
        "healthy": total - unhealthy.len(),
        "unhealthy": unhealthy.len(),
        "problems": problems,
    })))
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/shards", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), IdPageQuery),
    responses((status = 200, description = "`{\"shards\": [Shard], \"next_page_token\"}`", body = Object)))]
async fn list_shards(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<IdPageQuery>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let waiting = s.scheduling.waiting(c.id);
    let mut unhealthy = s.scheduling.unhealthy(&c);
    let shards = c.shard_infos().into_iter().map(|mut info| {
        info.waiting_for_in_sync_follower = waiting.contains_key(&info.id);
        info.health = unhealthy.remove(&info.id).unwrap_or_default();
        (u64::from(info.id.0), info)
    });
    let page = page_by_id(shards, &q.page()?)?;
    Ok(Json(
        json!({ "shards": page.items, "next_page_token": page.next_page_token }),
    ))
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

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/tables", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), TableFilter),
    responses((status = 200, description = "`{\"tables\": [Table], \"next_page_token\"}`", body = Object)))]
async fn list_tables(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(f): Query<TableFilter>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let req = PageRequest::new(f.limit, &f.page_token, &f.prefix)?;
    let page = c.list_tables_page(&f.catalog, &f.schema, &req)?;
    Ok(Json(
        json!({ "tables": page.items, "next_page_token": page.next_page_token }),
    ))
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
    responses((status = 201, description = "`{\"table\", \"created\": true}`", body = Object),
        (status = 200, description = "It existed (`if_not_exists`): `{\"table\", \"created\": false}`", body = Object)))]
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
    Ok((status, Json(json!({ "table": table, "created": created }))).into_response())
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
    responses((status = 200, description = "`{\"schemas\": [name], \"next_page_token\"}`", body = Object)))]
async fn list_schemas(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(f): Query<SchemaFilter>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let req = PageRequest::new(f.limit, &f.page_token, &f.prefix)?;
    let page = c.list_schemas_page(&f.catalog, &req)?;
    Ok(Json(
        json!({ "schemas": page.items, "next_page_token": page.next_page_token }),
    ))
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
    responses((status = 200, description = "`{\"dropped\": bool}`", body = Object)))]
async fn drop_schema(
    State(s): State<AppState>,
    Path((cluster, catalog, schema)): Path<(String, String, String)>,
    Query(q): Query<DropSchemaQuery>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let dropped = detached(async move {
        c.drop_schema(&catalog, &schema, q.cascade, q.if_exists)
            .await
    })
    .await?;
    Ok(Json(json!({ "dropped": dropped })))
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/catalogs/{catalog}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), DropSchemaQuery),
    responses((status = 200, description = "`{\"dropped\": bool}`", body = Object)))]
async fn drop_catalog(
    State(s): State<AppState>,
    Path((cluster, catalog)): Path<(String, String)>,
    Query(q): Query<DropSchemaQuery>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let dropped =
        detached(async move { c.drop_catalog(&catalog, q.cascade, q.if_exists).await }).await?;
    Ok(Json(json!({ "dropped": dropped })))
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/schemas", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name")), request_body = CreateSchemaBody,
    responses((status = 201, description = "`{\"created\": bool}`", body = Object)))]
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
    Ok((StatusCode::CREATED, Json(json!({ "created": created }))).into_response())
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")),
    responses((status = 200, description = "`{\"table\": Table}`", body = Object)))]
async fn get_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let name = TableName::new(&catalog, &schema, &table)?;
    let c = s.meta.cluster(&cluster)?;
    let t = c
        .get_table(&name)
        .ok_or_else(|| ServerError::NotFound(format!("table {name} not found")))?;
    Ok(Json(json!({ "table": t })))
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
    responses((status = 200, description = "`{\"dropped\": bool}`", body = Object)))]
async fn drop_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
    Query(q): Query<DropQuery>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let name = TableName::new(&catalog, &schema, &table)?;
    let c = s.meta.cluster(&cluster)?;
    let dropped = detached(async move { c.drop_table(&name, q.if_exists).await }).await?;
    Ok(Json(json!({ "dropped": dropped })))
}

/// `PATCH .../tables/{catalog}/{schema}/{table}` with one change:
/// `{"add_column": Column}`, `{"drop_column": "name"}` or `{"set_options": {"k": "v" | null}}`.
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")), request_body = DefinitionChange,
    responses((status = 200, description = "`{\"table\"}` with the definition at the next version", body = Object)))]
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
    Ok(Json(json!({ "table": table })).into_response())
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/routes/{catalog}/{schema}/{table}", tag = "catalog",
    params(("cluster" = String, Path, description = "Cluster name"), ("catalog" = String, Path, description = "Catalog"), ("schema" = String, Path, description = "Schema"), ("table" = String, Path, description = "Table")),
    responses((status = 200, description = "`{\"table\", \"table_id\", \"partitions\": [{\"partition\", \"shard\", \"version\", \"leader\", \"followers\"}]}`", body = Object)))]
async fn route_table(
    State(s): State<AppState>,
    Path((cluster, catalog, schema, table)): Path<(String, String, String, String)>,
) -> Result<Json<serde_json::Value>, ServerError> {
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
    let partitions: Vec<_> = route
        .partitions
        .iter()
        .map(|p| {
            let shard = p.shard.clone().unwrap_or_default();
            json!({
                "partition": p.index,
                "shard": shard.shard_id,
                "version": shard.version,
                "leader": shard.leader.map(|l| json!({"node": l.node_id, "endpoint": l.endpoint, "zone": l.zone})),
                "followers": shard.followers.iter().map(|f| json!({"node": f.node_id, "endpoint": f.endpoint, "zone": f.zone})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(
        json!({ "table": name.to_string(), "table_id": route.table_id, "partitions": partitions }),
    ))
}
