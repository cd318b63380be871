//! Configuration problems with their source position, shown like a compiler error or as JSON.

use serde::Serialize;

use super::source::{Pos, SourceFile};

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File path relative to the configuration directory.
    pub file: String,
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub len: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn at(file: &SourceFile, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.name.clone(),
            line: pos.line,
            column: pos.col,
            len: pos.len,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem that belongs to a file as a whole (for example, a file that cannot be read).
    pub fn in_file(name: &str, message: impl Into<String>) -> Self {
        Diagnostic { file: name.to_string(), line: 1, column: 1, len: 1, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Renders the problem with the source line and a caret under the offending token.
    pub fn render(&self, source: Option<&SourceFile>) -> String {
        let mut out = format!("error: {}\n", self.message);
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        out.push_str(&format!("{pad}--> {}:{}:{}\n", self.file, self.line, self.column));
        if let Some(file) = source {
            let text = file.line_text(self.line);
            if !text.is_empty() {
                let caret_pad: String = text
                    .chars()
                    .take(self.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let available = text.chars().count().saturating_sub(self.column.saturating_sub(1));
                let carets = "^".repeat(self.len.clamp(1, available.max(1)));
                out.push_str(&format!("{pad} |\n"));
                out.push_str(&format!("{} | {}\n", self.line, text));
                out.push_str(&format!("{pad} | {caret_pad}{carets}\n"));
            }
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("{pad} = hint: {hint}\n"));
        }
        out
    }
}

/// Suggests the closest known name, for "did you mean" hints.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in known {
        let score = strsim::jaro_winkler(wrong, candidate);
        if score > 0.75 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, name)| format!("did you mean `{name}`?"))
}

/// Lists known names for a hint when no close match exists.
pub fn suggestion_or_list<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> String {
    did_you_mean(wrong, known.clone()).unwrap_or_else(|| {
        let names: Vec<String> = known.into_iter().map(|n| format!("`{n}`")).collect();
        if names.is_empty() { "nothing is defined yet".to_string() } else { format!("known: {}", names.join(", ")) }
    })
}
