//! The event log: a bounded, persisted, timestamped record of what happened (node state
//! changes, refused registrations, operators started and finished with their durations,
//! DDL, admin actions), for operators to read (`GET /api/v1/events`), follow (server-sent
//! events, `ctl events --follow`) and see on the dashboard.
//!
//! Recording never waits on the store: events go to memory (the newest [`CAPACITY`]) and a
//! background task writes them, batched, under `/meridian/v1/events/`, deleting the ones
//! that fall out of the window. A new leader loads the window at start. An event lost in a
//! crash before its batch was written is acceptable: the log explains, it does not decide.
//!
//! Events recorded while a gRPC or HTTP request is served name who made it: the edge (the
//! HTTP middleware, the gRPC layer in `crate::auth`) runs each request inside
//! [`REQUESTER`], and [`EventLog::record`] appends "(by …)". Work that outlives the request
//! (an operator's later steps, a heartbeat stream) is the server's own and names nobody.

use crate::error::Result;
use meridian_store::{keys, KvBackend, WriteOp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

tokio::task_local! {
    /// Who made the request being served, for the event log: the token's name and role
    /// (with `--tokens`) and the peer's address; see [`crate::auth::requester`].
    pub static REQUESTER: String;
}

/// Events kept (in memory and in the store).
pub const CAPACITY: u64 = 10_000;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the log (1, 2, ...; never reused).
    pub seq: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: u64,
    /// The cluster it concerns ("" for the server itself).
    pub cluster: String,
    /// Stable kind: `node_state`, `registration_refused`, `operator_started`,
    /// `operator_finished`, `ddl`, `admin`.
    pub kind: String,
    /// What happened, for people.
    pub message: String,
    /// The node concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// The shard concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// The operator concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<u64>,
    /// How long it took (operators), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// What an event is about, besides its cluster, kind and message.
#[derive(Debug, Clone, Copy, Default)]
pub struct About {
    /// The node.
    pub node: Option<u64>,
    /// The shard.
    pub shard: Option<u32>,
    /// The operator.
    pub operator: Option<u64>,
    /// Its duration.
    pub duration_ms: Option<u64>,
}

/// The log (one per server).
pub struct EventLog {
    recent: Mutex<VecDeque<Event>>,
    next: Mutex<u64>,
    live: broadcast::Sender<Event>,
    persist: mpsc::UnboundedSender<Event>,
}

impl EventLog {
    /// Loads the stored window from `store` and starts the writer.
    pub async fn load(store: Arc<dyn KvBackend>) -> Result<Arc<Self>> {
        let mut recent: VecDeque<Event> = store
            .range(&keys::events_prefix(), 0)
            .await?
            .iter()
            // An entry this binary cannot read (a newer format) is skipped, not fatal.
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        while recent.len() as u64 > CAPACITY {
            recent.pop_front();
        }
        let next = recent.back().map_or(1, |e: &Event| e.seq + 1);
        let (persist, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(store, rx));
        let (live, _) = broadcast::channel(1024);
        Ok(Arc::new(Self {
            recent: Mutex::new(recent),
            next: Mutex::new(next),
            live,
            persist,
        }))
    }

    /// Records an event.
    pub fn record(&self, cluster: &str, kind: &str, message: impl Into<String>, about: About) {
        let message = match REQUESTER.try_with(|who| format!("(by {who})")) {
            Ok(by) => format!("{} {by}", message.into()),
            Err(_) => message.into(),
        };
        let event = {
            let mut next = self.next.lock();
            let e = Event {
                seq: *next,
                at_ms: wall_ms(),
                cluster: cluster.to_string(),
                kind: kind.to_string(),
                message,
                node: about.node,
                shard: about.shard,
                operator: about.operator,
                duration_ms: about.duration_ms,
            };
            *next += 1;
            let mut recent = self.recent.lock();
            recent.push_back(e.clone());
            if recent.len() as u64 > CAPACITY {
                recent.pop_front();
            }
            e
        };
        tracing::debug!(kind = %event.kind, cluster = %event.cluster, "event: {}", event.message);
        let _ = self.persist.send(event.clone());
        let _ = self.live.send(event);
    }

    /// Events after `after` (of `cluster`, if given), oldest first, at most `limit`.
    pub fn after(&self, cluster: Option<&str>, after: u64, limit: usize) -> Vec<Event> {
        self.recent
            .lock()
            .iter()
            .filter(|e| e.seq > after && cluster.is_none_or(|c| e.cluster == c))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest `limit` events (of `cluster`, if given), oldest first.
    pub fn latest(&self, cluster: Option<&str>, limit: usize) -> Vec<Event> {
        let recent = self.recent.lock();
        let mut out: Vec<Event> = recent
            .iter()
            .rev()
            .filter(|e| cluster.is_none_or(|c| e.cluster == c))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// How many live streams are open (dashboards, `ctl events --follow`).
    pub fn followers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

/// Writes events in batches; each batch also deletes the events that left the window.
async fn write_events(store: Arc<dyn KvBackend>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
            if batch.len() >= 50 {
                break;
            }
        }
        let mut ops = Vec::with_capacity(batch.len() * 2);
        for e in &batch {
            let Ok(value) = serde_json::to_vec(e) else {
                continue;
            };
            ops.push(WriteOp::put(keys::event(e.seq), value));
            if e.seq > CAPACITY {
                ops.push(WriteOp::delete(keys::event(e.seq - CAPACITY)));
            }
        }
        // A store with a small transaction limit (etcd) takes it in pieces.
        for chunk in ops.chunks(store.max_batch_ops().clamp(2, 100)) {
            if let Err(e) = store.batch(chunk.to_vec()).await {
                // A deposed leader's writes are fenced off: its events are not the log's.
                tracing::debug!("events not persisted: {e}");
            }
        }
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_store::MemoryBackend;

    #[tokio::test]
    async fn events_are_kept_in_order_filtered_and_reloaded() {
        let store: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
        let log = EventLog::load(store.clone()).await.unwrap();
        let mut live = log.subscribe();
        log.record("a", "ddl", "created t1", About::default());
        log.record("b", "ddl", "created t2", About::default());
        log.record(
            "a",
            "admin",
            "cordoned n1",
            About {
                node: Some(4),
                ..About::default()
            },
        );
        assert_eq!(live.recv().await.unwrap().seq, 1);
        let a: Vec<u64> = log.after(Some("a"), 0, 10).iter().map(|e| e.seq).collect();
        assert_eq!(a, [1, 3]);
        assert_eq!(log.after(None, 1, 1)[0].message, "created t2");
        assert_eq!(log.latest(Some("a"), 1)[0].node, Some(4));
        // Written in the background; a new log (a restart) loads them and goes on.
        for _ in 0..100 {
            if store.range(&keys::events_prefix(), 0).await.unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let again = EventLog::load(store).await.unwrap();
        assert_eq!(again.after(None, 0, 10).len(), 3);
        again.record("a", "ddl", "dropped t1", About::default());
        assert_eq!(again.latest(None, 1)[0].seq, 4);
    }
}
