//! The data plane of a simulated node: writes accepted only under the shard's write lease.
//!
//! A write names a shard (from the client's route) and a table and key. The node accepts
//! it only inside [`meridian_client::ShardLeases::with_lease`], so no demotion, close or
//! expiry can come between the lease check and the write, and a write whose thread stalled
//! past the lease's end is refused, never acknowledged. The acknowledgement carries the
//! CLOCK_MONOTONIC time taken inside the lease, so a fault harness can check that every
//! acknowledged write falls inside one of the node's writable intervals (its lease log).

use crate::node::SimNode;
use meridian_client::{monotonic_ns, NotLeader};
use meridian_model::ShardId;
use serde::{Deserialize, Serialize};

/// One write, as a client sends it to the node its route names leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The shard the client's route maps the key to.
    pub shard: u32,
    /// Table name (informational: the simulated node keeps no rows).
    #[serde(default)]
    pub table: String,
    /// Row key (informational).
    #[serde(default)]
    pub key: String,
}

/// A write the node accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// The node's name.
    pub node: String,
    /// The shard written.
    pub shard: u32,
    /// The shard version of the lease it was accepted under.
    pub version: u64,
    /// CLOCK_MONOTONIC ns at which it was accepted, taken while holding the lease.
    pub accepted_ns: u64,
}

/// A write the node refused: always retryable (refresh the route and try again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRefused {
    /// Stable code: `not_leader`.
    pub error: String,
    /// Why, for people.
    pub message: String,
    /// The node's name.
    pub node: String,
    /// The shard.
    pub shard: u32,
    /// Always true: another node may lead the shard now, or this one again soon.
    pub retryable: bool,
}

impl SimNode {
    /// Accepts `req` if this node holds a write lease for its shard now (see the module
    /// documentation), or refuses it with a retryable "not leader".
    pub fn write(&self, req: &WriteRequest) -> Result<WriteAck, WriteRefused> {
        let shard = ShardId(req.shard);
        self.agent
            .leases()
            .with_lease(shard, |lease| WriteAck {
                node: self.name.clone(),
                shard: req.shard,
                version: lease.version.0,
                accepted_ns: monotonic_ns(),
            })
            .map_err(|e: NotLeader| WriteRefused {
                error: "not_leader".into(),
                message: e.to_string(),
                node: self.name.clone(),
                shard: req.shard,
                retryable: true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_client::{NodeAgentConfig, ShardLeases};
    use meridian_model::{ReplicaRole, ShardVersion};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_node_without_a_lease_refuses_writes_as_not_leader() {
        // Nothing listens on port 1: the node never registers, so it never holds a lease.
        let config = NodeAgentConfig::new("127.0.0.1:1", "w1", "127.0.0.1:2");
        let node = SimNode::start_with_leases(config, None, ShardLeases::new("w1", None));
        let refused = node
            .write(&WriteRequest {
                shard: 3,
                table: "t".into(),
                key: "k".into(),
            })
            .unwrap_err();
        assert_eq!(refused.error, "not_leader");
        assert!(refused.retryable);
        assert!(refused.message.contains("not held"), "{}", refused.message);
        node.agent.kill();
    }

    #[tokio::test]
    async fn a_write_under_a_lease_is_acknowledged_with_its_time_and_version() {
        let config = NodeAgentConfig::new("127.0.0.1:1", "w2", "127.0.0.1:2");
        let leases = ShardLeases::new("w2", None);
        let node = SimNode::start_with_leases(config, None, leases.clone());
        let (shard, version) = (ShardId(4), ShardVersion(9));
        leases.set_held(shard, version, ReplicaRole::Leader);
        assert!(leases.grant(shard, version, Instant::now() + Duration::from_secs(5)));
        let before = monotonic_ns();
        let req = WriteRequest {
            shard: 4,
            table: "t".into(),
            key: "k".into(),
        };
        let ack = node.write(&req).unwrap();
        assert_eq!((ack.node.as_str(), ack.shard, ack.version), ("w2", 4, 9));
        assert!(before <= ack.accepted_ns && ack.accepted_ns <= monotonic_ns());
        // Demoted: refused at once, lease or not.
        leases.set_held(shard, ShardVersion(10), ReplicaRole::Follower);
        assert_eq!(node.write(&req).unwrap_err().error, "not_leader");
        node.agent.kill();
    }
}
