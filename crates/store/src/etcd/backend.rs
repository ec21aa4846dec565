//! [`EtcdBackend`]: a [`KvBackend`] on etcd's v3 gRPC API.

use super::pb;
use super::pb::kv_client::KvClient;
use super::pb::watch_client::WatchClient;
use super::{prefix_end, MAX_REQUEST_BYTES, MAX_TXN_OPS};
use crate::backend::{effective_limit, validate_key, validate_ops, validate_txn};
use crate::{Compare, WriteOp};
use crate::{KeyValue, KvBackend, Result, StoreError, Txn, TxnResponse, WatchEvent, WatchStream};
use async_trait::async_trait;
use prost::Message;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Keys read per request when a scan has no limit: pages are read at one revision, so a
/// long scan is still one consistent snapshot.
const SCAN_PAGE: usize = 2000;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:port` or `host:port`); requests are
    /// spread over the members that answer.
    pub endpoints: Vec<String>,
    /// Prepended to every key (which all start with `/meridian/v1/`), so that several
    /// deployments (or tests) can share one etcd. Default empty.
    pub namespace: String,
    /// How long one request may take before it fails as [`StoreError::Unavailable`].
    /// Default 5 s.
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".into()],
            namespace: String::new(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The election key and term that every write of a leader must still match: if another
/// server has been elected since (or the key's lease ran out), the write is refused with
/// [`StoreError::Fenced`] and applies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key (without the namespace).
    pub key: Vec<u8>,
    /// The key's create revision when this leader was elected: its term.
    pub create_revision: i64,
}

/// What every clone of a backend shares.
struct Shared {
    /// One lazily connected channel per member: requests go to the current one and move on
    /// to the next when it cannot be reached (tonic's balancer keeps picking a dead member).
    channels: Vec<Channel>,
    current: AtomicUsize,
    namespace: Vec<u8>,
    closed: AtomicBool,
    /// Flipped on close; ends watch tasks.
    close_tx: tokio::sync::watch::Sender<bool>,
}

/// The most bytes a response may have (a long scan page).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A [`KvBackend`] on etcd. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct EtcdBackend {
    shared: Arc<Shared>,
    fence: Option<Fence>,
}

pub(crate) fn unavailable(s: tonic::Status) -> StoreError {
    StoreError::Unavailable(format!("etcd: {}: {}", s.code(), s.message()))
}

/// Whether a failed request surely never reached a member that could apply it (so a retry
/// elsewhere cannot apply it twice).
fn never_applied(s: &tonic::Status) -> bool {
    let m = s.message();
    s.code() == tonic::Code::Unavailable
        && (m.contains("connect") || m.contains("no leader") || m.contains("not capable"))
}

impl EtcdBackend {
    /// Connects lazily to the members of `config` (the first request connects). Fails only
    /// on a malformed endpoint.
    pub fn connect(config: &EtcdConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidArgument(
                "no etcd endpoint given (--etcd-endpoints host:port,...)".into(),
            ));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for e in &config.endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let endpoint = Endpoint::from_shared(url)
                .map_err(|err| {
                    StoreError::InvalidArgument(format!("bad etcd endpoint {e:?}: {err}"))
                })?
                .connect_timeout(Duration::from_secs(2))
                .timeout(config.request_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true);
            endpoints.push(endpoint.connect_lazy());
        }
        Ok(Self {
            shared: Arc::new(Shared {
                channels: endpoints,
                current: AtomicUsize::new(0),
                namespace: config.namespace.clone().into_bytes(),
                closed: AtomicBool::new(false),
                close_tx: tokio::sync::watch::channel(false).0,
            }),
            fence: None,
        })
    }

    /// A view of this backend whose every write also checks `fence`, and fails with
    /// [`StoreError::Fenced`] (applying nothing) once it no longer holds.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            shared: self.shared.clone(),
            fence: Some(fence),
        }
    }

    /// The fence of this view, if it is [fenced](EtcdBackend::fenced).
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Waits until etcd answers a read, for at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get(b"/ready-probe").await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        [&self.shared.namespace[..], key].concat()
    }

    fn strip<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        key.strip_prefix(&self.shared.namespace[..]).unwrap_or(key)
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// The member requests go to now, and its channel.
    pub(crate) fn member(&self) -> (usize, Channel) {
        let i = self.shared.current.load(Ordering::Acquire) % self.shared.channels.len();
        (i, self.shared.channels[i].clone())
    }

    /// Moves on from member `failed` to the next one (unless another task already did).
    pub(crate) fn rotate(&self, failed: usize) {
        let next = (failed + 1) % self.shared.channels.len();
        let _ =
            self.shared
                .current
                .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Runs `call` on the current member, moving on to the next member when one cannot be
    /// reached. Reads (`idempotent`) are retried on any error; writes only when they surely
    /// were not applied, since a transaction applied twice would see its own write.
    pub(crate) async fn call<T, F, Fut>(&self, idempotent: bool, mut call: F) -> Result<T>
    where
        F: FnMut(KvClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let attempts = 2 * self.shared.channels.len();
        let mut attempt = 0;
        loop {
            self.check_open()?;
            let (i, channel) = self.member();
            let client = KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
            match call(client).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => {
                    attempt += 1;
                    if attempt >= attempts || !(idempotent || never_applied(&s)) {
                        return Err(unavailable(s));
                    }
                    tracing::debug!(
                        member = i,
                        "etcd request failed, trying the next member: {s}"
                    );
                    self.rotate(i);
                    if attempt >= self.shared.channels.len() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    /// Resolves once the backend is closed.
    pub(crate) fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.close_tx.subscribe()
    }

    fn request_op(&self, op: WriteOp) -> pb::RequestOp {
        use pb::request_op::Request;
        let request = match op {
            WriteOp::Put { key, value } => Request::RequestPut(pb::PutRequest {
                key: self.key(&key),
                value,
                lease: 0,
            }),
            WriteOp::Delete { key } => Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: self.key(&key),
                range_end: Vec::new(),
            }),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    fn compare(&self, c: Compare) -> pb::Compare {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let key = self.key(&c.key);
        match c.expected {
            // Version 0 is etcd's "absent"; over a range, "every key absent".
            None => pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                range_end: if c.prefix {
                    prefix_end(&key)
                } else {
                    Vec::new()
                },
                key,
                target_union: Some(TargetUnion::Version(0)),
            },
            // A value compare on an absent key fails in etcd, as it must here.
            Some(v) => pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key,
                target_union: Some(TargetUnion::Value(v)),
                range_end: Vec::new(),
            },
        }
    }

    fn fence_compare(&self) -> Option<pb::Compare> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        self.fence.as_ref().map(|f| pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: self.key(&f.key),
            target_union: Some(TargetUnion::CreateRevision(f.create_revision)),
            range_end: Vec::new(),
        })
    }

    /// Turns one branch into etcd request ops: the last write of each key wins (etcd
    /// refuses a transaction that writes a key twice), and the count must fit etcd's limit.
    fn branch(&self, ops: Vec<WriteOp>) -> Result<Vec<pb::RequestOp>> {
        let ops = last_write_per_key(ops);
        if ops.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidArgument(format!(
                "a write of {} keys exceeds etcd's limit of {MAX_TXN_OPS} per transaction; \
                 split it into steps",
                ops.len()
            )));
        }
        Ok(ops.into_iter().map(|op| self.request_op(op)).collect())
    }

    /// Sends one transaction, fenced if this view has a fence, and returns whether the
    /// caller's compares held.
    async fn send(&self, txn: pb::TxnRequest) -> Result<bool> {
        self.check_open()?;
        let request = match self.fence_compare() {
            None => txn,
            Some(fence) => pb::TxnRequest {
                compare: vec![fence],
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestTxn(txn)),
                }],
                failure: Vec::new(),
            },
        };
        let len = request.encoded_len();
        if len > MAX_REQUEST_BYTES {
            return Err(StoreError::TooLarge {
                what: "etcd request",
                len,
                max: MAX_REQUEST_BYTES,
            });
        }
        let response = self
            .call(false, |mut kv| {
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await?;
        match &self.fence {
            None => Ok(response.succeeded),
            Some(fence) if !response.succeeded => Err(StoreError::Fenced(format!(
                "the election key of term {} is gone: another server leads",
                fence.create_revision
            ))),
            Some(_) => match response
                .responses
                .into_iter()
                .next()
                .and_then(|r| r.response)
            {
                Some(pb::response_op::Response::ResponseTxn(inner)) => Ok(inner.succeeded),
                _ => Err(StoreError::Backend(
                    "etcd answered a fenced transaction without its inner result".into(),
                )),
            },
        }
    }

    /// One range request at `revision` (0: the newest).
    async fn range_once(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        revision: i64,
    ) -> Result<pb::RangeResponse> {
        let request = pb::RangeRequest {
            key: start,
            range_end: end,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            revision,
            ..Default::default()
        };
        self.call(true, |mut kv| {
            let request = request.clone();
            async move { kv.range(request).await }
        })
        .await
    }
}

/// Keeps the last write of each key, in the order of those last writes.
fn last_write_per_key(ops: Vec<WriteOp>) -> Vec<WriteOp> {
    let mut seen = HashSet::new();
    let mut kept: Vec<WriteOp> = ops
        .into_iter()
        .rev()
        .filter(|op| seen.insert(op.key().to_vec()))
        .collect();
    kept.reverse();
    kept
}

#[async_trait]
impl KvBackend for EtcdBackend {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn max_batch_ops(&self) -> usize {
        MAX_TXN_OPS
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        let response = self.range_once(self.key(key), Vec::new(), 1, 0).await?;
        Ok(response.kvs.into_iter().next().map(|kv| kv.value))
    }

    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let full_prefix = self.key(prefix);
        let end = prefix_end(&full_prefix);
        let mut start = if start_after >= prefix {
            let mut s = self.key(start_after);
            s.push(0);
            s
        } else {
            full_prefix
        };
        let mut remaining = effective_limit(limit);
        let (mut out, mut revision) = (Vec::new(), 0);
        while remaining > 0 {
            let page = remaining.min(SCAN_PAGE);
            let response = self
                .range_once(start.clone(), end.clone(), page, revision)
                .await?;
            if revision == 0 {
                revision = response.header.as_ref().map_or(0, |h| h.revision);
            }
            let got = response.kvs.len();
            if let Some(last) = response.kvs.last() {
                start = last.key.clone();
                start.push(0);
            }
            out.extend(response.kvs.into_iter().map(|kv| KeyValue {
                key: self.strip(&kv.key).to_vec(),
                value: kv.value,
            }));
            remaining -= got.min(remaining);
            if !response.more || got == 0 {
                break;
            }
        }
        Ok(out)
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        validate_ops(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let success = self.branch(ops)?;
        self.send(pb::TxnRequest {
            compare: Vec::new(),
            success,
            failure: Vec::new(),
        })
        .await?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        if txn.compares.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidArgument(format!(
                "{} compares exceed etcd's limit of {MAX_TXN_OPS} per transaction",
                txn.compares.len()
            )));
        }
        let request = pb::TxnRequest {
            compare: txn.compares.into_iter().map(|c| self.compare(c)).collect(),
            success: self.branch(txn.success)?,
            failure: self.branch(txn.failure)?,
        };
        Ok(TxnResponse {
            succeeded: self.send(request).await?,
        })
    }

    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream> {
        self.check_open()?;
        let key = self.key(prefix);
        let (tx, rx) = mpsc::channel(1024);
        let watcher = PrefixWatcher {
            backend: self.clone(),
            range_end: prefix_end(&key),
            key,
            tx,
        };
        let start = watcher.open(0).await?;
        tokio::spawn(watcher.run(start));
        Ok(WatchStream::from_channel(rx))
    }

    async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::Release);
        let _ = self.shared.close_tx.send(true);
        Ok(())
    }
}

/// The task behind one [`EtcdBackend::watch`]: forwards etcd's events, and re-opens the
/// watch where it left off when the connection breaks.
struct PrefixWatcher {
    backend: EtcdBackend,
    key: Vec<u8>,
    range_end: Vec<u8>,
    tx: mpsc::Sender<WatchEvent>,
}

/// An open etcd watch: the request side (kept open), the response stream, and the first
/// revision it will report.
type OpenWatch = (
    mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
    i64,
);

impl PrefixWatcher {
    /// Opens the watch from `start_revision` (0: now) and waits until etcd confirms it, so
    /// that every change committed after this returns is seen.
    async fn open(&self, start_revision: i64) -> Result<OpenWatch> {
        let (req_tx, req_rx) = mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: self.key.clone(),
                    range_end: self.range_end.clone(),
                    start_revision,
                    progress_notify: false,
                },
            )),
        };
        req_tx.send(create).await.map_err(|_| StoreError::Closed)?;
        let (member, channel) = self.backend.member();
        let opened = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client =
                WatchClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
            let mut stream = client
                .watch(ReceiverStream::new(req_rx))
                .await?
                .into_inner();
            let first = stream.message().await?;
            Ok::<_, tonic::Status>((stream, first))
        })
        .await;
        let (stream, first) = match opened {
            Ok(Ok(o)) => o,
            Ok(Err(s)) => {
                self.backend.rotate(member);
                return Err(unavailable(s));
            }
            Err(_) => {
                self.backend.rotate(member);
                return Err(StoreError::Unavailable(
                    "etcd did not confirm a watch within 2 s".into(),
                ));
            }
        };
        match first {
            Some(r) if r.created && !r.canceled => {
                let next = match start_revision {
                    0 => r.header.map_or(0, |h| h.revision + 1),
                    from => from,
                };
                Ok((req_tx, stream, next))
            }
            Some(r) => Err(StoreError::Unavailable(format!(
                "etcd refused the watch: {}",
                r.cancel_reason
            ))),
            None => Err(StoreError::Unavailable(
                "etcd closed the watch stream".into(),
            )),
        }
    }

    async fn run(self, first: OpenWatch) {
        let mut closed = self.backend.closed();
        let mut open = Some(first);
        let mut next_revision = 0;
        loop {
            let (req_tx, mut stream, from) = match open.take() {
                Some(o) => o,
                None => match self.open(next_revision).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::debug!("re-opening an etcd watch: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = closed.wait_for(|c| *c) => return,
                            _ = self.tx.closed() => return,
                        }
                        continue;
                    }
                },
            };
            next_revision = next_revision.max(from);
            loop {
                let message = tokio::select! {
                    m = stream.message() => m,
                    _ = closed.wait_for(|c| *c) => return,
                    _ = self.tx.closed() => return,
                };
                let response = match message {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                };
                if response.compact_revision > 0 || response.canceled {
                    // The history we would resume from is gone: say so, go on from now.
                    if self
                        .tx
                        .send(WatchEvent::Lagged { missed_commits: 1 })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next_revision = 0;
                    break;
                }
                for event in response.events {
                    let Some(kv) = event.kv else { continue };
                    next_revision = next_revision.max(kv.mod_revision + 1);
                    let key = self.backend.strip(&kv.key).to_vec();
                    let event = if event.r#type == pb::event::EventType::Delete as i32 {
                        WatchEvent::Delete { key }
                    } else {
                        WatchEvent::Put {
                            key,
                            value: kv.value,
                        }
                    };
                    if self.tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            drop(req_tx);
        }
    }
}
