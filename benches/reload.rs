//! Hot reload latency: from a file save in the configuration folder to the new bundle serving
//! (the watcher's quiet time, the compile with every check, the swap), on a copy of the shipped
//! configuration. A label is changed and saved; the time until the live bundle's version moves is
//! taken, RUNS times (default 20).
//!
//! `cargo bench --bench reload`

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postflow::reload::{Reloaded, Reloader};

#[path = "../tests/common/shipped_config.rs"]
mod shipped_config;

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    shipped_config::copy_shipped_config(dir.path());
    let loaded = postflow::analytics::load_config(dir.path(), postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = match loaded.result {
        Ok(bundle) => Arc::new(bundle),
        Err(_) => panic!("{}", loaded.render_errors()),
    };
    let started = Instant::now();
    let compile_only = Reloader::new(dir.path().to_path_buf(), chrono_tz::Asia::Yerevan, bundle.clone());
    assert_eq!(compile_only.reload(), Reloaded::Unchanged);
    let compile = started.elapsed();

    let reloader = Reloader::new(dir.path().to_path_buf(), chrono_tz::Asia::Yerevan, bundle);
    let (outcomes, received) = mpsc::channel();
    let _watch = reloader
        .watch(postflow::config::watch::DEBOUNCE, move |outcome| {
            let _ = outcomes.send((Instant::now(), outcome));
        })
        .unwrap();
    let menu = dir.path().join("flows/menu.yaml");
    let original = std::fs::read_to_string(&menu).unwrap();
    let mut latencies = Vec::new();
    for run in 0..runs {
        std::thread::sleep(Duration::from_millis(300));
        let text = original.replacen("❓ Օգնություն", &format!("❓ Օգնություն {run}"), 1);
        let saved = Instant::now();
        std::fs::write(&menu, text).unwrap();
        let (at, outcome) = received.recv_timeout(Duration::from_secs(10)).expect("a reload");
        assert!(matches!(outcome, Reloaded::Applied { .. }), "{outcome:?}");
        assert_eq!(reloader.live().version(), run as u64 + 1);
        latencies.push(at.duration_since(saved).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!("compile of the shipped configuration alone (every check): {:.0} ms", compile.as_secs_f64() * 1000.0);
    println!(
        "save → new bundle serving, {runs} saves ({} ms quiet time included): median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        postflow::config::watch::DEBOUNCE.as_millis(),
        pick(0.5),
        pick(0.95),
        pick(1.0)
    );
}
