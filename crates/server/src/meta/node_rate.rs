//! Request rate limits of the services for nodes: one token bucket per cluster and name
//! (a KV namespace, or an election), refilled at `[node_services] requests_per_second` up
//! to `burst`. The bucket itself is pure (`meridian_scheduler::token_bucket`).
//!
//! Names come from clients, so the buckets are swept every [`SWEEP_EVERY_MS`]: a full
//! bucket is dropped, as a new one would be full too. What is kept is what was used in
//! the last `burst / requests_per_second` seconds.

use crate::error::{Result, ServerError};
use meridian_model::ClusterId;
use meridian_scheduler::token_bucket::TokenBucket;
use parking_lot::Mutex;
use std::collections::HashMap;

/// How often the buckets are swept of full ones (ms).
pub const SWEEP_EVERY_MS: u64 = 10_000;

/// Token buckets by (cluster, name).
pub struct RateLimits {
    /// What a name names, for messages ("namespace", "election").
    what: &'static str,
    per_second: f64,
    burst: u32,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_name: HashMap<(ClusterId, String), TokenBucket>,
    swept_at: u64,
}

impl RateLimits {
    /// Buckets of `what` refilled at `per_second` up to `burst`.
    pub fn new(what: &'static str, per_second: f64, burst: u32) -> Self {
        Self {
            what,
            per_second,
            burst,
            buckets: Mutex::new(Buckets {
                by_name: HashMap::new(),
                swept_at: 0,
            }),
        }
    }

    /// Takes one request's token for `name` at `now` (ms), or refuses with
    /// RESOURCE_EXHAUSTED.
    pub fn check(&self, cluster: ClusterId, name: &str, now: u64) -> Result<()> {
        let mut guard = self.buckets.lock();
        if now.saturating_sub(guard.swept_at) >= SWEEP_EVERY_MS {
            guard.by_name.retain(|_, bucket| !bucket.is_full_at(now));
            guard.swept_at = now;
        }
        let buckets = &mut guard.by_name;
        let taken = match buckets.get_mut(&(cluster, name.to_string())) {
            Some(bucket) => bucket.try_take(now),
            None => {
                let mut bucket = TokenBucket::new(self.per_second, self.burst, now);
                let taken = bucket.try_take(now);
                buckets.insert((cluster, name.to_string()), bucket);
                taken
            }
        };
        if taken {
            Ok(())
        } else {
            Err(ServerError::ResourceExhausted(format!(
                "{} {name:?} is over its request rate ({} per second, burst {}); retry later",
                self.what, self.per_second, self.burst
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_buckets_are_swept_and_a_limited_name_stays_limited() {
        // One token per 10 s, burst 1.
        let limits = RateLimits::new("namespace", 0.1, 1);
        let c = ClusterId(1);
        for i in 0..1000 {
            limits.check(c, &format!("ns-{i}"), 1).unwrap();
        }
        limits.check(c, "hot", SWEEP_EVERY_MS - 1).unwrap();
        assert_eq!(limits.buckets.lock().by_name.len(), 1001);
        // At the sweep every bucket the rate refilled goes; "hot" has not refilled and is
        // still refused.
        let refused = limits.check(c, "hot", SWEEP_EVERY_MS + 1).unwrap_err();
        assert!(
            refused.to_string().contains("over its request rate"),
            "{refused}"
        );
        assert_eq!(limits.buckets.lock().by_name.len(), 1);
        // A swept name starts with a full bucket, as it would have had anyway.
        limits.check(c, "ns-7", SWEEP_EVERY_MS + 1).unwrap();
    }
}
