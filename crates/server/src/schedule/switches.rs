//! Scheduler switches (maintenance mode, paused schedulers), kept in the store so that a
//! restart or a change of Meridian leader does not quietly turn balancing back on in the
//! middle of an operator's maintenance.

use super::Scheduling;
use crate::error::{Result, ServerError};
use meridian_model::ClusterId;
use meridian_store::keys;
use serde::{Deserialize, Serialize};

/// The switches of one cluster, as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Switches {
    /// Maintenance mode: only essential schedulers run.
    maintenance: bool,
    /// Paused schedulers, by name.
    paused: Vec<String>,
}

impl Scheduling {
    /// Loads every cluster's stored switches into memory (at start, or on taking over).
    /// A stored pause of a scheduler this binary does not know is skipped with a warning.
    pub async fn restore_switches(&self) -> Result<()> {
        for cluster in self.meta.clusters() {
            let key = keys::scheduler_switches(cluster.id);
            let Some(raw) = self.meta.store().get(&key).await? else {
                continue;
            };
            let switches: Switches = serde_json::from_slice(&raw).map_err(|e| {
                ServerError::Corrupt(format!("scheduler switches of {}: {e}", cluster.id))
            })?;
            let state = self.cluster_state(cluster.id);
            let mut s = state.lock();
            s.schedulers.set_maintenance(switches.maintenance);
            for name in &switches.paused {
                if let Err(e) = s.schedulers.pause(name) {
                    tracing::warn!(cluster = %cluster.id, "stored pause skipped: {e}");
                }
            }
        }
        Ok(())
    }

    /// Pauses or resumes a scheduler by name, durably: the switch is stored before this
    /// returns. An unknown name is [`ServerError::NotFound`] and changes nothing.
    pub async fn set_paused(&self, cluster: ClusterId, name: &str, paused: bool) -> Result<()> {
        self.switch(cluster, |s| {
            let r = if paused {
                s.pause(name)
            } else {
                s.resume(name)
            };
            r.map_err(|e| ServerError::NotFound(e.to_string()))
        })
        .await
    }

    /// Maintenance mode on or off, durably: only essential schedulers (failover, repair)
    /// run while it is on.
    pub async fn set_maintenance(&self, cluster: ClusterId, on: bool) -> Result<()> {
        self.switch(cluster, |s| {
            s.set_maintenance(on);
            Ok(())
        })
        .await
    }

    /// Applies `change` in memory and stores the resulting switches; one change at a time,
    /// so stored switches are never older than memory's. A failed write undoes the change.
    async fn switch(
        &self,
        cluster: ClusterId,
        change: impl FnOnce(&mut meridian_scheduler::SchedulerSet) -> Result<()>,
    ) -> Result<()> {
        let _one_at_a_time = self.switching.lock().await;
        let state = self.cluster_state(cluster);
        let (before, after) = {
            let mut s = state.lock();
            let before = snapshot(&s.schedulers);
            change(&mut s.schedulers)?;
            (before, snapshot(&s.schedulers))
        };
        let body = serde_json::to_vec(&after)
            .map_err(|e| ServerError::Corrupt(format!("encoding scheduler switches: {e}")))?;
        if let Err(e) = self
            .meta
            .store()
            .put(&keys::scheduler_switches(cluster), &body)
            .await
        {
            restore(&mut state.lock().schedulers, &before);
            return Err(e.into());
        }
        Ok(())
    }
}

fn snapshot(set: &meridian_scheduler::SchedulerSet) -> Switches {
    Switches {
        maintenance: set.maintenance(),
        paused: set
            .status()
            .into_iter()
            .filter(|s| s.paused)
            .map(|s| s.name)
            .collect(),
    }
}

fn restore(set: &mut meridian_scheduler::SchedulerSet, to: &Switches) {
    set.set_maintenance(to.maintenance);
    for s in set.status() {
        // Names come from the set itself: they exist.
        let _ = if to.paused.contains(&s.name) {
            set.pause(&s.name)
        } else {
            set.resume(&s.name)
        };
    }
}
