//! Analytics at scale: 1,000,000 events and 10,000 posts in a real store. Measures the CSV
//! export of the raw events (store → polars → CSV file), its peak RSS, and per-format
//! aggregates; then runs the same two jobs in Python/pandas on the same data
//! (`benches/analytics_pandas.py`, from a Parquet copy of the same tables) in the same run.
//!
//! `cargo bench --bench analytics_load` (env: EVENTS=1000000, POSTS=10000, RUNS=3;
//! PANDAS_MALLOC=postflow runs pandas with postflow's malloc settings too).
//! pandas needs `pip install pandas pyarrow`; without it that part is skipped and said so.

#[path = "../tests/common/analytics_fixture.rs"]
mod analytics_fixture;
#[path = "../tests/common/shipped_config.rs"]
mod shipped_config;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use postflow::analytics::{self, FileFormat, SourceContext};
use postflow::store::Store;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Resets the peak RSS (VmHWM) of this process (Linux: `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The per-format aggregate over the event log, as a content manager would write it.
const EVENTS_BY_FORMAT: &str = r#"kind: pipeline
id: bench_events_by_format
source: events
steps:
  - derive:
      is_ai: "CASE WHEN kind = 'ai_call' THEN 1 ELSE 0 END"
      tokens: "COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)"
  - group_by: [format]
    agg:
      events: "COUNT(*)"
      ai_calls: "SUM(is_ai)"
      tokens: "SUM(tokens)"
      posts: "COUNT(DISTINCT post)"
  - sort: [format]
"#;

fn main() {
    // The allocator settings the `postflow` binary starts with.
    let tuning = postflow::memory::tune();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--generate") {
        let store = Store::open(Path::new(&args[2])).unwrap();
        let written = analytics_fixture::generate(&store, env_or("POSTS", 10_000), env_or("EVENTS", 1_000_000));
        println!("{} {} {}", written.posts, written.events, written.clicks);
        return;
    }
    let runs = env_or("RUNS", 3) as usize;
    println!("malloc: {tuning:?} (what `postflow` does at start; see src/memory.rs)");
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("analytics.redb");
    let started = Instant::now();
    let generated =
        std::process::Command::new(&args[0]).args(["--generate", store_path.to_str().unwrap()]).output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    println!(
        "generated (posts events clicks): {} in {:.1} s, store {:.0} MiB",
        String::from_utf8_lossy(&generated.stdout).trim(),
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&store_path).unwrap().len() as f64 / 1048576.0
    );

    let config = dir.path().join("config");
    shipped_config::copy_shipped_config(&config);
    std::fs::write(config.join("flows/bench_events_by_format.yaml"), EVENTS_BY_FORMAT).unwrap();
    let loaded = analytics::load_config(&config, postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = match loaded.result {
        Ok(bundle) => bundle,
        Err(_) => panic!("{}", loaded.render_errors()),
    };
    let store = Store::open(&store_path).unwrap();
    let context = || SourceContext { timezone: chrono_tz::Asia::Yerevan, channel_link: Some("https://t.me/x".into()) };
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let all: BTreeMap<String, String> = [("period".to_string(), "all".to_string())].into();

    // 1. The raw event log as CSV: store → polars → file.
    let csv_path = dir.path().join("events.csv");
    let mut export_times = Vec::new();
    let mut peak_kib = 0;
    let rss_before = status_kib("VmRSS:");
    for _ in 0..runs {
        reset_peak();
        let t = Instant::now();
        let report = analytics::report(&bundle, "events", &all, &store, context(), today).unwrap();
        let file = std::fs::File::create(&csv_path).unwrap();
        let mut writer = std::io::BufWriter::new(file);
        analytics::sinks::write(report.pipeline, &report.frame, FileFormat::Csv, &mut writer).unwrap();
        std::io::Write::flush(&mut writer).unwrap();
        export_times.push(t.elapsed().as_secs_f64());
        assert_eq!(report.frame.height() as u64, env_or("EVENTS", 1_000_000), "every event");
        peak_kib = peak_kib.max(status_kib("VmHWM:"));
    }
    let csv_size = std::fs::metadata(&csv_path).unwrap().len();

    // 2. Per-format aggregates: over the event log, and the shipped `formats` report. The
    // aggregate runs first in a loop of its own, as the pandas script times its jobs; then each
    // run of the `formats` report is followed by one of the aggregate, whose buffers the report's
    // have taken the place of.
    let aggregate = || {
        let report =
            analytics::report(&bundle, "bench_events_by_format", &BTreeMap::new(), &store, context(), today).unwrap();
        assert_eq!(report.frame.height(), 4);
    };
    let timed = |job: &dyn Fn()| {
        let t = Instant::now();
        job();
        t.elapsed().as_secs_f64()
    };
    let aggregate_times: Vec<f64> = (0..runs).map(|_| timed(&aggregate)).collect();
    let (formats_times, aggregate_after_other_times): (Vec<f64>, Vec<f64>) = (0..runs)
        .map(|_| {
            let formats =
                timed(&|| drop(analytics::report(&bundle, "formats", &all, &store, context(), today).unwrap()));
            (formats, timed(&aggregate))
        })
        .unzip();

    // 3. The same data for pandas: the events and posts tables as Parquet.
    {
        let sources = analytics::sources::SourceContext { timezone: chrono_tz::Asia::Yerevan, channel_link: None };
        let frame = analytics::sources::load("events", &store, &sources).unwrap();
        let file = std::fs::File::create(dir.path().join("events.parquet")).unwrap();
        let mut writer = std::io::BufWriter::new(file);
        analytics::sinks::write(&bundle.pipelines[0], &frame, FileFormat::Parquet, &mut writer).unwrap();
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let rss_after = status_kib("VmRSS:");
    postflow::memory::release_now();
    println!(
        "rss before the runs: {:.1} MiB, after them: {:.1} MiB, once the kept memory is given back: {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0
    );
    println!(
        "postflow  CSV export of {} events: median {:.3} s, best {:.3} s ({:.0} MiB file), peak RSS {:.0} MiB",
        env_or("EVENTS", 1_000_000),
        median(&export_times),
        best(&export_times),
        csv_size as f64 / 1048576.0,
        peak_kib as f64 / 1024.0
    );
    println!(
        "postflow  per-format aggregate of the events (store read included): median {:.3} s, best {:.3} s; \
         right after the `formats` report: median {:.3} s, best {:.3} s",
        median(&aggregate_times),
        best(&aggregate_times),
        median(&aggregate_after_other_times),
        best(&aggregate_after_other_times)
    );
    println!(
        "postflow  shipped `formats` report (posts + clicks + reactions): median {:.3} s, best {:.3} s",
        median(&formats_times),
        best(&formats_times)
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/analytics_pandas.py");
    let mut python = std::process::Command::new("python3");
    python.arg(&script).arg(dir.path()).arg(runs.to_string());
    // PANDAS_MALLOC=postflow gives pandas the same malloc settings as postflow.
    if std::env::var("PANDAS_MALLOC").as_deref() == Ok("postflow") {
        let tunables = postflow::memory::as_glibc_tunables();
        println!("pandas runs with GLIBC_TUNABLES={tunables}");
        python.env("GLIBC_TUNABLES", tunables);
    }
    let pandas = python.output();
    match pandas {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            let value = |key: &str| -> Option<f64> {
                text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
            };
            if let (Some(export), Some(aggregate), Some(aggregate_columns)) = (
                value("pandas_export_total_s="),
                value("pandas_aggregate_total_s="),
                value("pandas_aggregate_columns_s="),
            ) {
                println!(
                    "speed-up vs pandas (whole job, reading included): export {:.1}×, aggregate {:.1}× \
                     (pandas reading the whole table) / {:.1}× (pandas reading only the five columns); \
                     the aggregate right after the `formats` report: {:.1}× / {:.1}×",
                    export / median(&export_times),
                    aggregate / median(&aggregate_times),
                    aggregate_columns / median(&aggregate_times),
                    aggregate / median(&aggregate_after_other_times),
                    aggregate_columns / median(&aggregate_after_other_times)
                );
            }
        }
        Ok(out) => println!("pandas part skipped: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(err) => println!("pandas part skipped: python3: {err}"),
    }
}
