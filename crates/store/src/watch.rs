//! Prefix watches: [`WatchEvent`], [`WatchStream`], and the in-process hub that the memory
//! and redb backends publish committed changes to.

use crate::{Result, StoreError};
use parking_lot::RwLock;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// How many commits a watcher may fall behind before it is told it [lagged](WatchEvent::Lagged).
pub const WATCH_BUFFER_COMMITS: usize = 1024;

/// One committed change, or the news that some were missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` was set to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// `key` was removed.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// The watcher fell behind and the changes of `missed_commits` commits were dropped. The
    /// stream goes on with later changes; a consumer that needs the full state must re-read
    /// it with a range scan.
    Lagged {
        /// How many commits were skipped.
        missed_commits: u64,
    },
}

impl WatchEvent {
    /// The key changed, or `None` for [`WatchEvent::Lagged`].
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key } => Some(key),
            WatchEvent::Lagged { .. } => None,
        }
    }
}

/// The events of one commit, shared by every watcher.
type CommitEvents = Arc<[WatchEvent]>;

/// A stream of changes under one prefix. Ends (`None`) when the backend closes.
pub struct WatchStream {
    source: Source,
}

enum Source {
    /// Fed by a [`WatchHub`]: whole commits, filtered here by prefix.
    Hub {
        rx: broadcast::Receiver<CommitEvents>,
        prefix: Vec<u8>,
        commit: CommitEvents,
        pos: usize,
    },
    /// Fed event by event by a backend that filters itself (e.g. a remote watch).
    Channel(mpsc::Receiver<WatchEvent>),
}

impl WatchStream {
    /// A stream fed by a channel, for backends whose server already filters by prefix. The
    /// sender must send [`WatchEvent::Lagged`] rather than drop events.
    pub fn from_channel(rx: mpsc::Receiver<WatchEvent>) -> Self {
        Self {
            source: Source::Channel(rx),
        }
    }

    /// The next change, in commit order; `None` once the backend is closed.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        match &mut self.source {
            Source::Channel(rx) => rx.recv().await,
            Source::Hub {
                rx,
                prefix,
                commit,
                pos,
            } => loop {
                while let Some(ev) = commit.get(*pos) {
                    *pos += 1;
                    if ev.key().is_some_and(|k| k.starts_with(prefix)) {
                        return Some(ev.clone());
                    }
                }
                match rx.recv().await {
                    Ok(next) => {
                        *commit = next;
                        *pos = 0;
                    }
                    Err(broadcast::error::RecvError::Lagged(missed_commits)) => {
                        return Some(WatchEvent::Lagged { missed_commits });
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// Fans committed changes out to watchers. Publishers must call [`WatchHub::publish`] in
/// commit order; [`WatchHub::close`] ends every stream.
pub(crate) struct WatchHub {
    tx: RwLock<Option<broadcast::Sender<CommitEvents>>>,
}

impl WatchHub {
    pub(crate) fn new() -> Self {
        Self {
            tx: RwLock::new(Some(broadcast::channel(WATCH_BUFFER_COMMITS).0)),
        }
    }

    /// A stream of the changes under `prefix` published from now on.
    pub(crate) fn subscribe(&self, prefix: &[u8]) -> Result<WatchStream> {
        let rx = self
            .tx
            .read()
            .as_ref()
            .ok_or(StoreError::Closed)?
            .subscribe();
        Ok(WatchStream {
            source: Source::Hub {
                rx,
                prefix: prefix.to_vec(),
                commit: Arc::new([]),
                pos: 0,
            },
        })
    }

    /// Publishes the changes of one commit (nothing if there are none or nobody watches).
    pub(crate) fn publish(&self, events: Vec<WatchEvent>) {
        if let Some(tx) = self.tx.read().as_ref() {
            if !events.is_empty() && tx.receiver_count() > 0 {
                // An error only means every receiver went away meanwhile.
                let _ = tx.send(events.into());
            }
        }
    }

    /// Ends every stream once it has drained what was published.
    pub(crate) fn close(&self) {
        self.tx.write().take();
    }
}
