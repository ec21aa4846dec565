//! [`TermStore`]: the store as one leader term sees it. Every write is fenced by the term's
//! election key; the first write refused for that reason tells the term to step down.

use async_trait::async_trait;
use meridian_store::{
    EtcdBackend, KeyValue, KvBackend, Result, StoreError, Txn, TxnResponse, WatchStream, WriteOp,
};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// A fenced etcd view for one term. Closing it ends only this term's use of the shared
/// connection: tasks of a term that stepped down get [`StoreError::Closed`].
pub struct TermStore {
    inner: EtcdBackend,
    fenced_off: watch::Sender<bool>,
    closed: AtomicBool,
}

impl TermStore {
    /// A view over `inner` (already [fenced](EtcdBackend::fenced)); `fenced_off` turns true
    /// when a write is refused because another server leads.
    pub fn new(inner: EtcdBackend, fenced_off: watch::Sender<bool>) -> Self {
        Self {
            inner,
            fenced_off,
            closed: AtomicBool::new(false),
        }
    }

    fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn seen<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(StoreError::Fenced(why)) = &r {
            tracing::warn!("a metadata write was fenced off ({why}): stepping down");
            self.fenced_off.send_replace(true);
        }
        r
    }
}

#[async_trait]
impl KvBackend for TermStore {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check()?;
        self.inner.get(key).await
    }

    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.check()?;
        self.inner.range_after(prefix, start_after, limit).await
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        self.check()?;
        let r = self.inner.batch(ops).await;
        self.seen(r)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.check()?;
        let r = self.inner.txn(txn).await;
        self.seen(r)
    }

    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream> {
        self.check()?;
        self.inner.watch(prefix).await
    }

    fn max_batch_ops(&self) -> usize {
        self.inner.max_batch_ops()
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
