//! Watches the configuration folders (`flows/`, `formats/`, `prompts/`) and reports, after a
//! short quiet time, which configuration files changed. Editors' swap and backup files and
//! everything outside those folders (the store, exports) are ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// The folders under `CONFIG_DIR` that hold configuration.
pub const WATCHED_FOLDERS: [&str; 3] = ["flows", "formats", "prompts"];

/// How long the files must stay quiet before a reload: an editor's save (write, rename, chmod)
/// or a `git pull` arrives as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A running watch; dropping it stops watching (and its thread).
pub struct ConfigWatch {
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

/// Whether a changed path is a configuration file (not a swap, backup or hidden file).
pub fn is_config_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    if name.starts_with('.') || name.ends_with('~') || name.starts_with('#') {
        return false;
    }
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "j2"))
}

/// Starts watching `dir`'s configuration folders; `on_change` gets the changed configuration
/// files of each burst once the files were quiet for `debounce` (on the watch's own thread).
/// Reads are not changes: loading the configuration does not trigger another load.
pub fn watch(
    dir: &Path,
    debounce: Duration,
    mut on_change: impl FnMut(Vec<PathBuf>) + Send + 'static,
) -> Result<ConfigWatch, String> {
    // notify reports absolute paths; compare them with absolute ones (CONFIG_DIR is often `.`).
    let absolute = std::path::absolute(dir).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let dir = absolute.as_path();
    let (changes, received) = mpsc::channel::<PathBuf>();
    let root = dir.to_path_buf();
    let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
        Ok(event) if event.need_rescan() => {
            // The system dropped events: anything may have changed.
            let _ = changes.send(PathBuf::from("(rescan)"));
        }
        Ok(event) if event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove() => {
            for path in event.paths {
                // In the configuration folder itself, only the watched folders count (created,
                // removed or moved in whole).
                let counts = if path.parent() == Some(root.as_path()) {
                    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| WATCHED_FOLDERS.contains(&n))
                } else {
                    // Configuration files, and folders (a folder moved in or out carries files).
                    is_config_file(&path) || path.extension().is_none()
                };
                if counts {
                    let _ = changes.send(path);
                }
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!("watching the configuration: {error}"),
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let watcher = Arc::new(Mutex::new(watcher));
    {
        let mut watching = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The folder itself, for watched folders that are deleted and created again.
        watching.watch(dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        for folder in WATCHED_FOLDERS {
            let path = dir.join(folder);
            if path.is_dir() {
                watching
                    .watch(&path, RecursiveMode::Recursive)
                    .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
            }
        }
    }
    // The thread must not keep the watcher alive: dropping the watch ends it.
    let rewatch = Arc::downgrade(&watcher);
    let folder_of_config = dir.to_path_buf();
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            // Ends when the watcher (the sender's owner) is dropped.
            while let Ok(first) = received.recv() {
                let mut changed = vec![first];
                loop {
                    match received.recv_timeout(debounce) {
                        Ok(more) => changed.push(more),
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        // The watch was dropped: no reload after shutdown.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                changed.sort();
                changed.dedup();
                // A watched folder created (again) since the last burst is watched from now on.
                if let Some(watcher) = rewatch.upgrade() {
                    let mut watching = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    for folder in WATCHED_FOLDERS {
                        let path = folder_of_config.join(folder);
                        if changed.iter().any(|c| c == &path) && path.is_dir() {
                            let _ = watching.unwatch(&path);
                            if let Err(error) = watching.watch(&path, RecursiveMode::Recursive) {
                                tracing::warn!("cannot watch {}: {error}", path.display());
                            }
                        }
                    }
                }
                // A panic in one reload must not end hot reload for the rest of the run.
                let reload = std::panic::AssertUnwindSafe(|| on_change(changed));
                if std::panic::catch_unwind(reload).is_err() {
                    tracing::error!("a configuration reload panicked; the previous configuration keeps serving");
                }
            }
        })
        .map_err(|e| format!("cannot start watching {}: {e}", dir.display()))?;
    Ok(ConfigWatch { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configuration_files_count() {
        for (path, counts) in [
            ("flows/menu.yaml", true),
            ("prompts/ai/generate.j2", true),
            ("flows/.menu.yaml.swp", false),
            ("flows/menu.yaml~", false),
            ("flows/#menu.yaml#", false),
            ("flows/README.md", false),
            ("data/postflow.redb", false),
        ] {
            assert_eq!(is_config_file(Path::new(path)), counts, "{path}");
        }
    }

    #[test]
    fn a_watched_folder_removed_and_created_again_is_watched_again() {
        // Given as a relative path, as CONFIG_DIR usually is (`.`): notify reports absolute ones.
        let cwd = std::env::current_dir().unwrap();
        let dir = tempfile::tempdir_in(&cwd).unwrap();
        let relative = dir.path().strip_prefix(&cwd).unwrap().to_path_buf();
        assert!(relative.is_relative());
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).unwrap();
        std::fs::write(flows.join("a.yaml"), "a").unwrap();
        let (bursts, received) = mpsc::channel();
        let _watch = watch(&relative, Duration::from_millis(50), move |changed| {
            let _ = bursts.send(changed);
        })
        .unwrap();
        // Waits (a guard against hangs, not a timing test) for a burst naming `wanted`.
        let burst_with = |wanted: &Path| loop {
            let changed = received.recv_timeout(Duration::from_secs(30)).expect("a burst of changes");
            if changed.iter().any(|c| c == wanted) {
                return;
            }
        };
        std::fs::remove_dir_all(&flows).unwrap();
        burst_with(&flows);
        std::fs::create_dir(&flows).unwrap();
        burst_with(&flows);
        std::fs::write(flows.join("b.yaml"), "b").unwrap();
        burst_with(&flows.join("b.yaml"));
        // Other things in the configuration folder are not configuration.
        std::fs::write(dir.path().join("Cargo.lock"), "x").unwrap();
        std::fs::write(flows.join("c.yaml"), "c").unwrap();
        let changed = received.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(!changed.iter().any(|c| c.ends_with("Cargo.lock")), "{changed:?}");
    }
}
