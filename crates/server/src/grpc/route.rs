//! Routing over gRPC: batch lookups from memory and a push stream of changes.

use crate::meta::Meta;
use meridian_proto as pb;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

/// The route service.
pub struct RouteSvc {
    meta: Arc<Meta>,
    max_batch: usize,
    /// Turns true when the server stops: watch streams end.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl RouteSvc {
    /// A service over `meta` accepting at most `max_batch` tables per request.
    pub fn new(
        meta: Arc<Meta>,
        max_batch: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            meta,
            max_batch,
            stop,
        }
    }
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<pb::RouteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::route_service_server::RouteService for RouteSvc {
    async fn route_tables(
        &self,
        request: Request<pb::RouteTablesRequest>,
    ) -> Result<Response<pb::RouteTablesResponse>, Status> {
        let r = request.into_inner();
        if r.tables.len() > self.max_batch {
            return Err(Status::invalid_argument(format!(
                "{} tables in one request; at most {} allowed",
                r.tables.len(),
                self.max_batch
            )));
        }
        let cluster = self.meta.cluster(&r.cluster)?;
        Ok(Response::new(
            cluster.route_tables(&r.catalog, &r.schema, &r.tables),
        ))
    }

    type WatchRoutesStream = EventStream;

    async fn watch_routes(
        &self,
        request: Request<pb::WatchRoutesRequest>,
    ) -> Result<Response<Self::WatchRoutesStream>, Status> {
        let cluster = self.meta.cluster(&request.into_inner().cluster)?;
        let rx = cluster.subscribe_routes();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            let event = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => pb::RouteEvent {
                    event: Some(pb::route_event::Event::Resync(true)),
                },
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), rx))
        });
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Ok(Response::new(Box::pin(futures::StreamExt::take_until(
            stream, stopped,
        ))))
    }
}
