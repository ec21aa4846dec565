//! `MetaClient` methods for the services for nodes: elections with leases and the
//! namespaced KV store (docs/integration.md, "Election and KV for nodes"). Like every
//! `MetaClient` call they go to the Meridian leader and follow it when it changes.

use crate::{ClientError, MetaClient};
use meridian_proto as pb;

/// What a compare-and-swap expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvExpect<'a> {
    /// The key must be absent.
    Absent,
    /// The key must hold exactly this value.
    Value(&'a [u8]),
}

impl MetaClient {
    /// Campaigns for `election` as `candidate` announcing `value`, with a lease of `ttl_ms`:
    /// wins (new term) if nobody leads, renews (same term) if `candidate` leads, else the
    /// answer names the leader. The caller may act as leader only until the moment it SENT
    /// this request + `ttl_ms` - a drift margin ([`crate::Election`] does this for you).
    pub async fn campaign(
        &self,
        election: &str,
        candidate: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<pb::CampaignResponse, ClientError> {
        let r = self
            .election_client()
            .campaign(pb::CampaignRequest {
                cluster: self.cluster().to_string(),
                election: election.into(),
                candidate: candidate.into(),
                value: value.to_vec(),
                ttl_ms,
            })
            .await?;
        Ok(r.into_inner())
    }

    /// Who leads `election` now (`leader` absent: nobody), and its latest term.
    pub async fn election_leader(
        &self,
        election: &str,
    ) -> Result<pb::ElectionLeaderResponse, ClientError> {
        let r = self
            .election_client()
            .leader(pb::ElectionLeaderRequest {
                cluster: self.cluster().to_string(),
                election: election.into(),
            })
            .await?;
        Ok(r.into_inner())
    }

    /// The state of `election` at once, then every change (new leader, term or value,
    /// resignation, a lease running out). The stream ends when the serving Meridian stops
    /// leading: subscribe again.
    pub async fn observe_election(
        &self,
        election: &str,
    ) -> Result<tonic::Streaming<pb::ElectionLeaderResponse>, ClientError> {
        let r = self
            .election_client()
            .observe(pb::ElectionLeaderRequest {
                cluster: self.cluster().to_string(),
                election: election.into(),
            })
            .await?;
        Ok(r.into_inner())
    }

    /// Gives up `election`, which `candidate` must lead in `term` (else FAILED_PRECONDITION).
    pub async fn resign(
        &self,
        election: &str,
        candidate: &str,
        term: u64,
    ) -> Result<(), ClientError> {
        self.election_client()
            .resign(pb::ResignRequest {
                cluster: self.cluster().to_string(),
                election: election.into(),
                candidate: candidate.into(),
                term,
            })
            .await?;
        Ok(())
    }

    /// A key's value in `namespace`, if present.
    pub async fn kv_get(
        &self,
        namespace: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let r = self
            .kv_client()
            .get(pb::KvGetRequest {
                cluster: self.cluster().to_string(),
                namespace: namespace.into(),
                key: key.to_vec(),
            })
            .await?
            .into_inner();
        Ok(r.found.then_some(r.value))
    }

    /// One page of the keys of `namespace` starting with `prefix`, strictly after
    /// `start_after` (empty: from the first), at most `limit` (0: the server's default).
    /// Pass the answer's `next_start_after`, while not empty, to get the next page.
    pub async fn kv_range(
        &self,
        namespace: &str,
        prefix: &[u8],
        start_after: &[u8],
        limit: u32,
    ) -> Result<pb::KvRangeResponse, ClientError> {
        let r = self
            .kv_client()
            .range(pb::KvRangeRequest {
                cluster: self.cluster().to_string(),
                namespace: namespace.into(),
                prefix: prefix.to_vec(),
                start_after: start_after.to_vec(),
                limit,
            })
            .await?;
        Ok(r.into_inner())
    }

    /// Sets a key; returns whether it was created.
    pub async fn kv_put(
        &self,
        namespace: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, ClientError> {
        let r = self
            .kv_client()
            .put(pb::KvPutRequest {
                cluster: self.cluster().to_string(),
                namespace: namespace.into(),
                key: key.to_vec(),
                value: value.to_vec(),
            })
            .await?;
        Ok(r.into_inner().created)
    }

    /// Deletes a key; returns whether it existed.
    pub async fn kv_delete(&self, namespace: &str, key: &[u8]) -> Result<bool, ClientError> {
        let r = self
            .kv_client()
            .delete(pb::KvDeleteRequest {
                cluster: self.cluster().to_string(),
                namespace: namespace.into(),
                key: key.to_vec(),
            })
            .await?;
        Ok(r.into_inner().deleted)
    }

    /// Sets the key to `new` (`None`: deletes it) if it holds what `expected` says. A failed
    /// comparison is no error: `succeeded` is false and the answer carries the current value.
    pub async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &[u8],
        expected: KvExpect<'_>,
        new: Option<&[u8]>,
    ) -> Result<pb::KvCompareAndSwapResponse, ClientError> {
        let (expect_absent, expected_value) = match expected {
            KvExpect::Absent => (true, Vec::new()),
            KvExpect::Value(v) => (false, v.to_vec()),
        };
        let r = self
            .kv_client()
            .compare_and_swap(pb::KvCompareAndSwapRequest {
                cluster: self.cluster().to_string(),
                namespace: namespace.into(),
                key: key.to_vec(),
                expect_absent,
                expected_value,
                delete: new.is_none(),
                new_value: new.map(<[u8]>::to_vec).unwrap_or_default(),
            })
            .await?;
        Ok(r.into_inner())
    }
}
