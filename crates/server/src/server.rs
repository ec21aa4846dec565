//! Starting and stopping a server: store, metadata, gRPC, HTTP and the scheduling loop.

use crate::config::{ServerConfig, StoreKind};
use crate::error::{Result, ServerError};
use crate::grpc::{
    catalog::CatalogSvc, election::ElectionSvc, kv::KvSvc, node::NodeSvc, route::RouteSvc,
};
use crate::meta::Meta;
use crate::schedule::Scheduling;
use crate::tls::ServerTls;
use meridian_proto as pb;
use meridian_store::{KvBackend, MemoryBackend, RedbBackend};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Builder entry point.
pub struct Server;

/// A running server; dropping it does not stop it, call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// Bound gRPC address (useful when the config asked for port 0).
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// The metadata, for in-process inspection (tests, demo).
    pub meta: Arc<Meta>,
    /// Scheduling state.
    pub scheduling: Arc<Scheduling>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The leader term a set of services runs under, and whether its leadership is still
/// surely held. A single server (redb, memory) has term 0 and always leads.
#[derive(Clone)]
pub struct ServingTerm {
    /// The term (the election key's create revision on etcd; 0 for a single server).
    pub term: u64,
    /// This server's name.
    pub server_name: String,
    /// The gRPC address this server advertises.
    pub grpc_addr: String,
    /// The HTTP address this server advertises.
    pub http_addr: String,
    validity: Option<meridian_store::etcd::LeaseValidity>,
}

impl ServingTerm {
    /// The term of a single server: 0, always valid.
    pub fn single(server_name: String, grpc_addr: String, http_addr: String) -> Self {
        Self {
            term: 0,
            server_name,
            grpc_addr,
            http_addr,
            validity: None,
        }
    }

    /// The term of an elected leader, valid while its etcd lease surely is.
    pub fn elected(
        term: u64,
        validity: meridian_store::etcd::LeaseValidity,
        server_name: String,
        grpc_addr: String,
        http_addr: String,
    ) -> Self {
        Self {
            term,
            server_name,
            grpc_addr,
            http_addr,
            validity: Some(validity),
        }
    }

    /// Whether this server surely still leads: node leases are granted only then.
    pub fn is_valid(&self) -> bool {
        self.validity.as_ref().is_none_or(|v| v.is_valid())
    }
}

/// The two listening sockets, bound once for the life of the process: a highly available
/// server serves them as a follower, then as leader, then as follower again, and a client
/// connecting between two roles waits in the backlog rather than being refused.
pub(crate) struct Listeners {
    grpc: std::net::TcpListener,
    http: std::net::TcpListener,
    /// TLS on both ports, when configured.
    pub(crate) tls: Option<ServerTls>,
}

impl Listeners {
    /// Binds both configured addresses.
    pub(crate) fn bind(config: &ServerConfig) -> Result<Self> {
        // Bad TLS files are reported before anything is bound.
        let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
        let bind = |what: &str, addr: SocketAddr| {
            let l = std::net::TcpListener::bind(addr).map_err(|e| {
                ServerError::FailedPrecondition(format!("cannot bind {what} {addr}: {e}"))
            })?;
            l.set_nonblocking(true)
                .map_err(|e| ServerError::FailedPrecondition(e.to_string()))?;
            Ok::<_, ServerError>(l)
        };
        Ok(Self {
            grpc: bind("gRPC", config.grpc_addr)?,
            http: bind("HTTP", config.http_addr)?,
            tls,
        })
    }

    /// A gRPC server builder with this port pair's TLS.
    pub(crate) fn grpc_builder(&self) -> Result<tonic::transport::Server> {
        let builder = tonic::transport::Server::builder();
        match &self.tls {
            Some(tls) => builder
                .tls_config(tls.grpc_config())
                .map_err(|e| ServerError::InvalidArgument(format!("TLS on gRPC: {e}"))),
            None => Ok(builder),
        }
    }

    /// The bound gRPC address.
    pub(crate) fn grpc_addr(&self) -> Result<SocketAddr> {
        self.grpc
            .local_addr()
            .map_err(|e| ServerError::FailedPrecondition(e.to_string()))
    }

    /// The bound HTTP address.
    pub(crate) fn http_addr(&self) -> Result<SocketAddr> {
        self.http
            .local_addr()
            .map_err(|e| ServerError::FailedPrecondition(e.to_string()))
    }

    /// Tokio handles on both sockets, for one role's servers.
    pub(crate) fn handles(&self) -> Result<(tokio::net::TcpListener, tokio::net::TcpListener)> {
        let handle = |l: &std::net::TcpListener| {
            l.try_clone()
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| ServerError::FailedPrecondition(format!("listener: {e}")))
        };
        Ok((handle(&self.grpc)?, handle(&self.http)?))
    }
}

/// Serves `app` on `listener` (over TLS when given) until `stopped`; handlers see the
/// peer's address (force-promote logs who asked).
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    tls: Option<&ServerTls>,
    app: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(tls) => {
            // `tap_io` lends the TLS listener axum's connect-info for its address type.
            axum::serve(tls.listener(listener).tap_io(|_| {}), app)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}

/// Opens the embedded store the config names (redb or memory).
async fn open_local_store(config: &ServerConfig) -> Result<Arc<dyn KvBackend>> {
    Ok(match config.store {
        StoreKind::Memory => Arc::new(MemoryBackend::new()),
        StoreKind::Redb => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                ServerError::FailedPrecondition(format!(
                    "cannot create data dir {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            let path = config.data_dir.join("meridian.redb");
            let store = tokio::task::spawn_blocking(move || RedbBackend::open(path))
                .await
                .map_err(|e| ServerError::FailedPrecondition(format!("opening store: {e}")))??;
            Arc::new(store)
        }
        StoreKind::Etcd => {
            return Err(ServerError::InvalidArgument(
                "store etcd runs as a highly available server (HaServer), not a single one".into(),
            ))
        }
    })
}

impl Server {
    /// Opens the embedded store, loads metadata, binds both ports and starts serving.
    pub async fn start(config: ServerConfig) -> Result<RunningServer> {
        let store = open_local_store(&config).await?;
        let listeners = Listeners::bind(&config)?;
        let term = ServingTerm::single(
            config.server_name(),
            config.advertised_grpc(listeners.grpc_addr()?),
            config.advertised_http(listeners.http_addr()?),
        );
        Self::serve(config, store, &listeners, term).await
    }

    /// Loads metadata from `store` and serves it on `listeners` as the leader of `term`.
    pub(crate) async fn serve(
        config: ServerConfig,
        store: Arc<dyn KvBackend>,
        listeners: &Listeners,
        term: ServingTerm,
    ) -> Result<RunningServer> {
        crate::metrics::install();
        let store = crate::metrics::store::MeteredBackend::wrap(store);
        let timeout = Duration::from_millis(config.instruction_timeout_ms);
        config
            .liveness
            .validate()
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
        config
            .node_services
            .validate()
            .map_err(ServerError::InvalidArgument)?;
        let meta = Meta::load(store, timeout, config.liveness.lease_hold_ms()).await?;
        config
            .scheduler
            .validate()
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
        let scheduling = Scheduling::new(
            meta.clone(),
            config.liveness,
            config.scheduler,
            config.operators,
            config.full_schedule_interval_ms,
            config.history_step_ms,
        );
        // Maintenance mode and paused schedulers survive restarts and takeovers.
        scheduling.restore_switches().await?;
        // So do runtime settings (`ctl config set`).
        scheduling.restore_settings().await?;
        // Operators that a crash or a change of leader left between two steps go on.
        scheduling.resume_moves().await?;

        let tokens = match &config.tokens_file {
            Some(path) => Some(Arc::new(crate::auth::Tokens::load(path)?)),
            None => None,
        };
        let (grpc_listener, http_listener) = listeners.handles()?;
        let grpc_addr = listeners.grpc_addr()?;
        let http_addr = listeners.http_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let max = config.max_message_bytes;
        let lease_ms = config.liveness.leader_lease_ms();
        let node_svc = pb::node_service_server::NodeServiceServer::new(NodeSvc::new(
            meta.clone(),
            config.liveness.heartbeat_interval_ms,
            lease_ms,
            config.liveness.lease_drift_margin_ms,
            term.clone(),
            stop_rx.clone(),
        ))
        .max_decoding_message_size(max);
        let catalog_svc =
            pb::catalog_service_server::CatalogServiceServer::new(CatalogSvc::new(meta.clone()))
                .max_decoding_message_size(max);
        let route_svc = pb::route_service_server::RouteServiceServer::new(RouteSvc::new(
            meta.clone(),
            config.max_route_batch,
            stop_rx.clone(),
        ))
        .max_decoding_message_size(max);
        let election_svc =
            pb::election_service_server::ElectionServiceServer::new(ElectionSvc::new(
                meta.clone(),
                Arc::new(crate::meta::election::Elections::new(
                    meta.clone(),
                    term.clone(),
                    config.node_services.clone(),
                )),
                stop_rx.clone(),
            ))
            .max_decoding_message_size(max);
        let kv_svc = pb::kv_service_server::KvServiceServer::new(KvSvc::new(
            meta.clone(),
            Arc::new(crate::meta::node_kv::NodeKv::new(
                meta.clone(),
                config.node_services.clone(),
            )),
        ))
        .max_decoding_message_size(max);
        let membership_svc = pb::membership_service_server::MembershipServiceServer::new(
            crate::grpc::membership::LeaderMembership::new(term.clone()),
        );
        // Server reflection: `grpcurl -plaintext HOST:PORT list` shows the API (v1, and
        // v1alpha for older tools).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        };
        let bad_descriptors = |e: tonic_reflection::server::Error| {
            ServerError::Corrupt(format!("gRPC reflection descriptors: {e}"))
        };
        let reflection_v1 = reflection().build_v1().map_err(bad_descriptors)?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(bad_descriptors)?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        let grpc_builder = listeners.grpc_builder()?;
        let grpc_tokens = tokens.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = grpc_builder
                // Outermost: refused calls are counted too.
                .layer(crate::metrics::requests::GrpcMetricsLayer)
                .layer(crate::auth::GrpcAuthLayer {
                    tokens: grpc_tokens,
                })
                .tcp_nodelay(true)
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .add_service(node_svc)
                .add_service(catalog_svc)
                .add_service(route_svc)
                .add_service(membership_svc)
                .add_service(election_svc)
                .add_service(kv_svc)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("gRPC server stopped: {e}");
            }
        }));

        let app = crate::http::router(crate::http::AppState {
            meta: meta.clone(),
            scheduling: scheduling.clone(),
            term: term.clone(),
            tokens: tokens.clone(),
        });
        let mut rx = stop_rx.clone();
        let http_tls = listeners.tls.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let result = serve_http(http_listener, http_tls.as_ref(), app, stopped).await;
            if let Err(e) = result {
                tracing::error!("HTTP server stopped: {e}");
            }
        }));

        tasks.push(scheduling.clone().spawn_loop(
            Duration::from_millis(config.schedule_interval_ms.max(10)),
            term.clone(),
            stop_rx.clone(),
        ));
        // Clusters that already have enough nodes registered create their shards when those
        // nodes reconnect; nothing else to resume at start.
        if tokens.is_none() && !(grpc_addr.ip().is_loopback() && http_addr.ip().is_loopback()) {
            tracing::warn!(%grpc_addr, %http_addr, "listening beyond loopback without --tokens: anyone who reaches these ports can change the metadata (see docs/configuration.md, tokens_file)");
        }
        tracing::info!(%grpc_addr, %http_addr, term = term.term, auth = tokens.is_some(), tls = listeners.tls.is_some(), client_certificates = listeners.tls.as_ref().is_some_and(ServerTls::requires_client_certificates), "meridian serving");
        Ok(RunningServer {
            grpc_addr,
            http_addr,
            meta,
            scheduling,
            stop,
            tasks,
        })
    }
}

impl RunningServer {
    /// Stops serving: graceful for a moment (in-flight requests finish), then streams that
    /// stay open (nodes' heartbeats) are cut.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        // Commit what is queued and release the store's file, even while tasks that still
        // hold the cluster (a node stream being torn down) have not dropped it yet.
        if let Err(e) = self.meta.store().close().await {
            tracing::warn!("closing the store: {e}");
        }
    }

    /// Waits until the server stops (it stops only on shutdown).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
