//! Leader-to-follower shipping: who the followers are (from Meridian's routes), what each
//! holds (`matched`), and waiting for a majority.
//!
//! Each (shard, follower) pair has one lane: shipments to one follower never overtake each
//! other. A follower whose position is unknown, or whose answer shows it holds something
//! else, gets a snapshot; afterwards it gets the entries it lacks.

use crate::node::Replicas;
use crate::wire::{ErrorCode, NodeError, ReplicateReply, ReplicateRequest};
use meridian_client::MetaClient;
use meridian_model::ShardId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a write waits for a majority of its shard's replicas.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one shipment may take.
const SHIPMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a replica that stops leading spends shipping what it has to its followers.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

type Lane = (ShardId, String);

/// Ships a node's led shards to their followers.
pub struct Replicator {
    replicas: Arc<Replicas>,
    /// This node's endpoint (never its own follower).
    endpoint: String,
    meta_addrs: Vec<String>,
    cluster: String,
    token: Option<String>,
    meta: tokio::sync::Mutex<Option<MetaClient>>,
    http: reqwest::Client,
    /// What each follower is known to hold.
    matched: Mutex<HashMap<Lane, u64>>,
    lanes: Mutex<HashMap<Lane, Arc<tokio::sync::Mutex<()>>>>,
}

impl Replicator {
    /// A replicator for `replicas`, looking followers up in Meridian at `meta_addrs`.
    pub fn new(
        replicas: Arc<Replicas>,
        endpoint: String,
        meta_addrs: Vec<String>,
        cluster: String,
        token: Option<String>,
    ) -> Self {
        Self {
            replicas,
            endpoint,
            meta_addrs,
            cluster,
            token,
            meta: tokio::sync::Mutex::new(None),
            http: reqwest::Client::new(),
            matched: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn unavailable(&self, message: impl Into<String>) -> NodeError {
        NodeError::new(
            &self.replicas.name,
            ErrorCode::ReplicationUnavailable,
            message,
        )
    }

    async fn meta(&self) -> Result<MetaClient, String> {
        let mut slot = self.meta.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client =
            MetaClient::connect_with_token(&self.meta_addrs, &self.cluster, self.token.as_deref())
                .await
                .map_err(|e| format!("cannot reach Meridian: {e}"))?;
        // Routes change with every failover and move: keep the cache current.
        client.watch_routes();
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The endpoints of `shard`'s followers, from a route at least as new as the version
    /// this node holds.
    pub async fn followers(&self, shard: ShardId) -> Result<Vec<String>, String> {
        let Some((version, name)) = self.replicas.with_shard(shard, |d| {
            let table = d.hosted.iter().find_map(|(t, _)| d.names.get(t).cloned());
            (d.version, table)
        }) else {
            return Err(format!("{shard} is not held here"));
        };
        // A shard without tables holds no rows: nothing to ship.
        let Some(name) = name else {
            return Ok(Vec::new());
        };
        let meta = self.meta().await?;
        for _ in 0..2 {
            let route = meta.route(&name).await.map_err(|e| e.to_string())?;
            let found = route
                .partitions
                .iter()
                .filter_map(|p| p.shard.as_ref())
                .find(|s| s.shard_id == shard.0);
            if let Some(s) = found.filter(|s| s.version >= version.0) {
                return Ok(s
                    .followers
                    .iter()
                    .map(|f| f.endpoint.clone())
                    .filter(|e| *e != self.endpoint)
                    .collect());
            }
            meta.invalidate(&name);
        }
        Err(format!(
            "no route for {shard} at version {} or newer yet",
            version.0
        ))
    }

    fn lane(&self, lane: &Lane) -> Arc<tokio::sync::Mutex<()>> {
        self.lanes.lock().entry(lane.clone()).or_default().clone()
    }

    /// Ships what `follower` lacks of `shard`: its position afterwards (`None`: it could
    /// not be reached, refused, or this node no longer leads).
    async fn ship(&self, shard: ShardId, follower: String) -> Option<u64> {
        let key = (shard, follower);
        let lane = self.lane(&key);
        let _in_order = lane.lock().await;
        // Twice at most: entries, then (if they did not fit) a snapshot.
        for _ in 0..2 {
            let matched = self.matched.lock().get(&key).copied();
            let req = self.replicas.with_shard(shard, |d| {
                (d.role == meridian_model::ReplicaRole::Leader).then(|| ReplicateRequest {
                    shard: shard.0,
                    version: d.version.0,
                    committed: d.committed,
                    shipment: d.shipment_after(matched),
                })
            })??;
            let url = format!("http://{}/v1/replicate", key.1);
            let sent = match self
                .http
                .post(url)
                .timeout(SHIPMENT_TIMEOUT)
                .json(&req)
                .send()
                .await
            {
                Ok(sent) => sent,
                Err(e) => {
                    tracing::debug!("{shard} to {}: {e}", key.1);
                    return None;
                }
            };
            if !sent.status().is_success() {
                tracing::debug!(
                    "{shard} to {}: {}",
                    key.1,
                    sent.text().await.unwrap_or_default()
                );
                self.matched.lock().remove(&key);
                return None;
            }
            let reply: ReplicateReply = sent.json().await.ok()?;
            if reply.applied_shipment {
                self.matched.lock().insert(key, reply.applied);
                return Some(reply.applied);
            }
            self.matched.lock().remove(&key);
        }
        None
    }

    /// Ships `shard` to its followers and waits until a majority of its replicas (this one
    /// included) hold position `seq`.
    pub async fn replicate(self: &Arc<Self>, shard: ShardId, seq: u64) -> Result<(), NodeError> {
        let followers = self
            .followers(shard)
            .await
            .map_err(|why| self.unavailable(why))?;
        // Replicas = followers + 1; a majority of them, less this one.
        let needed = followers.len().div_ceil(2);
        if needed == 0 {
            return Ok(());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(followers.len());
        for f in followers {
            let me = self.clone();
            let tx = tx.clone();
            // Spawned: a follower slower than the majority still gets its shipment.
            tokio::spawn(async move {
                let _ = tx.send(me.ship(shard, f).await).await;
            });
        }
        drop(tx);
        let mut holding = 0;
        let waited = tokio::time::timeout(REPLICATION_TIMEOUT, async {
            while let Some(position) = rx.recv().await {
                if position.is_some_and(|p| p >= seq) {
                    holding += 1;
                    if holding >= needed {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        if waited == Ok(true) {
            Ok(())
        } else {
            Err(self.unavailable(format!(
                "{shard}: position {seq} reached {holding} of the {needed} followers a majority needs"
            )))
        }
    }

    /// Ships everything to every follower, waiting a moment at most (a replica that stops
    /// leading does this first).
    pub async fn flush(self: &Arc<Self>, shard: ShardId) {
        let Ok(followers) = self.followers(shard).await else {
            return;
        };
        let all = futures::future::join_all(followers.into_iter().map(|f| self.ship(shard, f)));
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, all).await;
    }

    /// Forever: every `every`, ships each led shard to followers whose lane is idle (new
    /// followers get their snapshot, all learn the committed position).
    pub async fn run_background(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            for shard in self.replicas.led() {
                let followers = match self.followers(shard).await {
                    Ok(f) => f,
                    Err(why) => {
                        tracing::debug!("{shard}: {why}");
                        continue;
                    }
                };
                for f in followers {
                    let idle = self.lane(&(shard, f.clone())).try_lock().is_ok();
                    if idle {
                        let me = self.clone();
                        tokio::spawn(async move { me.ship(shard, f).await });
                    }
                }
            }
        }
    }
}
