//! Metadata: the clusters this Meridian manages, loaded from the store at start.

pub mod catalog;
pub mod cluster;
pub mod copysets;
pub mod election;
pub mod lease;
pub mod node_kv;
mod node_rate;
pub mod paging;
mod procedure;
mod reconcile;
mod revision;
mod routes;
pub mod session;

pub use catalog::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
pub use cluster::{Cluster, NodeEntry, NodeInfo, Refusal, ReplicaPosition, ShardEntry, ShardInfo};
use meridian_scheduler::LeaseBook;
pub use procedure::{MoveRecord, RecordChange, ReshardOutcome};
pub use session::{InstructionOutcome, Sessions};

use crate::error::{Result, ServerError};
use meridian_model::{ClusterConfig, ClusterId};
use meridian_store::{keys, KvBackend, SequenceAllocator, Txn, WriteOp};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a metadata change to its end in a task of its own and waits for it.
///
/// A request handler's future is dropped when its client goes away. A change dropped
/// between its store commit and its memory update would leave memory behind the store, so
/// every change that writes runs detached from the request: the client may stop waiting,
/// the change still completes (or fails) whole.
pub async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    // The task still names who asked, for the events it records.
    let task = match crate::events::REQUESTER.try_with(String::clone) {
        Ok(who) => tokio::spawn(crate::events::REQUESTER.scope(who, change)),
        Err(_) => tokio::spawn(change),
    };
    task.await
        .map_err(|e| ServerError::Unavailable(format!("metadata change task failed: {e}")))?
}

/// Name of the cluster created on first start.
pub const DEFAULT_CLUSTER: &str = "default";

/// Every managed cluster, by name.
pub struct Meta {
    store: Arc<dyn KvBackend>,
    clusters: RwLock<BTreeMap<String, Arc<Cluster>>>,
    cluster_ids: SequenceAllocator,
    create_lock: tokio::sync::Mutex<()>,
    started: Instant,
    instruction_timeout: Duration,
    lease_hold_ms: u64,
    events: Arc<crate::events::EventLog>,
}

impl Meta {
    /// Loads every cluster from the store, creating the `default` cluster on first start.
    /// `lease_hold_ms` is how long after receiving a heartbeat whose ack granted a write
    /// lease Meridian must assume the lease is still held (lease plus drift margin).
    pub async fn load(
        store: Arc<dyn KvBackend>,
        instruction_timeout: Duration,
        lease_hold_ms: u64,
    ) -> Result<Arc<Self>> {
        crate::backup::ensure_format(store.as_ref()).await?;
        let events = crate::events::EventLog::load(store.clone()).await?;
        let meta = Arc::new(Self {
            events: events.clone(),
            cluster_ids: SequenceAllocator::new(store.clone(), keys::cluster_id_sequence(), 1),
            store: store.clone(),
            clusters: RwLock::new(BTreeMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            instruction_timeout,
            lease_hold_ms,
        });
        for kv in store
            .range(keys::cluster_names_prefix().as_slice(), 0)
            .await?
        {
            let id: u32 = std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    ServerError::Corrupt(format!(
                        "bad cluster id under {}",
                        String::from_utf8_lossy(&kv.key)
                    ))
                })?;
            let id = ClusterId(id);
            let Some(raw) = store.get(&keys::cluster_config(id)).await? else {
                return Err(ServerError::Corrupt(format!(
                    "{id} has a name but no config"
                )));
            };
            let config: ClusterConfig = serde_json::from_slice(&raw)
                .map_err(|e| ServerError::Corrupt(format!("{id} config: {e}")))?;
            let leases = LeaseBook::new(lease_hold_ms, meta.now_ms());
            let cluster = Cluster::load(
                store.clone(),
                id,
                config.clone(),
                instruction_timeout,
                leases,
                events.clone(),
            )
            .await?;
            meta.clusters.write().insert(config.name, cluster);
        }
        for cluster in meta.clusters() {
            let resumed = cluster.resume_procedures().await?;
            if resumed > 0 {
                tracing::info!(cluster = %cluster.id, resumed, "resumed interrupted procedures");
            }
        }
        if meta.cluster(DEFAULT_CLUSTER).is_err() {
            meta.create_cluster(ClusterConfig::default_cluster())
                .await?;
        }
        Ok(meta)
    }

    /// Monotonic milliseconds since this server started (the scheduler's clock).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The event log.
    pub fn events(&self) -> &Arc<crate::events::EventLog> {
        &self.events
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvBackend> {
        &self.store
    }

    /// A cluster by name; the empty name means `default`.
    pub fn cluster(&self, name: &str) -> Result<Arc<Cluster>> {
        let name = if name.is_empty() {
            DEFAULT_CLUSTER
        } else {
            name
        };
        self.clusters
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| ServerError::NotFound(format!("cluster {name:?} not found")))
    }

    /// Every cluster.
    pub fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.clusters.read().values().cloned().collect()
    }

    /// Creates a cluster with a fresh id from the persistent allocator.
    pub async fn create_cluster(&self, config: ClusterConfig) -> Result<Arc<Cluster>> {
        config.validate()?;
        let _guard = self.create_lock.lock().await;
        if self.clusters.read().contains_key(&config.name) {
            return Err(ServerError::AlreadyExists(format!(
                "cluster {:?} already exists",
                config.name
            )));
        }
        let id = ClusterId(
            u32::try_from(self.cluster_ids.next().await?)
                .map_err(|_| ServerError::FailedPrecondition("cluster ids exhausted".into()))?,
        );
        let body = serde_json::to_vec(&config).map_err(|e| ServerError::Corrupt(e.to_string()))?;
        let name_key = keys::cluster_name(&config.name);
        let txn = Txn::new()
            .when_absent(name_key.clone())
            .then(WriteOp::put(name_key, id.0.to_string().into_bytes()))
            .then(WriteOp::put(keys::cluster_config(id), body));
        if !self.store.txn(txn).await?.succeeded {
            return Err(ServerError::AlreadyExists(format!(
                "cluster {:?} already exists",
                config.name
            )));
        }
        let cluster = Cluster::load(
            self.store.clone(),
            id,
            config.clone(),
            self.instruction_timeout,
            LeaseBook::new(self.lease_hold_ms, self.now_ms()),
            self.events.clone(),
        )
        .await?;
        cluster.ensure_default_schema().await?;
        self.clusters
            .write()
            .insert(config.name.clone(), cluster.clone());
        tracing::info!(cluster = %id, name = %config.name, "created cluster");
        self.events.record(
            &config.name,
            "admin",
            format!("cluster {} created", config.name),
            crate::events::About::default(),
        );
        Ok(cluster)
    }
}
