//! Leader elections for database nodes over gRPC (`ElectionService`); the logic is in
//! `meta::election` (state and storage) and `meridian_scheduler::election` (decisions).

use crate::meta::election::{ElectionView, Elections, LeaderView};
use crate::meta::{detached, Meta};
use meridian_model::ClusterId;
use meridian_proto as pb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

/// The election service.
pub struct ElectionSvc {
    meta: Arc<Meta>,
    elections: Arc<Elections>,
    /// Turns true when the server stops serving: Observe streams end.
    stop: watch::Receiver<bool>,
}

impl ElectionSvc {
    /// A service over `elections`, resolving cluster names in `meta`.
    pub fn new(meta: Arc<Meta>, elections: Arc<Elections>, stop: watch::Receiver<bool>) -> Self {
        Self {
            meta,
            elections,
            stop,
        }
    }
}

fn leader_to_wire(l: LeaderView) -> pb::ElectionLeader {
    pb::ElectionLeader {
        candidate: l.candidate,
        value: l.value,
        term: l.term,
        ttl_ms: l.ttl_ms,
        remaining_ms: l.remaining_ms,
    }
}

fn view_to_wire(v: ElectionView) -> pb::ElectionLeaderResponse {
    pb::ElectionLeaderResponse {
        leader: v.leader.map(leader_to_wire),
        term: v.term,
    }
}

/// What an observer has been told: the term and the leader's candidate and value (not the
/// remaining lease, which changes all the time).
type Told = (u64, Option<(String, Vec<u8>)>);

type ObserveStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::ElectionLeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::election_service_server::ElectionService for ElectionSvc {
    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let elections = self.elections.clone();
        let outcome = detached(async move {
            elections
                .campaign(cluster, &r.election, &r.candidate, &r.value, r.ttl_ms)
                .await
        })
        .await?;
        Ok(Response::new(pb::CampaignResponse {
            elected: outcome.elected,
            renewed: outcome.renewed,
            leader: Some(leader_to_wire(outcome.leader)),
        }))
    }

    async fn leader(
        &self,
        request: Request<pb::ElectionLeaderRequest>,
    ) -> Result<Response<pb::ElectionLeaderResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let view = self.elections.leader(cluster, &r.election).await?;
        Ok(Response::new(view_to_wire(view)))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<pb::ElectionLeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        // Subscribed before the first read: no change falls between the two.
        let changes = self.elections.subscribe(cluster, &r.election)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(observe(
            self.elections.clone(),
            cluster,
            r.election,
            changes,
            self.stop.clone(),
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let elections = self.elections.clone();
        detached(async move {
            elections
                .resign(cluster, &r.election, &r.candidate, r.term)
                .await
        })
        .await?;
        Ok(Response::new(pb::ResignResponse {}))
    }
}

/// Sends the election's state, then every change: a new leader, term or value, a
/// resignation, and a lease running out (timed here, on the server's clock). Ends when the
/// client goes away or the server stops serving.
async fn observe(
    elections: Arc<Elections>,
    cluster: ClusterId,
    name: String,
    mut changes: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<pb::ElectionLeaderResponse, Status>>,
) {
    let mut last: Option<Told> = None;
    loop {
        changes.mark_unchanged();
        let view = match elections.view(cluster, &name).await {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let seen: Told = (
            view.term,
            view.leader
                .as_ref()
                .map(|l| (l.candidate.clone(), l.value.clone())),
        );
        // A lease about to run out is looked at again just after its deadline.
        let expiry = view
            .leader
            .as_ref()
            .map(|l| Duration::from_millis(l.remaining_ms + 1));
        if last.as_ref() != Some(&seen) {
            if tx.send(Ok(view_to_wire(view))).await.is_err() {
                return;
            }
            last = Some(seen);
        }
        let expired = async {
            match expiry {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = expired => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = tx.closed() => return,
        }
    }
}
