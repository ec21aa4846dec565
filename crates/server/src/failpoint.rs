//! Named points in multi-step procedures where tests stop the server: to race another
//! change against a procedure paused between two steps, or to SIGKILL a server process
//! exactly there and check what the next start does.
//!
//! In a test process: [`Failpoints::pause`] arms a point; the next procedure reaching it
//! waits until the returned [`Gate`] is released. In a server process: the environment
//! variable `MERIDIAN_FAILPOINT=<name>` makes the first procedure reaching `<name>` create
//! the file named by `MERIDIAN_FAILPOINT_FILE` and then wait forever, so the test can kill
//! the process there. Unarmed, a point costs one map lookup.
//!
//! Points: `create_table.before_commit`, `drop_table.after_commit`,
//! `rename_table.before_commit`, `split.after_open`, `split.after_commit`,
//! `merge.after_open`, `merge.after_commit`, `move.after_step` (a multi-step operator's
//! step persisted with its record, before its instructions go out).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Environment variable naming the point at which a server process stops forever.
pub const ENV_POINT: &str = "MERIDIAN_FAILPOINT";
/// Environment variable naming the file created when that point is reached.
pub const ENV_FILE: &str = "MERIDIAN_FAILPOINT_FILE";

/// The armed points of one cluster.
#[derive(Default)]
pub struct Failpoints {
    armed: Mutex<HashMap<String, Arc<Gate>>>,
}

/// One armed point: reached by a procedure, released by the test.
pub struct Gate {
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Gate {
    /// Waits until a procedure reached the point (and is waiting there).
    pub async fn reached(&self) {
        let mut rx = self.reached.subscribe();
        // The sender lives as long as the gate: waiting cannot fail.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Lets the waiting procedure (or the next one to arrive) continue.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

impl Failpoints {
    /// Arms `point`: the next procedure reaching it waits until the gate is released.
    pub fn pause(&self, point: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            reached: watch::channel(false).0,
            released: watch::channel(false).0,
        });
        self.armed.lock().insert(point.to_string(), gate.clone());
        gate
    }

    /// Called by a procedure at `point`; returns at once unless the point is armed.
    pub(crate) async fn hit(&self, point: &str) {
        if let Some((name, file)) = from_env() {
            if name == point {
                tracing::warn!(point, "failpoint reached: stopping here for good");
                if let Err(e) = std::fs::write(file, point) {
                    tracing::warn!("writing the failpoint file: {e}");
                }
                std::future::pending::<()>().await;
            }
        }
        let gate = self.armed.lock().remove(point);
        if let Some(gate) = gate {
            tracing::warn!(point, "failpoint reached: paused");
            let mut released = gate.released.subscribe();
            gate.reached.send_replace(true);
            let _ = released.wait_for(|r| *r).await;
        }
    }
}

fn from_env() -> Option<&'static (String, PathBuf)> {
    static ENV: std::sync::OnceLock<Option<(String, PathBuf)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let point = std::env::var(ENV_POINT).ok()?;
        let file = std::env::var_os(ENV_FILE)?;
        Some((point, PathBuf::from(file)))
    })
    .as_ref()
}
