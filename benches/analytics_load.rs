//! Analytics at scale: 1,000,000 events and 10,000 posts in a real store. Measures the CSV
//! export of the raw events (store → polars → CSV file), its peak RSS, and per-format
//! aggregates, and runs the same two jobs in Python/pandas on the same data
//! (`benches/analytics_pandas.py --serve`, from a Parquet copy of the events table) in the same
//! run, in the same rounds, each run right after another tool's, so that every speed-up is taken
//! from two times measured under the same load on the host. The aggregate is also run by polars
//! alone, straight from pandas' Parquet file, in the same rounds: what the stack itself achieves
//! against pandas on this machine, with no store in the way.
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
        // The same data for pandas, written here so that it leaves nothing in the measuring
        // process's memory: the events table as Parquet, beside the store.
        let sources = SourceContext { timezone: chrono_tz::Asia::Yerevan, channel_link: None };
        let mut frame = analytics::sources::load("events", &store, &sources).unwrap();
        let file = std::fs::File::create(&args[3]).unwrap();
        polars::prelude::ParquetWriter::new(std::io::BufWriter::new(file)).finish(&mut frame).unwrap();
        println!("{} {} {}", written.posts, written.events, written.clicks);
        return;
    }
    let runs = env_or("RUNS", 3) as usize;
    println!("malloc: {tuning:?} (what `postflow` does at start; see src/memory.rs)");
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("analytics.redb");
    let started = Instant::now();
    // pandas reads `events.parquet` in the folder it is given.
    let parquet_path = dir.path().join("events.parquet");
    let generated = std::process::Command::new(&args[0])
        .args(["--generate", store_path.to_str().unwrap(), parquet_path.to_str().unwrap()])
        .output()
        .unwrap();
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

    // pandas' jobs run in the same rounds as postflow's, each right after another tool's run, so
    // that all are timed under the same load on the host (which varies by ±20 % from minute to
    // minute here).
    let mut pandas = Pandas::start(dir.path());
    let timed = |job: &dyn Fn()| {
        let t = Instant::now();
        job();
        t.elapsed().as_secs_f64()
    };

    // 1. The raw event log as CSV: store → polars → file.
    let csv_path = dir.path().join("events.csv");
    let mut export = Paired::default();
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
        let seconds = t.elapsed().as_secs_f64();
        assert_eq!(report.frame.height() as u64, env_or("EVENTS", 1_000_000), "every event");
        peak_kib = peak_kib.max(status_kib("VmHWM:"));
        drop(report);
        export.push(seconds, &mut pandas, &["export"]);
    }
    let csv_size = std::fs::metadata(&csv_path).unwrap().len();

    // 2. Per-format aggregates: over the event log, and the shipped `formats` report. The
    // aggregate runs alternately with pandas' aggregates (as a report in the bot runs: after other
    // work), then back to back (its data hot in the CPU's caches), then each right after a run of
    // the `formats` report, whose buffers have taken the place of the aggregate's.
    let aggregate = || {
        let report =
            analytics::report(&bundle, "bench_events_by_format", &BTreeMap::new(), &store, context(), today).unwrap();
        assert_eq!(report.frame.height(), 4);
        report.frame
    };
    const PANDAS_AGGREGATES: [&str; 2] = ["aggregate", "aggregate_columns"];
    // One untimed run of each first: the first read of a file, pandas' first `read_parquet`
    // (which loads more of pyarrow) and postflow's first plan are not what is compared.
    // polars alone answers what postflow answers.
    assert_same_aggregate(&aggregate(), &polars_alone(&parquet_path));
    if let Some(server) = pandas.as_mut() {
        for job in PANDAS_AGGREGATES {
            let _ = server.run(job);
        }
    }
    let mut aggregates = Paired::default();
    for _ in 0..runs {
        // polars alone runs between pandas' two aggregates, so that it too follows a pandas run,
        // as postflow does in every round.
        aggregates.postflow.push(timed(&|| drop(aggregate())));
        aggregates.run_pandas(&mut pandas, 0, PANDAS_AGGREGATES[0]);
        aggregates.alone.push(timed(&|| drop(polars_alone(&parquet_path))));
        aggregates.run_pandas(&mut pandas, 1, PANDAS_AGGREGATES[1]);
    }
    let back_to_back: Vec<f64> = (0..runs).map(|_| timed(&|| drop(aggregate()))).collect();
    let mut formats_times = Vec::new();
    let mut after_formats = Paired::default();
    for _ in 0..runs {
        formats_times
            .push(timed(&|| drop(analytics::report(&bundle, "formats", &all, &store, context(), today).unwrap())));
        after_formats.push(timed(&|| drop(aggregate())), &mut pandas, &PANDAS_AGGREGATES);
    }

    let rss_after = status_kib("VmRSS:");
    postflow::memory::release_now();
    println!(
        "rss before the runs: {:.1} MiB, after them: {:.1} MiB, once the kept memory is given back: {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0
    );
    println!(
        "postflow  CSV export of {} events: {} ({:.0} MiB file), peak RSS {:.0} MiB",
        env_or("EVENTS", 1_000_000),
        spread(&export.postflow),
        csv_size as f64 / 1048576.0,
        peak_kib as f64 / 1024.0
    );
    println!(
        "postflow  per-format aggregate of the events (store read included), between pandas' runs: {}; \
         right after the `formats` report: {}; back to back: {}",
        spread(&aggregates.postflow),
        spread(&after_formats.postflow),
        spread(&back_to_back)
    );
    println!(
        "polars alone, the same aggregate from pandas' Parquet file, in the same rounds: {}",
        spread(&aggregates.alone)
    );
    println!("postflow  shipped `formats` report (posts + clicks + reactions): {}", spread(&formats_times));
    match &pandas {
        Some(server) => {
            println!(
                "{}: in the same rounds as postflow (aggregates: postflow, pandas' whole table, polars alone, \
                 pandas' five columns), {} rounds",
                server.version,
                aggregates.pandas[1].len()
            );
            println!("pandas    CSV export: {}", spread(&export.pandas[0]));
            println!("pandas    aggregate, the whole table read: {}", spread(&aggregates.pandas[0]));
            println!("pandas    aggregate, only the five columns read: {}", spread(&aggregates.pandas[1]));
            println!("speed-up vs pandas (pandas' time / postflow's, round by round; reading included):");
            println!("  export: {}", export.speed_ups(0));
            println!("  aggregate, pandas reading the whole table: {}", aggregates.speed_ups(0));
            println!("  aggregate, pandas reading only the five columns: {}", aggregates.speed_ups(1));
            println!("  polars alone, pandas reading the whole table: {}", aggregates.alone_speed_ups(0));
            println!("  polars alone, pandas reading only the five columns: {}", aggregates.alone_speed_ups(1));
            println!("  aggregate right after `formats`, whole table: {}", after_formats.speed_ups(0));
            println!("  aggregate right after `formats`, five columns: {}", after_formats.speed_ups(1));
        }
        None => println!("pandas part skipped (see above)"),
    }
}

/// The median of a list that is not empty.
fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// "median …, best …" of a list of seconds.
fn spread(seconds: &[f64]) -> String {
    if seconds.is_empty() {
        return "no runs".into();
    }
    let best = seconds.iter().cloned().fold(f64::INFINITY, f64::min);
    format!("median {:.3} s, best {:.3} s", median(seconds), best)
}

/// The per-format aggregate as polars alone runs it, written in polars' own API and read straight
/// from the Parquet file pandas reads. `COUNT(DISTINCT post)` is the one postflow plans (polars'
/// SQL translation, its `n_unique` counted by hashing); SQL's `SUM` and `COALESCE` semantics and
/// the stable group order are left out.
fn polars_alone(parquet: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let path = PlRefPath::new(parquet.to_str().expect("a UTF-8 temporary path"));
    let frame = LazyFrame::scan_parquet(path, ScanArgsParquet::default())
        .unwrap()
        .with_columns([
            when(col("kind").eq(lit("ai_call"))).then(lit(1)).otherwise(lit(0)).alias("is_ai"),
            (col("prompt_tokens").fill_null(lit(0)) + col("completion_tokens").fill_null(lit(0))).alias("tokens"),
        ])
        .group_by([col("format")])
        .agg([
            len().alias("events"),
            col("is_ai").sum().alias("ai_calls"),
            col("tokens").sum(),
            (col("post").unique().len() - col("post").null_count().gt(lit(0))).alias("posts"),
        ])
        .sort(["format"], SortMultipleOptions::default())
        .collect()
        .unwrap();
    assert_eq!(frame.height(), 4);
    frame
}

/// Fails unless both frames hold the same values in the aggregate's columns (types may differ).
fn assert_same_aggregate(a: &polars::prelude::DataFrame, b: &polars::prelude::DataFrame) {
    use polars::prelude::*;
    for name in ["format", "events", "ai_calls", "tokens", "posts"] {
        let text = |frame: &DataFrame| frame.column(name).unwrap().cast(&DataType::String).unwrap();
        assert!(text(a).as_materialized_series().equals_missing(text(b).as_materialized_series()), "{name}: {a} {b}");
    }
}

/// postflow's time for a job and pandas' times for its counterparts, taken in the same rounds
/// (and, for the aggregate, polars alone's).
#[derive(Default)]
struct Paired {
    postflow: Vec<f64>,
    pandas: [Vec<f64>; 2],
    alone: Vec<f64>,
}

impl Paired {
    /// Records postflow's time, then runs each pandas job once (when pandas is there).
    fn push(&mut self, postflow: f64, pandas: &mut Option<Pandas>, jobs: &[&str]) {
        self.postflow.push(postflow);
        for (i, job) in jobs.iter().enumerate() {
            self.run_pandas(pandas, i, job);
        }
    }

    /// Runs one pandas job and records its time as counterpart `index` (when pandas is there).
    fn run_pandas(&mut self, pandas: &mut Option<Pandas>, index: usize, job: &str) {
        let Some(server) = pandas.as_mut().filter(|server| !server.stopped) else { return };
        match server.run(job) {
            Some(seconds) => self.pandas[index].push(seconds),
            None => {
                println!("pandas stopped answering at `{job}`; its figures end there");
                server.stopped = true;
            }
        }
    }

    /// The speed-up of each round (pandas' time over postflow's): median, lowest, highest, and
    /// how many rounds reached 5×.
    fn speed_ups(&self, job: usize) -> String {
        speed_ups(&self.pandas[job], &self.postflow)
    }

    /// The same for polars alone.
    fn alone_speed_ups(&self, job: usize) -> String {
        speed_ups(&self.pandas[job], &self.alone)
    }
}

/// Round-by-round speed-ups of `faster` over pandas: median, lowest, highest, and how many
/// rounds reached 5×.
fn speed_ups(pandas: &[f64], faster: &[f64]) -> String {
    let ratios: Vec<f64> = pandas.iter().zip(faster).map(|(p, f)| p / f).collect();
    if ratios.is_empty() {
        return "no rounds".into();
    }
    let lowest = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
    let highest = ratios.iter().cloned().fold(0.0, f64::max);
    let reached = ratios.iter().filter(|r| **r >= 5.0).count();
    format!(
        "median {:.1}×, lowest {lowest:.1}×, highest {highest:.1}×, ≥ 5× in {reached} of {} rounds",
        median(&ratios),
        ratios.len()
    )
}

/// `benches/analytics_pandas.py --serve` as a child process: one job per request.
struct Pandas {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
    version: String,
    /// Set when a job got no answer: the rounds before it keep their figures.
    stopped: bool,
}

impl Pandas {
    /// Starts the script; None (and says why) when python3, pandas or pyarrow is missing.
    fn start(folder: &Path) -> Option<Pandas> {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/analytics_pandas.py");
        let mut python = std::process::Command::new("python3");
        python.arg(&script).arg(folder).arg("--serve");
        python.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        // PANDAS_MALLOC=postflow gives pandas the same malloc settings as postflow.
        if std::env::var("PANDAS_MALLOC").as_deref() == Ok("postflow") {
            let tunables = postflow::memory::as_glibc_tunables();
            println!("pandas runs with GLIBC_TUNABLES={tunables}");
            python.env("GLIBC_TUNABLES", tunables);
        }
        let mut child = match python.spawn() {
            Ok(child) => child,
            Err(err) => {
                println!("pandas part skipped: python3: {err}");
                return None;
            }
        };
        let input = child.stdin.take()?;
        let mut output = std::io::BufReader::new(child.stdout.take()?);
        let mut ready = String::new();
        let _ = output.read_line(&mut ready);
        match ready.trim().strip_prefix("ready pandas ") {
            Some(version) => {
                Some(Pandas { version: format!("pandas {version}"), child, input, output, stopped: false })
            }
            None => {
                drop(input);
                let _ = child.kill();
                let _ = child.wait();
                println!("pandas part skipped: the script did not start (pip install pandas pyarrow)");
                None
            }
        }
    }

    fn run(&mut self, job: &str) -> Option<f64> {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{job}").ok()?;
        self.input.flush().ok()?;
        let mut answer = String::new();
        self.output.read_line(&mut answer).ok()?;
        answer.trim().parse().ok()
    }
}

impl Drop for Pandas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
