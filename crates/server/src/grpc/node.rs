//! The `Heartbeat` stream: where a database node enters.
//!
//! The first message registers the node; later ones carry load and shard reports (answered
//! with an ack that grants write leases per shard, see `meta::lease`) and answers to
//! instructions. Liveness is kept in memory only: nothing is written to the store per
//! heartbeat. The protocol a node follows is in docs/node-protocol.md.

use crate::meta::{detached, Cluster, Meta};
use crate::server::ServingTerm;
use meridian_model::{NodeId, ShardReport};
use meridian_proto as pb;
use meridian_proto::convert::shard_report_from_wire;
use pb::node_heartbeat::Body;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How long a new stream may take to send its `register` message.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The node-facing service.
pub struct NodeSvc {
    meta: Arc<Meta>,
    heartbeat_interval_ms: u64,
    lease_ms: u64,
    drift_margin_ms: u64,
    /// The leader term served: acks carry it, and grant leases only while it is valid.
    term: ServingTerm,
    /// Turns true when the server stops: open streams end, so nodes reconnect elsewhere.
    stop: watch::Receiver<bool>,
}

impl NodeSvc {
    /// A service over `meta`, granting `lease_ms` write leases per heartbeat (Meridian
    /// holds them `drift_margin_ms` longer on its side) as the leader of `term`.
    pub fn new(
        meta: Arc<Meta>,
        heartbeat_interval_ms: u64,
        lease_ms: u64,
        drift_margin_ms: u64,
        term: ServingTerm,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            meta,
            heartbeat_interval_ms,
            lease_ms,
            drift_margin_ms,
            term,
            stop,
        }
    }
}

fn reports_from_wire(reports: &[pb::ShardReport]) -> Result<Vec<ShardReport>, Status> {
    reports
        .iter()
        .map(|r| {
            shard_report_from_wire(r).ok_or_else(|| {
                Status::invalid_argument(format!("report for shard {} has no role", r.shard_id))
            })
        })
        .collect()
}

#[tonic::async_trait]
impl pb::node_service_server::NodeService for NodeSvc {
    type HeartbeatStream = ReceiverStream<Result<pb::MetaMessage, Status>>;

    async fn heartbeat(
        &self,
        request: Request<Streaming<pb::NodeHeartbeat>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Err(Status::invalid_argument("stream closed before `register`"))
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no `register` message within 10 s",
                ))
            }
        };
        let register = match first.body {
            Some(Body::Register(r)) => r,
            Some(_) => {
                return Err(Status::failed_precondition(
                    "the first heartbeat message must be `register`: a node reports only after registering",
                ))
            }
            None => return Err(Status::invalid_argument("heartbeat message has no body")),
        };
        let reports = reports_from_wire(&register.shards)?;
        let cluster = self.meta.cluster(&register.cluster)?;
        let now = self.meta.now_ms();
        let (tx, rx) = mpsc::channel(1024);
        // The checks of `register` and the attach are one step (see `Sessions`).
        let (node, session, on_replaced) = {
            let _registering = cluster.sessions.registration.lock().await;
            let node = {
                let (cluster, register) = (cluster.clone(), register.clone());
                detached(async move { cluster.register(&register, now).await }).await
            };
            let node = match node {
                Ok(n) => n,
                Err(e) => {
                    // Refusals are an operator's business: visible in the log and counted
                    // (by `Cluster::register`, which knows the reason).
                    tracing::warn!(cluster = %cluster.id, name = %register.name, endpoint = %register.endpoint, "registration refused: {e}");
                    cluster.event(
                        "registration_refused",
                        format!(
                            "node {} at {} refused: {e}",
                            register.name, register.endpoint
                        ),
                        crate::events::About::default(),
                    );
                    return Err(e.into());
                }
            };
            let (session, on_replaced) = cluster.sessions.attach(node, tx.clone());
            (node, session, on_replaced)
        };
        let shard_versions = cluster
            .shard_entries()
            .iter()
            .filter(|e| e.shard.has_replica_on(node))
            .map(|e| pb::ShardVersionRef {
                shard_id: e.shard.id.0,
                version: e.shard.version.0,
            })
            .collect();
        let registered = pb::MetaMessage {
            body: Some(pb::meta_message::Body::Registered(pb::Registered {
                cluster_id: cluster.id.0,
                node_id: node.0,
                heartbeat_interval_ms: self.heartbeat_interval_ms,
                lease_ms: self.lease_ms,
                session,
                lease_drift_margin_ms: self.drift_margin_ms,
                shard_versions,
                term: self.term.term,
            })),
        };
        if tx.send(Ok(registered)).await.is_err() {
            cluster.sessions.detach(node, session);
            return Err(Status::cancelled("stream closed"));
        }
        tracing::info!(cluster = %cluster.id, %node, name = %register.name, endpoint = %register.endpoint, "node registered");
        metrics::counter!("meridian_node_registrations_total", "cluster" => cluster.name())
            .increment(1);
        reconcile(&cluster, node, &reports, now);
        {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                if let Err(e) = cluster.maybe_create_shards().await {
                    tracing::warn!(cluster = %cluster.id, "creating shards: {e}");
                }
            });
        }
        let meta = self.meta.clone();
        let lease_ms = self.lease_ms;
        let term = self.term.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let stream = Stream {
                meta,
                cluster: cluster.clone(),
                node,
                session,
                lease_ms,
                term,
            };
            tokio::select! {
                _ = stream.serve(inbound, tx) => {}
                _ = stop.wait_for(|s| *s) => {}
                _ = on_replaced => {
                    tracing::info!(cluster = %cluster.id, %node, session, "session replaced by a newer one: closed");
                }
            }
            cluster.sessions.detach(node, session);
            tracing::info!(cluster = %cluster.id, %node, "node stream closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// After registration: the one reconcile path for what the node reported (close shards it
/// lost, demote a leadership it lost) and for what it should hold but did not report (e.g.
/// it restarted empty).
fn reconcile(cluster: &Arc<Cluster>, node: NodeId, reports: &[ShardReport], now: u64) {
    let mut orders = cluster.on_report(node, None, reports, now);
    orders.extend(cluster.reconcile_sweep(now, Some(node)));
    send_orders(cluster, orders);
}

fn send_orders(cluster: &Arc<Cluster>, orders: Vec<meridian_scheduler::NodeInstruction>) {
    for order in orders {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let outcome = cluster.execute(&order).await;
            tracing::info!(node = %order.node, shard = %order.shard, kind = ?order.kind, ?outcome, "reconciled a node's shard with the metadata");
        });
    }
}

/// One node session's inbound half.
struct Stream {
    meta: Arc<Meta>,
    cluster: Arc<Cluster>,
    node: NodeId,
    session: u64,
    lease_ms: u64,
    term: ServingTerm,
}

impl Stream {
    async fn serve(
        self,
        mut inbound: Streaming<pb::NodeHeartbeat>,
        tx: mpsc::Sender<Result<pb::MetaMessage, Status>>,
    ) {
        let (cluster, node) = (&self.cluster, self.node);
        let name = cluster.name();
        let heartbeats = metrics::counter!("meridian_heartbeats_total", "cluster" => name.clone());
        let shard_reports =
            metrics::counter!("meridian_shard_reports_total", "cluster" => name.clone());
        let handle_seconds =
            metrics::histogram!("meridian_heartbeat_handle_seconds", "cluster" => name);
        loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%node, "heartbeat stream error: {status}");
                    return;
                }
            };
            if !cluster.sessions.is_current(node, self.session) {
                // Replaced: nothing this stream says counts any more.
                return;
            }
            let started = Instant::now();
            match msg.body {
                Some(Body::Report(report)) => {
                    let reports = match reports_from_wire(&report.shards) {
                        Ok(r) => r,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    let n = reports.len() as u64;
                    let now = self.meta.now_ms();
                    let orders =
                        cluster.on_report(node, report.stats.map(Into::into), &reports, now);
                    if self.term.is_valid() {
                        send_orders(cluster, orders);
                    }
                    // A leader whose own etcd lease may have run out (it was paused, or cut
                    // off from etcd) grants nothing: another server may lead by now.
                    let leases = if self.term.is_valid() {
                        cluster.lease_grants(node, self.session, &reports, now)
                    } else {
                        Vec::new()
                    };
                    let ack = pb::MetaMessage {
                        body: Some(pb::meta_message::Body::Ack(pb::HeartbeatAck {
                            sent_at_ms: msg.sent_at_ms,
                            lease_ms: self.lease_ms,
                            session: self.session,
                            leases,
                            term: self.term.term,
                        })),
                    };
                    if tx.try_send(Ok(ack)).is_err() {
                        tracing::debug!(%node, "ack dropped: node is not reading its stream");
                    }
                    heartbeats.increment(1);
                    cluster
                        .activity
                        .heartbeats
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    shard_reports.increment(n);
                    handle_seconds.record(started.elapsed().as_secs_f64());
                }
                Some(Body::Result(result)) => cluster.sessions.answer(node, &result),
                Some(Body::Register(_)) => {
                    let _ = tx
                        .send(Err(Status::failed_precondition(
                            "node is already registered on this stream",
                        )))
                        .await;
                    return;
                }
                None => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "heartbeat message has no body",
                        )))
                        .await;
                    return;
                }
            }
        }
    }
}
