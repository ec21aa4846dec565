//! High availability on etcd: several servers, one leader.
//!
//! Each server binds its ports once and then alternates between two roles:
//!
//! - **Follower** (`follower`): campaigns on etcd's election key, answers who leads,
//!   turns nodes away to the leader, forwards gRPC requests and redirects HTTP ones.
//! - **Leader**: once elected, loads the metadata from etcd and serves it exactly as a single
//!   server does, through a [`TermStore`] that fences every write with the term's election
//!   key. A restarted leader's liveness grace period and lease quiet period (see
//!   `meta::lease`) carry the lease rules across the change: nodes are presumed alive, the
//!   leases that nodes say they hold are renewed, nothing is promoted before every lease an
//!   earlier term granted has run out, and persisted procedures resume or roll back.
//!
//! It steps down (back to follower) when its etcd lease may have run out or a write is
//! fenced off, and resigns on a clean shutdown so that another server takes over at once.

pub mod fenced;
pub mod follower;

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::server::{Listeners, Server, ServingTerm};
use fenced::TermStore;
use meridian_scheduler::LivenessConfig;
use meridian_store::etcd::{Candidate, EtcdConfig, LeaderInfo};
use meridian_store::{keys, EtcdBackend};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the leader announces in the election key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertised {
    /// The server's name.
    pub name: String,
    /// Its gRPC address.
    pub grpc_addr: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// Its term (filled from the key's create revision, not stored).
    #[serde(skip)]
    pub term: u64,
}

impl Advertised {
    fn from_info(info: &LeaderInfo) -> Option<Self> {
        let mut a: Advertised = serde_json::from_slice(&info.value).ok()?;
        a.term = u64::try_from(info.term).unwrap_or(0);
        Some(a)
    }
}

/// The role a highly available server plays now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Campaigning; `leader` is who leads, if anyone.
    Follower {
        /// The current leader, if one is known.
        leader: Option<Advertised>,
    },
    /// Leading in this term.
    Leader {
        /// The term.
        term: u64,
    },
}

/// Entry point of a highly available server.
pub struct HaServer;

/// A running highly available server.
pub struct RunningHa {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    role: watch::Receiver<Role>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HaServer {
    /// Connects to etcd, binds both ports and starts campaigning (serving as a follower
    /// meanwhile).
    pub async fn start(mut config: ServerConfig) -> Result<RunningHa> {
        crate::metrics::install();
        if config.liveness == LivenessConfig::default() {
            config.liveness = LivenessConfig::highly_available();
        }
        config
            .liveness
            .validate()
            .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
        // A crash takeover: the election TTL, plus about a second to notice, load, reconnect.
        let takeover_ms = config.etcd.election_ttl_s * 1000 + 1000;
        if !config.liveness.lease_outlasts(takeover_ms) {
            tracing::warn!(
                lease_ms = config.liveness.leader_lease_ms(),
                takeover_ms,
                "node leases are shorter than a Meridian takeover after a crash: shards \
                 will stop taking writes while a new leader is elected (raise \
                 liveness.offline_after_ms, or lower etcd.election_ttl_s)"
            );
        }
        let etcd = EtcdBackend::connect(&EtcdConfig {
            endpoints: config.etcd.endpoints.clone(),
            namespace: config.etcd.namespace.clone(),
            request_timeout: Duration::from_millis(config.etcd.request_timeout_ms.max(100)),
        })?;
        let listeners = Listeners::bind(&config)?;
        let (grpc_addr, http_addr) = (listeners.grpc_addr()?, listeners.http_addr()?);
        let me = Advertised {
            name: config.server_name(),
            grpc_addr: config.advertised_grpc(grpc_addr),
            http_addr: config.advertised_http(http_addr),
            term: 0,
        };
        let value = serde_json::to_vec(&me)
            .map_err(|e| ServerError::InvalidArgument(format!("server identity: {e}")))?;
        let candidate = Candidate::new(
            etcd.clone(),
            keys::election(),
            value,
            Duration::from_secs(config.etcd.election_ttl_s.max(1)),
        );
        let (role_tx, role) = watch::channel(Role::Follower { leader: None });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            config, etcd, candidate, listeners, me, role_tx, stop_rx,
        ));
        tracing::info!(%grpc_addr, %http_addr, "meridian started; campaigning on etcd");
        Ok(RunningHa {
            grpc_addr,
            http_addr,
            role,
            stop,
            task,
        })
    }
}

impl RunningHa {
    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Stops serving; a leader resigns so that another server takes over at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The role loop: follower until elected, leader until deposed, and again.
async fn run(
    config: ServerConfig,
    etcd: EtcdBackend,
    candidate: Candidate,
    listeners: Listeners,
    me: Advertised,
    role: watch::Sender<Role>,
    mut stop: watch::Receiver<bool>,
) {
    // The leader as the campaign sees it, in the follower's terms.
    let (leader_tx, leader_rx) = watch::channel(None::<Advertised>);
    let mut observed = candidate.observe();
    let relay_role = role.clone();
    let relay = tokio::spawn(async move {
        loop {
            let leader = observed
                .borrow_and_update()
                .as_ref()
                .and_then(Advertised::from_info);
            leader_tx.send_replace(leader.clone());
            relay_role.send_if_modified(|r| match r {
                Role::Follower { leader: l } if *l != leader => {
                    *l = leader.clone();
                    true
                }
                _ => false,
            });
            if observed.changed().await.is_err() {
                return;
            }
        }
    });
    loop {
        role.send_replace(Role::Follower {
            leader: leader_rx.borrow().clone(),
        });
        let follower = match follower::serve(
            &listeners,
            follower::FollowerView {
                name: me.name.clone(),
                leader: leader_rx.clone(),
            },
        ) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("cannot serve as a follower: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let leadership = tokio::select! {
            l = candidate.campaign() => Some(l),
            _ = stop.wait_for(|s| *s) => None,
        };
        follower.shutdown().await;
        let leadership = match leadership {
            None => break,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                tracing::warn!("campaign failed: {e}");
                continue;
            }
        };
        let term = u64::try_from(leadership.term()).unwrap_or(0);
        tracing::info!(term, name = %me.name, "elected Meridian leader; loading metadata");
        metrics::counter!("meridian_leader_elections_total").increment(1);
        let (fenced_tx, mut fenced_rx) = watch::channel(false);
        let store = Arc::new(TermStore::new(etcd.fenced(leadership.fence()), fenced_tx));
        let serving = ServingTerm::elected(
            term,
            leadership.validity(),
            me.name.clone(),
            me.grpc_addr.clone(),
            me.http_addr.clone(),
        );
        let running = match Server::serve(config.clone(), store, &listeners, serving).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(term, "cannot serve as the leader: {e}; resigning");
                leadership.resign().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        role.send_replace(Role::Leader { term });
        let stopping = tokio::select! {
            _ = leadership.lost() => {
                tracing::warn!(term, "the etcd lease may have run out: stepping down");
                false
            }
            _ = fenced_rx.wait_for(|f| *f) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        running.shutdown().await;
        if stopping {
            leadership.resign().await;
            tracing::info!(term, "resigned leadership");
            break;
        }
        drop(leadership);
        metrics::counter!("meridian_leader_stepdowns_total").increment(1);
    }
    relay.abort();
}
