//! [`Election`]: campaigns for a Meridian election in the background, renews the lease while
//! it leads, and says until when this candidate may act as leader.
//!
//! The client-side lease rule: a candidate may act as leader only until the moment it SENT
//! the Campaign that elected or renewed it, plus the ttl, minus a drift margin, on its own
//! monotonic clock. Meridian starts its own deadline later (when it handled the request),
//! so nobody else is elected before this candidate stopped acting as leader.

use crate::{ClientError, MetaClient};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Timing of an [`Election`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Lease asked for with every campaign (within the server's `min_ttl_ms..=max_ttl_ms`).
    pub ttl: Duration,
    /// Taken off every lease, for clocks that run at different rates. Default ttl / 10.
    pub drift_margin: Duration,
    /// How often a leader renews. Default ttl / 3.
    pub renew_every: Duration,
    /// How often a candidate that lost campaigns again. Default ttl / 3.
    pub retry_every: Duration,
}

impl ElectionConfig {
    /// The defaults for a lease of `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            drift_margin: ttl / 10,
            renew_every: ttl / 3,
            retry_every: ttl / 3,
        }
    }
}

/// A leadership this candidate holds, by the client-side lease rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The term: the fencing token to tag writes with.
    pub term: u64,
    /// Until when (own monotonic clock) this candidate may act as leader, unless renewed.
    pub until: Instant,
}

impl Leadership {
    /// Whether the lease still runs now.
    pub fn valid(&self) -> bool {
        Instant::now() < self.until
    }
}

/// A candidate campaigning in the background; see the module documentation.
pub struct Election {
    client: MetaClient,
    name: String,
    candidate: String,
    state: watch::Receiver<Option<Leadership>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Election {
    /// Starts campaigning for `election` as `candidate` announcing `value`.
    pub fn start(
        client: MetaClient,
        election: &str,
        candidate: &str,
        value: Vec<u8>,
        config: ElectionConfig,
    ) -> Self {
        let (state_tx, state) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(campaign_loop(
            client.clone(),
            election.to_string(),
            candidate.to_string(),
            value,
            config,
            state_tx,
            stop_rx,
        ));
        Self {
            client,
            name: election.to_string(),
            candidate: candidate.to_string(),
            state,
            stop,
            task,
        }
    }

    /// The term this candidate leads in, if it may act as leader right now.
    pub fn leading(&self) -> Option<u64> {
        self.leadership().filter(Leadership::valid).map(|l| l.term)
    }

    /// The last leadership granted (possibly run out: check [`Leadership::valid`]), or
    /// `None` since the last campaign that lost.
    pub fn leadership(&self) -> Option<Leadership> {
        *self.state.borrow()
    }

    /// Every change of [`Election::leadership`].
    pub fn changes(&self) -> watch::Receiver<Option<Leadership>> {
        self.state.clone()
    }

    /// Stops campaigning and renewing without resigning: a leadership held runs out by
    /// itself (as when the candidate dies). Returns the last leadership granted.
    pub async fn stop(self) -> Option<Leadership> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        *self.state.borrow()
    }

    /// Stops campaigning and, if it leads, resigns so that another candidate wins at once.
    pub async fn resign(self) -> Result<(), ClientError> {
        let (client, name, candidate) = (
            self.client.clone(),
            self.name.clone(),
            self.candidate.clone(),
        );
        match self.stop().await {
            Some(l) if l.valid() => client.resign(&name, &candidate, l.term).await,
            _ => Ok(()),
        }
    }
}

async fn campaign_loop(
    client: MetaClient,
    name: String,
    candidate: String,
    value: Vec<u8>,
    config: ElectionConfig,
    state: watch::Sender<Option<Leadership>>,
    mut stop: watch::Receiver<bool>,
) {
    let ttl_ms = u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX);
    let usable = config.ttl.saturating_sub(config.drift_margin);
    loop {
        let sent = Instant::now();
        // An answer later than the usable lease would be of no use.
        let answer = tokio::time::timeout(
            usable.max(Duration::from_millis(1)),
            client.campaign(&name, &candidate, &value, ttl_ms),
        )
        .await;
        let pause = match answer {
            Ok(Ok(r)) if r.elected => {
                let term = r.leader.map_or(0, |l| l.term);
                state.send_replace(Some(Leadership {
                    term,
                    until: sent + usable,
                }));
                config.renew_every
            }
            Ok(Ok(_)) => {
                // Another candidate leads: whatever this one held is over.
                state.send_replace(None);
                config.retry_every
            }
            Ok(Err(e)) => {
                // A leadership held runs out by itself (its `until`); try again soon.
                tracing::debug!(election = %name, "campaign failed: {e}");
                config.renew_every.min(Duration::from_millis(200))
            }
            Err(_) => config.renew_every.min(Duration::from_millis(200)),
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
