//! The namespaced key-value store for database nodes (`KvService`), on the metadata store.
//!
//! Keys live at `keys::node_kv(cluster, namespace, key)`. Every write is a compare-and-swap
//! transaction on the key's previous value, through the serving server's store (with HA,
//! fenced by its term: a deposed Meridian leader's write lands nowhere). Writes to one
//! namespace are serialised on this server, which keeps the namespace's usage (keys,
//! bytes) in memory, counted from the store at the namespace's first write, so quotas are
//! checked before anything is written.

use super::node_rate::RateLimits;
use super::Meta;
use crate::config::NodeServicesConfig;
use crate::error::{Result, ServerError};
use meridian_model::{validate_name, ClusterId};
use meridian_store::{keys, Txn, WriteOp};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries per Range page when the request says 0.
pub const DEFAULT_RANGE_LIMIT: u32 = 100;
/// Most entries one Range page may ask for.
pub const MAX_RANGE_LIMIT: u32 = 1000;

/// Keys and bytes (keys plus values) stored in one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    keys: u64,
    bytes: u64,
}

/// One namespace's write lock and usage (`None` until counted).
#[derive(Default)]
struct Namespace {
    usage: tokio::sync::Mutex<Option<Usage>>,
}

/// What a compare-and-swap expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The key must be absent.
    Absent,
    /// The key must hold exactly this value.
    Value(Vec<u8>),
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// The comparison held and the write was applied.
    pub succeeded: bool,
    /// The key's value after the call (`None`: absent).
    pub current: Option<Vec<u8>>,
}

/// One page of a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangePage {
    /// (client key, value) pairs, ascending.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The last key of this page when more may follow.
    pub next_start_after: Option<Vec<u8>>,
}

/// The KV service's state for one serving term.
pub struct NodeKv {
    meta: Arc<Meta>,
    limits: NodeServicesConfig,
    rate: RateLimits,
    namespaces: Mutex<HashMap<(ClusterId, String), Arc<Namespace>>>,
}

impl NodeKv {
    /// The KV store over `meta`'s store, with `limits`.
    pub fn new(meta: Arc<Meta>, limits: NodeServicesConfig) -> Self {
        Self {
            rate: RateLimits::new("namespace", limits.requests_per_second, limits.burst),
            meta,
            limits,
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// Validates the namespace and key and takes a request token.
    fn admit(&self, cluster: ClusterId, namespace: &str, key: Option<&[u8]>) -> Result<()> {
        validate_name("namespace", namespace)?;
        if let Some(key) = key {
            self.check_key("key", key)?;
        }
        self.rate.check(cluster, namespace, self.meta.now_ms())
    }

    fn check_key(&self, what: &str, key: &[u8]) -> Result<()> {
        if what == "key" && key.is_empty() {
            return Err(ServerError::InvalidArgument("key must not be empty".into()));
        }
        if key.len() > self.limits.max_key_bytes {
            return Err(ServerError::InvalidArgument(format!(
                "{what} is {} bytes, more than the limit of {} (node_services.max_key_bytes)",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_value(&self, what: &str, value: &[u8]) -> Result<()> {
        if value.len() > self.limits.max_value_bytes {
            return Err(ServerError::InvalidArgument(format!(
                "{what} is {} bytes, more than the limit of {} (node_services.max_value_bytes)",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    fn namespace(&self, cluster: ClusterId, namespace: &str) -> Arc<Namespace> {
        self.namespaces
            .lock()
            .entry((cluster, namespace.to_string()))
            .or_default()
            .clone()
    }

    /// Counts a namespace's keys and bytes from the store, page by page.
    async fn count(&self, cluster: ClusterId, namespace: &str) -> Result<Usage> {
        let prefix = keys::node_kv_prefix(cluster, namespace);
        let mut usage = Usage::default();
        let mut after = Vec::new();
        loop {
            let page = self.meta.store().range_after(&prefix, &after, 1000).await?;
            let Some(last) = page.last() else {
                return Ok(usage);
            };
            after = last.key.clone();
            for kv in &page {
                usage.keys += 1;
                usage.bytes += (kv.key.len() - prefix.len() + kv.value.len()) as u64;
            }
        }
    }

    /// A key's value.
    pub async fn get(
        &self,
        cluster: ClusterId,
        namespace: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.admit(cluster, namespace, Some(key))?;
        Ok(self
            .meta
            .store()
            .get(&keys::node_kv(cluster, namespace, key))
            .await?)
    }

    /// One page of the keys starting with `prefix`, strictly after `start_after`.
    pub async fn range(
        &self,
        cluster: ClusterId,
        namespace: &str,
        prefix: &[u8],
        start_after: &[u8],
        limit: u32,
    ) -> Result<RangePage> {
        self.admit(cluster, namespace, None)?;
        self.check_key("prefix", prefix)?;
        self.check_key("start_after", start_after)?;
        if limit > MAX_RANGE_LIMIT {
            return Err(ServerError::InvalidArgument(format!(
                "limit {limit} is more than the maximum of {MAX_RANGE_LIMIT}"
            )));
        }
        let limit = if limit == 0 {
            DEFAULT_RANGE_LIMIT
        } else {
            limit
        } as usize;
        let full_prefix = keys::node_kv(cluster, namespace, prefix);
        let full_after = if start_after.is_empty() {
            Vec::new()
        } else {
            keys::node_kv(cluster, namespace, start_after)
        };
        let mut page = self
            .meta
            .store()
            .range_after(&full_prefix, &full_after, limit + 1)
            .await?;
        let more = page.len() > limit;
        page.truncate(limit);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = page
            .into_iter()
            .filter_map(|kv| {
                let key = keys::parse_node_kv(cluster, namespace, &kv.key)?.to_vec();
                Some((key, kv.value))
            })
            .collect();
        let next_start_after = if more {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(RangePage {
            entries,
            next_start_after,
        })
    }

    /// Sets a key; returns whether it was created.
    pub async fn put(
        &self,
        cluster: ClusterId,
        namespace: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool> {
        self.admit(cluster, namespace, Some(key))?;
        self.check_value("value", value)?;
        let current = self
            .write(cluster, namespace, key, None, Some(value))
            .await?
            .1;
        Ok(current.is_none())
    }

    /// Deletes a key; returns whether it existed.
    pub async fn delete(&self, cluster: ClusterId, namespace: &str, key: &[u8]) -> Result<bool> {
        self.admit(cluster, namespace, Some(key))?;
        let previous = self.write(cluster, namespace, key, None, None).await?.1;
        Ok(previous.is_some())
    }

    /// Writes `new` (`None`: deletes) if the key holds what `expected` says.
    pub async fn compare_and_swap(
        &self,
        cluster: ClusterId,
        namespace: &str,
        key: &[u8],
        expected: Expected,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome> {
        self.admit(cluster, namespace, Some(key))?;
        if let Expected::Value(v) = &expected {
            self.check_value("expected_value", v)?;
        }
        if let Some(v) = new {
            self.check_value("new_value", v)?;
        }
        let (succeeded, previous) = self
            .write(cluster, namespace, key, Some(&expected), new)
            .await?;
        Ok(CasOutcome {
            succeeded,
            current: if succeeded {
                new.map(<[u8]>::to_vec)
            } else {
                previous
            },
        })
    }

    /// Sets (`new` Some) or deletes a key, if `expected` (when given) holds; under the
    /// namespace's lock, checking its quotas. Returns whether it wrote and the value before.
    async fn write(
        &self,
        cluster: ClusterId,
        namespace: &str,
        key: &[u8],
        expected: Option<&Expected>,
        new: Option<&[u8]>,
    ) -> Result<(bool, Option<Vec<u8>>)> {
        let ns = self.namespace(cluster, namespace);
        let mut usage_slot = ns.usage.lock().await;
        let usage = match *usage_slot {
            Some(u) => u,
            None => self.count(cluster, namespace).await?,
        };
        *usage_slot = Some(usage);
        let full_key = keys::node_kv(cluster, namespace, key);
        let previous = self.meta.store().get(&full_key).await?;
        let holds = match expected {
            None => true,
            Some(Expected::Absent) => previous.is_none(),
            Some(Expected::Value(v)) => previous.as_deref() == Some(v.as_slice()),
        };
        if !holds {
            return Ok((false, previous));
        }
        let size = |v: &[u8]| (key.len() + v.len()) as u64;
        let mut next = usage;
        if let Some(old) = &previous {
            next.keys -= 1;
            next.bytes = next.bytes.saturating_sub(size(old));
        }
        if let Some(v) = new {
            next.keys += 1;
            next.bytes += size(v);
        }
        // Over a quota only by growing: a namespace over a lowered limit may still shrink.
        if next.keys > usage.keys && next.keys > self.limits.max_keys_per_namespace {
            return Err(ServerError::ResourceExhausted(format!(
                "namespace {namespace:?} holds {} keys, the limit \
                 (node_services.max_keys_per_namespace)",
                usage.keys
            )));
        }
        if next.bytes > usage.bytes && next.bytes > self.limits.max_bytes_per_namespace {
            return Err(ServerError::ResourceExhausted(format!(
                "namespace {namespace:?} would hold {} bytes, more than the limit of {} \
                 (node_services.max_bytes_per_namespace)",
                next.bytes, self.limits.max_bytes_per_namespace
            )));
        }
        if previous.is_none() && new.is_none() {
            return Ok((true, None));
        }
        let op = match new {
            Some(v) => WriteOp::put(full_key.clone(), v.to_vec()),
            None => WriteOp::delete(full_key.clone()),
        };
        let txn = Txn::new().when(full_key, previous.clone()).then(op);
        match self.meta.store().txn(txn).await {
            Ok(r) if r.succeeded => {
                *usage_slot = Some(next);
                Ok((true, previous))
            }
            Ok(_) => {
                // Another writer changed the key (it cannot be this server: writes to a
                // namespace are serialised here): recount at the next write.
                *usage_slot = None;
                Err(ServerError::Aborted(format!(
                    "namespace {namespace:?}: a concurrent change won; retry"
                )))
            }
            Err(e) => {
                // The write may or may not have landed: recount at the next write.
                *usage_slot = None;
                Err(e.into())
            }
        }
    }
}
