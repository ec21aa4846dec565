//! [`MeteredBackend`]: times every write the server makes to its store.

use async_trait::async_trait;
use meridian_store::{KeyValue, KvBackend, Result, Txn, TxnResponse, WatchStream, WriteOp};
use std::sync::Arc;
use std::time::Instant;

/// A store whose writes (batches and transactions, each one commit: an fsync on redb, a
/// raft round on etcd) are timed into `meridian_store_commit_duration_seconds{backend,
/// op}`, as the caller waits for them (a redb group commit's queueing included). Reads
/// pass through untimed.
pub struct MeteredBackend {
    inner: Arc<dyn KvBackend>,
}

impl MeteredBackend {
    /// Wraps `inner`, starting its zero series.
    pub fn wrap(inner: Arc<dyn KvBackend>) -> Arc<dyn KvBackend> {
        for op in ["batch", "txn"] {
            let _ = metrics::histogram!("meridian_store_commit_duration_seconds", "backend" => inner.name(), "op" => op);
        }
        Arc::new(Self { inner })
    }

    fn record(&self, op: &'static str, started: Instant) {
        metrics::histogram!("meridian_store_commit_duration_seconds", "backend" => self.inner.name(), "op" => op)
            .record(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl KvBackend for MeteredBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }

    async fn range(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.inner.range(prefix, limit).await
    }

    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.inner.range_after(prefix, start_after, limit).await
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.batch(ops).await;
        self.record("batch", started);
        result
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let started = Instant::now();
        let result = self.inner.txn(txn).await;
        self.record("txn", started);
        result
    }

    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream> {
        self.inner.watch(prefix).await
    }

    fn max_batch_ops(&self) -> usize {
        self.inner.max_batch_ops()
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.put(key, value).await;
        self.record("batch", started);
        result
    }

    async fn delete(&self, key: &[u8]) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record("batch", started);
        result
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
