//! Configuration: the only code that reads `flows/`, `formats/` and `prompts/`; it turns raw
//! YAML and Jinja files into a checked [`Bundle`] or a complete list of [`Diagnostic`]s.

pub mod bundle;
pub mod compile;
pub mod diagnostic;
pub mod live;
pub mod pipeline;
pub mod raw;
pub mod source;
pub mod watch;

use std::path::{Path, PathBuf};

pub use bundle::{ActionSchema, Bundle};
pub use diagnostic::Diagnostic;
pub use source::SourceFile;

/// The result of loading a configuration directory: the files read, and the bundle or every
/// problem found.
pub struct Loaded {
    pub sources: Vec<SourceFile>,
    pub result: Result<Bundle, Vec<Diagnostic>>,
}

impl Loaded {
    /// All diagnostics rendered like compiler errors, followed by a summary line.
    pub fn render_errors(&self) -> String {
        match &self.result {
            Ok(_) => String::new(),
            Err(diagnostics) => render_diagnostics(diagnostics, &self.sources),
        }
    }
}

/// Renders diagnostics with source lines and carets, then "N problems found".
pub fn render_diagnostics(diagnostics: &[Diagnostic], sources: &[SourceFile]) -> String {
    let mut out = String::new();
    for diagnostic in diagnostics {
        let source = sources.iter().find(|s| s.name == diagnostic.file);
        out.push_str(&diagnostic.render(source));
        out.push('\n');
    }
    let noun = if diagnostics.len() == 1 { "problem" } else { "problems" };
    out.push_str(&format!("{} {noun} found\n", diagnostics.len()));
    out
}

/// Reads and compiles the configuration under `dir`.
pub fn load(dir: &Path, actions: &[ActionSchema], timezone: chrono_tz::Tz) -> Loaded {
    let mut sources = Vec::new();
    let mut diagnostics = Vec::new();
    for (folder, extension) in [("flows", "yaml"), ("formats", "yaml"), ("prompts", "j2")] {
        let root = dir.join(folder);
        if !root.is_dir() {
            diagnostics.push(
                Diagnostic::in_file(folder, format!("folder `{folder}/` is missing in {}", dir.display())).with_hint(
                    "point --config-dir (or CONFIG_DIR) at the folder that holds flows/, formats/ and prompts/",
                ),
            );
            continue;
        }
        let mut files = Vec::new();
        collect_files(&root, extension, &mut files);
        files.sort();
        for path in files {
            let name = relative_name(dir, &path);
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push(SourceFile::new(name, path, text)),
                Err(err) => diagnostics.push(Diagnostic::in_file(&name, format!("cannot read the file: {err}"))),
            }
        }
    }
    let result = compile::compile(&sources, actions, timezone, diagnostics);
    Loaded { sources, result }
}

fn collect_files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension || (extension == "yaml" && e == "yml")) {
            out.push(path);
        }
    }
}

fn relative_name(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A stable 64-bit FNV-1a hash, used for the bundle fingerprint.
pub fn fnv1a(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.as_ref() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
