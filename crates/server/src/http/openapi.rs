//! The HTTP API's OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /api/v1/openapi.json`, and the one error body every
//! error answer carries (`{"error": {"code", "message"}}`), axum's own rejections included.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer's body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`not_found`, `invalid_argument`...: docs/http-api.md).
    pub code: String,
    /// For people.
    pub message: String,
}

impl ErrorBody {
    /// The answer with `status`, `code` and `message`.
    pub fn response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// The document: every route the router serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meridian HTTP API",
        description = "Admin API of Meridian, the metadata and scheduling service (docs/http-api.md). Every error answer is `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        super::dashboard,
        super::dashboard_by_name,
        super::health,
        super::metrics_text,
        document,
        super::catalog::list_clusters,
        super::catalog::create_cluster,
        super::catalog::cluster_health,
        super::catalog::list_nodes,
        super::catalog::list_shards,
        super::catalog::list_tables,
        super::catalog::create_table,
        super::catalog::get_table,
        super::catalog::alter_table,
        super::catalog::drop_table,
        super::catalog::route_table,
        super::catalog::list_schemas,
        super::catalog::create_schema,
        super::catalog::drop_schema,
        super::catalog::drop_catalog,
        super::admin::node_action,
        super::admin::list_operators,
        super::admin::cancel_operator,
        super::admin::list_schedulers,
        super::admin::switch_scheduler,
        super::admin::maintenance,
        super::admin::set_fingerprint,
        super::admin::transfer_leader,
        super::admin::move_shard,
        super::admin::force_promote,
        super::admin::split_shard,
        super::admin::merge_shard,
        super::settings::show,
        super::settings::set,
        super::settings::reset,
        super::history::history,
        super::events::list_events,
        super::events::stream_events,
        super::events::backup,
    ),
    components(schemas(ErrorBody, ErrorDetail, super::admin::NodeAction, super::admin::SchedulerAction)),
    modifiers(&ErrorResponses)
)]
pub struct ApiDoc;

/// The error answers any operation may give, each with [`ErrorBody`]; `default` covers
/// the rarer ones (405, 413, 415, 422, 429).
const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "`invalid_argument`: malformed request, bad name, value out of range",
    ),
    (
        "401",
        "`unauthenticated`: no or an unknown token (with `--tokens`)",
    ),
    ("403", "`permission_denied`: a token of too weak a role"),
    (
        "404",
        "`not_found`: unknown cluster, schema, table, node, shard, operator",
    ),
    (
        "409",
        "`already_exists` / `aborted`: the object exists / a concurrent change won",
    ),
    ("412", "`failed_precondition`: not possible in this state"),
    ("500", "`internal`: store failure or corrupt metadata"),
    (
        "503",
        "`unavailable`: a node did not answer in time, or no leader is elected",
    ),
    (
        "default",
        "another error (`method_not_allowed`, a body too large...)",
    ),
];

/// Adds [`ERRORS`] to every operation.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                for (status, about) in ERRORS {
                    let response = ResponseBuilder::new()
                        .description(*about)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert(response.into());
                }
            }
        }
    }
}

/// The outline of an OpenAPI document, for this document's own entry: what a client reads
/// to find the operations. The full schema is the OpenAPI specification's
/// (<https://spec.openapis.org/oas/3.1/schema/2022-10-07>), not restated here; the handler
/// sends utoipa's `OpenApi`, which these types only describe.
#[derive(ToSchema)]
#[allow(dead_code)] // never built: they only describe the answer
struct OpenApiDocument {
    /// The OpenAPI version (`3.1.0`).
    openapi: String,
    /// Title, description and version of the API.
    info: OpenApiInfo,
    /// The operations, by path.
    paths: BTreeMap<String, OpenApiPathItem>,
}

/// The `info` of [`OpenApiDocument`].
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiInfo {
    /// The API's name.
    title: String,
    /// Its version.
    version: String,
}

/// The operations of one path, by method.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiPathItem {
    #[schema(nullable = false)]
    get: Option<OpenApiOperation>,
    #[schema(nullable = false)]
    put: Option<OpenApiOperation>,
    #[schema(nullable = false)]
    post: Option<OpenApiOperation>,
    #[schema(nullable = false)]
    delete: Option<OpenApiOperation>,
    #[schema(nullable = false)]
    patch: Option<OpenApiOperation>,
}

/// One operation.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
struct OpenApiOperation {
    /// Its name (the handler's).
    operation_id: String,
    /// Its answers, by status (`200`, `404`, `default`...).
    responses: BTreeMap<String, OpenApiResponse>,
}

/// One answer of an operation.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiResponse {
    /// What it means.
    description: String,
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = OpenApiDocument)))]
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Error answers that are not JSON yet (axum's rejections of a path or query that does not
/// parse, say) become [`ErrorBody`] with the same status, so every error is JSON.
pub(super) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // Rejection texts are short; a larger body is cut rather than buffered whole.
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ErrorBody::response(status, status_code(status), message)
}

/// The error code of a status that no handler chose a code for.
fn status_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "aborted",
        StatusCode::PRECONDITION_FAILED => "failed_precondition",
        StatusCode::TOO_MANY_REQUESTS => "resource_exhausted",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "invalid_argument",
    }
}
