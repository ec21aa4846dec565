//! [`SequenceAllocator`]: never-reused ids, reserved in ranges by compare-and-swap.
//!
//! The key holds the high-water mark `H` as decimal ASCII: every id in `1..=H` has been
//! handed out or skipped. An allocator reserves `H+1..=H+step` by CAS-ing `H` to `H+step`,
//! then hands those ids out from memory. After a restart it starts above the persisted `H`,
//! so ids reserved but not handed out before a crash become a gap, never a duplicate. Several
//! allocators (processes) may share one key; each CAS reserves a disjoint range.

use crate::{keys, KvBackend, Result, StoreError, Txn, WriteOp};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How many times a reservation is retried when other allocators win the CAS (a guard
/// against a backend whose CAS never succeeds, not a tuning knob).
const MAX_CAS_ATTEMPTS: u32 = 1000;
/// The longest pause between two reservation attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(5);

/// A persistent id sequence starting at 1. Safe to share between tasks.
pub struct SequenceAllocator {
    backend: Arc<dyn KvBackend>,
    key: Vec<u8>,
    step: u64,
    /// Ids reserved but not yet handed out.
    reserved: Mutex<Range<u64>>,
}

impl SequenceAllocator {
    /// An allocator over `key` reserving `step` ids per write (`step` 0 is taken as 1).
    pub fn new(backend: Arc<dyn KvBackend>, key: impl Into<Vec<u8>>, step: u64) -> Self {
        Self {
            backend,
            key: key.into(),
            step: step.max(1),
            reserved: Mutex::new(0..0),
        }
    }

    /// The next id.
    pub async fn next(&self) -> Result<u64> {
        Ok(self.next_n(1).await?.start)
    }

    /// `n` consecutive ids (empty for `n == 0`).
    pub async fn next_n(&self, n: u64) -> Result<Range<u64>> {
        let mut reserved = self.reserved.lock().await;
        if reserved.end - reserved.start < n {
            *reserved = self.reserve(&reserved, n).await?;
        }
        let ids = reserved.start..reserved.start + n;
        reserved.start = ids.end;
        Ok(ids)
    }

    /// Reserves at least `n` more ids, extending `current` when no other allocator reserved
    /// in between (so no gap is left), and returns the ids now available.
    async fn reserve(&self, current: &Range<u64>, n: u64) -> Result<Range<u64>> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let old = self.backend.get(&self.key).await?;
            let high = match &old {
                None => 0,
                Some(v) => keys::decode_id(v)?,
            };
            let new_high = high
                .checked_add(n.max(self.step))
                .filter(|&h| h < u64::MAX)
                .ok_or_else(|| StoreError::Corrupt(format!("sequence {high} would overflow")))?;
            let txn = Txn::new()
                .when(self.key.clone(), old)
                .then(WriteOp::put(self.key.clone(), keys::encode_id(new_high)));
            if self.backend.txn(txn).await?.succeeded {
                let start = if current.end == high + 1 {
                    current.start
                } else {
                    high + 1
                };
                return Ok(start..new_high + 1);
            }
            // Another allocator won. Under group commit the winner's next attempt tends to
            // land just ahead of ours again, so wait a random while to break the lockstep.
            tokio::time::sleep(jitter(attempt)).await;
        }
        Err(StoreError::Backend(format!(
            "sequence {:?}: lost the reservation race {MAX_CAS_ATTEMPTS} times",
            String::from_utf8_lossy(&self.key)
        )))
    }
}

/// A random pause in `0..min(100µs * 2^attempt, MAX_BACKOFF)`.
fn jitter(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let cap = Duration::from_micros(100u64 << attempt.min(6)).min(MAX_BACKOFF);
    cap.mul_f64((random % 1024) as f64 / 1024.0)
}
