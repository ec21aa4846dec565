//! A token bucket, pure: the request rate limit of the services for nodes (one bucket per
//! KV namespace and per election). Time enters as `now` ms of the caller's monotonic clock.

/// Holds up to `burst` tokens, refilled at `per_second`; each request takes one.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_second: f64, burst: u32, now: u64) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: per_second.max(0.0),
            burst,
            tokens: burst,
            last_ms: now,
        }
    }

    /// Whether the bucket would be full at `now`: then it holds nothing a new bucket would
    /// not, and whoever keeps buckets by name may drop it.
    pub fn is_full_at(&self, now: u64) -> bool {
        let elapsed_ms = now.saturating_sub(self.last_ms);
        self.tokens + elapsed_ms as f64 * self.per_second / 1000.0 >= self.burst
    }

    /// Takes one token at `now` if there is one; false means the request must be refused.
    pub fn try_take(&mut self, now: u64) -> bool {
        let elapsed_ms = now.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now);
        self.tokens = (self.tokens + elapsed_ms as f64 * self.per_second / 1000.0).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let mut b = TokenBucket::new(10.0, 3, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0), "the burst is spent");
        assert!(!b.try_take(99), "0.99 of a token after 99 ms at 10/s");
        assert!(b.try_take(100));
        assert!(!b.try_take(100));
        // A long pause refills no more than the burst.
        assert!(b.try_take(100_000) && b.try_take(100_000) && b.try_take(100_000));
        assert!(!b.try_take(100_000));
    }

    #[test]
    fn a_bucket_is_full_again_once_the_rate_refilled_it() {
        let mut b = TokenBucket::new(10.0, 2, 0);
        assert!(b.is_full_at(0));
        assert!(b.try_take(0));
        assert!(!b.is_full_at(99));
        assert!(b.is_full_at(100));
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let mut b = TokenBucket::new(1000.0, 1, 500);
        assert!(b.try_take(500));
        assert!(!b.try_take(400));
        assert!(!b.try_take(500));
        assert!(b.try_take(501));
    }
}
