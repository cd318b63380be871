//! Time for everything that waits: the system clock in production, a clock the test moves by
//! hand in tests (so a scheduler test that spans days runs in milliseconds).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A boxed sleep.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of "now" that can also wait for a moment to come.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;

    /// Resolves once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> Sleep<'_>;

    /// Unix seconds.
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep<'_> {
        Box::pin(async move {
            // Sleep in bounded steps: the system clock may be changed while we wait (NTP, a
            // suspended laptop), and tokio's timer follows a monotonic clock.
            loop {
                let left = at_ms - self.now_ms();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left.min(60_000) as u64)).await;
            }
        })
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    /// A clock showing `unix_seconds`.
    pub fn at(unix_seconds: i64) -> ManualClock {
        let (moved, _) = tokio::sync::watch::channel(unix_seconds * 1000);
        ManualClock { now_ms: AtomicI64::new(unix_seconds * 1000), moved }
    }

    /// Sets the time (Unix seconds) and wakes every sleeper whose moment came.
    pub fn set(&self, unix_seconds: i64) {
        self.set_ms(unix_seconds * 1000);
    }

    pub fn set_ms(&self, unix_ms: i64) {
        self.now_ms.store(unix_ms, Ordering::SeqCst);
        self.moved.send_replace(unix_ms);
    }

    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.set_ms(self.now_ms() + seconds * 1000);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep<'_> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            while self.now_ms() < at_ms {
                if moved.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_is_moved_past_it() {
        let clock = std::sync::Arc::new(ManualClock::at(100));
        let sleeper = clock.clone();
        let task = tokio::spawn(async move { sleeper.sleep_until(160_000).await });
        tokio::task::yield_now().await;
        clock.advance(30);
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.advance(30);
        task.await.unwrap();
        assert_eq!(clock.now(), 160);
    }
}
