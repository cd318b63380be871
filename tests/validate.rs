//! `postflow validate`: the shipped configuration and every example compile; the broken example
//! reports every mistake with file:line:col, compared in full with `examples/broken/expected.txt`
//! (set `BLESS=1` to rewrite it after an intended change).

use std::path::{Path, PathBuf};
use std::process::Command;

use postflow::actions::CATALOGUE;
use postflow::config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares texts and, on a difference, names the first differing line.
fn assert_same_text(got: &str, expected: &str) {
    if got == expected {
        return;
    }
    let (got_lines, expected_lines): (Vec<&str>, Vec<&str>) = (got.lines().collect(), expected.lines().collect());
    let line = got_lines
        .iter()
        .zip(&expected_lines)
        .position(|(g, e)| g != e)
        .unwrap_or(got_lines.len().min(expected_lines.len()));
    panic!(
        "output differs from examples/broken/expected.txt at line {}:\n  got:      {:?}\n  expected: {:?}\n(run with BLESS=1 to accept the new output)",
        line + 1,
        got_lines.get(line),
        expected_lines.get(line)
    );
}

fn check_ok(dir: &Path) {
    let loaded = postflow::analytics::load_config(dir, CATALOGUE, chrono_tz::Asia::Yerevan);
    if let Err(diagnostics) = &loaded.result {
        panic!("{} does not validate:\n{}", dir.display(), config::render_diagnostics(diagnostics, &loaded.sources));
    }
}

#[test]
fn shipped_config_is_valid() {
    check_ok(&root());
}

#[test]
fn every_example_except_broken_is_valid() {
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() && dir.file_name().is_some_and(|n| n != "broken") {
            check_ok(&dir);
        }
    }
}

#[test]
fn broken_example_reports_every_mistake_exactly() {
    let dir = root().join("examples/broken");
    let loaded = postflow::analytics::load_config(&dir, CATALOGUE, chrono_tz::Asia::Yerevan);
    let diagnostics = loaded.result.as_ref().err().expect("the broken example must not compile");
    let rendered = config::render_diagnostics(diagnostics, &loaded.sources);
    let expected_path = dir.join("expected.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&expected_path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert_same_text(&rendered, &expected);
    // At least eight different kinds of mistakes, each with a real position.
    assert!(diagnostics.len() >= 8);
    assert!(diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1 && !d.file.is_empty()));
}

#[test]
fn the_binary_prints_the_same_report_and_fails() {
    let output = Command::new(env!("CARGO_BIN_EXE_postflow"))
        .args(["validate", "--config-dir"])
        .arg(root().join("examples/broken"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let expected = std::fs::read_to_string(root().join("examples/broken/expected.txt")).unwrap();
    assert_same_text(&String::from_utf8_lossy(&output.stderr), &expected);
}

#[test]
fn json_output_lists_problems_with_positions() {
    let output = Command::new(env!("CARGO_BIN_EXE_postflow"))
        .args(["validate", "--format", "json", "--config-dir"])
        .arg(root().join("examples/broken"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    let gto = problems.iter().find(|p| p["message"].as_str().unwrap().contains("`gto`")).unwrap();
    assert_eq!(
        (gto["file"].as_str(), gto["line"].as_u64(), gto["column"].as_u64()),
        (Some("flows/post.yaml"), Some(24), Some(28))
    );
    assert_eq!(gto["hint"], "did you mean `goto`?");
}

#[test]
fn shipped_config_summary_line() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_postflow")).args(["validate", "--config-dir"]).arg(root()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with("templates: ok"), "{stdout}");
    assert!(stdout.starts_with("9 flows, 8 jobs, 8 pipelines, 4 formats, "), "{stdout}");
}
