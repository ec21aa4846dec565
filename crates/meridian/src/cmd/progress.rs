//! Progress of long commands (`bench`, `sim`) on stderr, whole lines only, as `sim` prints
//! its scenarios: it reads the same in a terminal and in a CI log, and stdout keeps only
//! the results (the summary, and the `--json` line). `--quiet` turns it off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a running phase says where it is.
const EVERY: Duration = Duration::from_secs(1);

/// Where progress goes: stderr, or nowhere (`--quiet`).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    /// Progress on stderr unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// No progress at all: for steps too small to report (a warm-up).
    pub fn silent() -> Self {
        Self { quiet: true }
    }

    /// Prints `line` now.
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// A phase named `name` has started: every second `name: STATUS, N s` is printed
    /// until [`Phase::done`] prints `name: STATUS, done in N.N s` (or the phase is
    /// dropped, silently, when it fails). `status` says how far it is, e.g. `120/5000`,
    /// or nothing (`""`) for a phase that only takes time. Needs a tokio runtime.
    pub fn phase(
        &self,
        name: impl Into<String>,
        status: impl Fn() -> String + Send + Sync + 'static,
    ) -> Phase {
        let name = name.into();
        let status: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(status);
        let started = Instant::now();
        let ticker = (!self.quiet).then(|| {
            let (name, status) = (name.clone(), status.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    eprintln!("{name}: {}", line(&status(), started, "", 0));
                }
            })
        });
        Phase {
            name,
            status,
            started,
            ticker,
        }
    }

    /// A phase whose status is a count, `done/total` or `done unit`: the phase, and the
    /// counter the work adds to (or stores into).
    pub fn counting(
        &self,
        name: impl Into<String>,
        total: Option<usize>,
        unit: &'static str,
    ) -> (Phase, Arc<AtomicU64>) {
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let phase = self.phase(name, move || {
            let n = counter.load(Ordering::Relaxed);
            let mut status = match total {
                Some(total) => format!("{n}/{total}"),
                None => n.to_string(),
            };
            if !unit.is_empty() {
                status = format!("{status} {unit}");
            }
            status
        });
        (phase, done)
    }
}

/// A running phase of a long command; see [`Progress::phase`].
pub struct Phase {
    name: String,
    status: Arc<dyn Fn() -> String + Send + Sync>,
    started: Instant,
    /// The task printing the phase's status every second; none when quiet.
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Phase {
    /// The phase is over: prints its last status and how long it took.
    pub fn done(mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            let status = (self.status)();
            eprintln!(
                "{}: {}",
                self.name,
                line(&status, self.started, "done in ", 1)
            );
        }
    }
}

/// `STATUS, N s` (or `N s` without a status), the time since `started` after `before`
/// with `decimals` decimals.
fn line(status: &str, started: Instant, before: &str, decimals: usize) -> String {
    let secs = started.elapsed().as_secs_f64();
    if status.is_empty() {
        format!("{before}{secs:.decimals$} s")
    } else {
        format!("{status}, {before}{secs:.decimals$} s")
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}
