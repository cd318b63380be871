//! The pipeline check in a short-lived child process: `run` and `chat` hand the configuration
//! files they read to `postflow __check-pipelines`, which plans every pipeline with polars and
//! answers with the problems. The long-running bot thus keeps polars' planning code out of its
//! memory until it runs a report (about 14 MiB of the binary, read in and kept).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::{Bundle, Diagnostic, SourceFile};

/// The hidden first argument that makes the binary the checker (not a user command).
pub const HELPER_ARG: &str = "__check-pipelines";

/// The executable that checks pipelines for this process, when one was chosen.
static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// From now on, this process checks pipelines in a child process running `executable` (the
/// `postflow` binary itself); without this call they are checked in-process.
pub fn check_in_child_process(executable: PathBuf) {
    let _ = HELPER.set(executable);
}

/// What the parent sends: the configuration it compiled.
#[derive(Serialize, Deserialize)]
struct Request {
    timezone: String,
    files: Vec<File>,
}

#[derive(Serialize, Deserialize)]
struct File {
    name: String,
    path: PathBuf,
    text: String,
}

/// What the checker answers: every problem, with the caret width [`Diagnostic`]'s JSON omits.
#[derive(Serialize, Deserialize)]
struct Problem {
    file: String,
    line: usize,
    column: usize,
    len: usize,
    message: String,
    hint: Option<String>,
}

impl From<Diagnostic> for Problem {
    fn from(d: Diagnostic) -> Self {
        Problem { file: d.file, line: d.line, column: d.column, len: d.len, message: d.message, hint: d.hint }
    }
}

impl From<Problem> for Diagnostic {
    fn from(p: Problem) -> Self {
        Diagnostic { file: p.file, line: p.line, column: p.column, len: p.len, message: p.message, hint: p.hint }
    }
}

/// Checks the pipelines of `bundle` (compiled from `sources`): in the child process when one
/// was chosen, else here. A child that cannot be started or answers nonsense is logged and the
/// check runs here instead, so a configuration is never taken unchecked.
pub fn check(bundle: &Bundle, sources: &[SourceFile]) -> Vec<Diagnostic> {
    check_with(HELPER.get().map(PathBuf::as_path), bundle, sources)
}

/// [`check`] with the checker given: `None` checks here.
pub fn check_with(executable: Option<&Path>, bundle: &Bundle, sources: &[SourceFile]) -> Vec<Diagnostic> {
    let Some(executable) = executable else { return super::check(bundle) };
    match check_in_child(executable, sources, bundle.timezone) {
        Ok(problems) => {
            tracing::debug!(problems = problems.len(), "pipelines checked in a child process");
            problems
        }
        Err(reason) => {
            tracing::warn!(%reason, "the pipeline check could not run in a child process; checking here");
            super::check(bundle)
        }
    }
}

/// Runs `executable` as the checker over `sources`; the error says why it gave no answer.
pub fn check_in_child(
    executable: &Path,
    sources: &[SourceFile],
    timezone: chrono_tz::Tz,
) -> Result<Vec<Diagnostic>, String> {
    let request = Request {
        timezone: timezone.name().to_string(),
        files: sources
            .iter()
            .map(|s| File { name: s.name.clone(), path: s.full_path.clone(), text: s.text.clone() })
            .collect(),
    };
    let request = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    // The child needs nothing from the environment: no secrets go to it.
    let mut child = Command::new(executable)
        .arg(HELPER_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", executable.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    // Written on its own thread, so a child that stops reading cannot block us.
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let written = writer.join().map_err(|_| "the writer panicked".to_string())?;
    if !output.status.success() {
        return Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    written.map_err(|e| format!("writing the configuration: {e}"))?;
    let problems: Vec<Problem> = serde_json::from_slice(&output.stdout).map_err(|e| format!("its answer: {e}"))?;
    Ok(problems.into_iter().map(Diagnostic::from).collect())
}

/// The child's side: reads a request on stdin, compiles it, checks its pipelines and writes
/// the problems as JSON on stdout.
pub fn serve() -> ExitCode {
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("reading the request: {err}");
        return ExitCode::FAILURE;
    }
    let request: Request = match serde_json::from_slice(&input) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("the request is not valid: {err}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(timezone) = request.timezone.parse::<chrono_tz::Tz>() else {
        eprintln!("unknown time zone `{}`", request.timezone);
        return ExitCode::FAILURE;
    };
    let sources: Vec<SourceFile> = request.files.into_iter().map(|f| SourceFile::new(f.name, f.path, f.text)).collect();
    let problems = match crate::config::compile::compile(&sources, crate::actions::CATALOGUE, timezone, Vec::new()) {
        Ok(bundle) => super::check(&bundle),
        Err(diagnostics) => diagnostics,
    };
    let problems: Vec<Problem> = problems.into_iter().map(Problem::from).collect();
    match serde_json::to_writer(std::io::stdout().lock(), &problems) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("writing the answer: {err}");
            ExitCode::FAILURE
        }
    }
}
