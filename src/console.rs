//! The terminal adapter behind `postflow chat`: the whole engine in a terminal, on the real store.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::config::Bundle;
use crate::config::bundle::MediaKind;
use crate::driver::Driver;
use crate::engine::event::{Effect, Event, EventKind, InlineButton, Keyboard, Media, MediaFile, OutMessage};
use crate::engine::html;
use crate::engine::session::Session;

/// A message as the chat shows it, with the id edits refer to.
#[derive(Debug, Clone)]
pub struct Shown {
    pub id: i64,
    pub message: OutMessage,
}

/// The visible state of a chat: messages, button answers and whether the flow ended.
#[derive(Debug, Default)]
pub struct Screen {
    pub messages: Vec<Shown>,
    next_id: i64,
}

/// What one turn changed on the screen.
#[derive(Debug, Default)]
pub struct TurnOutput {
    /// Messages sent or edited in this turn, in order, with `true` for edits.
    pub messages: Vec<(Shown, bool)>,
    pub answers: Vec<Option<String>>,
    pub ended: bool,
}

impl Screen {
    /// Applies effects; returns what changed.
    pub fn apply(&mut self, effects: Vec<Effect>) -> TurnOutput {
        let mut out = TurnOutput::default();
        for effect in effects {
            match effect {
                Effect::Send { message } => {
                    self.next_id += 1;
                    let shown = Shown { id: self.next_id, message };
                    self.messages.push(shown.clone());
                    out.messages.push((shown, false));
                }
                Effect::Edit { message_id, message } => {
                    match self.messages.iter_mut().find(|m| m.id == message_id) {
                        Some(existing) => existing.message = message.clone(),
                        None => {
                            // Like Telegram's "message to edit not found": send anew.
                            self.next_id += 1;
                            self.messages.push(Shown { id: self.next_id, message: message.clone() });
                        }
                    }
                    out.messages.push((Shown { id: message_id, message }, true));
                }
                Effect::Delete { message_id } => self.messages.retain(|m| m.id != message_id),
                Effect::Answer { text } => out.answers.push(text),
                Effect::End => out.ended = true,
                Effect::RunAction { .. } | Effect::Warn { .. } => {}
            }
        }
        out
    }

    /// Records a message shown by someone else (a Telegram chat mirrored in tests): an edit
    /// replaces the message with the same id.
    pub fn record(&mut self, shown: Shown, edited: bool) {
        match self.messages.iter_mut().find(|m| m.id == shown.id) {
            Some(existing) if edited => existing.message = shown.message,
            _ => {
                self.next_id = self.next_id.max(shown.id);
                self.messages.push(shown);
            }
        }
    }

    /// The newest message with an inline keyboard.
    pub fn latest_keyboard(&self) -> Option<&Shown> {
        self.messages.iter().rev().find(|m| matches!(m.message.keyboard, Keyboard::Inline(_)))
    }

    /// Finds a button by label on the newest keyboard (or, with `older`, on an older one):
    /// the exact label, or else the only label that contains the text.
    pub fn find_button(&self, label: &str, older: bool) -> Option<(i64, String)> {
        let latest = self.latest_keyboard().map(|m| m.id);
        self.messages.iter().rev().filter(|m| if older { Some(m.id) != latest } else { Some(m.id) == latest }).find_map(
            |m| match &m.message.keyboard {
                Keyboard::Inline(rows) => {
                    let buttons: Vec<&InlineButton> = rows.iter().flatten().collect();
                    match_label(&buttons, label).map(|b| (m.id, b.data.to_string()))
                }
                _ => None,
            },
        )
    }
}

/// The button whose label is `wanted`, or else the only one whose label contains it.
pub fn match_label<'b>(buttons: &[&'b InlineButton], wanted: &str) -> Option<&'b InlineButton> {
    let wanted = wanted.trim();
    if wanted.is_empty() {
        return None;
    }
    if let Some(exact) = buttons.iter().find(|b| b.label.trim() == wanted) {
        return Some(exact);
    }
    let mut containing = buttons.iter().filter(|b| wanted.chars().count() >= 3 && b.label.contains(wanted));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Renders a message for the terminal: text, media, numbered buttons, the main menu.
pub fn render_message(shown: &Shown, edited: bool, ansi: bool) -> String {
    let mut out = String::new();
    let marker = if edited { " (edited)" } else { "" };
    out.push_str(&format!("── bot #{}{marker} ──\n", shown.id));
    if let Some(media) = &shown.message.media {
        for (kind, file_id) in media.files() {
            out.push_str(&format!("[{}: {}]\n", kind.name(), file_id));
        }
    }
    out.push_str(html::to_plain_text(&shown.message.text, ansi).trim_end());
    out.push('\n');
    match &shown.message.keyboard {
        Keyboard::Inline(rows) => {
            let mut n = 0;
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|b| {
                        n += 1;
                        format!("[{n}] {}", b.label)
                    })
                    .collect();
                out.push_str(&format!("  {}\n", cells.join("  ")));
            }
        }
        Keyboard::Reply(rows) => {
            let labels: Vec<&str> = rows.iter().flatten().map(String::as_str).collect();
            out.push_str(&format!("  menu: {}\n", labels.join(" | ")));
        }
        Keyboard::Links(rows) => {
            for button in rows.iter().flatten() {
                out.push_str(&format!("  [🔗 {} → {}]\n", button.label, button.url));
            }
        }
        Keyboard::None => {}
    }
    if let crate::engine::event::LinkPreview::Above { url } = &shown.message.preview {
        out.push_str(&format!("  [preview above the text: {url}]\n"));
    }
    out
}

/// `:album PATH PATH…`: two to ten photos or videos sent together, kinds guessed from the name.
fn album(arg: &str) -> Typed {
    let paths: Vec<&str> = arg.split_whitespace().collect();
    if !(2..=10).contains(&paths.len()) {
        return Typed::Problem("usage: :album PATH PATH… (2 to 10 photos or videos)".to_string());
    }
    if let Some(missing) = paths.iter().find(|path| !Path::new(path).is_file()) {
        return Typed::Problem(format!("no such file: {missing}"));
    }
    match album_media(&paths) {
        Some(media) => Typed::Event(EventKind::Media { media }),
        None => Typed::Problem("usage: :album PATH PATH… (2 to 10 photos or videos)".to_string()),
    }
}

/// An album of files whose kinds are guessed from their names (videos by extension, else
/// photos), or `None` for fewer than two files.
pub fn album_media(paths: &[&str]) -> Option<Media> {
    let kind_of = |path: &str| {
        let video = [".mp4", ".mov", ".webm", ".mkv"].iter().any(|ext| path.to_ascii_lowercase().ends_with(ext));
        if video { MediaKind::Video } else { MediaKind::Photo }
    };
    let (first, rest) = paths.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let mut media = Media::single(kind_of(first), *first);
    media.more = rest.iter().map(|path| MediaFile { kind: kind_of(path), file_id: path.to_string() }).collect();
    Some(media)
}

/// What a typed line means.
#[derive(Debug, PartialEq)]
pub enum Typed {
    Event(EventKind),
    Quit,
    Help,
    Problem(String),
    Nothing,
}

/// Turns a typed line into an event: `:photo PATH` and friends, `/commands`, a button on the
/// newest keyboard (`#N`, an exact label, or — unless the step waits for `typing` text or a
/// number — a bare number or the only label containing the text), or plain text.
pub fn parse_line(line: &str, screen: &Screen, typing: bool) -> Typed {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Typed::Nothing;
    }
    if let Some(rest) = trimmed.strip_prefix(':') {
        let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        let kind = match word {
            "quit" | "q" | "exit" => return Typed::Quit,
            "help" | "h" => return Typed::Help,
            "photo" => MediaKind::Photo,
            "video" => MediaKind::Video,
            "gif" | "animation" => MediaKind::Animation,
            "doc" | "document" => MediaKind::Document,
            "album" => return album(arg),
            other => {
                return Typed::Problem(format!("unknown console command `:{other}`; type :help"));
            }
        };
        let path = arg.trim();
        if path.is_empty() {
            return Typed::Problem(format!("usage: :{word} PATH"));
        }
        if !Path::new(path).is_file() {
            return Typed::Problem(format!("no such file: {path}"));
        }
        return Typed::Event(EventKind::Media { media: Media::single(kind, path) });
    }
    if let Some(command) = trimmed.strip_prefix('/') {
        let (name, args) = command.split_once(' ').unwrap_or((command, ""));
        return Typed::Event(EventKind::Command { name: name.to_string(), args: args.to_string() });
    }
    if let Some(shown) = screen.latest_keyboard()
        && let Keyboard::Inline(rows) = &shown.message.keyboard
    {
        let buttons: Vec<_> = rows.iter().flatten().collect();
        let number = |text: &str| text.parse::<usize>().ok().filter(|n| *n >= 1 && *n <= buttons.len());
        // `#N` always presses button N.
        let hashed = trimmed.strip_prefix('#').and_then(number).map(|n| buttons[n - 1]);
        // A label typed exactly wins (in the calendar, "15" means the 15th, not button 15).
        let exact = buttons.iter().copied().find(|b| b.label.trim() == trimmed);
        // While the step waits for typed text or a number, other input is that answer.
        let loose = if typing {
            None
        } else {
            number(trimmed).map(|n| buttons[n - 1]).or_else(|| match_label(&buttons, trimmed))
        };
        if let Some(button) = hashed.or(exact).or(loose) {
            return Typed::Event(EventKind::Button { data: button.data.to_string(), message_id: Some(shown.id) });
        }
    }
    Typed::Event(EventKind::Text { text: line.to_string() })
}

/// Whether the chat's current step waits for typed text or a number.
fn expects_typing(bundle: &Bundle, session: &Session) -> bool {
    use crate::config::bundle::InputKind;
    let step = session.current().and_then(|f| bundle.step(&f.flow, &f.step));
    matches!(
        step.and_then(|s| s.input.as_ref()).map(|i| &i.kind),
        Some(InputKind::Text { .. } | InputKind::Number { .. })
    )
}

pub const HELP: &str = "Type a message, a /command, or a button: its label, its number, or #number.\n\
  :photo PATH  :video PATH  :gif PATH  :doc PATH   send a file\n\
  :help   this help        :quit   leave (the conversation is kept in the store)\n";

/// Runs the chat loop until end of input or `:quit`.
pub fn run(
    driver: &Driver,
    chat_id: i64,
    input: impl BufRead,
    mut output: impl Write,
    ansi: bool,
) -> anyhow::Result<()> {
    let mut screen = Screen::default();
    writeln!(output, "postflow chat — user {chat_id}, config {}. Type :help for help.", driver.bundle().summary())?;
    driver.store.touch_user(&crate::store::User {
        id: chat_id,
        username: None,
        name: Some("console".to_string()),
        last_active: chrono::Utc::now().timestamp(),
    })?;
    let mut session = driver.session(chat_id, chat_id)?;
    if let Some(frame) = session.current() {
        writeln!(output, "(resuming: flow `{}`, step `{}`)", frame.flow, frame.step)?;
        let now = chrono::Utc::now().timestamp();
        let handled = driver.handle(Event { chat_id, user_id: chat_id, now, kind: EventKind::Resume })?;
        session = handled.session;
        show_turn(&mut output, screen.apply(handled.effects), ansi)?;
    }
    output.flush()?;
    for line in input.lines() {
        let line = line?;
        let typing = expects_typing(&driver.bundle(), &session);
        let kind = match parse_line(&line, &screen, typing) {
            Typed::Event(kind) => kind,
            Typed::Quit => break,
            Typed::Help => {
                write!(output, "{HELP}")?;
                continue;
            }
            Typed::Problem(problem) => {
                writeln!(output, "! {problem}")?;
                continue;
            }
            Typed::Nothing => continue,
        };
        let now = chrono::Utc::now().timestamp();
        let handled = driver.handle(Event { chat_id, user_id: chat_id, now, kind })?;
        session = handled.session;
        show_turn(&mut output, screen.apply(handled.effects), ansi)?;
        output.flush()?;
    }
    Ok(())
}

fn show_turn(output: &mut impl Write, turn: TurnOutput, ansi: bool) -> std::io::Result<()> {
    for text in turn.answers.iter().flatten() {
        writeln!(output, "(toast) {}", html::to_plain_text(text, false))?;
    }
    for (shown, edited) in &turn.messages {
        write!(output, "{}", render_message(shown, *edited, ansi))?;
    }
    if turn.ended {
        writeln!(output, "(conversation ended)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::InlineButton;

    fn screen_with(labels: &[&str]) -> Screen {
        let buttons = labels
            .iter()
            .enumerate()
            .map(|(i, l)| InlineButton {
                label: (*l).to_string().into(),
                data: crate::engine::codec::encode(1, crate::engine::codec::Press::Button(i)),
            })
            .collect();
        let mut screen = Screen::default();
        screen.apply(vec![Effect::Send {
            message: OutMessage {
                text: "x".into(),
                media: None,
                keyboard: Keyboard::Inline(vec![buttons]),
                ..Default::default()
            },
        }]);
        screen
    }

    fn pressed(typed: &str, screen: &Screen) -> Option<String> {
        match parse_line(typed, screen, false) {
            Typed::Event(EventKind::Button { data, .. }) => Some(data),
            _ => None,
        }
    }

    #[test]
    fn typed_lines_become_the_right_events() {
        let screen = screen_with(&["✅ Approve", "3", "🔥 Selling post", "💡 Info post"]);
        assert_eq!(pressed("1", &screen).as_deref(), Some("1.b0"), "a number presses that button");
        assert_eq!(pressed("3", &screen).as_deref(), Some("1.b1"), "an exact label wins over a number");
        assert_eq!(pressed("Selling", &screen).as_deref(), Some("1.b2"), "the only label containing it");
        assert_eq!(pressed("9", &screen), None);
        // While a number is expected, "1" is the answer, "#1" still presses.
        assert!(matches!(parse_line("1", &screen, true), Typed::Event(EventKind::Text { .. })));
        assert!(matches!(parse_line("Selling", &screen, true), Typed::Event(EventKind::Text { .. })));
        assert!(matches!(parse_line("#1", &screen, true), Typed::Event(EventKind::Button { .. })));
        assert!(matches!(parse_line("✅ Approve", &screen, true), Typed::Event(EventKind::Button { .. })));
        assert!(
            matches!(parse_line("/start now", &screen, false), Typed::Event(EventKind::Command { name, args }) if name == "start" && args == "now")
        );
        assert!(matches!(parse_line("hello there", &screen, false), Typed::Event(EventKind::Text { .. })));
        assert!(
            matches!(parse_line(":photo /no/such/file.jpg", &screen, false), Typed::Problem(p) if p.contains("no such file"))
        );
        assert!(matches!(parse_line(":photo", &screen, false), Typed::Problem(_)));
        assert!(matches!(parse_line(":dance", &screen, false), Typed::Problem(_)));
        assert_eq!(parse_line(":quit", &screen, false), Typed::Quit);
        assert_eq!(parse_line("   ", &screen, false), Typed::Nothing);
    }

    #[test]
    fn edits_replace_the_message_and_unknown_edits_send_anew() {
        let mut screen = screen_with(&["a"]);
        let message = OutMessage { text: "new".into(), media: None, keyboard: Keyboard::None, ..Default::default() };
        let turn = screen.apply(vec![Effect::Edit { message_id: 1, message: message.clone() }]);
        assert_eq!(turn.messages.len(), 1);
        assert!(turn.messages[0].1, "marked as an edit");
        assert_eq!(screen.messages.len(), 1);
        screen.apply(vec![Effect::Edit { message_id: 99, message }]);
        assert_eq!(screen.messages.len(), 2);
    }
}
