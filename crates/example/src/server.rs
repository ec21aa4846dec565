//! An example node as one running thing: its data plane (HTTP), its agent (heartbeats to
//! Meridian) and its background shipping to followers.

use crate::node::{write, Handler, Replicas};
use crate::replication::Replicator;
use crate::wire::{ErrorCode, NodeError, ReadRequest, ReplicateRequest, WriteBatch};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_client::{NodeAgent, NodeAgentConfig, ShardLeases};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often led shards are shipped to idle followers.
const BACKGROUND_SHIPPING: Duration = Duration::from_millis(200);

/// What the data plane's handlers share.
#[derive(Clone)]
struct Plane {
    replicas: Arc<Replicas>,
    replicator: Arc<Replicator>,
    leases: ShardLeases,
}

/// A running example node.
pub struct ExampleNode {
    /// Its replicas.
    pub replicas: Arc<Replicas>,
    /// Its agent (registration, heartbeats, instructions, leases).
    pub agent: NodeAgent,
    /// The data plane's address.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ExampleNode {
    /// Serves the data plane on `listener` (whose address should be `config.endpoint`) and
    /// joins Meridian as `config` says.
    pub fn start(
        config: NodeAgentConfig,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let replicas = Arc::new(Replicas::new(config.name.clone()));
        let replicator = Arc::new(Replicator::new(
            replicas.clone(),
            config.endpoint.clone(),
            config.meta_addrs.clone(),
            config.cluster.clone(),
            config.token.clone(),
        ));
        let leases = ShardLeases::new(config.name.clone(), None);
        let handler = Arc::new(Handler {
            replicas: replicas.clone(),
            replicator: replicator.clone(),
        });
        let agent = NodeAgent::start_with_leases(config, handler, None, leases.clone());
        let app = router(Plane {
            replicas: replicas.clone(),
            replicator: replicator.clone(),
            leases,
        });
        let serving = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("example node data plane stopped: {e}");
            }
        });
        let shipping = tokio::spawn(replicator.run_background(BACKGROUND_SHIPPING));
        Ok(Self {
            replicas,
            agent,
            addr,
            tasks: vec![serving, shipping],
        })
    }

    /// Stops serving and leaves Meridian.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.agent.stop().await;
    }
}

fn router(plane: Plane) -> Router {
    Router::new()
        .route("/v1/write", post(write_rows))
        .route("/v1/read", post(read_rows))
        .route("/v1/replicate", post(replicate))
        .route("/v1/status", get(status))
        .with_state(plane)
}

/// An error answer with its HTTP status.
fn refuse(e: NodeError) -> Response {
    let status = match e.error {
        ErrorCode::NotLeader
        | ErrorCode::NotHere
        | ErrorCode::StaleDefinition
        | ErrorCode::StaleLeader => StatusCode::CONFLICT,
        ErrorCode::ReplicationUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidRow | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
    };
    (status, Json(e)).into_response()
}

fn bad_body(plane: &Plane, rejection: JsonRejection) -> Response {
    refuse(NodeError::new(
        &plane.replicas.name,
        ErrorCode::BadRequest,
        rejection.body_text(),
    ))
}

async fn write_rows(
    State(plane): State<Plane>,
    body: Result<Json<WriteBatch>, JsonRejection>,
) -> Response {
    let Json(batch) = match body {
        Ok(b) => b,
        Err(e) => return bad_body(&plane, e),
    };
    match write(&plane.replicas, &plane.leases, &plane.replicator, &batch).await {
        Ok(ack) => Json(ack).into_response(),
        Err(e) => refuse(e),
    }
}

async fn read_rows(
    State(plane): State<Plane>,
    body: Result<Json<ReadRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => match plane.replicas.read(&req) {
            Ok(reply) => Json(reply).into_response(),
            Err(e) => refuse(e),
        },
        Err(e) => bad_body(&plane, e),
    }
}

async fn replicate(
    State(plane): State<Plane>,
    body: Result<Json<ReplicateRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => match plane.replicas.receive(req) {
            Ok(reply) => Json(reply).into_response(),
            Err(e) => refuse(e),
        },
        Err(e) => bad_body(&plane, e),
    }
}

async fn status(State(plane): State<Plane>) -> Response {
    Json(plane.replicas.status()).into_response()
}
