//! Signs of life of the running bot's parts (Telegram contact, the scheduler's loop), kept for
//! `/readyz`: each part records when it last worked, the health check reads it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::scheduler::clock::Clock;

/// Telegram counts as reachable this long after its last good answer. `run` asks it at least
/// every [`TELEGRAM_PROBE_SECS`].
pub const TELEGRAM_STALE_SECS: i64 = 180;
/// How often `run` checks Telegram when nothing else talked to it.
pub const TELEGRAM_PROBE_SECS: u64 = 60;
/// The scheduler's loop beats at least this often, even with nothing to do.
pub const SCHEDULER_BEAT_SECS: u64 = 30;
/// The scheduler counts as stuck after this long without a beat (a post being sent beats too).
pub const SCHEDULER_STALE_SECS: i64 = 150;

/// What the health check knows of the running parts. Times are Unix seconds of the run's clock;
/// `0` is never.
pub struct Vitals {
    clock: Arc<dyn Clock>,
    telegram_ok_at: AtomicI64,
    scheduler_beat_at: AtomicI64,
    scheduler_running: AtomicBool,
}

impl Vitals {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Vitals> {
        Arc::new(Vitals {
            clock,
            telegram_ok_at: AtomicI64::new(0),
            scheduler_beat_at: AtomicI64::new(0),
            scheduler_running: AtomicBool::new(false),
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Telegram answered a request (or delivered an update).
    pub fn telegram_ok(&self) {
        self.telegram_ok_at.store(self.clock.now(), Ordering::Relaxed);
    }

    /// When Telegram last answered, if ever.
    pub fn telegram_ok_at(&self) -> Option<i64> {
        Some(self.telegram_ok_at.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// The scheduler's loop starts: it beats through the returned guard, and counts as stopped
    /// once the guard is dropped (the loop returned, panicked or was aborted).
    pub fn scheduler_started(self: &Arc<Self>) -> SchedulerBeat {
        self.scheduler_running.store(true, Ordering::Relaxed);
        let beat = SchedulerBeat { vitals: self.clone() };
        beat.beat();
        beat
    }

    /// Whether the scheduler's loop runs, and when it last beat.
    pub fn scheduler(&self) -> (bool, Option<i64>) {
        let at = self.scheduler_beat_at.load(Ordering::Relaxed);
        (self.scheduler_running.load(Ordering::Relaxed), Some(at).filter(|at| *at > 0))
    }
}

/// Held by the scheduler's loop while it runs.
pub struct SchedulerBeat {
    vitals: Arc<Vitals>,
}

impl SchedulerBeat {
    /// The loop is alive and going round.
    pub fn beat(&self) {
        self.vitals.scheduler_beat_at.store(self.vitals.clock.now(), Ordering::Relaxed);
    }
}

impl Drop for SchedulerBeat {
    fn drop(&mut self) {
        self.vitals.scheduler_running.store(false, Ordering::Relaxed);
    }
}
