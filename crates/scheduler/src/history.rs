//! The recent history of a cluster's figures: one ring buffer per series (a node's leader
//! load, a shard's load, heartbeats per second...), one point per step over the last
//! minutes. The server keeps one per cluster for the series API and the dashboard's
//! charts; the hot-shard scheduler judges load by its moving averages
//! ([`History::mean_over`]), not by one heartbeat's figures, which are noisy.
//!
//! Points are `f32` at a fixed step from the ring's start, so 100,000 shards with 120
//! points each take about 50 MB; a series not sampled for a whole span is dropped.

use crate::view::ClusterView;
use meridian_model::ShardId;
use std::collections::{BTreeMap, VecDeque};

/// How many points each series keeps.
pub const POINTS: usize = 120;

/// One series: values at a fixed step, the newest last (`NaN`: not sampled then).
#[derive(Debug, Clone)]
struct Ring {
    /// Time of `values[0]`.
    start_ms: u64,
    values: VecDeque<f32>,
}

/// Recent history of named series, sampled at most once per step.
#[derive(Debug, Clone)]
pub struct History {
    step_ms: u64,
    /// The time slot of the last sample taken.
    last_slot: Option<u64>,
    series: BTreeMap<String, Ring>,
}

/// A series as the API shows it: `(time ms, value)` points, oldest first, gaps left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name.
    pub name: String,
    /// Its points.
    pub points: Vec<(u64, f64)>,
}

impl History {
    /// A history sampled every `step_ms` (at least 1), keeping [`POINTS`] steps.
    pub fn new(step_ms: u64) -> Self {
        Self {
            step_ms: step_ms.max(1),
            last_slot: None,
            series: BTreeMap::new(),
        }
    }

    /// The sampling step.
    pub fn step_ms(&self) -> u64 {
        self.step_ms
    }

    /// Whether a sample at `now` would start a new step (callers skip gathering figures
    /// otherwise).
    pub fn due(&self, now: u64) -> bool {
        self.last_slot != Some(now / self.step_ms)
    }

    /// Records one sample of each named figure at `now` (once per step: a second sample in
    /// the same step is ignored). Series missing from this sample get a gap; those with no
    /// point in the whole span are dropped.
    pub fn record(&mut self, now: u64, samples: impl IntoIterator<Item = (String, f64)>) {
        if !self.due(now) {
            return;
        }
        let slot = now / self.step_ms;
        self.last_slot = Some(slot);
        let at = slot * self.step_ms;
        for (name, value) in samples {
            let ring = self.series.entry(name).or_insert_with(|| Ring {
                start_ms: at,
                values: VecDeque::with_capacity(POINTS),
            });
            ring.put(at, value as f32, self.step_ms);
        }
        let oldest = at.saturating_sub(self.step_ms * POINTS as u64);
        self.series.retain(|_, ring| {
            ring.end_ms(self.step_ms) > oldest && ring.values.iter().any(|v| !v.is_nan())
        });
    }

    /// The series whose names start with `prefix`, oldest point first.
    pub fn series(&self, prefix: &str) -> Vec<Series> {
        self.series
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, ring)| Series {
                name: name.clone(),
                points: ring.points(self.step_ms),
            })
            .collect()
    }

    /// Every shard's mean load over the last `window_ms` before `now` (the shards with a
    /// load series): computed once per sample rather than once per scheduling pass.
    pub fn shard_trends(
        &self,
        window_ms: u64,
        now: u64,
    ) -> std::collections::HashMap<ShardId, f64> {
        self.series
            .range("shard/".to_string()..)
            .take_while(|(name, _)| name.starts_with("shard/"))
            .filter_map(|(name, _)| {
                let id = name
                    .strip_prefix("shard/")?
                    .strip_suffix("/load")?
                    .parse()
                    .ok()?;
                Some((ShardId(id), self.mean_over(name, window_ms, now)?))
            })
            .collect()
    }

    /// The mean of `name`'s points in the last `window_ms` before `now`; `None` without
    /// any.
    pub fn mean_over(&self, name: &str, window_ms: u64, now: u64) -> Option<f64> {
        let ring = self.series.get(name)?;
        let since = now.saturating_sub(window_ms);
        let (mut sum, mut n) = (0.0, 0u32);
        for (t, v) in ring.points(self.step_ms).into_iter().rev() {
            if t < since {
                break;
            }
            sum += v;
            n += 1;
        }
        (n > 0).then(|| sum / f64::from(n))
    }
}

/// The name of a shard's load series (read + write units per second as its leader
/// reports them).
pub fn shard_load_series(shard: ShardId) -> String {
    format!("shard/{}/load", shard.0)
}

/// One sample of every led shard's reported load, for [`History::record`].
pub fn shard_load_samples(view: &ClusterView) -> impl Iterator<Item = (String, f64)> + '_ {
    view.shards()
        .iter()
        .filter(|sv| sv.shard.leader().is_some())
        .map(|sv| (shard_load_series(sv.shard.id), sv.reported_load()))
}

impl ClusterView {
    /// Judges each shard's load by its mean over the last `window_ms` in `history` (the
    /// server and the simulator both build their views this way; see
    /// [`ClusterView::with_load_trend`]).
    pub fn with_history_trend(self, history: &History, window_ms: u64, now: u64) -> Self {
        self.with_load_trend(|sv| {
            history.mean_over(&shard_load_series(sv.shard.id), window_ms, now)
        })
    }
}

impl Ring {
    fn end_ms(&self, step: u64) -> u64 {
        self.start_ms + step * self.values.len() as u64
    }

    fn put(&mut self, at: u64, value: f32, step: u64) {
        if at < self.start_ms {
            return;
        }
        // Gaps for the steps this series was not sampled in.
        while self.end_ms(step) < at {
            self.push(f32::NAN, step);
        }
        if self.end_ms(step) == at {
            self.push(value, step);
        } else if let Some(last) = self.values.back_mut() {
            *last = value;
        }
    }

    fn push(&mut self, value: f32, step: u64) {
        if self.values.len() == POINTS {
            self.values.pop_front();
            self.start_ms += step;
        }
        self.values.push_back(value);
    }

    fn points(&self, step: u64) -> Vec<(u64, f64)> {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, v)| (self.start_ms + step * i as u64, f64::from(*v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, v: f64) -> Vec<(String, f64)> {
        vec![(name.to_string(), v)]
    }

    #[test]
    fn one_point_per_step_with_gaps_and_a_bounded_span() {
        let mut h = History::new(1000);
        h.record(500, one("a", 1.0));
        h.record(900, one("a", 9.0)); // same step: ignored
        h.record(1200, one("b", 5.0)); // "a" not sampled: a gap
        h.record(2100, one("a", 3.0));
        let a = &h.series("a")[0];
        assert_eq!(a.points, vec![(0, 1.0), (2000, 3.0)]);
        assert_eq!(h.series("b")[0].points, vec![(1000, 5.0)]);
        for t in 3..(POINTS as u64 + 10) {
            h.record(t * 1000, one("a", t as f64));
        }
        let a = &h.series("a")[0];
        assert_eq!(a.points.len(), POINTS);
        assert_eq!(
            a.points.last(),
            Some(&((POINTS as u64 + 9) * 1000, (POINTS + 9) as f64))
        );
        // "b" had no point in the whole span: gone.
        assert!(h.series("b").is_empty());
    }

    #[test]
    fn the_mean_covers_only_the_window() {
        let mut h = History::new(1000);
        for (t, v) in [(0, 100.0), (1000, 0.0), (2000, 10.0), (3000, 20.0)] {
            h.record(t, one("shard/1/load", v));
        }
        assert_eq!(h.mean_over("shard/1/load", 1500, 3000), Some(15.0));
        assert_eq!(h.mean_over("shard/1/load", 10_000, 3000), Some(32.5));
        assert_eq!(h.mean_over("shard/2/load", 10_000, 3000), None);
        let trends = h.shard_trends(1500, 3000);
        assert_eq!(trends.len(), 1);
        assert_eq!(trends[&ShardId(1)], 15.0);
    }

    #[test]
    fn series_are_found_by_prefix() {
        let mut h = History::new(10);
        h.record(
            0,
            vec![
                ("node/a/load".to_string(), 1.0),
                ("node/b/load".to_string(), 2.0),
                ("shard/1/load".to_string(), 3.0),
            ],
        );
        let names: Vec<String> = h.series("node/").into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["node/a/load", "node/b/load"]);
    }
}
