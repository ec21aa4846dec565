//! Clients of Meridian.
//!
//! - [`MetaClient`]: DDL and routes for database front-ends, with a route cache refreshed
//!   lazily on a stale-route error ([`MetaClient::invalidate`]) and eagerly from
//!   `WatchRoutes` ([`MetaClient::watch_routes`]).
//! - [`MetaClient`] also reaches the services for nodes: elections with leases
//!   ([`MetaClient::campaign`], and [`Election`], which campaigns and renews in the
//!   background) and a namespaced KV store ([`MetaClient::kv_get`] and the like).
//! - [`NodeAgent`]: the heartbeat loop of a database node, with reconnect and backoff,
//!   dispatching Meridian's instructions to a [`ShardHandler`] the database implements.
//! - [`find_leader`], [`following_channel`]: given several Meridian servers, find the
//!   leader and follow it when it changes (both clients do this for you).
#![warn(missing_docs)]

mod agent;
mod election;
mod error;
mod leader;
mod lease;
mod meta_client;
mod node_services;
mod router;
mod tls;
mod token;

pub use agent::{AgentStatus, NodeAgent, NodeAgentConfig, ShardHandler, TableRef};
pub use election::{Election, ElectionConfig, Leadership};
pub use error::ClientError;
pub use leader::{find_leader, following_channel, FoundLeader};
pub use lease::{
    lease_overlaps, monotonic_ns, read_lease_log, LeaseInterval, LeaseLog, NotLeader, ShardLease,
    ShardLeases,
};
pub use meta_client::{MetaClient, RouteCache};
pub use node_services::KvExpect;
pub use router::{Location, ReadPreference, TableLocator};
pub use tls::ClientTls;
pub use token::{AuthedChannel, BearerToken};

/// Connects a gRPC channel to the first reachable of `addrs` (`host:port` or URLs), over
/// TLS when `tls` is given.
pub async fn connect_channel(
    addrs: &[String],
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Channel, ClientError> {
    let mut last = None;
    for addr in addrs {
        let endpoint = match leader::tls_endpoint(addr, tls) {
            Ok(e) => e
                .tcp_nodelay(true)
                .connect_timeout(std::time::Duration::from_secs(3))
                .http2_keep_alive_interval(std::time::Duration::from_secs(10)),
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(ClientError::Connect(format!("{addr}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::InvalidAddress("no address given".into())))
}
