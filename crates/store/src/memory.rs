//! [`MemoryBackend`]: a `BTreeMap` behind a lock. Nothing survives the process; for tests
//! and simulations.

use crate::backend::{effective_limit, scan_start, validate_ops, validate_txn};
use crate::watch::{WatchEvent, WatchHub};
use crate::{KeyValue, KvBackend, Result, StoreError, Txn, TxnResponse, WatchStream, WriteOp};
use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

/// An in-memory [`KvBackend`].
pub struct MemoryBackend {
    /// `None` once closed.
    data: RwLock<Option<BTreeMap<Vec<u8>, Vec<u8>>>>,
    hub: WatchHub,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            data: RwLock::new(Some(BTreeMap::new())),
            hub: WatchHub::new(),
        }
    }

    /// Evaluates `txn` and applies the chosen branch under the write lock and publishes them before releasing it, so
    /// watchers see commits in order.
    fn write(&self, txn: Txn) -> Result<bool> {
        let mut guard = self.data.write();
        let map = guard.as_mut().ok_or(StoreError::Closed)?;
        let ok = txn.compares.iter().all(|c| {
            if c.prefix {
                let first = map
                    .range::<[u8], _>((Bound::Included(c.key.as_slice()), Bound::Unbounded))
                    .next();
                c.prefix_holds(first.map(|(k, _)| k.as_slice()))
            } else {
                c.holds(map.get(&c.key).map(Vec::as_slice))
            }
        });
        let ops = if ok { txn.success } else { txn.failure };
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                    events.push(WatchEvent::Put { key, value });
                }
                WriteOp::Delete { key } => {
                    if map.remove(&key).is_some() {
                        events.push(WatchEvent::Delete { key });
                    }
                }
            }
        }
        self.hub.publish(events);
        Ok(ok)
    }
}

#[async_trait]
impl KvBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let guard = self.data.read();
        let map = guard.as_ref().ok_or(StoreError::Closed)?;
        Ok(map.get(key).cloned())
    }

    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let guard = self.data.read();
        let map = guard.as_ref().ok_or(StoreError::Closed)?;
        let bounds = (scan_start(prefix, start_after), Bound::Unbounded);
        Ok(map
            .range::<[u8], _>(bounds)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(effective_limit(limit))
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect())
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        validate_ops(&ops)?;
        self.write(Txn {
            success: ops,
            ..Txn::default()
        })?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        let succeeded = self.write(txn)?;
        Ok(TxnResponse { succeeded })
    }

    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream> {
        // Subscribing under the read lock orders the subscription against commits.
        let guard = self.data.read();
        guard.as_ref().ok_or(StoreError::Closed)?;
        self.hub.subscribe(prefix)
    }

    async fn close(&self) -> Result<()> {
        self.data.write().take();
        self.hub.close();
        Ok(())
    }
}
