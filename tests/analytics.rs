//! Analytics pipelines over generated data in a real store: every shipped pipeline against its
//! snapshot (bless with `UPDATE_SNAPSHOTS=1`), the CSV read back with its BOM and Armenian
//! headers, JSON and Parquet round trips, `postflow export`/`pipelines`, and the `validate`
//! errors of broken pipelines.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use postflow::actions::CATALOGUE;
use postflow::analytics::{self, FileFormat, SourceContext};
use postflow::config::Bundle;
use postflow::store::Store;

fn bundle() -> Bundle {
    let loaded = analytics::load_config(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    match loaded.result {
        Ok(bundle) => bundle,
        Err(_) => panic!("{}", loaded.render_errors()),
    }
}

fn context() -> SourceContext {
    SourceContext { timezone: chrono_tz::Asia::Yerevan, channel_link: Some("https://t.me/time_2_shopping".into()) }
}

/// The day the fixture's reports are run: the fixture spans 2026-10-01 … 2026-11-29.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

/// The fixture in a store whose event log is mostly sealed segments (3 of 64 events, then 48
/// records), so the reports read both.
fn fixture_store(dir: &Path) -> Store {
    let store = Store::open(&dir.join("analytics.redb")).unwrap().with_event_segment_rows(64);
    common::analytics_fixture::generate(&store, 40, 240);
    assert_eq!(store.event_segment_count().unwrap(), 3);
    store
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn csv_bytes(bundle: &Bundle, store: &Store, id: &str, given: &BTreeMap<String, String>) -> Vec<u8> {
    let report = analytics::report(bundle, id, given, store, context(), today()).unwrap();
    analytics::sinks::to_bytes(report.pipeline, &report.frame, FileFormat::Csv).unwrap()
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/analytics").join(name)
}

/// Compares `actual` with the snapshot, or writes it when UPDATE_SNAPSHOTS is set.
fn assert_snapshot(name: &str, actual: &[u8]) {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|_| panic!("no snapshot {}; run with UPDATE_SNAPSHOTS=1", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its snapshot\n--- expected\n{}\n--- actual\n{}",
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

#[test]
fn every_shipped_pipeline_matches_its_snapshot() {
    let bundle = bundle();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("summary", vec![("period", "last_month")]),
        ("summary", vec![("period", "week")]),
        ("top_posts", vec![("period", "last_month")]),
        ("top_posts", vec![("period", "month"), ("format", "promo")]),
        ("formats", vec![("period", "last_month")]),
        ("clicks", vec![("period", "7d")]),
        ("posts", vec![("status", "published"), ("format", "info")]),
        ("events", vec![("from", "2026-11-20"), ("to", "2026-11-21"), ("kind", "ai_call")]),
        ("subscribers", vec![("period", "7d")]),
        ("published_per_day", vec![("period", "week")]),
    ];
    let mut covered: Vec<&str> = Vec::new();
    for (id, given) in &cases {
        let given = params(given);
        let bytes = csv_bytes(&bundle, &store, id, &given);
        let suffix: Vec<String> = given.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_snapshot(&format!("{id}__{}.csv", suffix.join("_")), &bytes);
        covered.push(id);
    }
    for pipeline in &bundle.pipelines {
        assert!(covered.contains(&pipeline.id.as_str()), "pipeline `{}` has no snapshot case", pipeline.id);
    }
}

#[test]
fn the_csv_opens_with_its_bom_and_armenian_headers_and_the_same_rows() {
    let bundle = bundle();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    let given = params(&[("period", "last_month")]);
    let report = analytics::report(&bundle, "top_posts", &given, &store, context(), today()).unwrap();
    let bytes = analytics::sinks::to_bytes(report.pipeline, &report.frame, FileFormat::Csv).unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 byte order mark for Excel");

    let back = CsvReadOptions::default()
        .with_has_header(true)
        .into_reader_with_file_handle(Cursor::new(bytes[3..].to_vec()))
        .finish()
        .unwrap();
    let headers: Vec<&str> = back.get_column_names().iter().map(|c| c.as_str()).collect();
    assert_eq!(headers, ["№", "Գրառում", "Ձևաչափ", "Հրապարակվել է", "Սեղմումներ", "Ռեակցիաներ", "Հղում"]);
    assert_eq!(back.height(), report.frame.height());
    assert_eq!(back.height(), 10, "top 10");
    let titles = back.column("Գրառում").unwrap().str().unwrap().clone();
    let first_title = titles.get(0).unwrap();
    assert_eq!(first_title, report.frame.column("title").unwrap().str().unwrap().get(0).unwrap());
    assert!(first_title.contains('№'), "Armenian text survives: {first_title}");
    let link = back.column("Հղում").unwrap().str().unwrap().get(0).unwrap().to_string();
    assert!(link.starts_with("https://t.me/time_2_shopping/5"), "{link}");
    // Sorted by clicks + reactions.
    let clicks = report.frame.column("clicks").unwrap().cast(&DataType::Int64).unwrap();
    let reactions = report.frame.column("reactions").unwrap().cast(&DataType::Int64).unwrap();
    let scores: Vec<i64> = (0..report.frame.height())
        .map(|i| clicks.get(i).unwrap().extract::<i64>().unwrap() + reactions.get(i).unwrap().extract::<i64>().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[test]
fn json_and_parquet_carry_the_same_rows() {
    let bundle = bundle();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    let given = params(&[("period", "last_month")]);
    let report = analytics::report(&bundle, "formats", &given, &store, context(), today()).unwrap();

    let parquet = analytics::sinks::to_bytes(report.pipeline, &report.frame, FileFormat::Parquet).unwrap();
    let back = ParquetReader::new(Cursor::new(parquet)).finish().unwrap();
    assert!(back.equals_missing(&report.frame), "{back}\n{}", report.frame);

    let json = analytics::sinks::to_bytes(report.pipeline, &report.frame, FileFormat::Json).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), report.frame.height());
    let posts: i64 = rows.iter().map(|r| r["posts"].as_i64().unwrap()).sum();
    // Published in October: 3 of every 4 posts of the first half of the fixture's 60 days.
    assert_eq!(
        posts,
        report.frame.column("posts").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().sum().unwrap()
    );
    assert!(rows[0]["format"].is_string());
}

#[test]
fn charts_are_drawn_as_png_with_armenian_labels() {
    let bundle = bundle();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    for (id, period) in [("subscribers", "30d"), ("formats", "all"), ("published_per_day", "month")] {
        let report =
            analytics::report(&bundle, id, &params(&[("period", period)]), &store, context(), today()).unwrap();
        let chart = report.pipeline.chart.as_ref().unwrap();
        let path = dir.path().join(format!("{id}.png"));
        analytics::chart::draw(report.pipeline, &report.frame, chart, &report.pipeline.title, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{id}");
        assert!(png.len() > 10_000, "{id}: a chart, not an empty picture ({} bytes)", png.len());
        if let Some(keep) = std::env::var_os("KEEP_CHARTS") {
            std::fs::copy(&path, std::path::Path::new(&keep).join(format!("{id}.png"))).unwrap();
        }
    }
    let empty = analytics::report(
        &bundle,
        "subscribers",
        &params(&[("from", "2020-01-01"), ("to", "2020-01-02")]),
        &store,
        context(),
        today(),
    )
    .unwrap();
    let chart = empty.pipeline.chart.as_ref().unwrap();
    let refused = analytics::chart::draw(empty.pipeline, &empty.frame, chart, "x", &dir.path().join("e.png"));
    assert!(matches!(refused, Err(analytics::chart::ChartError::Empty)));
}

#[test]
fn a_bad_parameter_is_named_with_what_it_takes() {
    let bundle = bundle();
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    let fail = |given: &[(&str, &str)]| {
        analytics::report(&bundle, "top_posts", &params(given), &store, context(), today()).err().unwrap().to_string()
    };
    assert_eq!(
        fail(&[("format", "poster")]),
        "`poster` is not a valid value for `format`: expected one of collection, info, promo, selling"
    );
    assert_eq!(fail(&[("colour", "red")]), "`top_posts` has no parameter `colour`; it takes period, format, from, to");
    assert_eq!(
        fail(&[("period", "fortnight")]),
        "`fortnight` is not a period: expected one of today, yesterday, week, last_week, month, last_month, 7d, 30d, year, all, custom"
    );
    assert_eq!(fail(&[("from", "2026-11-01")]), "a custom period needs both `from` and `to`; `to` is missing");
    assert_eq!(
        fail(&[("period", "week"), ("from", "2026-11-01"), ("to", "2026-11-02")]),
        "give either `period` or `from`/`to` dates, not both"
    );
    let unknown =
        analytics::report(&bundle, "nope", &params(&[]), &store, context(), today()).err().unwrap().to_string();
    assert!(unknown.starts_with("no pipeline `nope`; the pipelines are clicks, events, "), "{unknown}");
}

#[test]
fn postflow_export_writes_the_same_file_as_the_library_and_lists_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let store = fixture_store(dir.path());
        store.path().to_path_buf()
    };
    let out = dir.path().join("posts.csv");
    let run = common::postflow(
        &path,
        &[
            "export",
            "posts",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-31",
            "--param",
            "format=promo",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .env("CHANNEL_ID", "@time_2_shopping")
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let written = std::fs::read(&out).unwrap();
    let store = Store::open(&path).unwrap();
    let expected = csv_bytes(
        &bundle(),
        &store,
        "posts",
        &params(&[("from", "2026-10-01"), ("to", "2026-10-31"), ("format", "promo")]),
    );
    assert_eq!(written, expected);
    drop(store);

    let json =
        common::postflow(&path, &["export", "formats", "--param", "period=all", "--format", "json"]).output().unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.len(), 4, "four formats");

    let bad = common::postflow(&path, &["export", "posts", "--param", "status=gone"]).output().unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("`gone` is not a valid value for `status`: expected one of draft, scheduled"), "{stderr}");

    let list = common::postflow(&path, &["pipelines"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.contains("top_posts  —  Լավագույն գրառումներ"), "{stdout}");
    assert!(stdout.contains("--param format=<collection|info|promo|selling>, default: any"), "{stdout}");
}

/// The shipped configuration plus seven pipelines, each broken at one step.
fn config_with_broken_pipelines() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_config(dir.path());
    let write = |name: &str, text: &str| std::fs::write(dir.path().join("flows").join(name), text).unwrap();
    write("report_bad1.yaml", "kind: pipeline\nid: bad1\nsource: posts\nsteps:\n  - filter: \"created_att > 1\"\n");
    write("report_bad2.yaml", "kind: pipeline\nid: bad2\nsource: posts\nsteps:\n  - filter: \"created_at > :since\"\n");
    write("report_bad3.yaml", "kind: pipeline\nid: bad3\nsource: posts\nsteps:\n  - sql: \"SELEC * FROM self\"\n");
    write(
        "report_bad4.yaml",
        "kind: pipeline\nid: bad4\nsource: clicks\nsteps:\n  - select: [post]\nsinks:\n  chart: { x: post, y: [clicks] }\n",
    );
    write(
        "report_bad5.yaml",
        "kind: pipeline\nid: bad5\nsource: posts\nsteps:\n  - sql: \"SELECT * FROM read_csv('/etc/passwd')\"\n",
    );
    write(
        "report_bad6.yaml",
        "kind: pipeline\nid: bad6\nsource: posts\nsteps:\n  - group_by: [format]\n    agg: { n: \"SUM(text) / 2\" }\n",
    );
    write("report_bad7.yaml", "kind: pipeline\nid: bad7\nsource: posts\nsteps:\n  - derive: { n: \"text * 2\" }\n");
    dir
}

#[test]
fn broken_pipelines_are_reported_at_their_step() {
    let dir = config_with_broken_pipelines();
    let loaded = analytics::load_config(dir.path(), CATALOGUE, chrono_tz::Asia::Yerevan);
    let diagnostics = loaded.result.err().expect("broken pipelines");
    let shown: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{}:{}:{}: {} ({})", d.file, d.line, d.column, d.message, d.hint.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        shown,
        [
            "flows/report_bad1.yaml:5:13: unknown column `created_att` (did you mean `created_at`?)",
            "flows/report_bad2.yaml:5:13: unknown parameter :since (this pipeline has no parameters) ()",
            "flows/report_bad3.yaml:5:10: sql parser error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1 ()",
            "flows/report_bad4.yaml:7:25: the column `clicks` is not in the pipeline's result (the result has post)",
            "flows/report_bad5.yaml:5:10: `read_csv` reads files; a sql step reads only `self` and the sources ()",
            "flows/report_bad6.yaml:5:15: `sum` operation not supported for dtype `str` ()",
            "flows/report_bad7.yaml:5:13: arithmetic on dtypes str and dyn int is not allowed (lhs: column 'text', \
             rhs: expression `dyn int: 2`); try an explicit cast first ()",
        ]
    );
}

/// `run` and `chat` check pipelines in a child process (the binary itself): it must find
/// exactly what the check in-process finds, carets included, and a checker that cannot run
/// leaves the check to the process itself.
#[test]
fn the_pipeline_check_in_a_child_process_finds_the_same_problems() {
    use postflow::analytics::helper;
    let dir = config_with_broken_pipelines();
    let loaded = analytics::load_config(dir.path(), CATALOGUE, chrono_tz::Asia::Yerevan);
    let here = loaded.result.err().expect("broken pipelines");
    assert_eq!(here.len(), 7);

    // Without the polars check the configuration compiles; that is what the child is given.
    let postflow::config::Loaded { sources, result } =
        postflow::config::load(dir.path(), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = result.expect("compiles before the pipeline check");
    let checker = Path::new(env!("CARGO_BIN_EXE_postflow"));
    let mut in_child = helper::check_in_child(checker, &sources, chrono_tz::Asia::Yerevan).expect("the child answers");
    in_child.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    assert_eq!(in_child, here, "the same problems, positions and caret widths");

    let missing = Path::new("/nonexistent/postflow");
    match helper::check_in_child(missing, &sources, chrono_tz::Asia::Yerevan) {
        Err(helper::ChildError::Unavailable(reason)) => assert!(reason.contains("/nonexistent/postflow"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut fallback = helper::check_with(Some(missing), &bundle, &sources);
    fallback.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    assert_eq!(fallback, here, "checked here instead");

    // A checker that crashes while checking: the same check would crash the bot, so the
    // configuration is refused rather than checked here.
    let crashing = dir.path().join("crashing-checker");
    std::fs::write(&crashing, "#!/bin/sh\ncat > /dev/null\necho 'thread main panicked' >&2\nexit 101\n").unwrap();
    std::fs::set_permissions(&crashing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    match helper::check_in_child(&crashing, &sources, chrono_tz::Asia::Yerevan) {
        Err(helper::ChildError::Failed(reason)) => assert!(reason.contains("thread main panicked"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let refused = helper::check_with(Some(&crashing), &bundle, &sources);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].message.starts_with("checking the pipelines failed: the checker stopped"), "{refused:?}");

    // Inline texts without template syntax are kept as text, not compiled.
    assert_eq!(bundle.literal_texts.get("text:back").map(String::as_str), Some("↩️ Ժամեր"));
    // The shipped configuration alone has no problem, in the child either.
    let clean = tempfile::tempdir().unwrap();
    common::copy_shipped_config(clean.path());
    let clean_sources = postflow::config::load(clean.path(), CATALOGUE, chrono_tz::Asia::Yerevan).sources;
    assert_eq!(helper::check_in_child(checker, &clean_sources, chrono_tz::Asia::Yerevan), Ok(Vec::new()));

    // `chat` checks in the child, and refuses to start on what it finds.
    let store = dir.path().join("chat.redb");
    let chat = common::postflow(&store, &["chat", "--user", "1"])
        .env("CONFIG_DIR", dir.path())
        .env("LOG_LEVEL", "debug")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&chat.stderr);
    assert!(!chat.status.success());
    assert!(stderr.contains("pipelines checked in a child process"), "{stderr}");
    assert!(stderr.contains("flows/report_bad1.yaml:5:13") && stderr.contains("7 problems found"), "{stderr}");
}

/// The event log is a scan that reads only the columns a pipeline uses; polars pushes a leading
/// `limit` into it, so the scan must honour it, over segments and records alike.
#[test]
fn a_limit_on_the_event_log_is_kept_whatever_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_config(dir.path());
    let write = |name: &str, text: &str| std::fs::write(dir.path().join("flows").join(name), text).unwrap();
    write(
        "report_first.yaml",
        "kind: pipeline\nid: first\nsource: events\nsteps:\n  - select: [seq, kind]\n  - limit: 70\n",
    );
    write(
        "report_first_sql.yaml",
        "kind: pipeline\nid: first_sql\nsource: events\nsteps:\n  - sql: \"SELECT seq FROM events LIMIT 3\"\n",
    );
    write(
        "report_kinds.yaml",
        "kind: pipeline\nid: kinds\nsource: events\nsteps:\n  - group_by: [kind]\n    agg: { n: \"COUNT(*)\" }\n  - sort: [kind]\n",
    );
    let loaded = analytics::load_config(dir.path(), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = match loaded.result {
        Ok(bundle) => bundle,
        Err(_) => panic!("{}", loaded.render_errors()),
    };
    let store = fixture_store(dir.path());
    let run = |id: &str| analytics::report(&bundle, id, &BTreeMap::new(), &store, context(), today()).unwrap().frame;

    let first = run("first");
    assert_eq!(first.height(), 70, "64 from the first segment and 6 more");
    let seq: Vec<u64> = first.column("seq").unwrap().u64().unwrap().into_no_null_iter().collect();
    assert_eq!(seq, (0..70).collect::<Vec<u64>>());
    assert_eq!(run("first_sql").height(), 3);
    let kinds = run("kinds");
    let counts: Vec<u32> = kinds
        .column("n")
        .unwrap()
        .cast(&polars::prelude::DataType::UInt32)
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(counts, [40; 6], "240 events of 6 kinds, in turn");
}

#[test]
fn sources_sharing_one_read_of_the_posts_are_the_sources_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture_store(dir.path());
    let shared = analytics::sources::PostsRead::default();
    let clicks = analytics::sources::load_sharing("clicks", &store, &context(), &shared).unwrap();
    assert_eq!(clicks, analytics::sources::load("clicks", &store, &context()).unwrap());
    // A click names its post's format and its button's label.
    let first_post = clicks.column("post").unwrap().u64().unwrap().get(0).unwrap();
    let button = clicks.column("button").unwrap().u32().unwrap().get(0).unwrap() as usize;
    let post = store.post(first_post).unwrap().unwrap();
    let text_at = |frame: &DataFrame, column: &str, row: usize| {
        frame.column(column).unwrap().str().unwrap().get(row).map(str::to_string)
    };
    assert_eq!(text_at(&clicks, "format", 0), post.format.clone());
    assert_eq!(text_at(&clicks, "label", 0), Some(post.buttons[button].label.clone()));

    // The posts were read once, by `clicks`: a post changed since is seen as it was by the
    // sources that share that read, and as it is now by a source read alone.
    let mut changed = post.clone();
    changed.format = Some("changed".into());
    store.save_post(changed).unwrap();
    let format_of = |frame: &DataFrame, id_column: &str| -> Vec<Option<String>> {
        let ids = frame.column(id_column).unwrap().u64().unwrap().clone();
        (0..frame.height())
            .filter(|&row| ids.get(row) == Some(first_post))
            .map(|row| text_at(frame, "format", row))
            .collect()
    };
    for (name, id_column) in [("posts", "id"), ("reactions", "post")] {
        let sharing = analytics::sources::load_sharing(name, &store, &context(), &shared).unwrap();
        let alone = analytics::sources::load(name, &store, &context()).unwrap();
        let (before, after) = (format_of(&sharing, id_column), format_of(&alone, id_column));
        assert!(!before.is_empty(), "{name}: the post has rows");
        assert!(before.iter().all(|f| *f == post.format), "{name}: {before:?}");
        assert!(after.iter().all(|f| f.as_deref() == Some("changed")), "{name}: {after:?}");
    }
}
