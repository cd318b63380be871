//! The bundle in service: one immutable [`Bundle`] at a time, swapped whole when a reload
//! compiles cleanly. Each turn takes a snapshot, so a turn never sees two versions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::Bundle;

/// The current bundle and how many times it was replaced.
pub struct LiveBundle {
    current: RwLock<Arc<Bundle>>,
    version: AtomicU64,
}

impl LiveBundle {
    pub fn new(bundle: Arc<Bundle>) -> Arc<LiveBundle> {
        Arc::new(LiveBundle { current: RwLock::new(bundle), version: AtomicU64::new(0) })
    }

    /// The bundle serving now.
    pub fn get(&self) -> Arc<Bundle> {
        self.read().clone()
    }

    /// The version and the bundle, read together.
    pub fn snapshot(&self) -> (u64, Arc<Bundle>) {
        let current = self.read();
        (self.version(), current.clone())
    }

    /// The lock held for reading (a writer cannot leave the bundle half-replaced, so a
    /// poisoned lock still holds a whole one).
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Arc<Bundle>> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// 0 for the bundle the process started with, then one more per replacement.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Puts `bundle` in service and returns the new version.
    pub fn replace(&self, bundle: Arc<Bundle>) -> u64 {
        let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = bundle;
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }
}
