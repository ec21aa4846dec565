//! The HTTP admin API (JSON under `/api/v1`), `/health`, `/metrics`, and a web dashboard
//! at `/` (topology by zone, shards, operators, recent events) that reads that API.
//! Documented in docs/http-api.md.

mod admin;
mod catalog;
mod events;
mod history;
mod openapi;
mod settings;

pub use openapi::{ApiDoc, ErrorBody};

use crate::error::ServerError;
use crate::meta::Meta;
use crate::schedule::Scheduling;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Metadata.
    pub meta: Arc<Meta>,
    /// Scheduling state (operators, schedulers).
    pub scheduling: Arc<Scheduling>,
    /// The leader term served (for `/health`).
    pub term: crate::server::ServingTerm,
    /// The tokens every call is checked against (`None`: open).
    pub tokens: Option<Arc<crate::auth::Tokens>>,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard_by_name))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi::document))
        .merge(catalog::routes())
        .merge(admin::routes())
        .merge(events::routes())
        .merge(settings::routes())
        .merge(history::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(openapi::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.tokens.clone(),
            authorize,
        ))
        // Outside the token check, so refused calls are counted too.
        .layer(axum::middleware::from_fn(
            crate::metrics::requests::http_metrics,
        ))
        .with_state(state)
}

/// The web dashboard: one static page that reads the JSON API.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "The web dashboard (an HTML page that reads this API)", content_type = "text/html", body = String)))]
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// The web dashboard at its other address (one `#[utoipa::path]` names one path).
#[utoipa::path(get, path = "/dashboard", tag = "service",
    responses((status = 200, description = "The web dashboard, as at `/`", content_type = "text/html", body = String)))]
async fn dashboard_by_name() -> axum::response::Html<&'static str> {
    dashboard().await
}

/// The answer of `GET /health`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
    /// Always `leader`: only the leader serves the API.
    #[schema(example = "leader")]
    role: &'static str,
    /// This server's name.
    server: String,
    /// The leader term served.
    term: u64,
    /// Where the leader (this server) is reached.
    leader: LeaderAddress,
    /// Clusters managed.
    clusters: usize,
    /// Milliseconds since this server started serving.
    uptime_ms: u64,
}

/// The leader's name and addresses.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LeaderAddress {
    /// Its name.
    name: String,
    /// Its gRPC address.
    grpc_addr: String,
    /// Its HTTP address.
    http_addr: String,
}

#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "Up, and leading", body = Health)))]
async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        role: "leader",
        server: s.term.server_name.clone(),
        term: s.term.term,
        leader: LeaderAddress {
            name: s.term.server_name.clone(),
            grpc_addr: s.term.grpc_addr.clone(),
            http_addr: s.term.http_addr.clone(),
        },
        clusters: s.meta.clusters().len(),
        uptime_ms: s.meta.now_ms(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&s.meta, &s.scheduling),
    )
}

/// Checks the caller's token against what the endpoint needs (see `crate::auth`): 401 or
/// 403 with a JSON error, before the handler runs.
async fn authorize(
    State(tokens): State<Option<Arc<crate::auth::Tokens>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut caller = None;
    if let Some(tokens) = tokens {
        if let Some(allowed) = crate::auth::http_allowed(req.method(), req.uri().path()) {
            let header = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match tokens.check(header, allowed) {
                Ok(c) => caller = Some(c),
                Err(denied) => {
                    let (status, code, message) = match denied {
                        crate::auth::Denied::Unauthenticated(m) => {
                            (StatusCode::UNAUTHORIZED, "unauthenticated", m)
                        }
                        crate::auth::Denied::PermissionDenied(m) => {
                            (StatusCode::FORBIDDEN, "permission_denied", m)
                        }
                    };
                    return ErrorBody::response(status, code, message);
                }
            }
        }
    }
    // Events recorded while the handler runs name who asked (see `crate::events`).
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let who = crate::auth::requester(caller.as_ref(), peer);
    crate::events::REQUESTER.scope(who, next.run(req)).await
}

/// A known path asked with a method it does not take: a JSON error like every other.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ErrorBody::response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ServerError::NotFound(format!("no such endpoint: {}", uri.path())).into_response()
}

/// Turns a JSON body rejection into our JSON error, keeping its 4xx status.
// The error is axum's `Response`, which handlers return as is: boxing it would only add a hop.
#[allow(clippy::result_large_err)]
pub(crate) fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, Response> {
    r.map(|Json(v)| v).map_err(|e| {
        let status = e.status();
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ErrorBody::response(status, "invalid_argument", e.body_text())
    })
}
