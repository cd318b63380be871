//! Conversation tests: YAML scripts of user turns and expectations, run against the real engine,
//! store and actions (`postflow test`, and every `cargo test`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use crate::config::Bundle;
use crate::config::bundle::MediaKind;
use crate::console::{Screen, TurnOutput};
use crate::driver::Driver;
use crate::engine::event::{Event, EventKind, Media};
use crate::engine::html;
use crate::engine::session::Session;
use crate::store::Store;

/// A conversation script.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub name: String,
    /// The clock at the first turn (RFC 3339); default 2026-11-26T10:00:00+04:00.
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default = "default_user")]
    pub user: i64,
    pub turns: Vec<Turn>,
}

fn default_user() -> i64 {
    1001
}

/// One user turn and what must follow it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Type a text or a `/command`.
    #[serde(default)]
    pub send: Option<String>,
    /// Press a button on the newest keyboard, by label.
    #[serde(default)]
    pub press: Option<String>,
    /// Press a button, by label, on an older message (a stale button).
    #[serde(default)]
    pub press_old: Option<String>,
    /// Send callback data that was never generated (a forged button).
    #[serde(default)]
    pub press_data: Option<String>,
    #[serde(default)]
    pub photo: Option<String>,
    #[serde(default)]
    pub video: Option<String>,
    #[serde(default)]
    pub gif: Option<String>,
    #[serde(default)]
    pub document: Option<String>,
    /// Send several photos or videos as one album.
    #[serde(default)]
    pub album: Vec<String>,
    /// Move the clock forward by this many seconds before the turn.
    #[serde(default)]
    pub wait: Option<i64>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// Expectations about the bot's reply to a turn.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Text that must appear in the reply (plain text of every message of the turn).
    #[serde(default)]
    pub says: Vec<String>,
    #[serde(default)]
    pub not_says: Vec<String>,
    /// A regular expression the reply must match.
    #[serde(default)]
    pub matches: Option<String>,
    /// Labels that must be on the last message's keyboard.
    #[serde(default)]
    pub buttons: Vec<String>,
    #[serde(default)]
    pub no_buttons: Vec<String>,
    /// The toast of the button answer must contain this.
    #[serde(default)]
    pub answer: Option<String>,
    /// The last message must be an edit of an earlier one.
    #[serde(default)]
    pub edited: Option<bool>,
    /// A message of the reply carries this media file.
    #[serde(default)]
    pub media: Option<String>,
    /// Session slot values (compared as YAML values; strings match by equality).
    #[serde(default)]
    pub slots: BTreeMap<String, serde_yaml::Value>,
    /// The session is in this flow and step, e.g. `create_post/keywords`.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub ended: Option<bool>,
    /// The newest stored post has these fields.
    #[serde(default)]
    pub post: BTreeMap<String, serde_yaml::Value>,
    /// How many posts the store holds.
    #[serde(default)]
    pub posts: Option<usize>,
}

/// A failed expectation, with where and why.
#[derive(Debug)]
pub struct Failure {
    pub turn: usize,
    pub action: String,
    pub problems: Vec<String>,
    pub reply: String,
}

/// Where a script's turns go: the engine in-process, or (in the tests) a running Telegram bot.
pub trait Transport {
    /// Delivers one user event at `now` and returns what the bot showed and the session after it.
    fn deliver(&mut self, user: i64, now: i64, kind: EventKind) -> anyhow::Result<Delivered>;
    /// The chat as the user sees it (for pressing buttons by label).
    fn screen(&self) -> &Screen;
    fn store(&self) -> &Store;
}

/// What one delivered turn produced.
pub struct Delivered {
    pub output: TurnOutput,
    pub session: Session,
}

/// The engine and store in this process, shown on a [`Screen`].
pub struct Local {
    pub driver: Driver,
    pub screen: Screen,
}

impl Transport for Local {
    fn deliver(&mut self, user: i64, now: i64, kind: EventKind) -> anyhow::Result<Delivered> {
        let handled = self.driver.handle(Event { chat_id: user, user_id: user, now, kind })?;
        Ok(Delivered { output: self.screen.apply(handled.effects), session: handled.session })
    }

    fn screen(&self) -> &Screen {
        &self.screen
    }

    fn store(&self) -> &Store {
        &self.driver.store
    }
}

/// The script's clock at its first turn.
pub fn script_start(script: &Script) -> anyhow::Result<i64> {
    Ok(match &script.now {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| anyhow::anyhow!("`now: {text}` is not an RFC 3339 time: {e}"))?
            .timestamp(),
        None => 1_795_672_800, // 2026-11-26T10:00:00+04:00
    })
}

/// Runs one script on a fresh store in `workdir`.
pub fn run_script(
    bundle: Arc<Bundle>,
    script: &Script,
    base_dir: &Path,
    workdir: &Path,
) -> anyhow::Result<Result<usize, Failure>> {
    let store = Store::open(&workdir.join("conversation.redb"))?;
    let mut local = Local { driver: Driver::new(bundle, store), screen: Screen::default() };
    run_script_on(&mut local, script, base_dir)
}

/// Runs one script through a transport.
pub fn run_script_on(
    transport: &mut dyn Transport,
    script: &Script,
    base_dir: &Path,
) -> anyhow::Result<Result<usize, Failure>> {
    let mut now = script_start(script)?;
    for (index, turn) in script.turns.iter().enumerate() {
        now += turn.wait.unwrap_or(0);
        let (action, kind) =
            turn_event(turn, transport.screen(), base_dir).map_err(|e| anyhow::anyhow!("turn {}: {e}", index + 1))?;
        let Some(kind) = kind else {
            return Ok(Err(Failure {
                turn: index + 1,
                action,
                problems: vec!["no such button on the keyboard".into()],
                reply: describe_screen(transport.screen()),
            }));
        };
        let delivered = transport.deliver(script.user, now, kind)?;
        if let Some(expect) = &turn.expect {
            let problems = check(expect, &delivered.output, transport.store(), &delivered.session)?;
            if !problems.is_empty() {
                return Ok(Err(Failure { turn: index + 1, action, problems, reply: describe_turn(&delivered.output) }));
            }
        }
    }
    Ok(Ok(script.turns.len()))
}

fn turn_event(turn: &Turn, screen: &Screen, base_dir: &Path) -> anyhow::Result<(String, Option<EventKind>)> {
    let media = |kind: MediaKind, path: &str| -> anyhow::Result<EventKind> {
        let full = base_dir.join(path);
        if !full.is_file() {
            anyhow::bail!("media file {} does not exist", full.display());
        }
        Ok(EventKind::Media { media: Media::single(kind, path) })
    };
    if let Some(text) = &turn.send {
        let kind = match text.strip_prefix('/') {
            Some(command) => {
                let (name, args) = command.split_once(' ').unwrap_or((command, ""));
                EventKind::Command { name: name.to_string(), args: args.to_string() }
            }
            None => EventKind::Text { text: text.clone() },
        };
        return Ok((format!("send {text:?}"), Some(kind)));
    }
    if let Some(label) = &turn.press {
        let found = screen.find_button(label, false);
        return Ok((
            format!("press {label:?}"),
            found.map(|(id, data)| EventKind::Button { data, message_id: Some(id) }),
        ));
    }
    if let Some(label) = &turn.press_old {
        let found = screen.find_button(label, true);
        return Ok((
            format!("press old {label:?}"),
            found.map(|(id, data)| EventKind::Button { data, message_id: Some(id) }),
        ));
    }
    if let Some(data) = &turn.press_data {
        let id = screen.latest_keyboard().map(|m| m.id);
        return Ok((format!("press data {data:?}"), Some(EventKind::Button { data: data.clone(), message_id: id })));
    }
    for (kind, path) in [
        (MediaKind::Photo, &turn.photo),
        (MediaKind::Video, &turn.video),
        (MediaKind::Animation, &turn.gif),
        (MediaKind::Document, &turn.document),
    ] {
        if let Some(path) = path {
            return Ok((format!("{} {path:?}", kind.name()), Some(media(kind, path)?)));
        }
    }
    if !turn.album.is_empty() {
        if let Some(missing) = turn.album.iter().find(|path| !base_dir.join(path).is_file()) {
            anyhow::bail!("media file {} does not exist", base_dir.join(missing).display());
        }
        let paths: Vec<&str> = turn.album.iter().map(String::as_str).collect();
        let media =
            crate::console::album_media(&paths).ok_or_else(|| anyhow::anyhow!("an album needs 2 to 10 files"))?;
        return Ok((format!("album {paths:?}"), Some(EventKind::Media { media })));
    }
    anyhow::bail!("a turn needs one of send, press, press_old, press_data, photo, video, gif, document, album")
}

fn check(expect: &Expect, output: &TurnOutput, store: &Store, session: &Session) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let reply: String =
        output.messages.iter().map(|(m, _)| html::to_plain_text(&m.message.text, false)).collect::<Vec<_>>().join("\n");
    for needle in &expect.says {
        if !reply.contains(needle.as_str()) {
            problems.push(format!("expected the reply to contain {needle:?}"));
        }
    }
    for needle in &expect.not_says {
        if reply.contains(needle.as_str()) {
            problems.push(format!("expected the reply not to contain {needle:?}"));
        }
    }
    if let Some(pattern) = &expect.matches {
        let re = Regex::new(pattern).map_err(|e| anyhow::anyhow!("`matches: {pattern}`: {e}"))?;
        if !re.is_match(&reply) {
            problems.push(format!("expected the reply to match /{pattern}/"));
        }
    }
    let last = output.messages.last();
    let labels: Vec<String> =
        last.map(|(m, _)| m.message.keyboard.labels().into_iter().map(str::to_string).collect()).unwrap_or_default();
    for label in &expect.buttons {
        if !labels.iter().any(|l| l.trim() == label.trim()) {
            problems.push(format!("expected a button {label:?}; the keyboard has {labels:?}"));
        }
    }
    for label in &expect.no_buttons {
        if labels.iter().any(|l| l.trim() == label.trim()) {
            problems.push(format!("expected no button {label:?}"));
        }
    }
    if let Some(needle) = &expect.answer {
        let toasts: Vec<String> = output.answers.iter().flatten().map(|t| html::to_plain_text(t, false)).collect();
        if !toasts.iter().any(|t| t.contains(needle.as_str())) {
            problems.push(format!("expected a button answer containing {needle:?}; got {toasts:?}"));
        }
    }
    if let Some(edited) = expect.edited
        && last.map(|(_, e)| *e) != Some(edited)
    {
        problems.push(format!("expected the last message {}to be an edit", if edited { "" } else { "not " }));
    }
    if let Some(file) = &expect.media {
        // A post preview carries its media on the post's own message, before the step's.
        let got: Vec<String> = output
            .messages
            .iter()
            .filter_map(|(m, _)| m.message.media.as_ref())
            .flat_map(|m| m.files().map(|(_, id)| id.to_string()).collect::<Vec<_>>())
            .collect();
        if !got.iter().any(|id| id == file) {
            problems.push(format!("expected media {file:?} in the reply, got {got:?}"));
        }
    }
    if let Some(ended) = expect.ended
        && output.ended != ended
    {
        problems.push(format!("expected the flow {}to end", if ended { "" } else { "not " }));
    }
    if let Some(at) = &expect.at {
        let got = session.current().map(|f| format!("{}/{}", f.flow, f.step)).unwrap_or_else(|| "idle".into());
        if &got != at {
            problems.push(format!("expected to be at {at}, but at {got}"));
        }
    }
    for (name, want) in &expect.slots {
        let got = session.slots.get(name).cloned().unwrap_or(serde_json::Value::Null);
        let want = serde_json::to_value(want)?;
        if !json_matches(&want, &got) {
            problems.push(format!("expected slot `{name}` = {want}, got {got}"));
        }
    }
    if !expect.post.is_empty() || expect.posts.is_some() {
        let posts = store.posts()?;
        if let Some(count) = expect.posts
            && posts.len() != count
        {
            problems.push(format!("expected {count} stored posts, found {}", posts.len()));
        }
        if !expect.post.is_empty() {
            match posts.first() {
                None => problems.push("expected a stored post, found none".into()),
                Some(post) => {
                    let got = serde_json::to_value(post)?;
                    for (field, want) in &expect.post {
                        let want = serde_json::to_value(want)?;
                        let value = got.get(field).cloned().unwrap_or(serde_json::Value::Null);
                        if !json_matches(&want, &value) {
                            problems.push(format!("expected post.{field} = {want}, got {value}"));
                        }
                    }
                }
            }
        }
    }
    Ok(problems)
}

/// Equality, except that an expected string matches a longer actual string containing it
/// when it starts with `~` (e.g. `~Hello`).
fn json_matches(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    match (want, got) {
        (serde_json::Value::String(w), serde_json::Value::String(g)) if w.starts_with('~') => g.contains(&w[1..]),
        (serde_json::Value::Number(w), serde_json::Value::Number(g)) => w.as_f64() == g.as_f64(),
        (serde_json::Value::Object(w), serde_json::Value::Object(g)) => {
            w.iter().all(|(k, v)| g.get(k).is_some_and(|gv| json_matches(v, gv)))
        }
        _ => want == got,
    }
}

fn describe_turn(output: &TurnOutput) -> String {
    if output.messages.is_empty() {
        return "(no message)".to_string();
    }
    output
        .messages
        .iter()
        .map(|(m, edited)| crate::console::render_message(m, *edited, false))
        .collect::<Vec<_>>()
        .join("")
}

fn describe_screen(screen: &Screen) -> String {
    match screen.latest_keyboard() {
        Some(m) => crate::console::render_message(m, false, false),
        None => "(no keyboard shown)".to_string(),
    }
}

/// Loads a script file, with YAML errors located.
pub fn load_script(path: &Path) -> anyhow::Result<Script> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| {
        let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!("{}{at}: {e}", path.display())
    })
}

/// Finds the scripts: the given files/folders, or `tests/conversations/*.yaml` under `config_dir`.
pub fn find_scripts(paths: &[PathBuf], config_dir: &Path) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> =
        if paths.is_empty() { vec![config_dir.join("tests/conversations")] } else { paths.to_vec() };
    let mut out = Vec::new();
    for root in roots {
        if root.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&root) {
                let mut found: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    .collect();
                found.sort();
                out.extend(found);
            }
        } else {
            out.push(root);
        }
    }
    out
}

/// Runs scripts and writes a report; returns the number of failures.
pub fn run_all(
    bundle: Arc<Bundle>,
    scripts: &[PathBuf],
    base_dir: &Path,
    out: &mut impl std::io::Write,
) -> anyhow::Result<usize> {
    let mut failures = 0;
    for path in scripts {
        let workdir = tempdir()?;
        let outcome = load_script(path).and_then(|script| {
            run_script(bundle.clone(), &script, base_dir, &workdir.0).map(|r| (script.name.clone(), r))
        });
        match outcome {
            Ok((name, Ok(turns))) => writeln!(out, "ok    {} — {name} ({turns} turns)", path.display())?,
            Ok((name, Err(failure))) => {
                failures += 1;
                writeln!(out, "FAIL  {} — {name}", path.display())?;
                writeln!(out, "      turn {}: {}", failure.turn, failure.action)?;
                for problem in &failure.problems {
                    writeln!(out, "      - {problem}")?;
                }
                writeln!(out, "      the bot replied:")?;
                for line in failure.reply.lines() {
                    writeln!(out, "      | {line}")?;
                }
            }
            Err(err) => {
                failures += 1;
                writeln!(out, "ERROR {} — {err}", path.display())?;
            }
        }
    }
    writeln!(out, "{} scripts, {} passed, {failures} failed", scripts.len(), scripts.len() - failures)?;
    Ok(failures)
}

/// A temporary folder removed on drop (std only, so the binary needs no test crates).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<TempDir> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("postflow-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(TempDir(dir))
}
