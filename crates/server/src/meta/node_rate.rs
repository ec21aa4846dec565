//! Request rate limits of the services for nodes: one token bucket per cluster and name
//! (a KV namespace, or an election), refilled at `[node_services] requests_per_second` up
//! to `burst`. The bucket itself is pure (`meridian_scheduler::token_bucket`).

use crate::error::{Result, ServerError};
use meridian_model::ClusterId;
use meridian_scheduler::token_bucket::TokenBucket;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Token buckets by (cluster, name).
pub struct RateLimits {
    /// What a name names, for messages ("namespace", "election").
    what: &'static str,
    per_second: f64,
    burst: u32,
    buckets: Mutex<HashMap<(ClusterId, String), TokenBucket>>,
}

impl RateLimits {
    /// Buckets of `what` refilled at `per_second` up to `burst`.
    pub fn new(what: &'static str, per_second: f64, burst: u32) -> Self {
        Self {
            what,
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `name` at `now` (ms), or refuses with
    /// RESOURCE_EXHAUSTED.
    pub fn check(&self, cluster: ClusterId, name: &str, now: u64) -> Result<()> {
        let mut buckets = self.buckets.lock();
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
