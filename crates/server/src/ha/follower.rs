//! A follower's services: it holds no metadata, so it answers who leads, turns nodes'
//! heartbeat streams away with the leader's address, forwards every other gRPC request to
//! the leader unchanged (or, when the request asks with `meridian-redirect` metadata,
//! answers with the leader's address instead), and redirects HTTP requests there.

use super::Advertised;
use crate::server::Listeners;
use crate::Result;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use meridian_proto as pb;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};
use tower::ServiceExt;

/// The gRPC metadata key carrying the leader's gRPC address on a refused node stream or a
/// redirected request.
pub const LEADER_METADATA: &str = "meridian-leader";
/// A request carrying this gRPC metadata key (any value) is answered with the leader's
/// address (UNAVAILABLE + [`LEADER_METADATA`]) instead of being forwarded.
pub const REDIRECT_METADATA: &str = "meridian-redirect";

/// What a follower knows: its own name and the leader it last saw.
#[derive(Clone)]
pub(crate) struct FollowerView {
    pub name: String,
    pub leader: watch::Receiver<Option<Advertised>>,
}

impl FollowerView {
    fn leader(&self) -> Option<Advertised> {
        self.leader.borrow().clone()
    }

    fn no_leader(&self) -> Status {
        Status::unavailable(format!(
            "{} is a follower and no Meridian leader is elected yet; retry",
            self.name
        ))
    }

    /// "Not me: the leader is there", with its address in [`LEADER_METADATA`].
    fn not_leader(&self) -> Status {
        let Some(leader) = self.leader() else {
            return self.no_leader();
        };
        let mut status = Status::unavailable(format!(
            "{} is not the Meridian leader; the leader is {} at {}",
            self.name, leader.name, leader.grpc_addr
        ));
        if let Ok(value) = leader.grpc_addr.parse() {
            status.metadata_mut().insert(LEADER_METADATA, value);
        }
        status
    }
}

/// A follower's running servers.
pub(crate) struct Follower {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Follower {
    /// Stops serving (in-flight forwards get a moment to finish).
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_millis(500), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

/// Serves the follower's gRPC and HTTP on `listeners` until [`Follower::shutdown`].
pub(crate) fn serve(listeners: &Listeners, view: FollowerView) -> Result<Follower> {
    let (grpc_listener, http_listener) = listeners.handles()?;
    let (stop, stop_rx) = watch::channel(false);
    let forward = Arc::new(Forwarder {
        view: view.clone(),
        tls: listeners.tls.as_ref().map(|t| t.forward_config()),
        channel: Mutex::new(None),
    });
    let grpc_builder = listeners.grpc_builder()?;
    let router =
        tonic::service::Routes::new(pb::membership_service_server::MembershipServiceServer::new(
            FollowerMembership { view: view.clone() },
        ))
        .add_service(pb::node_service_server::NodeServiceServer::new(
            FollowerNodes { view: view.clone() },
        ))
        .into_axum_router()
        .fallback(move |request: Request| {
            let forward = forward.clone();
            async move { forward.forward(request).await }
        });
    let mut rx = stop_rx.clone();
    let grpc = tokio::spawn(async move {
        let result = grpc_builder
            .tcp_nodelay(true)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("follower gRPC server stopped: {e}");
        }
    });
    let http_view = view.clone();
    let scheme = if listeners.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(move || {
                let view = http_view.clone();
                async move { axum::Json(health(&view)) }
            }),
        )
        .fallback(move |request: Request| {
            let view = view.clone();
            async move { redirect(&view, scheme, &request) }
        });
    let mut rx = stop_rx;
    let http_tls = listeners.tls.clone();
    let http = tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let result =
            crate::server::serve_http(http_listener, http_tls.as_ref(), app, stopped).await;
        if let Err(e) = result {
            tracing::error!("follower HTTP server stopped: {e}");
        }
    });
    Ok(Follower {
        stop,
        tasks: vec![grpc, http],
    })
}

/// `/health` on a follower.
fn health(view: &FollowerView) -> serde_json::Value {
    let leader = view.leader().map(|l| {
        serde_json::json!({
            "name": l.name,
            "grpc_addr": l.grpc_addr,
            "http_addr": l.http_addr,
        })
    });
    serde_json::json!({
        "status": "ok",
        "role": "follower",
        "server": view.name,
        "term": view.leader().map_or(0, |l| l.term),
        "leader": leader,
    })
}

/// Every other HTTP request goes to the leader (307 keeps the method and body).
fn redirect(view: &FollowerView, scheme: &str, request: &Request) -> Response {
    let Some(leader) = view.leader() else {
        let body = serde_json::json!({
            "error": {
                "code": "unavailable",
                "message": format!("{} is a follower and no leader is elected yet; retry", view.name),
            }
        });
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(body),
        )
            .into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{scheme}://{}{path}", leader.http_addr);
    (
        axum::http::StatusCode::TEMPORARY_REDIRECT,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response()
}

/// `GetLeader` on a follower: "not me; this one".
struct FollowerMembership {
    view: FollowerView,
}

#[tonic::async_trait]
impl pb::membership_service_server::MembershipService for FollowerMembership {
    async fn get_leader(
        &self,
        _: GrpcRequest<pb::GetLeaderRequest>,
    ) -> std::result::Result<GrpcResponse<pb::GetLeaderResponse>, Status> {
        let leader = self.view.leader();
        Ok(GrpcResponse::new(pb::GetLeaderResponse {
            is_leader: false,
            term: leader.as_ref().map_or(0, |l| l.term),
            leader_grpc_addr: leader
                .as_ref()
                .map(|l| l.grpc_addr.clone())
                .unwrap_or_default(),
            leader_http_addr: leader.map(|l| l.http_addr).unwrap_or_default(),
            server_name: self.view.name.clone(),
        }))
    }
}

/// Heartbeat streams on a follower: refused with the leader's address, so that the node
/// connects there (a stream is not forwarded: the leader must see the node's own
/// connection end when the node dies).
struct FollowerNodes {
    view: FollowerView,
}

#[tonic::async_trait]
impl pb::node_service_server::NodeService for FollowerNodes {
    type HeartbeatStream = ReceiverStream<std::result::Result<pb::MetaMessage, Status>>;

    async fn heartbeat(
        &self,
        _: GrpcRequest<Streaming<pb::NodeHeartbeat>>,
    ) -> std::result::Result<GrpcResponse<Self::HeartbeatStream>, Status> {
        Err(self.view.not_leader())
    }
}

/// Forwards gRPC requests to the leader over one channel per leader address.
struct Forwarder {
    view: FollowerView,
    /// How to reach the leader when the servers speak TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
    channel: Mutex<Option<(String, Channel)>>,
}

impl Forwarder {
    fn channel(&self) -> std::result::Result<Channel, Status> {
        let Some(leader) = self.view.leader() else {
            return Err(self.view.no_leader());
        };
        let mut cached = self.channel.lock();
        if let Some((addr, channel)) = cached.as_ref() {
            if *addr == leader.grpc_addr {
                return Ok(channel.clone());
            }
        }
        let bad_address =
            |e| Status::internal(format!("bad leader address {}: {e}", leader.grpc_addr));
        let endpoint = match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{}", leader.grpc_addr))
                .map_err(bad_address)?
                .tls_config(tls.clone())
                .map_err(bad_address)?,
            None => Endpoint::from_shared(format!("http://{}", leader.grpc_addr))
                .map_err(bad_address)?,
        };
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        *cached = Some((leader.grpc_addr.clone(), channel.clone()));
        Ok(channel)
    }

    async fn forward(&self, request: Request) -> Response {
        if request.headers().contains_key(REDIRECT_METADATA) {
            return self.view.not_leader().into_http();
        }
        let channel = match self.channel() {
            Ok(c) => c,
            Err(status) => return status.into_http(),
        };
        let request = request.map(tonic::body::Body::new);
        match channel.oneshot(request).await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(e) => {
                Status::unavailable(format!("forwarding to the Meridian leader: {e}")).into_http()
            }
        }
    }
}
