//! Leader elections for database nodes (`ElectionService`), on the metadata store.
//!
//! Who wins, when a lease runs out and who may resign is decided by the pure
//! `meridian_scheduler::election`; this module loads and persists its state. Each election
//! is one record at `keys::node_election(cluster, name)` (term, leader, value, ttl), written
//! by compare-and-swap on the previous record through the serving server's store (with HA,
//! fenced by its term) before any answer that depends on it. Lease deadlines live only in
//! this server's memory, on its monotonic clock: a renewal writes nothing unless the value
//! or ttl changes.
//!
//! A server loads an election when it first touches it (after a restart or a Meridian
//! failover: after it became the serving server) and gives the stored leader a full fresh
//! lease from that moment, which is never shorter than what an earlier server granted: that
//! server granted it before it stopped serving. The term comes from the store, so terms
//! never go back.

use super::node_rate::RateLimits;
use super::Meta;
use crate::config::NodeServicesConfig;
use crate::error::{Result, ServerError};
use crate::server::ServingTerm;
use meridian_model::{validate_name, ClusterId};
use meridian_scheduler::election::{Campaign, CampaignDecision, ElectionState, Holder};
use meridian_store::{keys, Txn, WriteOp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// The largest election value, whatever `node_services.max_value_bytes` says: the record
/// is JSON, whose byte arrays take up to four times their size, and must fit in one store
/// value.
pub const MAX_ELECTION_VALUE_BYTES: usize = 64 * 1024;

/// The stored record of an election (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredElection {
    term: u64,
    leader: Option<StoredLeader>,
}

/// The durable part of a leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredLeader {
    candidate: String,
    value: Vec<u8>,
    ttl_ms: u64,
}

impl StoredElection {
    fn of(state: &ElectionState) -> Self {
        Self {
            term: state.term,
            leader: state.holder.as_ref().map(|h| StoredLeader {
                candidate: h.candidate.clone(),
                value: h.value.clone(),
                ttl_ms: h.ttl_ms,
            }),
        }
    }
}

/// An election as this server holds it: the state, and the stored bytes it came from (the
/// expected value of the next compare-and-swap).
struct Loaded {
    state: ElectionState,
    raw: Option<Vec<u8>>,
}

/// One election: its state (loaded on first use) and a counter bumped at every change.
struct Slot {
    loaded: tokio::sync::Mutex<Option<Loaded>>,
    changes: watch::Sender<u64>,
}

impl Slot {
    /// Whether dropping it loses nothing: nobody uses or observes it, and it holds no
    /// leader. A leader's lease deadline lives only here (a reload would grant a fresh
    /// one), so a slot with a holder, live or not, is kept.
    fn idle(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && self.changes.receiver_count() == 0
            && self
                .loaded
                .try_lock()
                .is_ok_and(|l| l.as_ref().is_none_or(|l| l.state.holder.is_none()))
    }
}

/// How often the slots are swept of idle ones (ms): names come from clients, and an
/// observe or leader query of a name nobody campaigns for makes a slot.
const SWEEP_EVERY_MS: u64 = 10_000;

/// A leadership as answered to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// The leader.
    pub candidate: String,
    /// What it announces.
    pub value: Vec<u8>,
    /// Its term (the fencing token).
    pub term: u64,
    /// The lease length granted.
    pub ttl_ms: u64,
    /// How long the lease still runs on this server's clock.
    pub remaining_ms: u64,
}

/// An election as answered to clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionView {
    /// The latest term (0: never had a leader).
    pub term: u64,
    /// The leader, if a lease runs.
    pub leader: Option<LeaderView>,
}

/// The outcome of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignOutcome {
    /// The caller leads.
    pub elected: bool,
    /// The caller already led and renewed.
    pub renewed: bool,
    /// Who leads (the caller when elected).
    pub leader: LeaderView,
}

fn view_of(holder: &Holder, term: u64, now: u64) -> LeaderView {
    LeaderView {
        candidate: holder.candidate.clone(),
        value: holder.value.clone(),
        term,
        ttl_ms: holder.ttl_ms,
        remaining_ms: holder.remaining_ms(now),
    }
}

/// The election service's state for one serving term.
pub struct Elections {
    meta: Arc<Meta>,
    term: ServingTerm,
    limits: NodeServicesConfig,
    rate: RateLimits,
    slots: Mutex<HashMap<(ClusterId, String), Arc<Slot>>>,
    swept_at: std::sync::atomic::AtomicU64,
}

impl Elections {
    /// Elections over `meta`'s store, served in `term`, with `limits`.
    pub fn new(meta: Arc<Meta>, term: ServingTerm, limits: NodeServicesConfig) -> Self {
        Self {
            rate: RateLimits::new("election", limits.requests_per_second, limits.burst),
            meta,
            term,
            limits,
            slots: Mutex::new(HashMap::new()),
            swept_at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Validates the election name, checks that this server still surely serves (a lease
    /// granted or reported by a deposed server could be stale), and takes a request token.
    fn admit(&self, cluster: ClusterId, name: &str) -> Result<()> {
        validate_name("election", name)?;
        self.serving()?;
        self.rate.check(cluster, name, self.meta.now_ms())
    }

    fn serving(&self) -> Result<()> {
        if self.term.is_valid() {
            Ok(())
        } else {
            Err(ServerError::Unavailable(format!(
                "{} may no longer lead Meridian (term {}); retry on the leader",
                self.term.server_name, self.term.term
            )))
        }
    }

    fn slot(&self, cluster: ClusterId, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        let now = self.meta.now_ms();
        let swept_at = self.swept_at.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(swept_at) >= SWEEP_EVERY_MS {
            slots.retain(|_, slot| !slot.idle());
            self.swept_at
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
        slots
            .entry((cluster, name.to_string()))
            .or_insert_with(|| {
                Arc::new(Slot {
                    loaded: tokio::sync::Mutex::new(None),
                    changes: watch::channel(0).0,
                })
            })
            .clone()
    }

    /// Reads an election from the store; its leader gets a fresh lease from now.
    async fn load(&self, cluster: ClusterId, name: &str) -> Result<Loaded> {
        let raw = self
            .meta
            .store()
            .get(&keys::node_election(cluster, name))
            .await?;
        let stored = match &raw {
            None => StoredElection {
                term: 0,
                leader: None,
            },
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| ServerError::Corrupt(format!("election {name:?}: {e}")))?,
        };
        let holder = stored.leader.map(|l| (l.candidate, l.value, l.ttl_ms));
        Ok(Loaded {
            state: ElectionState::loaded(stored.term, holder, self.meta.now_ms()),
            raw,
        })
    }

    /// Campaigns for `name`: wins with a new term if nobody leads, renews if `candidate`
    /// leads, else answers who does.
    pub async fn campaign(
        &self,
        cluster: ClusterId,
        name: &str,
        candidate: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<CampaignOutcome> {
        self.admit(cluster, name)?;
        validate_name("candidate", candidate)?;
        let max_value = self.limits.max_value_bytes.min(MAX_ELECTION_VALUE_BYTES);
        if value.len() > max_value {
            return Err(ServerError::InvalidArgument(format!(
                "value is {} bytes, more than the limit of {max_value} for an election \
                 (node_services.max_value_bytes, at most {MAX_ELECTION_VALUE_BYTES})",
                value.len(),
            )));
        }
        if ttl_ms < self.limits.min_ttl_ms || ttl_ms > self.limits.max_ttl_ms {
            return Err(ServerError::InvalidArgument(format!(
                "ttl_ms {ttl_ms} is outside [{}, {}] (node_services.min_ttl_ms, max_ttl_ms)",
                self.limits.min_ttl_ms, self.limits.max_ttl_ms
            )));
        }
        let slot = self.slot(cluster, name);
        let mut guard = slot.loaded.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(cluster, name).await?);
        }
        let Some(loaded) = guard.as_mut() else {
            return Err(ServerError::Unavailable("election not loaded".into()));
        };
        let ask = Campaign {
            candidate,
            value,
            ttl_ms,
        };
        match loaded.state.campaign(ask, self.meta.now_ms()) {
            CampaignDecision::Lost { leader, term } => Ok(CampaignOutcome {
                elected: false,
                renewed: false,
                leader: view_of(&leader, term, self.meta.now_ms()),
            }),
            CampaignDecision::Elected {
                mut next,
                renewed,
                persist,
            } => {
                if persist {
                    match self.persist(cluster, name, loaded, &next).await {
                        Ok(raw) => loaded.raw = Some(raw),
                        Err(e) => {
                            // The write may or may not have landed: read it again next time.
                            *guard = None;
                            return Err(e);
                        }
                    }
                }
                // The lease runs from now, after the write: never earlier than the
                // candidate's own clock starts it (when it sent the request).
                let now = self.meta.now_ms();
                if let Some(h) = next.holder.as_mut() {
                    h.expires_at_ms = now.saturating_add(h.ttl_ms);
                }
                let leader = next
                    .holder
                    .as_ref()
                    .map(|h| view_of(h, next.term, now))
                    .ok_or_else(|| ServerError::Corrupt("elected without a holder".into()))?;
                let changed = !renewed || persist;
                loaded.state = next;
                if changed {
                    slot.changes.send_modify(|n| *n += 1);
                }
                Ok(CampaignOutcome {
                    elected: true,
                    renewed,
                    leader,
                })
            }
        }
    }

    /// Writes `next` in place of what `loaded` holds (compare-and-swap); returns the bytes
    /// written.
    async fn persist(
        &self,
        cluster: ClusterId,
        name: &str,
        loaded: &Loaded,
        next: &ElectionState,
    ) -> Result<Vec<u8>> {
        let key = keys::node_election(cluster, name);
        let raw = serde_json::to_vec(&StoredElection::of(next))
            .map_err(|e| ServerError::Corrupt(format!("election {name:?}: {e}")))?;
        let txn = Txn::new()
            .when(key.clone(), loaded.raw.clone())
            .then(WriteOp::put(key, raw.clone()));
        if self.meta.store().txn(txn).await?.succeeded {
            Ok(raw)
        } else {
            Err(ServerError::Aborted(format!(
                "election {name:?} changed concurrently; retry"
            )))
        }
    }

    /// Who leads `name` now.
    pub async fn leader(&self, cluster: ClusterId, name: &str) -> Result<ElectionView> {
        self.admit(cluster, name)?;
        self.view(cluster, name).await
    }

    /// [`Elections::leader`] without a request token (an open Observe stream asks again at
    /// every change).
    pub async fn view(&self, cluster: ClusterId, name: &str) -> Result<ElectionView> {
        self.serving()?;
        let slot = self.slot(cluster, name);
        let mut guard = slot.loaded.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(cluster, name).await?);
        }
        let Some(loaded) = guard.as_ref() else {
            return Err(ServerError::Unavailable("election not loaded".into()));
        };
        let now = self.meta.now_ms();
        Ok(ElectionView {
            term: loaded.state.term,
            leader: loaded
                .state
                .leader(now)
                .map(|h| view_of(h, loaded.state.term, now)),
        })
    }

    /// Changes of `name` (the counter moves at every new leader, value, ttl or
    /// resignation; a lease running out moves nothing: watchers time it themselves).
    pub fn subscribe(&self, cluster: ClusterId, name: &str) -> Result<watch::Receiver<u64>> {
        self.admit(cluster, name)?;
        Ok(self.slot(cluster, name).changes.subscribe())
    }

    /// Gives up `name`, if `candidate` holds it in `term`; FAILED_PRECONDITION otherwise.
    pub async fn resign(
        &self,
        cluster: ClusterId,
        name: &str,
        candidate: &str,
        term: u64,
    ) -> Result<()> {
        self.admit(cluster, name)?;
        let slot = self.slot(cluster, name);
        let mut guard = slot.loaded.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(cluster, name).await?);
        }
        let Some(loaded) = guard.as_mut() else {
            return Err(ServerError::Unavailable("election not loaded".into()));
        };
        let next = loaded
            .state
            .resign(candidate, term)
            .map_err(|e| ServerError::FailedPrecondition(format!("election {name:?}: {e}")))?;
        match self.persist(cluster, name, loaded, &next).await {
            Ok(raw) => {
                loaded.raw = Some(raw);
                loaded.state = next;
                slot.changes.send_modify(|n| *n += 1);
                Ok(())
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(holder: Option<Option<&str>>) -> Arc<Slot> {
        let loaded = holder.map(|h| Loaded {
            state: ElectionState::loaded(3, h.map(|c| (c.to_string(), Vec::new(), 1000)), 0),
            raw: None,
        });
        Arc::new(Slot {
            loaded: tokio::sync::Mutex::new(loaded),
            changes: watch::channel(0).0,
        })
    }

    #[test]
    fn only_slots_that_hold_nothing_and_serve_nobody_are_idle() {
        assert!(slot(None).idle(), "never loaded");
        assert!(slot(Some(None)).idle(), "loaded, no leader");
        assert!(
            !slot(Some(Some("a"))).idle(),
            "a holder's lease deadline lives only in the slot"
        );
        let observed = slot(Some(None));
        let _observer = observed.changes.subscribe();
        assert!(!observed.idle(), "observed");
        let in_use = slot(Some(None));
        let _request = in_use.clone();
        assert!(!in_use.idle(), "a request holds it");
    }
}
