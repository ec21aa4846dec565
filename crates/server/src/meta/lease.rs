//! Write leases on the server: one [`LeaseBook`] per cluster (the rules are in the
//! scheduler crate, shared with the simulator), consulted for every heartbeat's ack.

use super::cluster::Cluster;
use meridian_model::{NodeId, NodeState, ReplicaRole, ShardReport, ShardStatus};
use meridian_proto as pb;

impl Cluster {
    /// The leases to grant in the ack of a report that `node` sent in `session`: for each
    /// shard it reports leading, ready, at exactly the version the metadata names with it
    /// as leader, while it is not Offline, and only if the lease book lets it.
    pub fn lease_grants(
        &self,
        node: NodeId,
        session: u64,
        reports: &[ShardReport],
        now_ms: u64,
    ) -> Vec<pb::ShardVersionRef> {
        let mut book = self.leases.lock();
        book.observe_report(node, session, reports);
        let state = self.state.read();
        let Some(entry) = state.nodes.get(&node) else {
            return Vec::new();
        };
        // Suspect is a warning (a late heartbeat), cleared by this very heartbeat; Offline
        // means its leaderships may already be moving.
        if !matches!(entry.state, NodeState::Online | NodeState::Suspect) {
            return Vec::new();
        }
        let mut grants = Vec::new();
        for r in reports {
            if r.role != ReplicaRole::Leader || r.status != ShardStatus::Ready {
                continue;
            }
            let Some(e) = state.shards.get(&r.shard) else {
                continue;
            };
            if e.shard.leader() != Some(node) || e.shard.version != r.version {
                continue;
            }
            match book.try_grant(r.shard, node, session, r.version, r.leased, now_ms) {
                Ok(()) => grants.push(pb::ShardVersionRef {
                    shard_id: r.shard.0,
                    version: r.version.0,
                }),
                Err(denied) => {
                    metrics::counter!("meridian_lease_grants_denied_total").increment(1);
                    tracing::debug!(%node, shard = %r.shard, ?denied, "lease not granted");
                }
            }
        }
        grants
    }
}
