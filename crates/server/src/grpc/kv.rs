//! The namespaced key-value store for database nodes over gRPC (`KvService`); the logic is
//! in `meta::node_kv`.

use crate::meta::node_kv::{Expected, NodeKv};
use crate::meta::{detached, Meta};
use meridian_proto as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The KV service.
pub struct KvSvc {
    meta: Arc<Meta>,
    kv: Arc<NodeKv>,
}

impl KvSvc {
    /// A service over `kv`, resolving cluster names in `meta`.
    pub fn new(meta: Arc<Meta>, kv: Arc<NodeKv>) -> Self {
        Self { meta, kv }
    }
}

#[tonic::async_trait]
impl pb::kv_service_server::KvService for KvSvc {
    async fn get(
        &self,
        request: Request<pb::KvGetRequest>,
    ) -> Result<Response<pb::KvGetResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let value = self.kv.get(cluster, &r.namespace, &r.key).await?;
        Ok(Response::new(pb::KvGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn range(
        &self,
        request: Request<pb::KvRangeRequest>,
    ) -> Result<Response<pb::KvRangeResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let page = self
            .kv
            .range(cluster, &r.namespace, &r.prefix, &r.start_after, r.limit)
            .await?;
        Ok(Response::new(pb::KvRangeResponse {
            entries: page
                .entries
                .into_iter()
                .map(|(key, value)| pb::KvEntry { key, value })
                .collect(),
            next_start_after: page.next_start_after.unwrap_or_default(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::KvPutRequest>,
    ) -> Result<Response<pb::KvPutResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let kv = self.kv.clone();
        let created =
            detached(async move { kv.put(cluster, &r.namespace, &r.key, &r.value).await }).await?;
        Ok(Response::new(pb::KvPutResponse { created }))
    }

    async fn delete(
        &self,
        request: Request<pb::KvDeleteRequest>,
    ) -> Result<Response<pb::KvDeleteResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let kv = self.kv.clone();
        let deleted =
            detached(async move { kv.delete(cluster, &r.namespace, &r.key).await }).await?;
        Ok(Response::new(pb::KvDeleteResponse { deleted }))
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::KvCompareAndSwapRequest>,
    ) -> Result<Response<pb::KvCompareAndSwapResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.meta.cluster(&r.cluster)?.id;
        let expected = if r.expect_absent {
            Expected::Absent
        } else {
            Expected::Value(r.expected_value)
        };
        let kv = self.kv.clone();
        let outcome = detached(async move {
            let new = (!r.delete).then_some(r.new_value.as_slice());
            kv.compare_and_swap(cluster, &r.namespace, &r.key, expected, new)
                .await
        })
        .await?;
        Ok(Response::new(pb::KvCompareAndSwapResponse {
            succeeded: outcome.succeeded,
            found: outcome.current.is_some(),
            value: outcome.current.unwrap_or_default(),
        }))
    }
}
