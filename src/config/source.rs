//! Source files and a position index that maps YAML paths (`steps.review.next`) to line and column.

use std::collections::HashMap;
use std::path::PathBuf;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based position in a source file, with the length of the token found there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

/// One configuration file as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the configuration directory, with `/` separators.
    pub name: String,
    pub full_path: PathBuf,
    pub text: String,
    index: HashMap<String, Pos>,
}

impl SourceFile {
    /// Wraps a file's text and indexes the positions of its YAML keys and values (if it is YAML).
    pub fn new(name: String, full_path: PathBuf, text: String) -> Self {
        let index = if name.ends_with(".yaml") || name.ends_with(".yml") { index_yaml(&text) } else { HashMap::new() };
        SourceFile { name, full_path, text, index }
    }

    /// Position of the value at `path` (segments joined with `.`), falling back to the
    /// nearest enclosing path that is known.
    pub fn value_pos(&self, path: &str) -> Pos {
        self.lookup(path, false)
    }

    /// Position of the key that introduces `path`, falling back like [`Self::value_pos`].
    pub fn key_pos(&self, path: &str) -> Pos {
        self.lookup(path, true)
    }

    fn lookup(&self, path: &str, key: bool) -> Pos {
        let mut current = path.to_string();
        loop {
            let probe = if key { format!("key:{current}") } else { current.clone() };
            if let Some(pos) = self.index.get(&probe) {
                return *pos;
            }
            if key && let Some(pos) = self.index.get(&current) {
                return *pos;
            }
            match current.rfind('.') {
                Some(cut) => current.truncate(cut),
                None => {
                    return self.index.get(&current).or_else(|| self.index.get("")).copied().unwrap_or(Pos {
                        line: 1,
                        col: 1,
                        len: 1,
                    });
                }
            }
        }
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

/// Builds the path → position index by walking the parser's events. Parse errors are ignored
/// here: serde_yaml reports them with their own positions.
fn index_yaml(text: &str) -> HashMap<String, Pos> {
    let mut walker = Walker { index: HashMap::new(), stack: Vec::new() };
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        walker.on_event(event, span);
    }
    walker.index
}

enum Frame {
    Map { path: String, pending_key: Option<String> },
    Seq { path: String, next_index: usize },
}

struct Walker {
    index: HashMap<String, Pos>,
    stack: Vec<Frame>,
}

fn pos_of(span: Span, text_len: usize) -> Pos {
    Pos { line: span.start.line(), col: span.start.col() + 1, len: text_len.max(1) }
}

fn join(base: &str, segment: &str) -> String {
    if base.is_empty() { segment.to_string() } else { format!("{base}.{segment}") }
}

impl Walker {
    /// Decides the path of the node that starts now; for a key scalar returns `None`.
    fn child_path(&mut self, scalar: Option<&str>, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next_index }) => {
                let child = join(path, &next_index.to_string());
                *next_index += 1;
                Some(child)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(join(path, &key)),
                None => {
                    let key = scalar.unwrap_or("?").to_string();
                    let key_path = join(path, &key);
                    self.index.insert(format!("key:{key_path}"), pos);
                    if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                        *pending_key = Some(key);
                    }
                    None
                }
            },
        }
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) {
        match event {
            Event::Scalar(value, style, ..) => {
                let quotes = if matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) { 2 } else { 0 };
                let pos = pos_of(span, value.chars().count() + quotes);
                if let Some(path) = self.child_path(Some(&value), pos) {
                    self.index.entry(path).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                let pos = pos_of(span, 1);
                if let Some(path) = self.child_path(Some("*alias"), pos) {
                    self.index.entry(path).or_insert(pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let pos = pos_of(span, 1);
                let path = self.child_path(None, pos).unwrap_or_default();
                self.index.entry(path.clone()).or_insert(pos);
                if matches!(event, Event::MappingStart(..)) {
                    self.stack.push(Frame::Map { path, pending_key: None });
                } else {
                    self.stack.push(Frame::Seq { path, next_index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_and_values_with_one_based_columns() {
        let text =
            "kind: flow\nsteps:\n  start:\n    say: héllo 😀\n    buttons:\n      - label: x\n        goto: end\n";
        let file = SourceFile::new("f.yaml".into(), PathBuf::new(), text.into());
        assert_eq!(file.value_pos("kind"), Pos { line: 1, col: 7, len: 4 });
        assert_eq!(file.key_pos("steps.start.say").line, 4);
        assert_eq!(file.key_pos("steps.start.say").col, 5);
        let goto = file.value_pos("steps.start.buttons.0.goto");
        assert_eq!((goto.line, goto.col, goto.len), (7, 15, 3));
        // Unknown paths fall back to the nearest known parent.
        assert_eq!(file.value_pos("steps.start.buttons.0.nope").line, 6);
    }
}
