//! Write leases on the server: one [`meridian_scheduler::LeaseBook`] per cluster (the rules,
//! and the grant decision itself, are in the scheduler crate, shared with the simulator),
//! consulted for every heartbeat's ack.

use super::cluster::Cluster;
use meridian_model::{NodeId, ShardReport};
use meridian_proto as pb;

impl Cluster {
    /// The leases to grant in the ack of a report that `node` sent in `session`: for each
    /// shard it reports leading, ready, at exactly the version the metadata names with it
    /// as leader, while it is not Offline, and only if the lease book lets it
    /// (`LeaseBook::grant_for_report`).
    pub fn lease_grants(
        &self,
        node: NodeId,
        session: u64,
        reports: &[ShardReport],
        now_ms: u64,
    ) -> Vec<pb::ShardVersionRef> {
        // Lock order, everywhere: cluster state, then the lease book.
        let state = self.state.read();
        let mut book = self.leases.lock();
        let node_state = state.nodes.get(&node).map(|e| e.state);
        let decided = book.grant_for_report(
            node,
            session,
            node_state,
            reports,
            |s| state.shards.get(&s).map(|e| &e.shard),
            now_ms,
        );
        for (shard, denied) in &decided.denied {
            metrics::counter!("meridian_lease_grants_denied_total", "cluster" => self.name())
                .increment(1);
            tracing::debug!(%node, %shard, ?denied, "lease not granted");
        }
        decided
            .granted
            .into_iter()
            .map(|(shard, version)| pb::ShardVersionRef {
                shard_id: shard.0,
                version: version.0,
            })
            .collect()
    }
}
