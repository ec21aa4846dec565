//! Runtime settings: the tuning an admin may change while Meridian runs (like
//! `pd-ctl config set`), what each means, which values are refused, and which are accepted
//! with a warning.
//!
//! A cluster's settings are the server's configuration file with the admin's overrides on
//! top ([`RuntimeSettings::with_overrides`]); the server stores the overrides, so a
//! restart or a new Meridian leader keeps them, and a key never overridden follows the
//! file.
//!
//! One rule guards safety: `liveness.offline_after_ms` never goes below the value the
//! server started with. Nodes hold write leases as long as that value allows (less the
//! drift margin); declaring a node offline sooner would promote a new leader while the old
//! one may still write.

use crate::controller::OperatorLimits;
use crate::error::SchedulerError;
use crate::liveness::LivenessConfig;
use crate::schedulers::SchedulerConfig;
use std::collections::BTreeMap;

/// A setting's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SettingValue {
    /// A count or a duration in ms.
    Count(u64),
    /// A fraction or a threshold.
    Number(f64),
    /// On or off.
    Flag(bool),
    /// A threshold that may be unset.
    Optional(Option<f64>),
}

impl std::fmt::Display for SettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingValue::Count(v) => write!(f, "{v}"),
            SettingValue::Number(v) | SettingValue::Optional(Some(v)) => write!(f, "{v}"),
            SettingValue::Flag(v) => write!(f, "{v}"),
            SettingValue::Optional(None) => write!(f, "none"),
        }
    }
}

/// One runtime setting: its key and what it does.
#[derive(Debug, Clone, Copy)]
pub struct SettingInfo {
    /// `section.name`, as `ctl config set` takes it.
    pub key: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
}

/// Every runtime setting, in the order `ctl config show` lists them.
pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo { key: "scheduler.repair_delay_ms", about: "how long a node is Offline before its replicas are re-created elsewhere" },
    SettingInfo { key: "scheduler.balance_start_spread", about: "balance starts when max - min replicas or leaders per node reaches this" },
    SettingInfo { key: "scheduler.balance_stop_spread", about: "balance goes on until max - min is at most this" },
    SettingInfo { key: "scheduler.max_ops_per_tick", about: "operators one scheduler proposes per tick (failover is not capped)" },
    SettingInfo { key: "scheduler.hot_threshold", about: "a node is hot this fraction above the mean load" },
    SettingInfo { key: "scheduler.hot_sustain_ms", about: "a node stays hot this long before load is moved off it" },
    SettingInfo { key: "scheduler.hot_cooldown_ms", about: "a shard moved for load is not moved for load again within this" },
    SettingInfo { key: "scheduler.hot_trend_window_ms", about: "load is judged by each shard's mean over this long, not its last report" },
    SettingInfo { key: "scheduler.max_promote_lag", about: "failover may promote a follower at most this many log positions behind" },
    SettingInfo { key: "limits.per_node", about: "operators running at once per node" },
    SettingInfo { key: "limits.per_cluster", about: "operators running at once in the cluster" },
    SettingInfo { key: "limits.failover_exempt_from_limits", about: "failovers ignore both limits" },
    SettingInfo { key: "liveness.suspect_after_ms", about: "heartbeat silence before a node is Suspect (no new placements)" },
    SettingInfo { key: "liveness.offline_after_ms", about: "heartbeat silence before a node is Offline (its leaders fail over); never below the value the server started with" },
    SettingInfo { key: "liveness.phi_threshold", about: "phi-accrual detector for Suspect (none: off)" },
];

/// The settings in force for one cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeSettings {
    /// Scheduler tuning.
    pub scheduler: SchedulerConfig,
    /// Operator concurrency limits.
    pub limits: OperatorLimits,
    /// Node liveness timing.
    pub liveness: LivenessConfig,
}

fn unknown(key: &str) -> SchedulerError {
    let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    SchedulerError::InvalidConfig(format!(
        "unknown setting {key:?}; the runtime settings are: {}",
        known.join(", ")
    ))
}

fn parse(key: &str, current: SettingValue, text: &str) -> Result<SettingValue, SchedulerError> {
    let text = text.trim();
    let bad =
        |what: &str| SchedulerError::InvalidConfig(format!("{key} takes {what}, not {text:?}"));
    Ok(match current {
        SettingValue::Count(_) => SettingValue::Count(
            text.replace('_', "")
                .parse()
                .map_err(|_| bad("a whole number"))?,
        ),
        SettingValue::Number(_) => {
            let v: f64 = text.parse().map_err(|_| bad("a number"))?;
            if !v.is_finite() {
                return Err(bad("a finite number"));
            }
            SettingValue::Number(v)
        }
        SettingValue::Flag(_) => SettingValue::Flag(match text {
            "true" | "on" | "yes" => true,
            "false" | "off" | "no" => false,
            _ => return Err(bad("true or false")),
        }),
        SettingValue::Optional(_) => match text {
            "none" | "off" | "" => SettingValue::Optional(None),
            _ => {
                let v: f64 = text.parse().map_err(|_| bad("a number or none"))?;
                SettingValue::Optional(Some(v))
            }
        },
    })
}

impl RuntimeSettings {
    /// A setting's value, or `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<SettingValue> {
        use SettingValue::*;
        let (s, l, v) = (&self.scheduler, &self.limits, &self.liveness);
        Some(match key {
            "scheduler.repair_delay_ms" => Count(s.repair_delay_ms),
            "scheduler.balance_start_spread" => Count(s.balance_start_spread.into()),
            "scheduler.balance_stop_spread" => Count(s.balance_stop_spread.into()),
            "scheduler.max_ops_per_tick" => Count(s.max_ops_per_tick as u64),
            "scheduler.hot_threshold" => Number(s.hot_threshold),
            "scheduler.hot_sustain_ms" => Count(s.hot_sustain_ms),
            "scheduler.hot_cooldown_ms" => Count(s.hot_cooldown_ms),
            "scheduler.hot_trend_window_ms" => Count(s.hot_trend_window_ms),
            "scheduler.max_promote_lag" => Count(s.max_promote_lag),
            "limits.per_node" => Count(l.per_node.into()),
            "limits.per_cluster" => Count(l.per_cluster.into()),
            "limits.failover_exempt_from_limits" => Flag(l.failover_exempt_from_limits),
            "liveness.suspect_after_ms" => Count(v.suspect_after_ms),
            "liveness.offline_after_ms" => Count(v.offline_after_ms),
            "liveness.phi_threshold" => Optional(v.phi_threshold),
            _ => return None,
        })
    }

    fn put(&mut self, key: &str, value: SettingValue) -> Result<(), SchedulerError> {
        use SettingValue::*;
        let small = |v: u64| {
            u32::try_from(v).map_err(|_| {
                SchedulerError::InvalidConfig(format!("{key} is at most {}", u32::MAX))
            })
        };
        let (s, l, v) = (&mut self.scheduler, &mut self.limits, &mut self.liveness);
        match (key, value) {
            ("scheduler.repair_delay_ms", Count(x)) => s.repair_delay_ms = x,
            ("scheduler.balance_start_spread", Count(x)) => s.balance_start_spread = small(x)?,
            ("scheduler.balance_stop_spread", Count(x)) => s.balance_stop_spread = small(x)?,
            ("scheduler.max_ops_per_tick", Count(x)) => s.max_ops_per_tick = small(x)? as usize,
            ("scheduler.hot_threshold", Number(x)) => s.hot_threshold = x,
            ("scheduler.hot_sustain_ms", Count(x)) => s.hot_sustain_ms = x,
            ("scheduler.hot_cooldown_ms", Count(x)) => s.hot_cooldown_ms = x,
            ("scheduler.hot_trend_window_ms", Count(x)) => s.hot_trend_window_ms = x,
            ("scheduler.max_promote_lag", Count(x)) => s.max_promote_lag = x,
            ("limits.per_node", Count(x)) => l.per_node = small(x)?,
            ("limits.per_cluster", Count(x)) => l.per_cluster = small(x)?,
            ("limits.failover_exempt_from_limits", Flag(x)) => l.failover_exempt_from_limits = x,
            ("liveness.suspect_after_ms", Count(x)) => v.suspect_after_ms = x,
            ("liveness.offline_after_ms", Count(x)) => v.offline_after_ms = x,
            ("liveness.phi_threshold", Optional(x)) => v.phi_threshold = x,
            _ => return Err(unknown(key)),
        }
        Ok(())
    }

    /// Checks the whole: each section's own rules, and that `offline_after_ms` stays at
    /// or above `started`'s (see the module documentation).
    pub fn validate(&self, started: &RuntimeSettings) -> Result<(), SchedulerError> {
        self.scheduler.validate()?;
        if self.liveness.offline_after_ms < started.liveness.offline_after_ms {
            return Err(SchedulerError::InvalidConfig(format!(
                "liveness.offline_after_ms cannot go below {} ms, the value this server started \
                 with: nodes hold write leases of {} ms, and declaring a node offline before its \
                 lease ran out would let two nodes write one shard. To shorten it, change \
                 [liveness] offline_after_ms in the configuration file and restart",
                started.liveness.offline_after_ms,
                started.liveness.leader_lease_ms()
            )));
        }
        self.liveness.validate()
    }

    /// These settings with `key` set to `text` (parsed by the key's type), checked
    /// against `started` (the server's file configuration). Returns the new settings and
    /// the warnings the change deserves; an error changes nothing.
    pub fn with(
        &self,
        key: &str,
        text: &str,
        started: &RuntimeSettings,
    ) -> Result<(RuntimeSettings, Vec<String>), SchedulerError> {
        let current = self.get(key).ok_or_else(|| unknown(key))?;
        let value = parse(key, current, text)?;
        let mut next = *self;
        next.put(key, value)?;
        next.validate(started)?;
        let warnings = next.warnings(key);
        Ok((next, warnings))
    }

    /// `started` with stored `overrides` (key to value text) applied: all together when
    /// they make valid settings together, else in turn, where an override that no longer
    /// applies (an unknown key, a value this server refuses) is skipped and reported, as
    /// `(key, why)`.
    pub fn with_overrides(
        started: &RuntimeSettings,
        overrides: &BTreeMap<String, String>,
    ) -> (RuntimeSettings, Vec<(String, String)>) {
        let mut together = *started;
        let all_apply = overrides.iter().all(|(key, text)| {
            together
                .get(key)
                .and_then(|current| parse(key, current, text).ok())
                .is_some_and(|value| together.put(key, value).is_ok())
        });
        if all_apply && together.validate(started).is_ok() {
            return (together, Vec::new());
        }
        let mut settings = *started;
        let mut skipped = Vec::new();
        for (key, text) in overrides {
            match settings.with(key, text, started) {
                Ok((next, _)) => settings = next,
                Err(e) => skipped.push((key.clone(), e.to_string())),
            }
        }
        (settings, skipped)
    }

    /// What a change of `key` to its value here puts at risk, if anything.
    pub fn warnings(&self, key: &str) -> Vec<String> {
        let (s, l, v) = (&self.scheduler, &self.limits, &self.liveness);
        let mut out = Vec::new();
        match key {
            "scheduler.max_promote_lag" if s.max_promote_lag > 0 => out.push(format!(
                "failover may now promote a follower up to {} log positions behind: writes the shard acknowledged can be lost",
                s.max_promote_lag
            )),
            "scheduler.repair_delay_ms" if s.repair_delay_ms < v.offline_after_ms * 4 => out.push(format!(
                "a node that restarts for more than {} ms now has its replicas rebuilt elsewhere: a rolling restart moves data",
                s.repair_delay_ms
            )),
            "scheduler.repair_delay_ms" if s.repair_delay_ms > 3_600_000 => out.push(format!(
                "replicas of a dead node now stay missing for {} minutes: a second failure in that time can lose a shard's majority",
                s.repair_delay_ms / 60_000
            )),
            "limits.per_node" | "limits.per_cluster" if l.per_node == 0 || l.per_cluster == 0 => out.push(
                "no operator can start: nothing is repaired, drained or balanced (failovers too, unless exempt)".into(),
            ),
            "limits.failover_exempt_from_limits" if !l.failover_exempt_from_limits => out.push(
                "failovers now count against the limits: a leaderless shard can wait behind balance moves".into(),
            ),
            "liveness.offline_after_ms" if v.offline_after_ms > 30_000 => out.push(format!(
                "a dead node's shards now stay leaderless for {} s before failover",
                v.offline_after_ms / 1000
            )),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> RuntimeSettings {
        RuntimeSettings {
            scheduler: SchedulerConfig::default(),
            limits: OperatorLimits::default(),
            liveness: LivenessConfig::default(),
        }
    }

    #[test]
    fn every_listed_setting_can_be_read_and_set_to_its_own_value() {
        let s = started();
        for info in SETTINGS {
            let value = s.get(info.key).unwrap_or_else(|| panic!("{}", info.key));
            let (next, _) = s.with(info.key, &value.to_string(), &s).unwrap();
            assert_eq!(next, s, "{}", info.key);
        }
    }

    #[test]
    fn values_are_parsed_by_type_and_refusals_change_nothing() {
        let s = started();
        let (next, warnings) = s.with("scheduler.hot_threshold", "0.5", &s).unwrap();
        assert_eq!(next.scheduler.hot_threshold, 0.5);
        assert!(warnings.is_empty());
        let (next, _) = s.with("liveness.phi_threshold", "8", &s).unwrap();
        assert_eq!(next.liveness.phi_threshold, Some(8.0));
        let (next, _) = next.with("liveness.phi_threshold", "none", &s).unwrap();
        assert_eq!(next.liveness.phi_threshold, None);
        let (next, _) = s
            .with("limits.failover_exempt_from_limits", "off", &s)
            .unwrap();
        assert!(!next.limits.failover_exempt_from_limits);
        for (key, text, says) in [
            ("scheduler.hot_threshold", "hot", "a number"),
            ("limits.per_node", "-1", "a whole number"),
            (
                "scheduler.balance_stop_spread",
                "5",
                "below balance_start_spread",
            ),
            ("liveness.offline_after_ms", "1000", "cannot go below 2500"),
            (
                "liveness.suspect_after_ms",
                "9000",
                "at least suspect_after_ms",
            ),
            ("scheduler.nonsense", "1", "unknown setting"),
        ] {
            let err = s.with(key, text, &s).unwrap_err().to_string();
            assert!(err.contains(says), "{key}={text}: {err}");
        }
    }

    #[test]
    fn dangerous_values_warn() {
        let s = started();
        for (key, text) in [
            ("scheduler.max_promote_lag", "100"),
            ("scheduler.repair_delay_ms", "1000"),
            ("limits.per_cluster", "0"),
            ("limits.failover_exempt_from_limits", "false"),
            ("liveness.offline_after_ms", "60000"),
        ] {
            let (_, warnings) = s.with(key, text, &s).unwrap();
            assert_eq!(warnings.len(), 1, "{key}={text}");
        }
    }

    #[test]
    fn stored_overrides_apply_in_turn_and_stale_ones_are_skipped() {
        let s = started();
        let overrides: BTreeMap<String, String> = [
            ("liveness.offline_after_ms", "4000"),
            ("limits.per_node", "4"),
            ("scheduler.gone", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (settings, skipped) = RuntimeSettings::with_overrides(&s, &overrides);
        assert_eq!(settings.liveness.offline_after_ms, 4000);
        assert_eq!(settings.limits.per_node, 4);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, "scheduler.gone");
        // A server started with longer leases refuses the stored shorter timeout.
        let mut longer = s;
        longer.liveness.offline_after_ms = 6000;
        let (settings, skipped) = RuntimeSettings::with_overrides(&longer, &overrides);
        assert_eq!(settings.liveness.offline_after_ms, 6000);
        assert!(skipped
            .iter()
            .any(|(k, _)| k == "liveness.offline_after_ms"));
    }
}
