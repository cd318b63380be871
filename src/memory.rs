//! The allocator's settings for reports: glibc's malloc keeps the large buffers a report frees
//! for the next report instead of giving them back to the kernel (which must then zero and map
//! them again, page by page), and the memory is given back once reports have stopped for a while.
//!
//! A report over a million events allocates and frees a few hundred megabytes in buffers of
//! 1–30 MiB. With glibc's defaults most of them are fresh `mmap`s, so a third of a report's time
//! went into page faults. Everything here is a no-op off Linux/glibc, and when the operator set
//! `glibc.malloc.*` in `GLIBC_TUNABLES` themselves.
//!
//! The threads share two arenas ([`ARENA_MAX`]) instead of glibc's eight per core: the memory at
//! the top of a thread's own arena is given back only by that arena's next `free`, never by
//! `malloc_trim`, so with an arena for each polars and decoding thread a quiet process kept up to
//! a heap's worth (64 MiB) in each of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Allocations below this come from malloc's heaps, whose freed memory is reused.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of the main heap kept for reuse before malloc gives it back by itself.
/// Past it, malloc gives back all of it but 128 KiB (`M_TOP_PAD`): with 64 MiB here, a report
/// that left more than that free had all of it given back, and the next report faulted it in
/// again, page by page (12,000 page faults and a fifth of the aggregate's time after another
/// report). The main heap can hold a whole report's buffers, so it keeps them.
pub const TRIM_THRESHOLD: usize = 256 << 20;
/// malloc's arenas for all threads (see the module's note).
pub const ARENA_MAX: usize = 2;
/// How long after the last report the kept memory is given back.
pub const IDLE_BEFORE_RELEASE: Duration = Duration::from_secs(30);

/// Whether [`tune`] changed malloc's settings.
static TUNED: AtomicBool = AtomicBool::new(false);
/// The reports of this process, for giving memory back after them.
static REPORTS: ReportClock = ReportClock::new();

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// malloc keeps up to [`TRIM_THRESHOLD`] free, serves buffers under [`MMAP_THRESHOLD`]
    /// from its heaps, and has at most [`ARENA_MAX`] of them.
    Applied,
    /// `GLIBC_TUNABLES` sets malloc's parameters; they are left as the operator chose.
    LeftToOperator,
    /// Not glibc: nothing to tune.
    NotGlibc,
}

/// Whether `GLIBC_TUNABLES` (as given) already sets any of malloc's parameters.
fn operator_tuned(tunables: Option<&str>) -> bool {
    tunables.is_some_and(|value| value.split(':').any(|entry| entry.trim().starts_with("glibc.malloc.")))
}

/// The same settings as a `GLIBC_TUNABLES` value, for giving another process (the analytics
/// benchmark's pandas) what [`tune`] gives this one.
pub fn as_glibc_tunables() -> String {
    format!(
        "glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}:\
         glibc.malloc.arena_max={ARENA_MAX}"
    )
}

/// Sets malloc's parameters for the whole process. Call it once, first thing in `main`.
pub fn tune() -> Tuning {
    epoch();
    if operator_tuned(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
        return Tuning::LeftToOperator;
    }
    if glibc::set_parameters(MMAP_THRESHOLD, TRIM_THRESHOLD, ARENA_MAX) {
        TUNED.store(true, Ordering::Relaxed);
        Tuning::Applied
    } else {
        Tuning::NotGlibc
    }
}

/// Marks the end of a report: its freed memory is kept for a next one, and given back
/// [`IDLE_BEFORE_RELEASE`] after the last.
pub fn report_done() {
    REPORTS.report_done(epoch().elapsed());
}

/// Gives the kept memory back if a report ran and none has for [`IDLE_BEFORE_RELEASE`];
/// returns whether it did.
fn release_if_idle() -> bool {
    if !REPORTS.release_due(epoch().elapsed()) {
        return false;
    }
    release_now();
    true
}

/// Gives the memory malloc keeps back to the system now.
pub fn release_now() {
    if TUNED.load(Ordering::Relaxed) {
        glibc::release_free_memory();
    }
}

/// When reports ended, and whether memory was given back since. Times are since the process
/// started.
struct ReportClock {
    pending: AtomicBool,
    last_ms: AtomicU64,
}

impl ReportClock {
    const fn new() -> Self {
        ReportClock { pending: AtomicBool::new(false), last_ms: AtomicU64::new(0) }
    }

    fn report_done(&self, now: Duration) {
        self.last_ms.store(now.as_millis() as u64, Ordering::Relaxed);
        self.pending.store(true, Ordering::Release);
    }

    /// Whether memory should be given back now; true once per burst of reports.
    fn release_due(&self, now: Duration) -> bool {
        if !self.pending.load(Ordering::Acquire) {
            return false;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        if now.saturating_sub(last) < IDLE_BEFORE_RELEASE {
            return false;
        }
        self.pending.swap(false, Ordering::AcqRel)
    }
}

/// Starts the thread that gives memory back after reports (`run` and `chat`).
pub fn spawn_releaser() {
    if !TUNED.load(Ordering::Relaxed) {
        return;
    }
    let started = std::thread::Builder::new().name("memory-release".into()).stack_size(64 << 10).spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(10));
            if release_if_idle() {
                tracing::debug!("memory kept after reports given back to the system");
            }
        }
    });
    if let Err(err) = started {
        tracing::warn!("memory after reports will not be given back early: {err}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// Sets `M_MMAP_THRESHOLD`, `M_TRIM_THRESHOLD` and `M_ARENA_MAX`; false if malloc refused
    /// any.
    pub fn set_parameters(mmap: usize, trim: usize, arenas: usize) -> bool {
        let (Ok(mmap), Ok(trim), Ok(arenas)) = (i32::try_from(mmap), i32::try_from(trim), i32::try_from(arenas)) else {
            return false;
        };
        // SAFETY: mallopt only changes malloc's parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
                && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
        }
    }

    /// Gives every arena's free pages back to the kernel.
    pub fn release_free_memory() {
        // SAFETY: malloc_trim takes the arenas' locks itself; it is safe to call at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn set_parameters(_mmap: usize, _trim: usize, _arenas: usize) -> bool {
        false
    }

    pub fn release_free_memory() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_own_malloc_tunables_win() {
        assert!(operator_tuned(Some("glibc.malloc.arena_max=2")));
        assert!(operator_tuned(Some("glibc.rtld.nns=2:glibc.malloc.trim_threshold=0")));
        assert!(!operator_tuned(Some("glibc.rtld.nns=2")));
        assert!(!operator_tuned(Some("")));
        assert!(!operator_tuned(None));
        // What the benchmark hands pandas is read as the operator's own settings.
        assert!(operator_tuned(Some(&as_glibc_tunables())));
        assert!(as_glibc_tunables().contains("arena_max=2"));
    }

    #[test]
    fn malloc_takes_the_settings_on_glibc() {
        let expected = if operator_tuned(std::env::var("GLIBC_TUNABLES").ok().as_deref()) {
            Tuning::LeftToOperator
        } else if cfg!(all(target_os = "linux", target_env = "gnu")) {
            Tuning::Applied
        } else {
            Tuning::NotGlibc
        };
        assert_eq!(tune(), expected);
        // Giving memory back is harmless whatever was applied.
        release_now();
    }

    #[test]
    fn memory_is_given_back_only_after_a_report_and_a_quiet_while() {
        let clock = ReportClock::new();
        assert!(!clock.release_due(Duration::from_secs(1_000)), "no report ran yet");
        let last = Duration::from_secs(100);
        clock.report_done(last);
        assert!(!clock.release_due(last + IDLE_BEFORE_RELEASE - Duration::from_secs(1)), "too soon");
        assert!(clock.release_due(last + IDLE_BEFORE_RELEASE), "quiet long enough");
        assert!(!clock.release_due(last + IDLE_BEFORE_RELEASE * 2), "once per burst of reports");
        clock.report_done(last * 3);
        assert!(!clock.release_due(last * 3 + Duration::from_secs(5)), "a new report starts the wait again");
        assert!(clock.release_due(last * 3 + IDLE_BEFORE_RELEASE));
    }
}
