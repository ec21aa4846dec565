//! Scheduling admin over HTTP: operators, scheduler switches, maintenance mode, manual
//! transfer-leader, move-shard and force-promote, and node drain / cordon / uncordon /
//! evict-leaders / unevict-leaders / remove.

use super::{body, AppState};
use crate::error::ServerError;
use crate::events::About;
use crate::meta::paging::page_by_id;
use crate::meta::ReshardOutcome;
use crate::meta::{detached, Cluster};
use crate::schedule::OperatorInfo;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Extension;
use axum::{Json, Router};
use meridian_model::{Node, NodeId, OperatorId, ShardId};
use meridian_scheduler::{SchedulerStatus, Step};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clusters/{cluster}/operators", get(list_operators))
        .route(
            "/api/v1/clusters/{cluster}/operators/{id}",
            delete(cancel_operator),
        )
        .route(
            "/api/v1/clusters/{cluster}/schedulers",
            get(list_schedulers),
        )
        .route(
            "/api/v1/clusters/{cluster}/schedulers/{name}/{action}",
            post(switch_scheduler),
        )
        .route("/api/v1/clusters/{cluster}/maintenance", put(maintenance))
        .route(
            "/api/v1/clusters/{cluster}/fingerprint",
            put(set_fingerprint),
        )
        .route(
            "/api/v1/clusters/{cluster}/shards/{shard}/transfer-leader",
            post(transfer_leader),
        )
        .route(
            "/api/v1/clusters/{cluster}/shards/{shard}/move",
            post(move_shard),
        )
        .route(
            "/api/v1/clusters/{cluster}/shards/{shard}/force-promote",
            post(force_promote),
        )
        .route(
            "/api/v1/clusters/{cluster}/shards/{shard}/split",
            post(split_shard),
        )
        .route(
            "/api/v1/clusters/{cluster}/shards/{shard}/merge",
            post(merge_shard),
        )
        .route(
            "/api/v1/clusters/{cluster}/nodes/{node}/{action}",
            post(node_action),
        )
}

/// The actions of `POST .../schedulers/{name}/{action}`.
#[derive(Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub(super) enum SchedulerAction {
    /// Stop the scheduler.
    Pause,
    /// Run it again.
    Resume,
}

impl SchedulerAction {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }
}

/// The actions of `POST .../nodes/{node}/{action}`.
#[derive(Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "kebab-case")]
pub(super) enum NodeAction {
    /// No new placements on the node.
    Cordon,
    /// Placements allowed again (also ends a drain).
    Uncordon,
    /// Move every replica off the node.
    Drain,
    /// Move every leadership off the node and give it none.
    EvictLeaders,
    /// The node may lead again.
    UnevictLeaders,
    /// Remove the node (412 while it holds replicas).
    Remove,
}

impl NodeAction {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "cordon" => Some(Self::Cordon),
            "uncordon" => Some(Self::Uncordon),
            "drain" => Some(Self::Drain),
            "evict-leaders" => Some(Self::EvictLeaders),
            "unevict-leaders" => Some(Self::UnevictLeaders),
            "remove" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// A page of `GET .../operators`.
#[derive(Serialize, ToSchema)]
pub(super) struct OperatorPage {
    /// The running operators, by id.
    operators: Vec<OperatorInfo>,
    /// Pass it as `page_token` for the next page; empty on the last.
    next_page_token: String,
    /// With `history=true` only: the finished operators kept (a bounded recent history,
    /// oldest first, not paged).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    history: Option<Vec<OperatorInfo>>,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/operators", tag = "scheduling",
    params(("cluster" = String, Path, description = "Cluster name"), super::catalog::IdPageQuery),
    responses((status = 200, description = "A page of running operators (and the finished ones)", body = OperatorPage)))]
async fn list_operators(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<super::catalog::IdPageQuery>,
) -> Result<Json<OperatorPage>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (running, history) = s.scheduling.operators(c.id, q.history);
    let page = page_by_id(running.into_iter().map(|o| (o.id.0, o)), &q.page()?)?;
    Ok(Json(OperatorPage {
        operators: page.items,
        next_page_token: page.next_page_token,
        history: q.history.then_some(history),
    }))
}

/// The answer of `DELETE .../operators/{id}`.
#[derive(Serialize, ToSchema)]
pub(super) struct OperatorCancelled {
    /// The operator cancelled.
    cancelled: OperatorId,
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/operators/{id}", tag = "scheduling",
    params(("cluster" = String, Path, description = "Cluster name"), ("id" = u64, Path, description = "Operator id")),
    responses((status = 200, description = "Cancelled", body = OperatorCancelled)))]
async fn cancel_operator(
    State(s): State<AppState>,
    Path((cluster, id)): Path<(String, u64)>,
) -> Result<Json<OperatorCancelled>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    if s.scheduling.cancel_operator(c.id, OperatorId(id)) {
        Ok(Json(OperatorCancelled {
            cancelled: OperatorId(id),
        }))
    } else {
        Err(ServerError::NotFound(format!("no running operator {id}")))
    }
}

/// The answer of `GET .../schedulers`.
#[derive(Serialize, ToSchema)]
pub(super) struct SchedulerList {
    /// Maintenance mode: only essential schedulers run.
    maintenance: bool,
    /// Every scheduler, in priority order, with its switch.
    schedulers: Vec<SchedulerStatus>,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/schedulers", tag = "scheduling",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, description = "The schedulers and their switches", body = SchedulerList)))]
async fn list_schedulers(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
) -> Result<Json<SchedulerList>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (maintenance, schedulers) = s.scheduling.schedulers(c.id);
    Ok(Json(SchedulerList {
        maintenance,
        schedulers,
    }))
}

/// The answer of `POST .../schedulers/{name}/{action}`.
#[derive(Serialize, ToSchema)]
pub(super) struct SchedulerSwitched {
    /// The scheduler.
    scheduler: String,
    /// Whether it is paused now.
    paused: bool,
    /// Only when an essential scheduler was paused: what that puts at risk.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    warning: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/schedulers/{name}/{action}", tag = "scheduling",
    params(("cluster" = String, Path, description = "Cluster name"), ("name" = String, Path, description = "Scheduler name"), ("action" = SchedulerAction, Path, description = "pause or resume")),
    responses((status = 200, description = "Paused or resumed", body = SchedulerSwitched)))]
async fn switch_scheduler(
    State(s): State<AppState>,
    Path((cluster, name, action)): Path<(String, String, String)>,
) -> Result<Json<SchedulerSwitched>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let paused = match SchedulerAction::parse(&action) {
        Some(SchedulerAction::Pause) => true,
        Some(SchedulerAction::Resume) => false,
        None => {
            return Err(ServerError::NotFound(format!(
                "unknown scheduler action {action:?}: use pause or resume"
            )))
        }
    };
    let (scheduling, id, n) = (s.scheduling.clone(), c.id, name.clone());
    detached(async move { scheduling.set_paused(id, &n, paused).await }).await?;
    let essential = s
        .scheduling
        .schedulers(c.id)
        .1
        .iter()
        .any(|st| st.name == name && st.essential);
    let mut warned = None;
    let mut message = format!(
        "scheduler {name} {}",
        if paused { "paused" } else { "resumed" }
    );
    if paused && essential {
        let warning = format!(
            "{name} is essential: while it is paused, nothing repairs what it repairs (failover: shards whose leader dies stay leaderless); resume it with `meridian ctl resume-scheduler {name}`"
        );
        tracing::warn!(cluster = %c.id, "{warning}");
        message = format!("{message}. WARNING: {warning}");
        warned = Some(warning);
    }
    c.event("admin", message, About::default());
    Ok(Json(SchedulerSwitched {
        scheduler: name,
        paused,
        warning: warned,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    enabled: bool,
}

/// The answer of `PUT .../maintenance`.
#[derive(Serialize, ToSchema)]
pub(super) struct MaintenanceState {
    /// Whether maintenance mode is on now.
    maintenance: bool,
}

#[utoipa::path(put, path = "/api/v1/clusters/{cluster}/maintenance", tag = "scheduling",
    params(("cluster" = String, Path, description = "Cluster name")), request_body = MaintenanceBody,
    responses((status = 200, description = "Maintenance mode switched", body = MaintenanceState)))]
async fn maintenance(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    req: Result<Json<MaintenanceBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let c = s
        .meta
        .cluster(&cluster)
        .map_err(IntoResponse::into_response)?;
    let (scheduling, id, enabled) = (s.scheduling.clone(), c.id, b.enabled);
    detached(async move { scheduling.set_maintenance(id, enabled).await })
        .await
        .map_err(IntoResponse::into_response)?;
    let state = if b.enabled { "on" } else { "off" };
    c.event(
        "admin",
        format!("maintenance mode {state}"),
        About::default(),
    );
    Ok(Json(MaintenanceState {
        maintenance: b.enabled,
    })
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FingerprintBody {
    fingerprint: String,
}

/// The answer of `PUT .../fingerprint`.
#[derive(Serialize, ToSchema)]
pub(super) struct FingerprintSet {
    /// The fingerprint nodes must present now (empty: any).
    config_fingerprint: String,
}

/// Sets the config fingerprint nodes must present to join (empty: any).
#[utoipa::path(put, path = "/api/v1/clusters/{cluster}/fingerprint", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")), request_body = FingerprintBody,
    responses((status = 200, description = "Set", body = FingerprintSet)))]
async fn set_fingerprint(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    req: Result<Json<FingerprintBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let c = s
        .meta
        .cluster(&cluster)
        .map_err(IntoResponse::into_response)?;
    let (fingerprint, cluster) = (b.fingerprint.clone(), c.clone());
    detached(async move { cluster.set_fingerprint(&fingerprint).await })
        .await
        .map_err(IntoResponse::into_response)?;
    c.event(
        "admin",
        format!("config fingerprint set to {:?}", b.fingerprint),
        About::default(),
    );
    Ok(Json(FingerprintSet {
        config_fingerprint: b.fingerprint,
    })
    .into_response())
}

fn node_id(c: &Cluster, key: &str) -> Result<NodeId, ServerError> {
    c.find_node(key).map(|n| n.node.id).ok_or_else(|| {
        ServerError::NotFound(format!(
            "node {key:?} not found in cluster {}",
            c.config().name
        ))
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
}

/// The answer of the manual operations on a shard (transfer-leader, move, force-promote).
#[derive(Serialize, ToSchema)]
pub(super) struct OperatorSubmitted {
    /// The operator that carries it out (see `GET .../operators`).
    operator: OperatorId,
}

/// Plans an admin operator on one shard with `plan(cluster, current shard)` and submits it.
#[allow(clippy::result_large_err)] // axum's Response, returned by the handler as is
fn submit_manual(
    s: &AppState,
    cluster: &str,
    shard: u32,
    reason: &str,
    force: bool,
    plan: impl FnOnce(&Cluster, &meridian_model::Shard) -> Result<Vec<Step>, ServerError>,
) -> Result<Response, Response> {
    let run = || -> Result<OperatorId, ServerError> {
        let c = s.meta.cluster(cluster)?;
        let shard = ShardId(shard);
        let current = c
            .shard(shard)
            .ok_or_else(|| ServerError::NotFound(format!("{shard} not found")))?;
        let steps = plan(&c, &current)?;
        s.scheduling
            .submit(&c, shard, steps, reason, force)
            .map_err(ServerError::FailedPrecondition)
    };
    let id = run().map_err(IntoResponse::into_response)?;
    Ok(Json(OperatorSubmitted { operator: id }).into_response())
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/shards/{shard}/transfer-leader", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), ("shard" = u32, Path, description = "Shard id")), request_body = TransferBody, responses((status = 200, description = "The operator submitted", body = OperatorSubmitted)))]
async fn transfer_leader(
    State(s): State<AppState>,
    Path((cluster, shard)): Path<(String, u32)>,
    req: Result<Json<TransferBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    submit_manual(
        &s,
        &cluster,
        shard,
        "admin: transfer leader",
        false,
        |c, current| {
            let to = node_id(c, &b.to)?;
            if c.find_node(&to.0.to_string())
                .is_some_and(|n| n.node.evict_leaders)
            {
                return Err(ServerError::FailedPrecondition(format!(
                    "{to} is evicting its leaders: `meridian ctl unevict-leaders {to}` first"
                )));
            }
            let from = current.leader().ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "{} has no leader to transfer from",
                    current.id
                ))
            })?;
            Ok(vec![Step::TransferLeader { from, to }])
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ForcePromoteBody {
    /// The follower to promote (id or name).
    to: String,
    /// Who asks (a person, a ticket): logged and kept in the operator history.
    #[serde(default)]
    by: String,
}

/// Promotes a follower of a shard whose leader is down, whatever its log position: the
/// way out for a shard that waits for an in-sync follower, accepting the loss of what the
/// follower has not applied.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/shards/{shard}/force-promote", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), ("shard" = u32, Path, description = "Shard id")), request_body = ForcePromoteBody, responses((status = 200, description = "The operator submitted", body = OperatorSubmitted)))]
async fn force_promote(
    State(s): State<AppState>,
    Path((cluster, shard)): Path<(String, u32)>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    req: Result<Json<ForcePromoteBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let run = || -> Result<OperatorId, ServerError> {
        let c = s.meta.cluster(&cluster)?;
        let to = node_id(&c, &b.to)?;
        let peer = peer.map(|Extension(p)| p);
        let by = match (b.by.trim(), peer) {
            ("", Some(ConnectInfo(addr))) => format!("an admin at {addr}"),
            ("", None) => "an admin".to_string(),
            (by, Some(ConnectInfo(addr))) => format!("{by} (from {addr})"),
            (by, None) => by.to_string(),
        };
        s.scheduling
            .force_promote(&c, ShardId(shard), to, &by)
            .map_err(ServerError::FailedPrecondition)
    };
    let id = run().map_err(IntoResponse::into_response)?;
    Ok(Json(OperatorSubmitted { operator: id }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    from: String,
    to: String,
    /// Accept a placement that breaks failure-domain spreading.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/shards/{shard}/move", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), ("shard" = u32, Path, description = "Shard id")), request_body = MoveBody, responses((status = 200, description = "The operator submitted", body = OperatorSubmitted)))]
async fn move_shard(
    State(s): State<AppState>,
    Path((cluster, shard)): Path<(String, u32)>,
    req: Result<Json<MoveBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let reason = if b.force {
        "admin: move shard (forced)"
    } else {
        "admin: move shard"
    };
    submit_manual(&s, &cluster, shard, reason, b.force, |c, current| {
        let (from, to) = (node_id(c, &b.from)?, node_id(c, &b.to)?);
        let mut steps = vec![Step::AddFollower { node: to }];
        if current.leader() == Some(from) {
            steps.push(Step::TransferLeader { from, to });
        }
        steps.push(Step::RemoveReplica { node: from });
        Ok(steps)
    })
}

/// The answer of `POST .../nodes/{node}/{action}`.
#[derive(Serialize, ToSchema)]
pub(super) struct NodeActionDone {
    /// The node with its flags as stored now.
    node: Node,
    /// Replicas it held when asked.
    replicas: usize,
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/nodes/{node}/{action}", tag = "nodes",
    params(("cluster" = String, Path, description = "Cluster name"), ("node" = String, Path, description = "Node id (`3`, `node-3`) or name"), ("action" = NodeAction, Path, description = "What to do")),
    responses((status = 200, description = "Done", body = NodeActionDone)))]
async fn node_action(
    State(s): State<AppState>,
    Path((cluster, node, action)): Path<(String, String, String)>,
) -> Result<Json<NodeActionDone>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let id = node_id(&c, &node)?;
    let held = c
        .shard_entries()
        .iter()
        .filter(|e| e.shard.has_replica_on(id))
        .count();
    type Change = Box<dyn FnOnce(&mut meridian_model::Node) -> Result<(), ServerError> + Send>;
    let change: Change = match NodeAction::parse(&action) {
        Some(NodeAction::Cordon) => Box::new(|n| {
            n.cordoned = true;
            Ok(())
        }),
        Some(NodeAction::Uncordon) => Box::new(|n| {
            n.cordoned = false;
            n.draining = false;
            Ok(())
        }),
        Some(NodeAction::Drain) => Box::new(|n| {
            n.draining = true;
            Ok(())
        }),
        Some(NodeAction::EvictLeaders) => Box::new(|n| {
            n.evict_leaders = true;
            Ok(())
        }),
        Some(NodeAction::UnevictLeaders) => Box::new(|n| {
            n.evict_leaders = false;
            Ok(())
        }),
        Some(NodeAction::Remove) => Box::new(move |n| {
            if held > 0 {
                return Err(ServerError::FailedPrecondition(format!(
                    "{id} still holds {held} replicas: drain it first (`meridian ctl drain {id}`) and wait until it holds none"
                )));
            }
            n.removed = true;
            Ok(())
        }),
        None => {
            return Err(ServerError::NotFound(format!(
                "unknown node action {action:?}: use drain, cordon, uncordon, evict-leaders, unevict-leaders or remove"
            )))
        }
    };
    let cluster = c.clone();
    let updated = detached(async move { cluster.update_node_flags(id, change).await }).await?;
    c.event(
        "admin",
        format!("node {node} ({id}): {action}"),
        About {
            node: Some(id.0),
            ..About::default()
        },
    );
    Ok(Json(NodeActionDone {
        node: updated,
        replicas: held,
    }))
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/shards/{shard}/split", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), ("shard" = u32, Path, description = "Shard id")),
    responses((status = 200, description = "What the split did", body = ReshardOutcome)))]
async fn split_shard(
    State(s): State<AppState>,
    Path((cluster, shard)): Path<(String, u32)>,
) -> Result<Json<ReshardOutcome>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let outcome = detached(async move { c.split_shard(ShardId(shard)).await }).await?;
    Ok(Json(outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The shard merged into this one (and deleted).
    with: u32,
}

#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/shards/{shard}/merge", tag = "shards",
    params(("cluster" = String, Path, description = "Cluster name"), ("shard" = u32, Path, description = "Shard id")), request_body = MergeBody,
    responses((status = 200, description = "What the merge did", body = ReshardOutcome)))]
async fn merge_shard(
    State(s): State<AppState>,
    Path((cluster, shard)): Path<(String, u32)>,
    req: Result<Json<MergeBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let run = async {
        let c = s.meta.cluster(&cluster)?;
        detached(async move { c.merge_shards(ShardId(shard), ShardId(b.with)).await }).await
    };
    let outcome = run.await.map_err(IntoResponse::into_response)?;
    Ok(Json(outcome).into_response())
}
