//! Connected node sessions and the instructions in flight to them.
//!
//! Every instruction gets an id; the sender waits for the node's `InstructionResult` with
//! that id or for the timeout, whichever comes first. A node that disconnects fails every
//! instruction it still owes.
//!
//! A node has at most one session. Registration runs under [`Sessions::registration`], so
//! its checks and its attach are one step; a session replaced by a newer one of the same
//! node is closed at once (its stream gets an error, its reader stops, its reports are
//! ignored), so a stalled process that comes back cannot keep renewing leases next to
//! the process that replaced it.

use meridian_model::NodeId;
use meridian_proto as pb;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The outgoing half of a node's heartbeat stream.
pub type MessageSender = mpsc::Sender<Result<pb::MetaMessage, tonic::Status>>;

/// How an instruction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionOutcome {
    /// The node carried it out.
    Done,
    /// The node refused or failed it.
    Failed(String),
    /// No answer in time, or the node went away.
    Lost(String),
}

struct Session {
    id: u64,
    tx: MessageSender,
    /// Dropped (or fired) when the session is replaced: its stream reader stops.
    closed: Option<oneshot::Sender<()>>,
    /// Instructions sent on this session and not yet answered.
    owed: Vec<u64>,
}

/// Sessions of one cluster's nodes, and instruction tracking.
#[derive(Default)]
pub struct Sessions {
    /// Held across a node's registration checks and its attach: two streams registering
    /// one name cannot both pass the checks before either is attached.
    pub registration: tokio::sync::Mutex<()>,
    next_session: AtomicU64,
    next_instruction: AtomicU64,
    sessions: Mutex<HashMap<NodeId, Session>>,
    pending: Mutex<HashMap<u64, (NodeId, oneshot::Sender<InstructionOutcome>)>>,
    /// The cluster's name, for the timeouts counter.
    cluster: String,
}

impl Sessions {
    /// No session yet, for the nodes of cluster `cluster`.
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            ..Self::default()
        }
    }

    fn count_timeout(&self) {
        metrics::counter!("meridian_instruction_timeouts_total", "cluster" => self.cluster.clone())
            .increment(1);
    }

    /// Registers the stream of a node that just registered; replaces and closes an older
    /// session of it. Returns the session id, used to unregister exactly this session
    /// later, and a receiver that completes when this session is replaced in turn.
    pub fn attach(&self, node: NodeId, tx: MessageSender) -> (u64, oneshot::Receiver<()>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        let (closed, on_replaced) = oneshot::channel();
        let old = self.sessions.lock().insert(
            node,
            Session {
                id,
                tx,
                closed: Some(closed),
                owed: Vec::new(),
            },
        );
        if let Some(mut old) = old {
            let _ = old.tx.try_send(Err(tonic::Status::aborted(format!(
                "{node} registered again in a newer session; this one is closed"
            ))));
            if let Some(closed) = old.closed.take() {
                let _ = closed.send(());
            }
            self.fail_owed(node, old.owed, "node opened a new session");
        }
        (id, on_replaced)
    }

    /// Whether `session` is `node`'s current session.
    pub fn is_current(&self, node: NodeId, session: u64) -> bool {
        self.sessions
            .lock()
            .get(&node)
            .is_some_and(|s| s.id == session)
    }

    /// Removes a session (stream closed); fails what it owes.
    pub fn detach(&self, node: NodeId, session: u64) {
        let removed = {
            let mut sessions = self.sessions.lock();
            match sessions.get(&node) {
                Some(s) if s.id == session => sessions.remove(&node),
                _ => None,
            }
        };
        if let Some(s) = removed {
            self.fail_owed(node, s.owed, "node disconnected");
        }
    }

    /// Whether a node has a live stream, and its session id.
    pub fn session_of(&self, node: NodeId) -> Option<u64> {
        self.sessions.lock().get(&node).map(|s| s.id)
    }

    /// The nodes with a live stream.
    pub fn connected_nodes(&self) -> std::collections::HashSet<NodeId> {
        self.sessions.lock().keys().copied().collect()
    }

    /// Number of connected nodes.
    pub fn connected(&self) -> usize {
        self.sessions.lock().len()
    }

    fn fail_owed(&self, node: NodeId, owed: Vec<u64>, why: &str) {
        let mut pending = self.pending.lock();
        for id in owed {
            if let Some((_, tx)) = pending.remove(&id) {
                let _ = tx.send(InstructionOutcome::Lost(format!("{node}: {why}")));
            }
        }
    }

    /// Sends a message that needs no answer (ack, registered). Best effort.
    pub fn send(&self, node: NodeId, msg: pb::MetaMessage) -> bool {
        let tx = self.sessions.lock().get(&node).map(|s| s.tx.clone());
        match tx {
            Some(tx) => tx.try_send(Ok(msg)).is_ok(),
            None => false,
        }
    }

    /// Sends an instruction (its id is assigned here) and waits for the node's answer.
    pub async fn instruct(
        &self,
        node: NodeId,
        mut instruction: pb::Instruction,
        timeout: Duration,
    ) -> InstructionOutcome {
        let id = self.next_instruction.fetch_add(1, Ordering::Relaxed) + 1;
        instruction.id = id;
        let (done_tx, done_rx) = oneshot::channel();
        let tx = {
            let mut sessions = self.sessions.lock();
            let Some(session) = sessions.get_mut(&node) else {
                return InstructionOutcome::Lost(format!("{node} is not connected"));
            };
            session.owed.push(id);
            self.pending.lock().insert(id, (node, done_tx));
            session.tx.clone()
        };
        let msg = pb::MetaMessage {
            body: Some(pb::meta_message::Body::Instruction(instruction)),
        };
        // A node that stops reading its stream must not stall us past the timeout either.
        match tokio::time::timeout(timeout, tx.send(Ok(msg))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.forget(node, id);
                return InstructionOutcome::Lost(format!("{node} stream closed"));
            }
            Err(_) => {
                self.forget(node, id);
                self.count_timeout();
                return InstructionOutcome::Lost(format!("{node} is not reading its stream"));
            }
        }
        match tokio::time::timeout(timeout, done_rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => InstructionOutcome::Lost(format!("{node} session ended")),
            Err(_) => {
                self.forget(node, id);
                self.count_timeout();
                InstructionOutcome::Lost(format!(
                    "{node} did not answer instruction {id} within {} ms",
                    timeout.as_millis()
                ))
            }
        }
    }

    fn forget(&self, node: NodeId, id: u64) {
        self.pending.lock().remove(&id);
        if let Some(s) = self.sessions.lock().get_mut(&node) {
            s.owed.retain(|x| *x != id);
        }
    }

    /// Delivers a node's answer. Answers for unknown ids (late, after a timeout) are dropped.
    pub fn answer(&self, node: NodeId, result: &pb::InstructionResult) {
        let entry = self.pending.lock().remove(&result.instruction_id);
        let Some((owner, tx)) = entry else { return };
        if owner != node {
            // Another node answered an instruction it never got: ignore, and keep waiting.
            self.pending
                .lock()
                .insert(result.instruction_id, (owner, tx));
            return;
        }
        if let Some(s) = self.sessions.lock().get_mut(&node) {
            s.owed.retain(|x| *x != result.instruction_id);
        }
        let outcome = if result.ok {
            InstructionOutcome::Done
        } else {
            InstructionOutcome::Failed(result.error.clone())
        };
        let _ = tx.send(outcome);
    }
}
