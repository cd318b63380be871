//! Hot reload: the configuration is compiled again when its files change (or on `/reload`),
//! and a clean bundle is put in service at once; a broken one is refused with its diagnostics
//! while the bundle in service goes on serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Bundle;
use crate::config::live::LiveBundle;
use crate::config::watch::{self, ConfigWatch};

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reloaded {
    /// A new bundle serves from now on.
    Applied { version: u64, summary: String },
    /// The files compile to the bundle already serving (a save without a change).
    Unchanged,
    /// The files have problems; the bundle in service stays. `report` is every diagnostic,
    /// rendered with its `file:line:col`.
    Rejected { problems: usize, report: String },
}

/// Reloads one configuration folder into one [`LiveBundle`].
pub struct Reloader {
    dir: PathBuf,
    timezone: chrono_tz::Tz,
    live: Arc<LiveBundle>,
    /// One reload at a time (the watcher and `/reload` may ask together).
    running: Mutex<()>,
    /// Reloads finished, whatever their outcome.
    finished: std::sync::atomic::AtomicU64,
}

impl Reloader {
    pub fn new(dir: PathBuf, timezone: chrono_tz::Tz, bundle: Arc<Bundle>) -> Arc<Reloader> {
        Arc::new(Reloader {
            dir,
            timezone,
            live: LiveBundle::new(bundle),
            running: Mutex::new(()),
            finished: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The bundle this reloader keeps in service.
    pub fn live(&self) -> Arc<LiveBundle> {
        self.live.clone()
    }

    /// Compiles the folder again (blocking: it reads files and checks the pipelines with polars)
    /// and puts the result in service if it is clean and different.
    pub fn reload(&self) -> Reloaded {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let loaded = crate::analytics::load_config(&self.dir, crate::actions::CATALOGUE, self.timezone);
        let outcome = match loaded.result {
            Ok(bundle) if bundle.fingerprint == self.live.get().fingerprint => Reloaded::Unchanged,
            Ok(bundle) => {
                let summary = bundle.summary();
                let version = self.live.replace(Arc::new(bundle));
                Reloaded::Applied { version, summary }
            }
            Err(ref diagnostics) => Reloaded::Rejected {
                problems: diagnostics.len(),
                report: crate::config::render_diagnostics(diagnostics, &loaded.sources),
            },
        };
        match &outcome {
            Reloaded::Applied { version, summary } => {
                crate::telemetry::reloaded("applied");
                tracing::info!(version, "configuration reloaded: {summary}")
            }
            Reloaded::Unchanged => {
                crate::telemetry::reloaded("unchanged");
                tracing::debug!("configuration files saved without a change")
            }
            Reloaded::Rejected { problems, report } => {
                crate::telemetry::reloaded("rejected");
                tracing::error!(
                    problems,
                    "the changed configuration was refused; the previous one keeps serving:\n{report}"
                )
            }
        }
        // Compiling freed a few MiB (and maybe the old bundle) that malloc would keep.
        crate::memory::release_now();
        self.finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        outcome
    }

    /// How many reloads have finished (applied, unchanged or refused).
    pub fn finished(&self) -> u64 {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Watches the folder: after each quiet period with changed files, reloads and hands the
    /// outcome to `outcome` (on the watcher's thread).
    pub fn watch(
        self: &Arc<Self>,
        debounce: Duration,
        mut outcome: impl FnMut(Reloaded) + Send + 'static,
    ) -> Result<ConfigWatch, String> {
        let reloader = self.clone();
        watch::watch(&self.dir, debounce, move |changed| {
            tracing::info!(files = changed.len(), "configuration files changed");
            outcome(reloader.reload());
        })
    }
}
