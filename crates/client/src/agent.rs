//! `NodeAgent`: the heartbeat loop of a database node.
//!
//! It registers, streams load and shard reports at the interval Meridian asks for, takes
//! per-shard write leases from the acks of its current session ([`ShardLeases`]), carries
//! out instructions through the database's [`ShardHandler`], and reconnects with
//! exponential backoff when the stream breaks. Instructions for one shard run one at a
//! time, and the version check and the apply are atomic: any instruction whose shard
//! version is older than one already applied (or than the version Meridian named at
//! registration) is refused, so stale is never applied. The protocol is written down in
//! docs/node-protocol.md.

use crate::leader::{endpoint, find_leader};
use crate::lease::{lease_end, ShardLeases};
use meridian_model::{
    NodeCapacity, NodeLabels, NodeStats, ReplicaRole, ShardId, ShardReport, ShardVersion,
    TableDefinition, TableId,
};
use meridian_proto as pb;
use meridian_proto::convert::{definition_from_wire, role_from_wire};
use parking_lot::Mutex;
use pb::node_heartbeat::Body;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;

/// A table partition on a shard, as instructions name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Table id.
    pub id: TableId,
    /// Catalog.
    pub catalog: String,
    /// Schema.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Partition index.
    pub partition: u32,
    /// The table's columns, keys and options (empty: none).
    pub definition: TableDefinition,
}

impl From<&pb::TableOnShard> for TableRef {
    fn from(t: &pb::TableOnShard) -> Self {
        // Meridian validated the definition; a column type this agent does not know (a
        // newer server) leaves the definition empty rather than the table unopened.
        let definition = definition_from_wire(t.definition.clone()).unwrap_or_default();
        Self {
            id: TableId(t.table_id),
            catalog: t.catalog.clone(),
            schema: t.schema.clone(),
            table: t.table.clone(),
            partition: t.partition,
            definition,
        }
    }
}

/// What a database implements to obey Meridian. Each call returns `Err(reason)` to refuse.
/// Versions passed in have already been checked against what the agent applied.
#[async_trait::async_trait]
pub trait ShardHandler: Send + Sync + 'static {
    /// Open (or reopen) a shard in a role with the tables it holds.
    async fn open_shard(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
        tables: Vec<TableRef>,
    ) -> Result<(), String>;
    /// Close a shard: stop serving it.
    async fn close_shard(&self, shard: ShardId, version: ShardVersion) -> Result<(), String>;
    /// Become leader or follower of an open shard.
    async fn change_role(
        &self,
        shard: ShardId,
        version: ShardVersion,
        role: ReplicaRole,
    ) -> Result<(), String>;
    /// Create a table partition on a shard this node leads.
    async fn create_table(
        &self,
        shard: ShardId,
        version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String>;
    /// Drop a table partition from a shard.
    async fn drop_table(
        &self,
        shard: ShardId,
        version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String>;

    /// The table's definition changed (ALTER TABLE): `table.definition` is the new one, at
    /// a higher version. Applied before Meridian tells any client. The default accepts it
    /// and does nothing, for a database that keeps no definitions.
    async fn alter_table(
        &self,
        shard: ShardId,
        version: ShardVersion,
        table: TableRef,
    ) -> Result<(), String> {
        let _ = (shard, version, table);
        Ok(())
    }
    /// Current load and one report per shard held.
    fn report(&self) -> (NodeStats, Vec<ShardReport>);
}

/// How the agent identifies itself and reaches Meridian.
#[derive(Debug, Clone)]
pub struct NodeAgentConfig {
    /// Meridian gRPC addresses, tried in order.
    pub meta_addrs: Vec<String>,
    /// Cluster name (empty: `default`).
    pub cluster: String,
    /// Stable node name.
    pub name: String,
    /// Endpoint clients use to reach this node.
    pub endpoint: String,
    /// Failure-domain labels.
    pub labels: NodeLabels,
    /// Capacity.
    pub capacity: NodeCapacity,
    /// Binary version.
    pub version: String,
    /// Fingerprint of cluster-wide settings; must match the cluster's.
    pub config_fingerprint: String,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// The token presented to a server run with `--tokens` (role `node` or `admin`).
    pub token: Option<String>,
    /// TLS towards servers run with `[tls]` (addresses then mean `https://`).
    pub tls: Option<crate::ClientTls>,
}

impl NodeAgentConfig {
    /// A config with defaults for everything but the identity.
    pub fn new(
        meta_addr: impl Into<String>,
        name: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            meta_addrs: vec![meta_addr.into()],
            cluster: String::new(),
            name: name.into(),
            endpoint: endpoint.into(),
            labels: NodeLabels::default(),
            capacity: NodeCapacity {
                cpu_cores: 8,
                memory_bytes: 32 << 30,
                disk_bytes: 1 << 40,
            },
            version: env!("CARGO_PKG_VERSION").into(),
            config_fingerprint: String::new(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            token: None,
            tls: None,
        }
    }
}

/// What the agent knows of its standing with Meridian.
#[derive(Debug, Clone, Default)]
pub struct AgentStatus {
    /// Node id, once registered.
    pub node_id: Option<u64>,
    /// Whether the stream is up.
    pub connected: bool,
    /// The current session (from Meridian's `Registered`); acks of others are ignored.
    pub session: Option<u64>,
    /// Last registration or stream error.
    pub last_error: Option<String>,
    /// Times the stream was (re)established.
    pub sessions: u64,
    /// When the last heartbeat report was handed to the stream.
    pub last_heartbeat_at: Option<Instant>,
    /// Registrations Meridian refused in a row (a name alive elsewhere, a fingerprint that
    /// differs, a malformed registration): retrying alone will not fix these. 0 once a
    /// registration is accepted.
    pub refusals: u32,
}

/// A running heartbeat loop.
pub struct NodeAgent {
    status: Arc<Mutex<AgentStatus>>,
    leases: ShardLeases,
    status_rx: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeAgent {
    /// Starts the loop (it connects in the background and retries forever).
    pub fn start(config: NodeAgentConfig, handler: Arc<dyn ShardHandler>) -> Self {
        Self::start_with_channel(config, handler, None)
    }

    /// Like [`NodeAgent::start`], sharing an existing channel (many simulated nodes can
    /// multiplex one connection).
    pub fn start_with_channel(
        config: NodeAgentConfig,
        handler: Arc<dyn ShardHandler>,
        channel: Option<tonic::transport::Channel>,
    ) -> Self {
        let leases = ShardLeases::new(config.name.clone(), None);
        Self::start_with_leases(config, handler, channel, leases)
    }

    /// Like [`NodeAgent::start_with_channel`] with a lease table of the caller's, e.g. one
    /// that writes a [`crate::LeaseLog`].
    pub fn start_with_leases(
        config: NodeAgentConfig,
        handler: Arc<dyn ShardHandler>,
        channel: Option<tonic::transport::Channel>,
        leases: ShardLeases,
    ) -> Self {
        let status = Arc::new(Mutex::new(AgentStatus::default()));
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status_rx) = watch::channel(0u64);
        let runner = Runner {
            config,
            handler,
            status: status.clone(),
            status_tx,
            shards: Arc::new(AppliedShards {
                versions: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                open: Mutex::new(HashMap::new()),
                leases: leases.clone(),
            }),
            report_now: Arc::new(Notify::new()),
            clock: Instant::now(),
            term: AtomicU64::new(0),
        };
        let task = tokio::spawn(runner.run(stop_rx, channel));
        Self {
            status,
            leases,
            status_rx,
            stop,
            task,
        }
    }

    /// Current status.
    pub fn status(&self) -> AgentStatus {
        self.status.lock().clone()
    }

    /// The node's write leases: ask [`ShardLeases::writable`] before serving a write.
    pub fn leases(&self) -> ShardLeases {
        self.leases.clone()
    }

    /// Waits until registered (or `timeout`); returns the node id.
    pub async fn registered(&self, timeout: Duration) -> Option<u64> {
        let mut rx = self.status_rx.clone();
        let wait = async {
            loop {
                if let Some(id) = self.status.lock().node_id {
                    return id;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Stops heartbeating and closes the stream (a clean shutdown).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once without closing anything cleanly, like a crashed process.
    pub fn kill(self) {
        self.task.abort();
    }
}

struct Runner {
    config: NodeAgentConfig,
    handler: Arc<dyn ShardHandler>,
    status: Arc<Mutex<AgentStatus>>,
    status_tx: watch::Sender<u64>,
    shards: Arc<AppliedShards>,
    /// Woken when the node should report at once (it just became a leader and needs its
    /// lease without waiting a heartbeat interval).
    report_now: Arc<Notify>,
    clock: Instant,
    /// The highest Meridian leader term seen: acks of older terms come from a deposed
    /// leader and grant nothing.
    term: AtomicU64,
}

/// What the agent applied, per shard.
struct AppliedShards {
    /// Highest shard version applied (or named by Meridian at registration) per shard:
    /// older instructions are refused.
    versions: Mutex<HashMap<ShardId, ShardVersion>>,
    /// One lock per shard: its instructions run one at a time, check and apply together.
    locks: Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<()>>>>,
    /// The version and role each open replica was last opened (or changed) at, as the
    /// database confirmed: a repeated open of the same is acknowledged without the database.
    open: Mutex<HashMap<ShardId, (ShardVersion, ReplicaRole)>>,
    leases: ShardLeases,
}

impl AppliedShards {
    fn lock_of(&self, shard: ShardId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(shard).or_default().clone()
    }

    /// Raises the version floor of a shard (never lowers it).
    fn raise(&self, shard: ShardId, version: ShardVersion) {
        let mut v = self.versions.lock();
        let held = v.entry(shard).or_insert(version);
        if version > *held {
            *held = version;
        }
    }
}

impl Runner {
    /// Connects to the Meridian leader among the configured addresses.
    async fn connect_leader(&self) -> Result<tonic::transport::Channel, String> {
        let tls = self.config.tls.as_ref();
        let found = find_leader(&self.config.meta_addrs, tls)
            .await
            .map_err(|e| e.to_string())?;
        endpoint(&found.addr, tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("{}: {e}", found.addr))
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn set_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        f(&mut self.status.lock());
        self.status_tx.send_modify(|v| *v += 1);
    }

    async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        channel: Option<tonic::transport::Channel>,
    ) {
        let mut backoff = self.config.min_backoff;
        loop {
            let result = tokio::select! {
                r = self.session(channel.clone()) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            // While the Meridian leader changes, look for the new one at the shortest pause:
            // the node's leases run out if it waits a long backoff.
            let healthy = matches!(
                result,
                Ok(true)
                    | Err(SessionEnd {
                        leader_change: true,
                        ..
                    })
            );
            match &result {
                Err(e) if e.refused => {
                    tracing::warn!(node = %self.config.name, "Meridian refused the registration: {}", e.message);
                }
                Err(e) => {
                    tracing::debug!(node = %self.config.name, "heartbeat session ended: {}", e.message);
                }
                Ok(_) => {}
            }
            self.set_status(|s| {
                s.connected = false;
                match result {
                    Err(e) => {
                        if e.refused {
                            s.refusals += 1;
                        }
                        s.last_error = Some(e.message);
                    }
                    Ok(true) => s.refusals = 0,
                    Ok(false) => {}
                }
            });
            if healthy {
                backoff = self.config.min_backoff;
            }
            let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 4 + 1);
            let pause = backoff + Duration::from_millis(jitter);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// One stream's life. `Ok(true)` if it registered before it ended.
    async fn session(
        &self,
        channel: Option<tonic::transport::Channel>,
    ) -> Result<bool, SessionEnd> {
        let channel = match channel {
            Some(c) => c,
            None => self
                .connect_leader()
                .await
                .map_err(SessionEnd::leader_change)?,
        };
        let mut client = pb::node_service_client::NodeServiceClient::with_interceptor(
            channel,
            crate::BearerToken::new(self.config.token.as_deref()),
        );
        let (tx, rx) = mpsc::channel::<pb::NodeHeartbeat>(256);
        let (_, shards) = self.handler.report();
        {
            let mut open = self.shards.open.lock();
            open.clear();
            for r in &shards {
                self.shards.leases.set_held(r.shard, r.version, r.role);
                self.shards.raise(r.shard, r.version);
                open.insert(r.shard, (r.version, r.role));
            }
        }
        let shards = self.with_lease_flags(shards);
        let c = &self.config;
        let register = pb::RegisterNode {
            cluster: c.cluster.clone(),
            name: c.name.clone(),
            endpoint: c.endpoint.clone(),
            labels: Some(c.labels.clone().into()),
            capacity: Some(c.capacity.into()),
            version: c.version.clone(),
            config_fingerprint: c.config_fingerprint.clone(),
            shards: shards.into_iter().map(Into::into).collect(),
        };
        tx.send(pb::NodeHeartbeat {
            sent_at_ms: self.now_ms(),
            body: Some(Body::Register(register)),
        })
        .await
        .map_err(|_| "stream closed".to_string())?;
        // A server that accepts the connection but never answers (paused, or wedged) must
        // not hold the node: it looks for the leader again after a few seconds.
        let opened = tokio::time::timeout(REGISTER_TIMEOUT, async {
            let mut inbound = client
                .heartbeat(ReceiverStream::new(rx))
                .await
                .map_err(SessionEnd::from_status)?
                .into_inner();
            let first = inbound.message().await.map_err(SessionEnd::from_status)?;
            Ok::<_, SessionEnd>((inbound, first))
        })
        .await;
        let (mut inbound, first) = match opened {
            Ok(r) => r?,
            Err(_) => {
                return Err(SessionEnd::leader_change(format!(
                    "no answer to registration within {} ms",
                    REGISTER_TIMEOUT.as_millis()
                )))
            }
        };
        let Some(pb::MetaMessage {
            body: Some(pb::meta_message::Body::Registered(reg)),
        }) = first
        else {
            return Err("Meridian did not confirm registration".into());
        };
        let interval = Duration::from_millis(reg.heartbeat_interval_ms.clamp(10, 60_000));
        let session = reg.session;
        let term = reg.term;
        let highest = self.term.fetch_max(term, Ordering::AcqRel);
        if term < highest {
            return Err(SessionEnd::leader_change(format!(
                "a deposed Meridian leader (term {term}, newest seen {highest}) answered"
            )));
        }
        // A leader that stops acking (paused, cut off) is left for the next one: by the
        // time its silence passes this, its leases are running out anyway.
        let ack_timeout = (interval * 3).max(Duration::from_millis(1500));
        let mut last_ack = tokio::time::Instant::now();
        for v in &reg.shard_versions {
            self.shards
                .raise(ShardId(v.shard_id), ShardVersion(v.version));
        }
        self.set_status(|s| {
            s.node_id = Some(reg.node_id);
            s.session = Some(session);
            s.connected = true;
            s.last_error = None;
            s.sessions += 1;
            s.refusals = 0;
        });
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(last_ack + ack_timeout) => {
                    return Err(SessionEnd::leader_change(format!(
                        "no ack from Meridian for {} ms",
                        ack_timeout.as_millis()
                    )));
                }
                _ = ticker.tick() => {
                    if !self.send_report(&tx).await {
                        return Ok(true);
                    }
                }
                _ = self.report_now.notified() => {
                    if !self.send_report(&tx).await {
                        return Ok(true);
                    }
                }
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return Ok(true),
                        Err(s) => return Err(SessionEnd::from_status(s)),
                    };
                    match msg.body {
                        Some(pb::meta_message::Body::Ack(ack)) => {
                            if ack.session != session {
                                tracing::debug!(node = %self.config.name, ack.session, session, "ack of another session ignored");
                                continue;
                            }
                            if ack.term < self.term.load(Ordering::Acquire) {
                                tracing::debug!(node = %self.config.name, ack.term, "ack of a deposed leader ignored");
                                continue;
                            }
                            last_ack = tokio::time::Instant::now();
                            let until = lease_end(self.clock, ack.sent_at_ms, ack.lease_ms);
                            for l in &ack.leases {
                                self.shards.leases.grant(ShardId(l.shard_id), ShardVersion(l.version), until);
                            }
                        }
                        Some(pb::meta_message::Body::Instruction(instruction)) => {
                            let handler = self.handler.clone();
                            let shards = self.shards.clone();
                            let report_now = self.report_now.clone();
                            let tx = tx.clone();
                            let clock = self.clock;
                            tokio::spawn(async move {
                                let id = instruction.id;
                                let result = execute(&*handler, &shards, instruction).await;
                                if result == Ok(Applied::Leader) {
                                    report_now.notify_one();
                                }
                                let answer = pb::InstructionResult {
                                    instruction_id: id,
                                    ok: result.is_ok(),
                                    error: result.err().unwrap_or_default(),
                                };
                                let msg = pb::NodeHeartbeat {
                                    sent_at_ms: clock.elapsed().as_millis() as u64,
                                    body: Some(Body::Result(answer)),
                                };
                                let _ = tx.send(msg).await;
                            });
                        }
                        Some(pb::meta_message::Body::Registered(_)) | None => {}
                    }
                }
            }
        }
    }

    /// Marks each report with whether the node holds a lease for it at its version.
    fn with_lease_flags(&self, mut shards: Vec<ShardReport>) -> Vec<ShardReport> {
        for r in &mut shards {
            r.leased =
                r.role == ReplicaRole::Leader && self.shards.leases.is_leased(r.shard, r.version);
        }
        shards
    }

    /// Sends one load and shard report; false if the stream is gone.
    async fn send_report(&self, tx: &mpsc::Sender<pb::NodeHeartbeat>) -> bool {
        let (stats, shards) = self.handler.report();
        let report = pb::NodeReport {
            stats: Some(stats.into()),
            shards: self
                .with_lease_flags(shards)
                .into_iter()
                .map(Into::into)
                .collect(),
        };
        let msg = pb::NodeHeartbeat {
            sent_at_ms: self.now_ms(),
            body: Some(Body::Report(report)),
        };
        if tx.send(msg).await.is_err() {
            return false;
        }
        self.status.lock().last_heartbeat_at = Some(Instant::now());
        true
    }
}

/// How long Meridian may take to confirm a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a heartbeat session ended.
struct SessionEnd {
    message: String,
    /// The Meridian leader changed or is being elected: retry at once, not after a
    /// growing backoff.
    leader_change: bool,
    /// Meridian refused the registration itself (see [`AgentStatus::refusals`]).
    refused: bool,
}

impl SessionEnd {
    fn leader_change(message: impl Into<String>) -> Self {
        Self {
            message: format!("{}: looking for the Meridian leader", message.into()),
            leader_change: true,
            refused: false,
        }
    }

    /// A follower refuses a node's stream with UNAVAILABLE; so does a stopping leader.
    fn from_status(s: tonic::Status) -> Self {
        Self {
            message: format!("{}: {}", s.code(), s.message()),
            leader_change: s.code() == tonic::Code::Unavailable,
            refused: matches!(
                s.code(),
                tonic::Code::FailedPrecondition
                    | tonic::Code::AlreadyExists
                    | tonic::Code::InvalidArgument
            ),
        }
    }
}

impl From<String> for SessionEnd {
    fn from(message: String) -> Self {
        Self {
            message,
            leader_change: false,
            refused: false,
        }
    }
}

impl From<&str> for SessionEnd {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// What an applied instruction left the node as, for the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// The node leads the shard now.
    Leader,
    /// Anything else (follower, closed, a table change).
    Other,
}

/// Checks the version and dispatches one instruction to the handler, atomically per shard:
/// no other instruction for the shard runs between the check and the recording of the new
/// version. A change away from leadership ends the write lease *before* the database is
/// told, so no write is accepted while the demotion is in progress.
async fn execute(
    handler: &dyn ShardHandler,
    shards: &AppliedShards,
    instruction: pb::Instruction,
) -> Result<Applied, String> {
    let shard = ShardId(instruction.shard_id);
    let version = ShardVersion(instruction.shard_version);
    let lock = shards.lock_of(shard);
    let _serial = lock.lock().await;
    if let Some(held) = shards.versions.lock().get(&shard) {
        if version < *held {
            return Err(format!(
                "stale instruction: {shard} is at {held}, instruction carries {version}"
            ));
        }
    }
    let kind = instruction.kind.ok_or("instruction without kind")?;
    let role_of = |r: i32| role_from_wire(r).ok_or_else(|| "instruction without role".to_string());
    let leases = &shards.leases;
    let applied = match &kind {
        pb::instruction::Kind::OpenShard(open) => {
            let role = role_of(open.role)?;
            // A repeated open (re-sent, or sent twice by two paths) is done already. Passing
            // it on could undo later work: its table list may predate a create that the
            // database applied after the first open.
            if shards.open.lock().get(&shard) == Some(&(version, role)) {
                return Ok(if role == ReplicaRole::Leader {
                    Applied::Leader
                } else {
                    Applied::Other
                });
            }
            if role != ReplicaRole::Leader {
                leases.set_held(shard, version, role);
            }
            let tables = open.tables.iter().map(TableRef::from).collect();
            handler.open_shard(shard, version, role, tables).await?;
            leases.set_held(shard, version, role);
            shards.open.lock().insert(shard, (version, role));
            Some(role)
        }
        pb::instruction::Kind::CloseShard(_) => {
            leases.remove(shard);
            shards.open.lock().remove(&shard);
            handler.close_shard(shard, version).await?;
            None
        }
        pb::instruction::Kind::ChangeRole(change) => {
            let role = role_of(change.role)?;
            if role != ReplicaRole::Leader {
                leases.set_held(shard, version, role);
            }
            handler.change_role(shard, version, role).await?;
            leases.set_held(shard, version, role);
            shards.open.lock().insert(shard, (version, role));
            Some(role)
        }
        pb::instruction::Kind::CreateTable(create) => {
            let table = create.table.as_ref().ok_or("create without table")?;
            handler.create_table(shard, version, table.into()).await?;
            return Ok(Applied::Other);
        }
        pb::instruction::Kind::DropTable(drop) => {
            let table = drop.table.as_ref().ok_or("drop without table")?;
            handler.drop_table(shard, version, table.into()).await?;
            return Ok(Applied::Other);
        }
        pb::instruction::Kind::AlterTable(alter) => {
            let table = alter.table.as_ref().ok_or("alter without table")?;
            handler.alter_table(shard, version, table.into()).await?;
            return Ok(Applied::Other);
        }
    };
    shards.raise(shard, version);
    Ok(if applied == Some(ReplicaRole::Leader) {
        Applied::Leader
    } else {
        Applied::Other
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it was told to do.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl ShardHandler for Recorder {
        async fn open_shard(
            &self,
            s: ShardId,
            v: ShardVersion,
            r: ReplicaRole,
            _: Vec<TableRef>,
        ) -> Result<(), String> {
            self.0.lock().push(format!("open {s} {v} {r:?}"));
            Ok(())
        }
        async fn close_shard(&self, s: ShardId, v: ShardVersion) -> Result<(), String> {
            self.0.lock().push(format!("close {s} {v}"));
            Ok(())
        }
        async fn change_role(
            &self,
            s: ShardId,
            v: ShardVersion,
            r: ReplicaRole,
        ) -> Result<(), String> {
            self.0.lock().push(format!("role {s} {v} {r:?}"));
            Ok(())
        }
        async fn create_table(
            &self,
            s: ShardId,
            v: ShardVersion,
            t: TableRef,
        ) -> Result<(), String> {
            self.0.lock().push(format!("create {s} {v} {}", t.table));
            Ok(())
        }
        async fn drop_table(&self, _: ShardId, _: ShardVersion, _: TableRef) -> Result<(), String> {
            Ok(())
        }
        fn report(&self) -> (NodeStats, Vec<ShardReport>) {
            (NodeStats::default(), Vec::new())
        }
    }

    fn open(version: u64, role: pb::Role) -> pb::Instruction {
        pb::Instruction {
            id: version,
            shard_id: 7,
            shard_version: version,
            kind: Some(pb::instruction::Kind::OpenShard(pb::OpenShard {
                role: role as i32,
                tables: vec![],
            })),
            ..Default::default()
        }
    }

    fn applied() -> AppliedShards {
        AppliedShards {
            versions: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            leases: ShardLeases::new("n1", None),
        }
    }

    #[tokio::test]
    async fn instructions_older_than_the_applied_version_are_refused() {
        let handler = Recorder::default();
        let versions = applied();
        execute(&handler, &versions, open(5, pb::Role::Leader))
            .await
            .unwrap();
        let err = execute(&handler, &versions, open(4, pb::Role::Follower))
            .await
            .unwrap_err();
        assert!(err.contains("stale instruction"), "{err}");
        // The same version again is fine (instructions are idempotent and may be resent),
        // and done already: the database is not told twice.
        execute(&handler, &versions, open(5, pb::Role::Leader))
            .await
            .unwrap();
        execute(&handler, &versions, open(6, pb::Role::Follower))
            .await
            .unwrap();
        assert_eq!(
            *handler.0.lock(),
            vec!["open shard-7 v5 Leader", "open shard-7 v6 Follower"]
        );
    }

    /// Opens slowly when asked for version 6, so a v5 can arrive while v6 is applying.
    struct SlowSix(Recorder);

    #[async_trait::async_trait]
    impl ShardHandler for SlowSix {
        async fn open_shard(
            &self,
            s: ShardId,
            v: ShardVersion,
            r: ReplicaRole,
            t: Vec<TableRef>,
        ) -> Result<(), String> {
            if v == ShardVersion(6) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.0.open_shard(s, v, r, t).await
        }
        async fn close_shard(&self, s: ShardId, v: ShardVersion) -> Result<(), String> {
            self.0.close_shard(s, v).await
        }
        async fn change_role(
            &self,
            s: ShardId,
            v: ShardVersion,
            r: ReplicaRole,
        ) -> Result<(), String> {
            self.0.change_role(s, v, r).await
        }
        async fn create_table(
            &self,
            s: ShardId,
            v: ShardVersion,
            t: TableRef,
        ) -> Result<(), String> {
            self.0.create_table(s, v, t).await
        }
        async fn drop_table(&self, s: ShardId, v: ShardVersion, t: TableRef) -> Result<(), String> {
            self.0.drop_table(s, v, t).await
        }
        fn report(&self) -> (NodeStats, Vec<ShardReport>) {
            self.0.report()
        }
    }

    #[tokio::test]
    async fn an_older_instruction_arriving_while_a_newer_one_applies_is_refused() {
        let handler = Arc::new(SlowSix(Recorder::default()));
        let shards = Arc::new(applied());
        let newer = {
            let (handler, shards) = (handler.clone(), shards.clone());
            tokio::spawn(
                async move { execute(&*handler, &shards, open(6, pb::Role::Leader)).await },
            )
        };
        // Let v6 take the shard's lock and start applying.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let older = execute(&*handler, &shards, open(5, pb::Role::Follower)).await;
        assert_eq!(newer.await.unwrap(), Ok(Applied::Leader));
        let err = older.unwrap_err();
        assert!(err.contains("stale instruction"), "{err}");
        assert_eq!(*handler.0 .0.lock(), vec!["open shard-7 v6 Leader"]);
    }

    #[tokio::test]
    async fn versions_named_at_registration_are_a_floor_after_a_restart() {
        let handler = Recorder::default();
        let shards = applied();
        // A restarted node holds nothing; Meridian says shard 7 is at v9.
        shards.raise(ShardId(7), ShardVersion(9));
        let err = execute(&handler, &shards, open(8, pb::Role::Leader))
            .await
            .unwrap_err();
        assert!(err.contains("stale instruction"), "{err}");
        execute(&handler, &shards, open(9, pb::Role::Leader))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_instruction_without_a_role_is_refused() {
        let handler = Recorder::default();
        let versions = applied();
        let err = execute(&handler, &versions, open(1, pb::Role::Unspecified))
            .await
            .unwrap_err();
        assert!(err.contains("role"), "{err}");
        assert!(handler.0.lock().is_empty());
    }
}
