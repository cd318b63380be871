//! Watches the configuration folders (`flows/`, `formats/`, `prompts/`) and reports, after a
//! short quiet time, which configuration files changed. Editors' swap and backup files and
//! everything outside those folders (the store, exports) are ignored.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// The folders under `CONFIG_DIR` that hold configuration.
pub const WATCHED_FOLDERS: [&str; 3] = ["flows", "formats", "prompts"];

/// How long the files must stay quiet before a reload: an editor's save (write, rename, chmod)
/// or a `git pull` arrives as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A running watch; dropping it stops watching (and its thread).
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
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
    let (changes, received) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
        Ok(event) if event.need_rescan() => {
            // The system dropped events: anything may have changed.
            let _ = changes.send(PathBuf::from("(rescan)"));
        }
        Ok(event) if event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove() => {
            // Configuration files, and folders (a folder moved in or out carries files with it).
            for path in event.paths.into_iter().filter(|path| is_config_file(path) || path.extension().is_none()) {
                let _ = changes.send(path);
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!("watching the configuration: {error}"),
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    for folder in WATCHED_FOLDERS {
        let path = dir.join(folder);
        if path.is_dir() {
            watcher
                .watch(&path, RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
        }
    }
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
}
