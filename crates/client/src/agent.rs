//! `NodeAgent`: the heartbeat loop of a database node.
//!
//! It registers, streams load and shard reports at the interval Meridian asks for, renews
//! the node's leader lease from the acks, carries out instructions through the
//! database's [`ShardHandler`], and reconnects with exponential backoff when the stream
//! breaks. It refuses any instruction whose shard version is older than one it already
//! applied for that shard: stale is never applied.

use crate::connect_channel;
use meridian_model::{
    NodeCapacity, NodeLabels, NodeStats, ReplicaRole, ShardId, ShardReport, ShardVersion, TableId,
};
use meridian_proto as pb;
use meridian_proto::convert::role_from_wire;
use parking_lot::Mutex;
use pb::node_heartbeat::Body;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
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
}

impl From<&pb::TableOnShard> for TableRef {
    fn from(t: &pb::TableOnShard) -> Self {
        Self {
            id: TableId(t.table_id),
            catalog: t.catalog.clone(),
            schema: t.schema.clone(),
            table: t.table.clone(),
            partition: t.partition,
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
    /// Until when this node may act as leader (its own monotonic clock).
    pub lease_until: Option<Instant>,
    /// Last registration or stream error.
    pub last_error: Option<String>,
    /// Times the stream was (re)established.
    pub sessions: u64,
    /// When the last heartbeat report was handed to the stream.
    pub last_heartbeat_at: Option<Instant>,
}

/// A running heartbeat loop.
pub struct NodeAgent {
    status: Arc<Mutex<AgentStatus>>,
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
        let status = Arc::new(Mutex::new(AgentStatus::default()));
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status_rx) = watch::channel(0u64);
        let runner = Runner {
            config,
            handler,
            status: status.clone(),
            status_tx,
            versions: Arc::new(Mutex::new(HashMap::new())),
            clock: Instant::now(),
        };
        let task = tokio::spawn(runner.run(stop_rx, channel));
        Self {
            status,
            status_rx,
            stop,
            task,
        }
    }

    /// Current status.
    pub fn status(&self) -> AgentStatus {
        self.status.lock().clone()
    }

    /// Whether this node's leader lease is valid now.
    pub fn holds_lease(&self) -> bool {
        self.status
            .lock()
            .lease_until
            .is_some_and(|t| Instant::now() < t)
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
    /// Highest shard version applied per shard: older instructions are refused.
    versions: Arc<Mutex<HashMap<ShardId, ShardVersion>>>,
    clock: Instant,
}

impl Runner {
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
            let healthy = matches!(result, Ok(true));
            if let Err(e) = &result {
                tracing::debug!(node = %self.config.name, "heartbeat session ended: {e}");
            }
            self.set_status(|s| {
                s.connected = false;
                if let Err(e) = result {
                    s.last_error = Some(e);
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
    async fn session(&self, channel: Option<tonic::transport::Channel>) -> Result<bool, String> {
        let channel = match channel {
            Some(c) => c,
            None => connect_channel(&self.config.meta_addrs)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mut client = pb::node_service_client::NodeServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::NodeHeartbeat>(256);
        let (_, shards) = self.handler.report();
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
        let mut inbound = client
            .heartbeat(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        let first = inbound
            .message()
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        let Some(pb::MetaMessage {
            body: Some(pb::meta_message::Body::Registered(reg)),
        }) = first
        else {
            return Err("Meridian did not confirm registration".into());
        };
        let interval = Duration::from_millis(reg.heartbeat_interval_ms.clamp(10, 60_000));
        self.set_status(|s| {
            s.node_id = Some(reg.node_id);
            s.connected = true;
            s.last_error = None;
            s.sessions += 1;
        });
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let (stats, shards) = self.handler.report();
                    let report = pb::NodeReport {
                        stats: Some(stats.into()),
                        shards: shards.into_iter().map(Into::into).collect(),
                    };
                    let msg = pb::NodeHeartbeat { sent_at_ms: self.now_ms(), body: Some(Body::Report(report)) };
                    if tx.send(msg).await.is_err() {
                        return Ok(true);
                    }
                    self.status.lock().last_heartbeat_at = Some(Instant::now());
                }
                msg = inbound.message() => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return Ok(true),
                        Err(s) => return Err(format!("{}: {}", s.code(), s.message())),
                    };
                    match msg.body {
                        Some(pb::meta_message::Body::Ack(ack)) => {
                            let until = self.clock + Duration::from_millis(ack.sent_at_ms + ack.lease_ms);
                            self.set_status(|s| s.lease_until = Some(until));
                        }
                        Some(pb::meta_message::Body::Instruction(instruction)) => {
                            let handler = self.handler.clone();
                            let versions = self.versions.clone();
                            let tx = tx.clone();
                            let clock = self.clock;
                            tokio::spawn(async move {
                                let id = instruction.id;
                                let result = execute(&*handler, &versions, instruction).await;
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
}

/// Checks the version and dispatches one instruction to the handler.
async fn execute(
    handler: &dyn ShardHandler,
    versions: &Mutex<HashMap<ShardId, ShardVersion>>,
    instruction: pb::Instruction,
) -> Result<(), String> {
    let shard = ShardId(instruction.shard_id);
    let version = ShardVersion(instruction.shard_version);
    if let Some(held) = versions.lock().get(&shard) {
        if version < *held {
            return Err(format!(
                "stale instruction: {shard} is at {held}, instruction carries {version}"
            ));
        }
    }
    let kind = instruction.kind.ok_or("instruction without kind")?;
    let role_of = |r: i32| role_from_wire(r).ok_or_else(|| "instruction without role".to_string());
    let changes_version = match &kind {
        pb::instruction::Kind::OpenShard(open) => {
            let tables = open.tables.iter().map(TableRef::from).collect();
            handler
                .open_shard(shard, version, role_of(open.role)?, tables)
                .await?;
            true
        }
        pb::instruction::Kind::CloseShard(_) => {
            handler.close_shard(shard, version).await?;
            true
        }
        pb::instruction::Kind::ChangeRole(change) => {
            handler
                .change_role(shard, version, role_of(change.role)?)
                .await?;
            true
        }
        pb::instruction::Kind::CreateTable(create) => {
            let table = create.table.as_ref().ok_or("create without table")?;
            handler.create_table(shard, version, table.into()).await?;
            false
        }
        pb::instruction::Kind::DropTable(drop) => {
            let table = drop.table.as_ref().ok_or("drop without table")?;
            handler.drop_table(shard, version, table.into()).await?;
            false
        }
    };
    if changes_version {
        let mut v = versions.lock();
        let held = v.entry(shard).or_insert(version);
        if version > *held {
            *held = version;
        }
    }
    Ok(())
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

    #[tokio::test]
    async fn instructions_older_than_the_applied_version_are_refused() {
        let handler = Recorder::default();
        let versions = Mutex::new(HashMap::new());
        execute(&handler, &versions, open(5, pb::Role::Leader))
            .await
            .unwrap();
        let err = execute(&handler, &versions, open(4, pb::Role::Follower))
            .await
            .unwrap_err();
        assert!(err.contains("stale instruction"), "{err}");
        // The same version again is fine (instructions are idempotent and may be resent).
        execute(&handler, &versions, open(5, pb::Role::Leader))
            .await
            .unwrap();
        execute(&handler, &versions, open(6, pb::Role::Follower))
            .await
            .unwrap();
        assert_eq!(
            *handler.0.lock(),
            vec![
                "open shard-7 v5 Leader",
                "open shard-7 v5 Leader",
                "open shard-7 v6 Follower"
            ]
        );
    }

    #[tokio::test]
    async fn an_instruction_without_a_role_is_refused() {
        let handler = Recorder::default();
        let versions = Mutex::new(HashMap::new());
        let err = execute(&handler, &versions, open(1, pb::Role::Unspecified))
            .await
            .unwrap_err();
        assert!(err.contains("role"), "{err}");
        assert!(handler.0.lock().is_empty());
    }
}
