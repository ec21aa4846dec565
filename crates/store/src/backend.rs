//! The [`KvBackend`] trait and the request types it takes.

use crate::{Result, StoreError, WatchStream, MAX_KEY_LEN, MAX_VALUE_LEN};
use async_trait::async_trait;
use std::ops::Bound;

/// One stored pair, as returned by range scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// One write inside a batch or a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value`, replacing any previous value.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key`; removing an absent key is not an error.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl WriteOp {
    /// A [`WriteOp::Put`].
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        WriteOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A [`WriteOp::Delete`].
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        WriteOp::Delete { key: key.into() }
    }

    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
        }
    }
}

/// A condition on one key's current value, or on a whole prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key (with `prefix`: every key starting with it).
    pub key: Vec<u8>,
    /// `None`: the key must be absent; `Some(v)`: its value must equal `v`.
    pub expected: Option<Vec<u8>>,
    /// The condition is on every key starting with `key`: no such key may exist
    /// (`expected` is `None`). One compare where one per key would exceed a store's limit.
    pub prefix: bool,
}

impl Compare {
    /// Whether a point condition holds given the key's current value.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        self.expected.as_deref() == current
    }

    /// Whether a prefix condition holds given the first key at or after `key`, if any.
    pub fn prefix_holds(&self, first_at_or_after: Option<&[u8]>) -> bool {
        !first_at_or_after.is_some_and(|k| k.starts_with(&self.key))
    }
}

/// A compare-and-swap transaction: if every compare holds, `success` is applied, otherwise
/// `failure`; either way atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Applied when all compares hold.
    pub success: Vec<WriteOp>,
    /// Applied when any compare fails.
    pub failure: Vec<WriteOp>,
}

impl Txn {
    /// An empty transaction (no compares: it always succeeds).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to be absent.
    #[must_use]
    pub fn when_absent(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expected: None,
            prefix: false,
        });
        self
    }

    /// Requires that no key starts with `prefix`.
    #[must_use]
    pub fn when_prefix_empty(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.compares.push(Compare {
            key: prefix.into(),
            expected: None,
            prefix: true,
        });
        self
    }

    /// Requires `key` to hold exactly `value`.
    #[must_use]
    pub fn when_equals(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expected: Some(value.into()),
            prefix: false,
        });
        self
    }

    /// Requires `key` to hold `expected` (`None`: to be absent).
    #[must_use]
    pub fn when(mut self, key: impl Into<Vec<u8>>, expected: Option<Vec<u8>>) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expected,
            prefix: false,
        });
        self
    }

    /// Adds a write to the success branch.
    #[must_use]
    pub fn then(mut self, op: WriteOp) -> Self {
        self.success.push(op);
        self
    }

    /// Adds a write to the failure branch.
    #[must_use]
    pub fn otherwise(mut self, op: WriteOp) -> Self {
        self.failure.push(op);
        self
    }
}

/// The outcome of a [`Txn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// True if every compare held and the success branch was applied.
    pub succeeded: bool,
}

/// A transactional, watchable, ordered key-value store. Object safe: used as
/// `Arc<dyn KvBackend>`. Every implementation must pass [`crate::conformance::run_all`].
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// A short name for logs and metrics ("memory", "redb", ...).
    fn name(&self) -> &'static str;

    /// The value of `key`, if present.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// All pairs whose key starts with `prefix`, ascending by key; at most `limit` of them
    /// (0: no limit).
    async fn range(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.range_after(prefix, &[], limit).await
    }

    /// Like [`KvBackend::range`], but only keys strictly greater than `start_after`: pass the
    /// last key of one page to get the next.
    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>>;

    /// Applies `ops` in order, atomically: all or none are visible, to readers and watchers.
    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()>;

    /// Evaluates `txn.compares` and applies the branch they select, atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Streams every change committed under `prefix` after this call, in commit order.
    /// Deleting an absent key is not a change and produces no event.
    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream>;

    /// The most writes one [`KvBackend::batch`] or transaction branch may hold (etcd: 128).
    /// Callers with more split them into steps that are safe to resume.
    fn max_batch_ops(&self) -> usize {
        usize::MAX
    }

    /// Sets one key.
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch(vec![WriteOp::put(key, value)]).await
    }

    /// Removes one key (absent is fine).
    async fn delete(&self, key: &[u8]) -> Result<()> {
        self.batch(vec![WriteOp::delete(key)]).await
    }

    /// Stops serving: pending writes finish, later calls fail with [`StoreError::Closed`] and
    /// watch streams end. Dropping the backend does the same.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Checks one key against the limits.
pub(crate) fn validate_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::TooLarge {
            what: "key",
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// Checks every key and value of a batch against the limits.
pub(crate) fn validate_ops(ops: &[WriteOp]) -> Result<()> {
    for op in ops {
        validate_key(op.key())?;
        if let WriteOp::Put { value, .. } = op {
            if value.len() > MAX_VALUE_LEN {
                return Err(StoreError::TooLarge {
                    what: "value",
                    len: value.len(),
                    max: MAX_VALUE_LEN,
                });
            }
        }
    }
    Ok(())
}

/// Checks every key and value of a transaction against the limits.
pub(crate) fn validate_txn(txn: &Txn) -> Result<()> {
    for c in &txn.compares {
        validate_key(&c.key)?;
        if c.prefix && c.expected.is_some() {
            return Err(StoreError::InvalidArgument(
                "a prefix compare can only require the prefix to be empty".into(),
            ));
        }
    }
    validate_ops(&txn.success)?;
    validate_ops(&txn.failure)
}

/// The lower bound of a scan of `prefix` that starts after `start_after`.
pub(crate) fn scan_start<'a>(prefix: &'a [u8], start_after: &'a [u8]) -> Bound<&'a [u8]> {
    if start_after >= prefix {
        Bound::Excluded(start_after)
    } else {
        Bound::Included(prefix)
    }
}

/// A `limit` argument as a count (0 means unlimited).
pub(crate) fn effective_limit(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}
