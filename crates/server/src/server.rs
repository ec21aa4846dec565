//! Starting and stopping a server: store, metadata, gRPC, HTTP and the scheduling loop.

use crate::config::{ServerConfig, StoreKind};
use crate::error::{Result, ServerError};
use crate::grpc::{catalog::CatalogSvc, node::NodeSvc, route::RouteSvc};
use crate::meta::Meta;
use crate::schedule::Scheduling;
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

impl Server {
    /// Opens the store, loads metadata, binds both ports and starts serving.
    pub async fn start(config: ServerConfig) -> Result<RunningServer> {
        crate::metrics::install();
        let store: Arc<dyn KvBackend> = match config.store {
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
                    .map_err(|e| {
                        ServerError::FailedPrecondition(format!("opening store: {e}"))
                    })??;
                Arc::new(store)
            }
        };
        let timeout = Duration::from_millis(config.instruction_timeout_ms);
        config
            .liveness
            .validate()
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
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
        );

        let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|e| {
                ServerError::FailedPrecondition(format!(
                    "cannot bind gRPC {}: {e}",
                    config.grpc_addr
                ))
            })?;
        let http_listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| {
                ServerError::FailedPrecondition(format!(
                    "cannot bind HTTP {}: {e}",
                    config.http_addr
                ))
            })?;
        let grpc_addr = grpc_listener
            .local_addr()
            .map_err(|e| ServerError::FailedPrecondition(e.to_string()))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| ServerError::FailedPrecondition(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let max = config.max_message_bytes;
        let lease_ms = config.liveness.leader_lease_ms();
        let node_svc = pb::node_service_server::NodeServiceServer::new(NodeSvc::new(
            meta.clone(),
            config.liveness.heartbeat_interval_ms,
            lease_ms,
            config.liveness.lease_drift_margin_ms,
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
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .add_service(node_svc)
                .add_service(catalog_svc)
                .add_service(route_svc)
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
        });
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            // The peer address reaches handlers that log who asked (force-promote).
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let result = axum::serve(http_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("HTTP server stopped: {e}");
            }
        }));

        tasks.push(scheduling.clone().spawn_loop(
            Duration::from_millis(config.schedule_interval_ms.max(10)),
            stop_rx.clone(),
        ));
        // Clusters that already have enough nodes registered create their shards when those
        // nodes reconnect; nothing else to resume at start.
        tracing::info!(%grpc_addr, %http_addr, "meridian serving");
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
