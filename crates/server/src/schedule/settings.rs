//! Runtime settings per cluster (`ctl config show|set|reset`): the decisions are
//! `meridian_scheduler::settings`'s; here they are stored, restored at start and on
//! taking over, and applied to the cluster's schedulers, operator controller and liveness
//! tracker.
//!
//! Only the overrides are stored (`keys::runtime_settings`, a JSON map of key to value
//! text): a key never overridden follows the configuration file.

use super::{ClusterScheduling, Scheduling};
use crate::error::{Result, ServerError};
use meridian_model::ClusterId;
use meridian_scheduler::RuntimeSettings;
use meridian_store::keys;
use std::collections::BTreeMap;

/// A cluster's settings as `GET .../config` shows them.
#[derive(Debug, Clone)]
pub struct SettingsView {
    /// The settings in force.
    pub current: RuntimeSettings,
    /// What the configuration file says (a reset goes back to it).
    pub started: RuntimeSettings,
    /// The overrides an admin set, as stored.
    pub overrides: BTreeMap<String, String>,
}

impl ClusterScheduling {
    /// Puts `settings` in force.
    fn apply_settings(&mut self, settings: RuntimeSettings, overrides: BTreeMap<String, String>) {
        self.schedulers.reconfigure(settings.scheduler);
        self.controller.set_limits(settings.limits);
        self.liveness.reconfigure(settings.liveness);
        self.settings = settings;
        self.overrides = overrides;
    }
}

impl Scheduling {
    /// The settings of the configuration file this server started with.
    pub fn started_settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            scheduler: self.schedulers,
            limits: self.operators.limits,
            liveness: self.liveness,
        }
    }

    /// Loads every cluster's stored overrides and puts them in force (at start, or on
    /// taking over). One that this server refuses (say, a liveness timeout below the one
    /// its leases need) is skipped with a warning.
    pub async fn restore_settings(&self) -> Result<()> {
        let started = self.started_settings();
        for cluster in self.meta.clusters() {
            let Some(raw) = self
                .meta
                .store()
                .get(&keys::runtime_settings(cluster.id))
                .await?
            else {
                continue;
            };
            let overrides: BTreeMap<String, String> =
                serde_json::from_slice(&raw).map_err(|e| {
                    ServerError::Corrupt(format!("runtime settings of {}: {e}", cluster.id))
                })?;
            let (settings, skipped) = RuntimeSettings::with_overrides(&started, &overrides);
            for (key, why) in &skipped {
                tracing::warn!(cluster = %cluster.id, "stored setting {key} skipped: {why}");
            }
            let kept = overrides
                .into_iter()
                .filter(|(k, _)| !skipped.iter().any(|(s, _)| s == k))
                .collect();
            self.cluster_state(cluster.id)
                .lock()
                .apply_settings(settings, kept);
        }
        Ok(())
    }

    /// A cluster's settings.
    pub fn settings(&self, cluster: ClusterId) -> SettingsView {
        let state = self.cluster_state(cluster);
        let s = state.lock();
        SettingsView {
            current: s.settings,
            started: self.started_settings(),
            overrides: s.overrides.clone(),
        }
    }

    /// Sets `key` to `text`, durably (stored before it is in force). Returns the warnings
    /// the new value deserves. A refused value ([`ServerError::InvalidArgument`]) changes
    /// nothing.
    pub async fn set_setting(
        &self,
        cluster: ClusterId,
        key: &str,
        text: &str,
    ) -> Result<Vec<String>> {
        let started = self.started_settings();
        self.change_settings(cluster, |current, overrides| {
            let (next, warnings) = current
                .with(key, text, &started)
                .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
            let value = next.get(key).map(|v| v.to_string()).unwrap_or_default();
            overrides.insert(key.to_string(), value);
            Ok((next, warnings))
        })
        .await
    }

    /// Drops the override of `key`: the configuration file's value is in force again.
    pub async fn reset_setting(&self, cluster: ClusterId, key: &str) -> Result<()> {
        let started = self.started_settings();
        self.change_settings(cluster, |_, overrides| {
            if started.get(key).is_none() {
                // The same error as a set of an unknown key.
                started
                    .with(key, "", &started)
                    .map_err(|e| ServerError::InvalidArgument(e.to_string()))?;
            }
            overrides.remove(key);
            let (next, skipped) = RuntimeSettings::with_overrides(&started, overrides);
            if let Some((k, why)) = skipped.first() {
                return Err(ServerError::InvalidArgument(format!(
                    "resetting {key} would leave {k} invalid: {why}; change {k} first"
                )));
            }
            Ok((next, Vec::new()))
        })
        .await
        .map(|_| ())
    }

    /// Computes new settings from the current ones, stores the overrides, then puts them
    /// in force; one change at a time (shared with the scheduler switches).
    async fn change_settings(
        &self,
        cluster: ClusterId,
        change: impl FnOnce(
            &RuntimeSettings,
            &mut BTreeMap<String, String>,
        ) -> Result<(RuntimeSettings, Vec<String>)>,
    ) -> Result<Vec<String>> {
        let _one_at_a_time = self.switching.lock().await;
        let state = self.cluster_state(cluster);
        let (current, mut overrides) = {
            let s = state.lock();
            (s.settings, s.overrides.clone())
        };
        let (next, warnings) = change(&current, &mut overrides)?;
        let body = serde_json::to_vec(&overrides)
            .map_err(|e| ServerError::Corrupt(format!("encoding runtime settings: {e}")))?;
        self.meta
            .store()
            .put(&keys::runtime_settings(cluster), &body)
            .await?;
        state.lock().apply_settings(next, overrides);
        Ok(warnings)
    }
}
