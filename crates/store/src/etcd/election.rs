//! Leader election on etcd: one key, held under an etcd lease by the current leader.
//!
//! - **Campaign**: a [`Candidate`] creates the election key under a fresh lease in a
//!   transaction that succeeds only if the key is absent; if another server holds it, the
//!   candidate watches the key until it is deleted (resignation or lease expiry) and tries
//!   again. Followers learn who leads from the key's value on the way.
//! - **Term**: the key's create revision. It grows with every election, so terms are
//!   totally ordered, and it is what [`Fence`] compares: a write of a deposed leader names
//!   a create revision the key no longer has and is refused.
//! - **Keep-alive**: the lease is renewed six times per TTL. The leader counts its
//!   lease from when it *sent* the last renewal that etcd confirmed, so its own view expires
//!   no later than etcd's; once that time passes (or etcd says the lease is gone) it has
//!   lost leadership and [`Leadership::lost`] fires. A process paused past its lease
//!   (SIGSTOP) finds on waking that [`Leadership::is_valid`] is false before it does
//!   anything else, and its writes are fenced off regardless.
//! - **Resign**: revoking the lease deletes the key at once, so a planned handover takes
//!   one watch notification rather than a TTL.

use super::backend::{unavailable, EtcdBackend, Fence};
use super::pb;
use super::pb::lease_client::LeaseClient;
use super::pb::watch_client::WatchClient;
use crate::{Result, StoreError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// The current leader as read from the election key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader's value (whatever it campaigned with: Meridian puts its addresses there).
    pub value: Vec<u8>,
    /// Its term: the key's create revision.
    pub term: i64,
}

/// A server that wants to lead.
pub struct Candidate {
    backend: EtcdBackend,
    key: Vec<u8>,
    value: Vec<u8>,
    ttl: Duration,
    observed: watch::Sender<Option<LeaderInfo>>,
}

impl Candidate {
    /// A candidate for `key` (without the backend's namespace), announcing `value` while it
    /// leads, with an etcd lease of `ttl` (whole seconds, at least 1).
    pub fn new(
        backend: EtcdBackend,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
    ) -> Self {
        Self {
            backend,
            key: key.into(),
            value: value.into(),
            ttl: ttl.max(Duration::from_secs(1)),
            observed: watch::channel(None).0,
        }
    }

    /// The leader as last seen by [`Candidate::campaign`]: updated whenever it changes,
    /// `None` while nobody leads.
    pub fn observe(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.observed.subscribe()
    }

    /// Reads the current leader from etcd.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let request = pb::RangeRequest {
            key: self.backend.key(&self.key),
            ..Default::default()
        };
        let response = self
            .backend
            .call(true, |mut kv| {
                let request = request.clone();
                async move { kv.range(request).await }
            })
            .await?;
        Ok(response.kvs.into_iter().next().map(|kv| LeaderInfo {
            value: kv.value,
            term: kv.create_revision,
        }))
    }

    /// Campaigns until elected, then returns the leadership (its lease kept alive in the
    /// background). Retries through etcd outages; cancel by dropping the future.
    pub async fn campaign(&self) -> Result<Leadership> {
        let ttl_s = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        loop {
            match self.try_once(ttl_s).await {
                Ok(Attempt::Won(leadership)) => return Ok(leadership),
                Ok(Attempt::Held { revision }) => {
                    if let Err(e) = self.wait_deleted(revision).await {
                        tracing::debug!("watching the election key: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(e) => {
                    tracing::debug!("campaign attempt failed: {e}");
                    self.observed.send_replace(None);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// One attempt: creates the key under a fresh lease if it is absent.
    async fn try_once(&self, ttl_s: i64) -> Result<Attempt> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let (member, channel) = self.backend.member();
        let sent = Instant::now();
        let granted = match LeaseClient::new(channel)
            .lease_grant(pb::LeaseGrantRequest { ttl: ttl_s, id: 0 })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                self.backend.rotate(member);
                return Err(unavailable(s));
            }
        };
        if !granted.error.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "etcd refused a lease: {}",
                granted.error
            )));
        }
        let key = self.backend.key(&self.key);
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::Version(0)),
                range_end: Vec::new(),
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: key.clone(),
                    value: self.value.clone(),
                    lease: granted.id,
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key,
                    ..Default::default()
                })),
            }],
        };
        let response = match self
            .backend
            .call(false, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                revoke(&self.backend, granted.id).await;
                return Err(e);
            }
        };
        if response.succeeded {
            let term = response.header.map_or(0, |h| h.revision);
            self.observed.send_replace(Some(LeaderInfo {
                value: self.value.clone(),
                term,
            }));
            let ttl = Duration::from_secs(u64::try_from(granted.ttl.max(1)).unwrap_or(1));
            return Ok(Attempt::Won(Leadership::start(
                self.backend.clone(),
                self.key.clone(),
                term,
                granted.id,
                ttl,
                sent,
            )));
        }
        revoke(&self.backend, granted.id).await;
        let current = response
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(pb::response_op::Response::ResponseRange(range)) => {
                    range.kvs.into_iter().next()
                }
                _ => None,
            });
        match current {
            Some(kv) => {
                self.observed.send_replace(Some(LeaderInfo {
                    value: kv.value,
                    term: kv.create_revision,
                }));
                Ok(Attempt::Held {
                    revision: kv.mod_revision,
                })
            }
            // Deleted between the compare and the range: just try again.
            None => Ok(Attempt::Held { revision: 0 }),
        }
    }

    /// Returns once the election key is deleted after `revision` (at once if `revision` is
    /// 0), or changes hands (then the observed leader is updated and the wait goes on).
    async fn wait_deleted(&self, revision: i64) -> Result<()> {
        if revision == 0 {
            return Ok(());
        }
        let (req_tx, req_rx) = mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: self.backend.key(&self.key),
                    range_end: Vec::new(),
                    start_revision: revision + 1,
                    progress_notify: true,
                },
            )),
        };
        req_tx.send(create).await.map_err(|_| StoreError::Closed)?;
        let (member, channel) = self.backend.member();
        let mut stream = match WatchClient::new(channel)
            .watch(ReceiverStream::new(req_rx))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                self.backend.rotate(member);
                return Err(unavailable(s));
            }
        };
        loop {
            let Some(response) = stream.message().await.map_err(unavailable)? else {
                return Err(StoreError::Unavailable("etcd ended the watch".into()));
            };
            if response.canceled || response.compact_revision > 0 {
                return Ok(());
            }
            for event in response.events {
                if event.r#type == pb::event::EventType::Delete as i32 {
                    self.observed.send_replace(None);
                    return Ok(());
                }
                if let Some(kv) = event.kv {
                    self.observed.send_replace(Some(LeaderInfo {
                        value: kv.value,
                        term: kv.create_revision,
                    }));
                }
            }
        }
    }
}

enum Attempt {
    Won(Leadership),
    Held { revision: i64 },
}

async fn revoke(backend: &EtcdBackend, id: i64) {
    let (member, channel) = backend.member();
    let revoked = tokio::time::timeout(
        Duration::from_secs(2),
        LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id }),
    )
    .await;
    match revoked {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            backend.rotate(member);
            tracing::debug!("revoking etcd lease {id:x}: {e}");
        }
        Err(_) => {
            backend.rotate(member);
            tracing::debug!("revoking etcd lease {id:x}: no answer within 2 s");
        }
    }
}

/// Being the leader: a term, an etcd lease kept alive in the background, and the news when
/// it is lost. Dropping it stops the keep-alive (the lease then runs out on its own); call
/// [`Leadership::resign`] to hand over at once.
pub struct Leadership {
    backend: EtcdBackend,
    key: Vec<u8>,
    term: i64,
    lease_id: i64,
    valid_until: Arc<Mutex<Instant>>,
    lost: watch::Receiver<bool>,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Leadership {
    fn start(
        backend: EtcdBackend,
        key: Vec<u8>,
        term: i64,
        lease_id: i64,
        ttl: Duration,
        granted_at: Instant,
    ) -> Self {
        let valid_until = Arc::new(Mutex::new(granted_at + ttl));
        let (lost_tx, lost) = watch::channel(false);
        let keepalive = tokio::spawn(keep_alive(
            backend.clone(),
            lease_id,
            ttl,
            valid_until.clone(),
            lost_tx,
        ));
        Self {
            backend,
            key,
            term,
            lease_id,
            valid_until,
            lost,
            keepalive,
        }
    }

    /// The term: the election key's create revision.
    pub fn term(&self) -> i64 {
        self.term
    }

    /// The fence every write of this term must pass.
    pub fn fence(&self) -> Fence {
        Fence {
            key: self.key.clone(),
            create_revision: self.term,
        }
    }

    /// Whether the lease is surely still held: it was confirmed, and the time counted from
    /// the sending of its last confirmed renewal has not run out.
    pub fn is_valid(&self) -> bool {
        !*self.lost.borrow() && Instant::now() < *self.valid_until.lock()
    }

    /// A cheap handle that answers [`Leadership::is_valid`] from other tasks.
    pub fn validity(&self) -> LeaseValidity {
        LeaseValidity {
            valid_until: self.valid_until.clone(),
            lost: self.lost.clone(),
        }
    }

    /// Resolves when leadership is lost (the lease ran out or etcd revoked it).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    /// Gives leadership up at once: stops renewing and revokes the lease, which deletes the
    /// election key so that another candidate wins without waiting for a TTL.
    pub async fn resign(self) {
        self.keepalive.abort();
        revoke(&self.backend, self.lease_id).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Answers whether a [`Leadership`] is still surely held, from any task.
#[derive(Clone)]
pub struct LeaseValidity {
    valid_until: Arc<Mutex<Instant>>,
    lost: watch::Receiver<bool>,
}

impl LeaseValidity {
    /// See [`Leadership::is_valid`].
    pub fn is_valid(&self) -> bool {
        !*self.lost.borrow() && Instant::now() < *self.valid_until.lock()
    }
}

/// Renews the lease six times per TTL, over one keep-alive stream (re-opened if it
/// breaks), until it is lost.
async fn keep_alive(
    backend: EtcdBackend,
    lease_id: i64,
    ttl: Duration,
    valid_until: Arc<Mutex<Instant>>,
    lost: watch::Sender<bool>,
) {
    // Six renewals per TTL: the lease then survives an etcd leader election (1-2 s with
    // etcd's defaults) that stalls renewals, when the TTL is 3 s or more.
    let period = ttl / 6;
    let lose = |why: &str| {
        tracing::warn!(lease = format!("{lease_id:x}"), "leadership lost: {why}");
        lost.send_replace(true);
    };
    'stream: loop {
        let (req_tx, req_rx) = mpsc::channel(1);
        // etcd answers the call only with its first renewal, so the first request is queued
        // before the call is made.
        let mut sent = Instant::now();
        if req_tx
            .send(pb::LeaseKeepAliveRequest { id: lease_id })
            .await
            .is_err()
        {
            continue 'stream;
        }
        let (member, channel) = backend.member();
        let deadline = *valid_until.lock();
        let mut client = LeaseClient::new(channel);
        let opened = tokio::select! {
            r = client.lease_keep_alive(ReceiverStream::new(req_rx)) => r,
            _ = tokio::time::sleep(period) => Err(tonic::Status::deadline_exceeded("no answer")),
            _ = tokio::time::sleep_until(deadline) => {
                return lose("the lease ran out while reconnecting to etcd");
            }
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::debug!(member, "opening a keep-alive stream: {e}");
                backend.rotate(member);
                continue 'stream;
            }
        };
        let mut first = true;
        loop {
            if !first {
                sent = Instant::now();
                if req_tx
                    .send(pb::LeaseKeepAliveRequest { id: lease_id })
                    .await
                    .is_err()
                {
                    backend.rotate(member);
                    continue 'stream;
                }
            }
            first = false;
            let deadline = *valid_until.lock();
            let answer = tokio::select! {
                m = stream.message() => m,
                // A member that does not answer within a period (paused, partitioned) is
                // left for the next one while the lease still runs.
                _ = tokio::time::sleep(period) => Err(tonic::Status::deadline_exceeded("no answer")),
                _ = tokio::time::sleep_until(deadline) => {
                    return lose("no keep-alive confirmed before the lease ran out");
                }
            };
            match answer {
                Ok(Some(r)) if r.ttl > 0 => {
                    let ttl = Duration::from_secs(u64::try_from(r.ttl).unwrap_or(1));
                    let mut until = valid_until.lock();
                    *until = (*until).max(sent + ttl);
                }
                Ok(Some(_)) => return lose("etcd says the lease has expired"),
                Ok(None) | Err(_) => {
                    backend.rotate(member);
                    continue 'stream;
                }
            }
            let next = sent + period;
            let deadline = *valid_until.lock();
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return lose("the lease ran out");
                }
            }
        }
    }
}
