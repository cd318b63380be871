//! Runs every conversation script — the shipped ones and the examples' — through the real
//! engine, store and actions, exactly as `postflow test` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postflow::actions::CATALOGUE;
use postflow::config;
use postflow::conversation::{find_scripts, run_all};

fn run_dir(config_dir: &Path) {
    let loaded = config::load(config_dir, CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = match loaded.result {
        Ok(bundle) => Arc::new(bundle),
        Err(ref d) => panic!("{}", config::render_diagnostics(d, &loaded.sources)),
    };
    let scripts = find_scripts(&[], config_dir);
    assert!(!scripts.is_empty(), "no scripts under {}", config_dir.display());
    let mut report = Vec::new();
    let failures = run_all(bundle, &scripts, config_dir, &mut report).expect("scripts run");
    let report = String::from_utf8_lossy(&report);
    println!("{report}");
    assert_eq!(failures, 0, "{report}");
}

#[test]
fn shipped_conversations_pass() {
    run_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
}

#[test]
fn example_conversations_pass() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("entry").path();
        if dir.join("tests/conversations").is_dir() {
            run_dir(&dir);
        }
    }
}
