//! The pipeline check in a short-lived child process: `run` and `chat` hand the configuration
//! files they read to `postflow __check-pipelines`, which plans every pipeline with polars and
//! answers with the problems. The long-running bot thus keeps polars' planning code out of its
//! memory until it runs a report (about 14 MiB of the binary, read in and kept).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// How long the child may take: the shipped configuration takes 40–50 ms.
const DEADLINE: Duration = Duration::from_secs(60);

/// Why the child gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildError {
    /// It could not run, or said it could not read the request, or its answer could not be
    /// read: the check runs in this process instead.
    Unavailable(String),
    /// It crashed, or did not finish within [`DEADLINE`], while checking: the same check here
    /// would crash or hang the bot, so the configuration is refused.
    Failed(String),
}

/// Checks the pipelines of `bundle` (compiled from `sources`): in the child process when one
/// was chosen, else here. A child that cannot be started or answers nonsense is logged and the
/// check runs here instead, so a configuration is never taken unchecked; a child that crashes
/// or hangs while checking makes the configuration refused.
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
        Err(ChildError::Unavailable(reason)) => {
            tracing::warn!(%reason, "the pipeline check could not run in a child process; checking here");
            super::check(bundle)
        }
        Err(ChildError::Failed(reason)) => vec![
            Diagnostic::in_file("flows", format!("checking the pipelines failed: {reason}"))
                .with_hint("`postflow validate` runs the same check and shows where it fails"),
        ],
    }
}

/// Runs `executable` as the checker over `sources`.
pub fn check_in_child(
    executable: &Path,
    sources: &[SourceFile],
    timezone: chrono_tz::Tz,
) -> Result<Vec<Diagnostic>, ChildError> {
    use ChildError::{Failed, Unavailable};
    let request = Request {
        timezone: timezone.name().to_string(),
        files: sources
            .iter()
            .map(|s| File { name: s.name.clone(), path: s.full_path.clone(), text: s.text.clone() })
            .collect(),
    };
    let request = serde_json::to_vec(&request).map_err(|e| Unavailable(e.to_string()))?;
    // The child needs nothing from the environment: no secrets go to it.
    let mut child = Command::new(executable)
        .arg(HELPER_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Unavailable(format!("{}: {e}", executable.display())))?;
    // The request is written, and the answer read, on threads of their own, so a child that
    // stops reading or fills its pipes cannot block the wait below.
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (Some(mut stdin), Some(stdout), Some(stderr)) = pipes else {
        return Err(give_up(&mut child, Unavailable("its pipes were not opened".into())));
    };
    let threads = (
        std::thread::Builder::new().name("check-request".into()).spawn(move || stdin.write_all(&request)),
        read_all(stdout),
        read_all(stderr),
    );
    let (Ok(writer), Ok(answer), Ok(complaint)) = threads else {
        return Err(give_up(&mut child, Unavailable("no thread to talk to it".into())));
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                return Err(give_up(&mut child, Failed(format!("no answer within {} s", DEADLINE.as_secs()))));
            }
            Err(err) => return Err(give_up(&mut child, Unavailable(err.to_string()))),
        }
    };
    let joined = |thread: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| thread.join().ok().and_then(Result::ok);
    let complaint = String::from_utf8_lossy(&joined(complaint).unwrap_or_default()).trim().to_string();
    match status.code() {
        Some(0) => {}
        // `serve` could not read the request or write its answer.
        Some(1) => return Err(Unavailable(format!("{status}: {complaint}"))),
        // A panic (101), an abort or a signal: it failed at the check itself.
        _ => return Err(Failed(format!("the checker stopped ({status}): {complaint}"))),
    }
    let written = writer.join().map_err(|_| Unavailable("writing the request failed".into()))?;
    written.map_err(|e| Unavailable(format!("writing the request: {e}")))?;
    let answer = joined(answer).ok_or_else(|| Unavailable("its answer could not be read".into()))?;
    let problems: Vec<Problem> =
        serde_json::from_slice(&answer).map_err(|e| Unavailable(format!("its answer: {e}")))?;
    Ok(problems.into_iter().map(Diagnostic::from).collect())
}

/// Reads a pipe to its end on a thread of its own.
fn read_all(
    mut pipe: impl Read + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<Vec<u8>>>> {
    std::thread::Builder::new().name("check-answer".into()).spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).map(|_| bytes)
    })
}

/// Stops the child (and reaps it), then reports `error`.
fn give_up(child: &mut Child, error: ChildError) -> ChildError {
    let _ = child.kill();
    let _ = child.wait();
    error
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
