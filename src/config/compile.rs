//! Raw configuration → compiled [`Bundle`], gathering every problem with its position.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde_yaml::Value as Yaml;

use super::bundle::*;
use super::bundle::{NOTICE_FLOW, NOTICE_STEPS, PUBLISHING_ACTIONS};
use super::diagnostic::{Diagnostic, did_you_mean, suggestion_or_list};
use super::raw::*;
use super::source::SourceFile;
use crate::engine::{html, media_kinds, render::GLOBALS};

mod pipeline;

/// Expressions are also kept as templates named with this prefix and their source.
pub const EXPRESSION_PREFIX: &str = "=expr:";

/// Telegram's longest message, in UTF-16 units.
const MAX_TEXT_UNITS: u32 = 4096;
/// Model settings of a format that names none.
const DEFAULT_TEMPERATURE: f32 = 0.7;
const DEFAULT_MAX_TOKENS: u32 = 800;
/// Telegram allows at most 8 buttons in a row and 100 on a keyboard.
const MAX_ROW: u8 = 8;
const MAX_BUTTONS: usize = 100;
/// Telegram's limits on bot commands.
const MAX_COMMAND_DESCRIPTION: usize = 256;

/// Compiles the source files; `diagnostics` may already hold problems found while reading.
pub fn compile(
    sources: &[SourceFile],
    actions: &[ActionSchema],
    timezone: chrono_tz::Tz,
    diagnostics: Vec<Diagnostic>,
) -> Result<Bundle, Vec<Diagnostic>> {
    let mut c = Compiler {
        diags: diagnostics,
        env: new_environment(),
        literals: HashMap::new(),
        template_sources: HashMap::new(),
        actions,
        format_ids: BTreeSet::new(),
    };
    let mut prompt_files = 0;
    for file in sources.iter().filter(|f| f.name.starts_with("prompts/")) {
        prompt_files += 1;
        let name = template_name(&file.name);
        if let Err(err) = c.add_template(name.clone(), file.text.clone()) {
            let line = err.line().unwrap_or(1);
            let pos = super::source::Pos { line, col: 1, len: file.line_text(line).chars().count().max(1) };
            c.diags.push(Diagnostic::at(file, pos, format!("template `{name}` does not parse: {}", short(&err))));
        }
    }
    let template_names: BTreeSet<String> =
        sources.iter().filter(|f| f.name.starts_with("prompts/")).map(|f| template_name(&f.name)).collect();

    let mut formats: Vec<(Format, &SourceFile)> = Vec::new();
    for file in sources.iter().filter(|f| f.name.starts_with("formats/")) {
        if let Some(format) = c.format(file, &template_names) {
            if let Some((_, first)) = formats.iter().find(|(f, _)| f.id == format.id) {
                c.diags.push(
                    Diagnostic::at(file, file.value_pos("id"), format!("format `{}` is defined twice", format.id))
                        .with_hint(format!("the first definition is in {}", first.name)),
                );
                continue;
            }
            formats.push((format, file));
        }
    }
    for (format, file) in &formats {
        c.rehearse_prompts(format, file);
    }
    let formats: Vec<Format> = formats.into_iter().map(|(f, _)| f).collect();
    c.format_ids = formats.iter().map(|f| f.id.clone()).collect();

    // Read every flows/ file first, so references between flows can be checked.
    let mut raw_flows: Vec<(RawFlow, &SourceFile)> = Vec::new();
    let mut raw_menus: Vec<(RawMenu, &SourceFile)> = Vec::new();
    let mut raw_jobs: Vec<(RawSchedule, &SourceFile)> = Vec::new();
    let mut raw_pipelines: Vec<(RawPipeline, &SourceFile)> = Vec::new();
    for file in sources.iter().filter(|f| f.name.starts_with("flows/")) {
        let Some(value) = c.parse_yaml(file) else {
            continue;
        };
        let kind = value.get("kind").and_then(Yaml::as_str).map(str::to_string);
        match kind.as_deref() {
            Some("flow") => {
                if let Some(flow) = c.deserialize::<RawFlow>(file, "", value) {
                    raw_flows.push((flow, file));
                }
            }
            Some("menu") => {
                if let Some(menu) = c.deserialize::<RawMenu>(file, "", value) {
                    raw_menus.push((menu, file));
                }
            }
            Some("schedule") => {
                if let Some(raw) = c.deserialize::<RawSchedule>(file, "", value) {
                    raw_jobs.push((raw, file));
                }
            }
            Some("pipeline") => {
                if let Some(raw) = c.deserialize::<RawPipeline>(file, "", value) {
                    raw_pipelines.push((raw, file));
                }
            }
            Some(other) => c.diags.push(
                Diagnostic::at(file, file.value_pos("kind"), format!("unknown kind `{other}`"))
                    .with_hint(suggestion_or_list(other, ["flow", "menu", "schedule", "pipeline"])),
            ),
            None => c.diags.push(
                Diagnostic::at(file, file.value_pos(""), "missing `kind:`".to_string())
                    .with_hint("every file under flows/ starts with `kind: flow`, `menu`, `schedule` or `pipeline`"),
            ),
        }
    }

    let mut flow_ids: BTreeMap<String, &SourceFile> = BTreeMap::new();
    for (flow, file) in &raw_flows {
        if let Some(first) = flow_ids.get(&flow.id) {
            c.diags.push(
                Diagnostic::at(file, file.value_pos("id"), format!("flow `{}` is defined twice", flow.id))
                    .with_hint(format!("the first definition is in {}", first.name)),
            );
        } else {
            flow_ids.insert(flow.id.clone(), file);
        }
    }
    let known_flows: BTreeSet<String> = flow_ids.keys().cloned().collect();
    let entry_flows: BTreeSet<&str> = raw_menus
        .iter()
        .flat_map(|(menu, _)| {
            std::iter::once(menu.start_flow.as_str())
                .chain(menu.reply_keyboard.buttons.iter().map(|b| b.flow.as_str()))
                .chain(menu.commands.iter().filter_map(|c| c.flow.as_deref()))
        })
        .collect();
    let called: BTreeSet<String> = raw_flows
        .iter()
        .flat_map(|(flow, _)| flow.steps.values())
        .filter_map(|step| step.get("call").and_then(Yaml::as_str).map(str::to_string))
        .chain(raw_flows.iter().flat_map(|(flow, _)| flow.steps.values()).flat_map(|step| {
            step.get("buttons")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|b| b.get("call").and_then(Yaml::as_str).map(str::to_string))
        }))
        // A job's notice flow starts with the job's result set, like a called flow.
        .chain(raw_jobs.iter().filter_map(|(job, _)| job.notify.clone()))
        .collect();

    let menu = match raw_menus.len() {
        0 => {
            c.diags.push(
                Diagnostic::in_file("flows", "no `kind: menu` file under flows/")
                    .with_hint("the menu file defines the main menu, the commands and the bot's texts"),
            );
            None
        }
        _ => {
            for (_, file) in raw_menus.iter().skip(1) {
                c.diags.push(
                    Diagnostic::at(file, file.value_pos("kind"), "a second `kind: menu` file".to_string())
                        .with_hint(format!("the menu is already defined in {}", raw_menus[0].1.name)),
                );
            }
            let (menu, file) = &raw_menus[0];
            c.menu(menu, file, &known_flows)
        }
    };

    let flow_slots: BTreeMap<String, Vec<String>> = raw_flows
        .iter()
        .map(|(flow, _)| (flow.id.clone(), flow.slots.keys().filter_map(Yaml::as_str).map(str::to_string).collect()))
        .collect();
    let mut flows = BTreeMap::new();
    for (raw, file) in &raw_flows {
        if flows.contains_key(&raw.id) {
            continue;
        }
        // A flow that is also an entry point (menu, command, /start) starts with cleared slots.
        let is_callee = called.contains(&raw.id) && !entry_flows.contains(raw.id.as_str());
        if let Some(flow) = c.flow(raw, file, &known_flows, &flow_slots, &template_names, is_callee) {
            flows.insert(flow.id.clone(), flow);
        }
    }

    let mut jobs: Vec<Job> = Vec::new();
    for (raw, file) in &raw_jobs {
        if let Some(job) = c.job(raw, file, &known_flows, timezone) {
            if jobs.iter().any(|j| j.id == job.id) {
                c.diags.push(Diagnostic::at(file, file.value_pos("id"), format!("job `{}` is defined twice", job.id)));
                continue;
            }
            jobs.push(job);
        }
    }

    let mut pipelines: Vec<crate::config::pipeline::Pipeline> = Vec::new();
    for (raw, file) in &raw_pipelines {
        if let Some(pipeline) = c.pipeline(raw, file) {
            if let Some(first) = pipelines.iter().find(|p| p.id == pipeline.id) {
                c.diags.push(
                    Diagnostic::at(file, file.value_pos("id"), format!("pipeline `{}` is defined twice", pipeline.id))
                        .with_hint(format!("the first definition is in {}", first.file)),
                );
                continue;
            }
            pipelines.push(pipeline);
        }
    }

    // A config that publishes must say, in its own words, what the publisher tells admins.
    let publishes = raw_flows
        .iter()
        .find_map(|(flow, file)| {
            flow.steps.values().find_map(|step| {
                let name = step.get("action").and_then(|a| a.get("name")).and_then(Yaml::as_str)?;
                PUBLISHING_ACTIONS.contains(&name).then_some((name.to_string(), *file))
            })
        })
        .or_else(|| {
            raw_jobs.iter().find_map(|(job, file)| {
                let name = job.action.as_ref().map(|a| a.name.as_str())?;
                PUBLISHING_ACTIONS.contains(&name).then_some((name.to_string(), *file))
            })
        });
    if let Some((action, file)) = publishes {
        match raw_flows.iter().find(|(flow, _)| flow.id == NOTICE_FLOW) {
            None => c.diags.push(
                Diagnostic::in_file(
                    &file.name,
                    format!("`{action}` publishes posts, but there is no `{NOTICE_FLOW}` flow"),
                )
                .with_hint(format!(
                    "add flows/{NOTICE_FLOW}.yaml with the steps {} (what the publisher tells admins)",
                    NOTICE_STEPS.join(", ")
                )),
            ),
            Some((flow, file)) => {
                for step in NOTICE_STEPS {
                    if !flow.steps.contains_key(step) {
                        c.diags.push(
                            Diagnostic::at(
                                file,
                                file.key_pos("steps"),
                                format!("flow `{NOTICE_FLOW}` has no step `{step}`"),
                            )
                            .with_hint(format!("the publisher starts it at each of {}", NOTICE_STEPS.join(", "))),
                        );
                    }
                }
            }
        }
    }

    // The checks' environment holds every template compiled, about 12 KiB each; the bundle's
    // compiles each when first used, from the sources.
    drop(c.env);
    let mut env = new_environment();
    let template_sources = c.template_sources;
    env.set_loader(move |name| Ok(template_sources.get(name).cloned()));
    env.add_global("formats", Value::from(Serde(&formats)));
    let by_id: BTreeMap<&str, &Format> = formats.iter().map(|f| (f.id.as_str(), f)).collect();
    env.add_global("formats_by_id", Value::from(Serde(&by_id)));

    let mut diags = c.diags;
    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        diags.dedup();
        return Err(diags);
    }
    let Some(menu) = menu else { return Err(diags) };
    let fingerprint = super::fnv1a(sources.iter().flat_map(|s| [s.name.as_bytes(), s.text.as_bytes()]));
    let mut bundle = Bundle {
        flows,
        menu,
        formats,
        templates: env,
        literal_texts: c.literals,
        prompt_files,
        timezone,
        fingerprint,
        jobs,
        pipelines,
    };
    let label = |key: &str| -> String {
        crate::engine::render::render(&bundle, &format!("text:{key}"), &Value::UNDEFINED)
            .map(|t| html::to_plain_text(&t, false))
            .unwrap_or_default()
    };
    let widget_labels = WidgetLabels {
        prev: label("pager_prev"),
        next: label("pager_next"),
        back: label("back"),
        today_marker: label("today_marker"),
        skip: label("skip"),
    };
    bundle.menu.widget_labels = widget_labels;
    Ok(bundle)
}

/// `prompts/ai/selling.j2` → `ai/selling`.
pub fn template_name(file_name: &str) -> String {
    let name = file_name.strip_prefix("prompts/").unwrap_or(file_name);
    name.strip_suffix(".j2").unwrap_or(name).to_string()
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Prompts for the AI are plain text; everything else becomes Telegram HTML.
    env.set_auto_escape_callback(|name| if name.starts_with("ai/") { AutoEscape::None } else { AutoEscape::Html });
    env.add_filter("telegram_html", |text: String| Value::from_safe_string(html::sanitize(&text)));
    env.add_filter("plain", |text: String| html::to_plain_text(&text, false));
    // A text's length as Telegram counts it (UTF-16 units of the visible text).
    env.add_filter("telegram_length", |text: String| html::sanitized_utf16_len(&html::sanitize(&text)));
    env
}

/// What a text without template syntax renders as, or `None` when it has some: itself, less
/// one trailing newline (minijinja drops it by default).
pub fn literal_text(source: &str) -> Option<String> {
    if source.contains("{{") || source.contains("{%") || source.contains("{#") {
        return None;
    }
    // As minijinja's lexer does: a final `\n`, then a final `\r`.
    let text = source.strip_suffix('\n').unwrap_or(source);
    Some(text.strip_suffix('\r').unwrap_or(text).to_string())
}

fn short(err: &minijinja::Error) -> String {
    err.detail().map(str::to_string).unwrap_or_else(|| err.kind().to_string())
}

fn join(base: &str, segment: &str) -> String {
    if base.is_empty() { segment.to_string() } else { format!("{base}.{segment}") }
}

struct Compiler<'a> {
    diags: Vec<Diagnostic>,
    env: Environment<'static>,
    /// Inline texts without template syntax, kept out of `env` (see [`Bundle::literal_texts`]).
    literals: HashMap<String, String>,
    /// Every template's source by name: the bundle's environment compiles one when it is first
    /// used (`env` compiles them all, for the checks, and is dropped).
    template_sources: HashMap<String, String>,
    actions: &'a [ActionSchema],
    /// Ids of the formats that compiled, for literal `format:` arguments.
    format_ids: BTreeSet<String>,
}

/// What a step reads, for the slot analysis: (name, path of the field that reads it).
type Reads = Vec<(String, String)>;

/// The facts about a compiled step that the flow-level checks need.
struct StepFacts {
    reads: Reads,
    /// Reads that happen after the step's input/action result is saved (`next` conditions).
    late_reads: Reads,
    sets: Vec<String>,
    saves: Vec<String>,
    /// `session.clear` keeps only these slots (after the step's own assignments).
    clears: Option<Vec<String>>,
    edges: Vec<(String, Vec<String>, String)>,
}

impl<'a> Compiler<'a> {
    fn error(&mut self, file: &SourceFile, path: &str, message: impl Into<String>) -> usize {
        self.diags.push(Diagnostic::at(file, file.value_pos(path), message));
        self.diags.len() - 1
    }

    fn hint(&mut self, index: usize, hint: Option<String>) {
        if let Some(d) = self.diags.get_mut(index) {
            d.hint = hint;
        }
    }

    fn parse_yaml(&mut self, file: &SourceFile) -> Option<Yaml> {
        match serde_yaml::from_str::<Yaml>(&file.text) {
            Ok(value) => Some(value),
            Err(err) => {
                let (line, col) = err.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                let message = err.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                let pos = super::source::Pos { line, col, len: 1 };
                self.diags.push(Diagnostic::at(file, pos, format!("YAML syntax error: {message}")));
                None
            }
        }
    }

    fn deserialize<T: DeserializeOwned>(&mut self, file: &SourceFile, prefix: &str, value: Yaml) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(err) => {
                let mut path = prefix.to_string();
                for segment in err.path().iter() {
                    use serde_path_to_error::Segment;
                    let part = match segment {
                        Segment::Seq { index } => index.to_string(),
                        Segment::Map { key } => key.clone(),
                        Segment::Enum { variant } => variant.clone(),
                        Segment::Unknown => continue,
                    };
                    path = join(&path, &part);
                }
                let diagnostic = serde_diagnostic(file, &path, &err.inner().to_string());
                self.diags.push(diagnostic);
                None
            }
        }
    }

    /// Registers an inline template and reports a syntax error at the YAML value's position.
    fn inline_template(&mut self, file: &SourceFile, path: &str, name: String, source: &str) -> Option<String> {
        if let Some(text) = literal_text(source) {
            // Its source stays available to templates that include it by name.
            self.template_sources.insert(name.clone(), source.to_string());
            self.literals.insert(name.clone(), text);
            return Some(name);
        }
        match self.add_template(name.clone(), source.to_string()) {
            Ok(()) => Some(name),
            Err(err) => {
                let mut pos = file.value_pos(path);
                let template_line = err.line().unwrap_or(1);
                let block = file
                    .line_text(pos.line)
                    .chars()
                    .nth(pos.col.saturating_sub(1))
                    .is_some_and(|c| c == '|' || c == '>');
                pos.line += if block { template_line } else { template_line - 1 };
                if block || template_line > 1 {
                    let text = file.line_text(pos.line);
                    pos.col = text.chars().take_while(|c| *c == ' ').count() + 1;
                    pos.len = text.trim().chars().count().max(1);
                }
                self.diags.push(Diagnostic::at(file, pos, format!("template does not parse: {}", short(&err))));
                None
            }
        }
    }

    /// Compiles a template for the checks, and keeps its source for the bundle.
    fn add_template(&mut self, name: String, source: String) -> Result<(), minijinja::Error> {
        self.env.add_template_owned(name.clone(), source.clone())?;
        self.template_sources.insert(name, source);
        Ok(())
    }

    fn template_vars(&self, name: &str) -> Vec<String> {
        self.env.get_template(name).map(|t| t.undeclared_variables(false).into_iter().collect()).unwrap_or_default()
    }

    /// Checks an expression's syntax and returns the names it reads.
    fn expression(&mut self, file: &SourceFile, path: &str, source: &str) -> Option<Vec<String>> {
        let vars = match self.env.compile_expression_owned(source.to_string()) {
            Ok(expr) => Some(expr.undeclared_variables(false).into_iter().collect()),
            Err(err) => {
                self.error(file, path, format!("expression `{source}` does not parse: {}", short(&err)));
                None
            }
        };
        // Also kept as a template, so the engine parses it once, not at every evaluation (most
        // are names, which the engine looks up without it).
        // A valid expression makes a valid `set` (the lexer reads its strings whole); should one
        // not, the engine compiles the expression at each evaluation instead. Compiling it here
        // too would leave the heap more fragmented (0.4 MiB more resident when idle).
        if vars.is_some() {
            self.template_sources
                .insert(format!("{EXPRESSION_PREFIX}{source}"), format!("{{% set result = ({source}) %}}"));
        }
        vars
    }

    // ----- formats ------------------------------------------------------------------------

    fn format(&mut self, file: &SourceFile, templates: &BTreeSet<String>) -> Option<Format> {
        let value = self.parse_yaml(file)?;
        let raw: RawFormat = self.deserialize(file, "", value)?;
        let expected = file.name.trim_start_matches("formats/").trim_end_matches(".yaml").trim_end_matches(".yml");
        if raw.id != expected {
            let i =
                self.error(file, "id", format!("format id `{}` does not match the file name `{}`", raw.id, file.name));
            self.hint(i, Some(format!("rename the file to formats/{}.yaml or the id to `{expected}`", raw.id)));
        }
        if raw.length.min_words == 0 || raw.length.min_words > raw.length.max_words {
            self.error(
                file,
                "length",
                format!("length {}..{} words is not a valid range", raw.length.min_words, raw.length.max_words),
            );
        }
        if raw.emoji.is_empty() {
            self.error(file, "emoji", "a format needs at least one emoji");
        }
        if raw.cta.is_empty() {
            self.error(file, "cta", "a format needs at least one call to action");
        }
        let max_chars = raw.length.max_chars.unwrap_or(MAX_TEXT_UNITS);
        if max_chars == 0 || max_chars > MAX_TEXT_UNITS {
            self.error(
                file,
                "length.max_chars",
                format!("max_chars {max_chars} is outside 1..{MAX_TEXT_UNITS} (Telegram's longest message)"),
            );
        }
        let temperature = raw.ai.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if !(0.0..=2.0).contains(&temperature) {
            self.error(file, "ai.temperature", format!("temperature {temperature} is outside 0..2"));
        }
        let max_tokens = raw.ai.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if max_tokens == 0 {
            self.error(file, "ai.max_tokens", "max_tokens must be at least 1");
        }
        let p = raw.prompts;
        let shared = |given: Option<String>, default: &str| given.unwrap_or_else(|| default.to_string());
        let prompts = FormatPrompts {
            system: p.system,
            generate: p.generate,
            offline: p.offline,
            improve: shared(p.improve, "ai/improve"),
            translate: shared(p.translate, "ai/translate"),
            analyze: shared(p.analyze, "ai/analyze"),
            shorten: shared(p.shorten, "ai/shorten"),
            suggest_cta: shared(p.suggest_cta, "ai/suggest_cta"),
            offline_analyze: shared(p.offline_analyze, "offline/analyze"),
        };
        for (path, name) in prompts.named() {
            if !templates.contains(name) {
                // A shared template left at its default is reported at `prompts`.
                let i = self.error(file, path, format!("template `{name}` ({path}) does not exist"));
                let hint = did_you_mean(name, templates.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("create prompts/{name}.j2"));
                self.hint(i, Some(hint));
            }
        }
        Some(Format {
            id: raw.id,
            names: FormatNames { hy: raw.names.hy, ru: raw.names.ru, en: raw.names.en },
            description: raw.description,
            audience: raw.audience,
            tone: raw.tone,
            structure: raw.structure,
            emoji: raw.emoji,
            cta: raw.cta,
            min_words: raw.length.min_words,
            max_words: raw.length.max_words,
            max_chars,
            hashtags: raw.hashtags,
            ai: FormatAi { temperature, max_tokens },
            prompts,
        })
    }

    /// Renders every prompt of a format once with sample inputs, so a template that fails at
    /// run time (a missing include, a bad filter argument) is a `validate` error, not a failed
    /// draft in front of an admin.
    fn rehearse_prompts(&mut self, format: &Format, file: &SourceFile) {
        let sample = serde_json::json!({
            "format": format,
            "keywords": ["sample"],
            "keywords_text": "sample",
            "details": "sample",
            "language": "hy",
            "limit": format.max_chars,
            "length": format.max_chars + 1,
            "text": "<b>sample</b>",
            "instruction": "sample",
            "emoji": format.emoji.first(),
            "emoji2": format.emoji.last(),
            "cta": format.cta.first(),
            "hashtags": format.hashtags.join(" "),
            "facts": {
                "words": 1, "too_short": true, "too_long": false, "has_cta": false,
                "missing_hashtags": format.hashtags, "emoji_count": 0, "bold_title": false,
                "length": 1, "over_limit": false, "score": 5,
            },
        });
        for (path, name) in format.prompts.named() {
            let Ok(template) = self.env.get_template(name) else { continue };
            if let Err(err) = template.render(Value::from(Serde(&sample))) {
                let at = err.name().map(|n| format!(" ({n}.j2 line {})", err.line().unwrap_or(0))).unwrap_or_default();
                let i = self.error(file, path, format!("template `{name}` fails to render{at}: {}", short(&err)));
                self.hint(i, Some("check the template's includes, extends and filters".to_string()));
            }
        }
    }

    // ----- menu ---------------------------------------------------------------------------

    fn menu(&mut self, raw: &RawMenu, file: &SourceFile, flows: &BTreeSet<String>) -> Option<Menu> {
        let before = self.diags.len();
        if !flows.contains(&raw.start_flow) {
            let i = self.error(file, "start_flow", format!("flow `{}` does not exist", raw.start_flow));
            self.hint(i, Some(suggestion_or_list(&raw.start_flow, flows.iter().map(String::as_str))));
        }
        let mut texts = BTreeMap::new();
        let all_required = required_texts();
        let required: Vec<&str> = all_required.iter().map(|(k, _)| k.as_str()).collect();
        for (key, value) in &raw.texts {
            let path = format!("texts.{}", key.as_str().unwrap_or("?"));
            let (Some(key), Some(text)) = (key.as_str(), value.as_str()) else {
                self.error(file, &path, "a text must be a string");
                continue;
            };
            if !required.contains(&key) {
                let i = self.diags.len();
                self.diags.push(Diagnostic::at(file, file.key_pos(&path), format!("unknown text `{key}`")));
                self.hint(i, Some(suggestion_or_list(key, required.iter().copied())));
                continue;
            }
            if let Some(name) = self.inline_template(file, &path, format!("text:{key}"), text) {
                texts.insert(key.to_string(), name);
            }
        }
        for (key, purpose) in &all_required {
            if !texts.contains_key(key) && !raw.texts.contains_key(key.as_str()) {
                let i = self.diags.len();
                self.diags.push(Diagnostic::at(file, file.key_pos("texts"), format!("text `{key}` is missing")));
                self.hint(i, Some(format!("shown when {purpose}")));
            }
        }
        if raw.locale.months.len() != 12 {
            self.error(file, "locale.months", format!("`months` needs 12 names, found {}", raw.locale.months.len()));
        }
        if raw.locale.weekdays.len() != 7 {
            self.error(
                file,
                "locale.weekdays",
                format!("`weekdays` needs 7 names (Monday first), found {}", raw.locale.weekdays.len()),
            );
        }
        let columns = raw.reply_keyboard.columns.unwrap_or(2);
        if columns == 0 || columns > MAX_ROW {
            self.error(file, "reply_keyboard.columns", format!("`columns` must be 1..={MAX_ROW}, found {columns}"));
        }
        let mut labels = BTreeSet::new();
        let mut buttons = Vec::new();
        for (i, button) in raw.reply_keyboard.buttons.iter().enumerate() {
            let path = format!("reply_keyboard.buttons.{i}");
            if !flows.contains(&button.flow) {
                let d = self.error(file, &format!("{path}.flow"), format!("flow `{}` does not exist", button.flow));
                self.hint(d, Some(suggestion_or_list(&button.flow, flows.iter().map(String::as_str))));
            }
            if button.label.trim().is_empty() || !labels.insert(button.label.trim().to_string()) {
                self.error(file, &format!("{path}.label"), format!("label `{}` is empty or used twice", button.label));
            }
            buttons.push(MenuButton { label: button.label.trim().to_string(), flow: button.flow.clone() });
        }
        let reply_keyboard: Vec<Vec<MenuButton>> = {
            let mut rows = Vec::new();
            let mut row = Vec::new();
            for button in buttons {
                row.push(button);
                if row.len() == columns.max(1) as usize {
                    rows.push(std::mem::take(&mut row));
                }
            }
            if !row.is_empty() {
                rows.push(row);
            }
            rows
        };
        let command_re = Regex::new("^[a-z0-9_]{1,32}$").ok();
        let mut commands = Vec::new();
        let mut names = BTreeSet::new();
        for (i, command) in raw.commands.iter().enumerate() {
            let path = format!("commands.{i}");
            let name = command.command.trim_start_matches('/').to_string();
            if command_re.as_ref().is_some_and(|re| !re.is_match(&name)) {
                let d = self.error(
                    file,
                    &format!("{path}.command"),
                    format!("command `{name}` is not a valid Telegram command"),
                );
                self.hint(d, Some("use 1–32 lowercase latin letters, digits or underscores".to_string()));
            }
            if !names.insert(name.clone()) {
                self.error(file, &format!("{path}.command"), format!("command `{name}` is defined twice"));
            }
            let length = command.description.chars().count();
            if length == 0 || length > MAX_COMMAND_DESCRIPTION {
                self.error(
                    file,
                    &format!("{path}.description"),
                    format!("a command description must be 1–{MAX_COMMAND_DESCRIPTION} characters, found {length}"),
                );
            }
            let target = match (&command.flow, command.cancel) {
                (Some(flow), false) => {
                    if !flows.contains(flow) {
                        let d = self.error(file, &format!("{path}.flow"), format!("flow `{flow}` does not exist"));
                        self.hint(d, Some(suggestion_or_list(flow, flows.iter().map(String::as_str))));
                    }
                    CommandTarget::Flow(flow.clone())
                }
                (None, true) => CommandTarget::Cancel,
                _ => {
                    let d = self.error(
                        file,
                        &path,
                        format!("command `{name}` needs exactly one of `flow:` or `cancel: true`"),
                    );
                    self.hint(d, None);
                    continue;
                }
            };
            commands.push(Command { name, description: command.description.clone(), target, listed: command.listed });
        }
        // `/start` always works: without a `start` command it runs `start_flow` (unlisted).
        if !commands.iter().any(|c| c.name == "start") {
            commands.push(Command {
                name: "start".to_string(),
                description: String::new(),
                target: CommandTarget::Flow(raw.start_flow.clone()),
                listed: false,
            });
        }
        if self.diags.len() > before {
            return None;
        }
        Some(Menu {
            start_flow: raw.start_flow.clone(),
            texts,
            months: raw.locale.months.clone(),
            weekdays: raw.locale.weekdays.clone(),
            reply_keyboard,
            commands,
            widget_labels: WidgetLabels::default(),
        })
    }

    // ----- flows --------------------------------------------------------------------------

    fn flow(
        &mut self,
        raw: &RawFlow,
        file: &SourceFile,
        flows: &BTreeSet<String>,
        flow_slots: &BTreeMap<String, Vec<String>>,
        templates: &BTreeSet<String>,
        is_callee: bool,
    ) -> Option<Flow> {
        let before = self.diags.len();
        let id_re = Regex::new("^[a-z][a-z0-9_]*$").ok();
        if id_re.as_ref().is_some_and(|re| !re.is_match(&raw.id)) {
            let d = self.error(file, "id", format!("flow id `{}` is not a valid name", raw.id));
            self.hint(
                d,
                Some("use lowercase latin letters, digits and underscores, starting with a letter".to_string()),
            );
        }
        let mut slots = BTreeMap::new();
        slots.insert("error".to_string(), SlotDecl { kind: SlotKind::Text, default: None });
        for (name, decl) in &raw.slots {
            let name = name.as_str().unwrap_or("?").to_string();
            let path = format!("slots.{name}");
            let (kind, default) = match decl {
                Yaml::String(kind) => (kind.clone(), None),
                Yaml::Mapping(map) => {
                    let unknown: Vec<String> = map
                        .keys()
                        .filter_map(Yaml::as_str)
                        .filter(|k| !["type", "default"].contains(k))
                        .map(str::to_string)
                        .collect();
                    for key in unknown {
                        let d = self.diags.len();
                        self.diags.push(Diagnostic::at(
                            file,
                            file.key_pos(&format!("{path}.{key}")),
                            format!("unknown key `{key}` in a slot declaration"),
                        ));
                        self.hint(d, did_you_mean(&key, ["type", "default"]));
                    }
                    let kind = map.get("type").and_then(Yaml::as_str).unwrap_or("any").to_string();
                    let default = map.get("default").map(|v| serde_json::to_value(v).unwrap_or_default());
                    (kind, default)
                }
                _ => {
                    self.error(file, &path, format!("slot `{name}` needs a type, such as `text`"));
                    continue;
                }
            };
            match SlotKind::parse(&kind) {
                Some(kind) => {
                    if let Some(value) = default.as_ref().filter(|v| !kind.accepts(v)) {
                        let d = self.error(
                            file,
                            &format!("{path}.default"),
                            format!("default {value} is not a `{}`", kind.name()),
                        );
                        self.hint(d, Some("give a value of the slot's type, or `null`".to_string()));
                    }
                    slots.insert(name, SlotDecl { kind, default });
                }
                None => {
                    let at = if decl.is_string() { path.clone() } else { format!("{path}.type") };
                    let d = self.error(file, &at, format!("unknown slot type `{kind}`"));
                    self.hint(d, Some(suggestion_or_list(&kind, SlotKind::ALL.map(SlotKind::name))));
                }
            }
        }

        let step_ids: Vec<String> = raw.steps.keys().map(|k| k.as_str().unwrap_or("?").to_string()).collect();
        let mut seen = BTreeSet::new();
        for id in &step_ids {
            if !seen.insert(id.clone()) {
                self.error(file, &format!("steps.{id}"), format!("step `{id}` is defined twice"));
            }
        }
        let start = match &raw.start {
            Some(start) => {
                if !step_ids.contains(start) {
                    let d = self.error(file, "start", format!("step `{start}` does not exist"));
                    self.hint(d, Some(suggestion_or_list(start, step_ids.iter().map(String::as_str))));
                }
                start.clone()
            }
            None => match step_ids.first() {
                Some(first) => first.clone(),
                None => {
                    self.error(file, "steps", format!("flow `{}` has no steps", raw.id));
                    return None;
                }
            },
        };

        let mut steps = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (key, value) in &raw.steps {
            let id = key.as_str().unwrap_or("?").to_string();
            let prefix = format!("steps.{id}");
            let Some(raw_step) = self.deserialize::<RawStep>(file, &prefix, value.clone()) else {
                continue;
            };
            let ctx = StepCtx {
                flow: &raw.id,
                step: &id,
                prefix: &prefix,
                file,
                slots: &slots,
                steps: &step_ids,
                flows,
                flow_slots,
                templates,
            };
            let (step, fact) = self.step(&raw_step, &ctx);
            steps.insert(id.clone(), step);
            facts.insert(id, fact);
        }

        if self.diags.len() == before {
            self.check_graph(raw, file, &start, &facts, &slots, is_callee);
        }
        if self.diags.len() > before {
            return None;
        }
        Some(Flow { id: raw.id.clone(), title: raw.title.clone(), start, slots, steps })
    }

    fn step(&mut self, raw: &RawStep, ctx: &StepCtx<'_>) -> (Step, StepFacts) {
        let p = ctx.prefix;
        let file = ctx.file;
        let mut facts = StepFacts {
            reads: Vec::new(),
            late_reads: Vec::new(),
            sets: Vec::new(),
            saves: Vec::new(),
            clears: None,
            edges: Vec::new(),
        };
        let base_name = format!("@{}/{}", ctx.flow, ctx.step);

        // The message.
        let say = match (&raw.say, &raw.template) {
            (Some(_), Some(_)) => {
                let d = self.error(file, &format!("{p}.template"), "a step has either `say` or `template`, not both");
                self.hint(d, Some("`say` is inline text; `template` names a file under prompts/".to_string()));
                None
            }
            (Some(text), None) => self.inline_template(file, &format!("{p}.say"), format!("{base_name}/say"), text),
            (None, Some(name)) => {
                if ctx.templates.contains(name) {
                    Some(name.clone())
                } else {
                    let d = self.error(file, &format!("{p}.template"), format!("template `{name}` does not exist"));
                    let hint = did_you_mean(name, ctx.templates.iter().map(String::as_str))
                        .unwrap_or_else(|| format!("create prompts/{name}.j2"));
                    self.hint(d, Some(hint));
                    None
                }
            }
            (None, None) => None,
        };
        if let Some(name) = &say {
            let field = if raw.say.is_some() { "say" } else { "template" };
            for var in self.template_vars(name) {
                facts.reads.push((var, format!("{p}.{field}")));
            }
        }
        if let Some(slot) = &raw.media {
            facts.reads.push((slot.clone(), format!("{p}.media")));
            if let Some(decl) = ctx.slots.get(slot)
                && !matches!(decl.kind, SlotKind::Media | SlotKind::Any)
            {
                self.error(file, &format!("{p}.media"), format!("slot `{slot}` is not a media slot"));
            }
        }

        if let Some(expr) = &raw.post
            && let Some(vars) = self.expression(file, &format!("{p}.post"), expr)
        {
            facts.reads.extend(vars.into_iter().map(|var| (var, format!("{p}.post"))));
        }

        // set:
        let set = self.assignments(ctx, p, &raw.set, &mut facts);
        facts.sets.extend(set.iter().map(|(slot, _)| slot.clone()));

        // Buttons.
        let mut buttons = Vec::new();
        for (i, button) in raw.buttons.iter().enumerate() {
            let path = format!("{p}.buttons.{i}");
            if button.label.trim().is_empty() {
                self.error(file, &format!("{path}.label"), "a button label cannot be empty");
            }
            let label = self
                .inline_template(file, &format!("{path}.label"), format!("{base_name}/button{i}"), &button.label)
                .unwrap_or_default();
            for var in self.template_vars(&label) {
                facts.reads.push((var, format!("{path}.label")));
            }
            let targets = [button.goto.is_some(), button.call.is_some(), button.end].iter().filter(|t| **t).count();
            if targets > 1 {
                self.error(file, &path, "a button has at most one of `goto`, `call` and `end`");
            }
            let target = if let Some(goto) = &button.goto {
                self.check_step_ref(ctx, &format!("{path}.goto"), goto);
                Target::Goto(goto.clone())
            } else if let Some(flow) = &button.call {
                self.check_flow_ref(ctx, &format!("{path}.call"), flow);
                Target::Call(flow.clone())
            } else if button.end {
                Target::End
            } else {
                Target::Stay
            };
            let button_set = self.assignments(ctx, &path, &button.set, &mut facts);
            let assigned: Vec<String> = button_set.iter().map(|(slot, _)| slot.clone()).collect();
            if let Some(cond) = &button.condition
                && let Some(vars) = self.expression(file, &format!("{path}.if"), cond)
            {
                facts.reads.extend(vars.into_iter().map(|v| (v, format!("{path}.if"))));
            }
            if let Target::Goto(goto) = &target {
                facts.edges.push((goto.clone(), assigned, path.clone()));
            }
            if target == Target::End {
                facts.edges.push(("<end>".into(), Vec::new(), path.clone()));
            }
            let plain_label =
                literal_text(&button.label).map(|label| html::to_plain_text(&label, false).trim().to_string());
            buttons.push(Button {
                label,
                plain_label,
                target,
                set: button_set,
                condition: button.condition.clone(),
                toast: button.toast.clone(),
            });
        }
        let columns = raw.columns.unwrap_or(1);
        if columns == 0 || columns > MAX_ROW {
            let d =
                self.error(file, &format!("{p}.columns"), format!("`columns` must be 1..={MAX_ROW}, found {columns}"));
            self.hint(d, Some("Telegram shows at most 8 buttons in a row".to_string()));
        }

        // Generated list.
        let list = raw.list.as_ref().map(|list| {
            let path = format!("{p}.list");
            if let Some(vars) = self.expression(file, &format!("{path}.items"), &list.items) {
                facts.reads.extend(vars.into_iter().map(|v| (v, format!("{path}.items"))));
            }
            if let Some(decl) = ctx.slots.get(list.items.trim())
                && !matches!(decl.kind, SlotKind::List | SlotKind::Any)
            {
                let d = self.error(
                    file,
                    &format!("{path}.items"),
                    format!("slot `{}` is a `{}`, not a list", list.items.trim(), decl.kind.name()),
                );
                self.hint(
                    d,
                    Some("list items come from a `list` slot, `formats`, or an expression giving a list".to_string()),
                );
            }
            let label = self
                .inline_template(file, &format!("{path}.label"), format!("{base_name}/list_label"), &list.label)
                .unwrap_or_default();
            for var in self.template_vars(&label).into_iter().filter(|v| v != "item") {
                facts.reads.push((var, format!("{path}.label")));
            }
            if let Some(expr) = &list.value
                && let Some(vars) = self.expression(file, &format!("{path}.value"), expr)
            {
                facts.reads.extend(vars.into_iter().filter(|v| v != "item").map(|v| (v, format!("{path}.value"))));
            }
            if let Some(slot) = &list.save_as {
                self.check_slot_target(ctx, &format!("{path}.save_as"), slot, None);
                facts.saves.push(slot.clone());
            }
            let empty = list.empty.as_ref().and_then(|text| {
                self.inline_template(file, &format!("{path}.empty"), format!("{base_name}/list_empty"), text)
            });
            let page_size = list.page_size.unwrap_or(8) as usize;
            let list_columns = list.columns.unwrap_or(1);
            if page_size == 0 || page_size + raw.buttons.len() + 3 > MAX_BUTTONS {
                self.error(
                    file,
                    &format!("{path}.page_size"),
                    format!("`page_size` must be 1..={}, found {page_size}", MAX_BUTTONS - 3 - raw.buttons.len()),
                );
            }
            if list_columns == 0 || list_columns > MAX_ROW {
                let d = self.error(
                    file,
                    &format!("{path}.columns"),
                    format!("`columns` must be 1..={MAX_ROW}, found {list_columns}"),
                );
                self.hint(d, Some("Telegram shows at most 8 buttons in a row".to_string()));
            }
            ListSpec {
                items: list.items.clone(),
                label,
                value: list.value.clone(),
                save_as: list.save_as.clone(),
                columns: list_columns,
                page_size: page_size.max(1),
                empty,
            }
        });

        // Input.
        let input = raw.input.as_ref().and_then(|input| self.input(input, ctx, &base_name, &mut facts));
        // The largest keyboard the step can show: calendar (3 + 7 + 6 weeks × 7), the time
        // picker's bigger grid, choice options, a list page with its pager, and a skip button.
        let widget_buttons = match input.as_ref().map(|i| &i.kind) {
            Some(InputKind::Date { .. }) => 52,
            Some(InputKind::Time { minute_step, first_hour, last_hour, .. }) => {
                ((last_hour - first_hour + 1) as usize).max((60 / minute_step.max(&1)) as usize + 1)
            }
            Some(InputKind::Choice(options)) => options.len(),
            _ => 0,
        } + usize::from(input.as_ref().is_some_and(|i| i.skip.is_some()))
            + list.as_ref().map_or(0, |l| l.page_size + 3);
        if raw.buttons.len() + widget_buttons > MAX_BUTTONS {
            let d = self.error(
                file,
                &format!("{p}.buttons"),
                format!("this keyboard would have {} buttons", raw.buttons.len() + widget_buttons),
            );
            self.hint(d, Some(format!("Telegram allows at most {MAX_BUTTONS} buttons on one message")));
        }

        // Action.
        let action = raw.action.as_ref().and_then(|action| self.action(action, ctx, &base_name, &mut facts));

        // Next.
        let next = match &raw.next {
            Some(value) => self.next(value, ctx, &mut facts),
            None => Vec::new(),
        };
        if let Some(flow) = &raw.call {
            self.check_flow_ref(ctx, &format!("{p}.call"), flow);
            facts
                .saves
                .extend(ctx.flow_slots.get(flow).into_iter().flatten().filter(|s| ctx.slots.contains_key(*s)).cloned());
        }

        // Consistency of the parts.
        let waits = raw.input.is_some() || !raw.buttons.is_empty() || raw.list.is_some();
        if raw.action.is_some() && waits {
            let d =
                self.error(file, &format!("{p}.action"), "a step with `action` cannot also wait for input or buttons");
            self.hint(d, Some("put the action in its own step and `next:` to the step that asks".to_string()));
        }
        if raw.post.is_some() && raw.media.is_some() {
            let d = self.error(file, &format!("{p}.media"), "a step that shows a `post` cannot also have `media`");
            self.hint(d, Some("the post brings its own media; put it in the post".to_string()));
        }
        if raw.edit && (raw.menu || raw.media.is_some() || raw.post.is_some()) {
            let d = self.error(
                file,
                &format!("{p}.edit"),
                "a message with the main menu or with media cannot be edited in place",
            );
            self.hint(
                d,
                Some("Telegram edits only text messages with inline buttons; remove `edit: true`".to_string()),
            );
        }
        if raw.menu && waits {
            let d = self.error(
                file,
                &format!("{p}.menu"),
                "a message with the main menu keyboard cannot carry inline buttons or wait for input",
            );
            self.hint(d, Some("Telegram attaches one keyboard per message".to_string()));
        }
        if waits && say.is_none() && raw.say.is_none() && raw.template.is_none() {
            let d = self.error(file, p, format!("step `{}` waits for the user but says nothing", ctx.step));
            self.hint(d, Some("add `say:` with the question to ask".to_string()));
        }
        if (raw.input.is_some() || raw.list.is_some() || raw.action.is_some()) && raw.next.is_none() {
            let d = self.diags.len();
            self.diags.push(Diagnostic::at(file, file.key_pos(p), format!("step `{}` has no `next`", ctx.step)));
            self.hint(d, Some("say where to go after the input, list choice or action".to_string()));
        }
        if raw.end && (raw.next.is_some() || raw.call.is_some() || waits || raw.action.is_some()) {
            self.error(file, &format!("{p}.end"), "an `end: true` step only says its message and ends");
        }
        if raw.call.is_some() && (waits || raw.action.is_some()) {
            self.error(file, &format!("{p}.call"), "a `call` step cannot also wait or run an action");
        }
        if !raw.end && raw.next.is_none() && raw.call.is_none() && !waits {
            let d = self.diags.len();
            self.diags.push(Diagnostic::at(file, file.key_pos(p), format!("step `{}` never leaves", ctx.step)));
            self.hint(d, Some("add `next:`, `end: true` or buttons".to_string()));
        }
        if raw.end {
            facts.edges.push(("<end>".into(), Vec::new(), p.to_string()));
        }
        if raw.call.is_some() && raw.next.is_none() {
            facts.edges.push(("<end>".into(), Vec::new(), format!("{p}.call")));
        }

        let step = Step {
            id: ctx.step.to_string(),
            say,
            media_slot: raw.media.clone(),
            post: raw.post.clone(),
            edit: raw.edit,
            menu: raw.menu,
            set,
            buttons,
            columns: columns.clamp(1, MAX_ROW),
            list,
            input,
            action,
            next,
            call: raw.call.clone(),
            end: raw.end,
        };
        (step, facts)
    }

    /// Compiles a `set:` map (of a step or a button) under `base`.
    fn assignments(
        &mut self,
        ctx: &StepCtx<'_>,
        base: &str,
        raw: &serde_yaml::Mapping,
        facts: &mut StepFacts,
    ) -> Vec<(String, String)> {
        let mut set = Vec::new();
        for (slot, expr) in raw {
            let slot = slot.as_str().unwrap_or("?").to_string();
            let path = format!("{base}.set.{slot}");
            self.check_slot_target(ctx, &path, &slot, None);
            let source = yaml_expression(expr);
            if let Some(vars) = self.expression(ctx.file, &path, &source) {
                facts.reads.extend(vars.into_iter().map(|v| (v, path.clone())));
            }
            set.push((slot, source));
        }
        set
    }

    fn input(&mut self, raw: &RawInput, ctx: &StepCtx<'_>, base_name: &str, facts: &mut StepFacts) -> Option<Input> {
        let file = ctx.file;
        let path = format!("{}.input", ctx.prefix);
        const TYPES: [&str; 12] = [
            "text",
            "number",
            "photo",
            "video",
            "animation",
            "document",
            "media",
            "date",
            "time",
            "choice",
            "button",
            "url",
        ];
        let kind_name = raw.kind.as_str();
        let kind = match kind_name {
            "text" => {
                let pattern = raw.pattern.as_ref().and_then(|p| match Regex::new(p) {
                    Ok(re) => Some(re),
                    Err(err) => {
                        let first = err.to_string().lines().last().unwrap_or("").trim().to_string();
                        self.error(file, &format!("{path}.pattern"), format!("pattern does not compile: {first}"));
                        None
                    }
                });
                if let (Some(min), Some(max)) = (raw.min_length, raw.max_length)
                    && min > max
                {
                    self.error(
                        file,
                        &format!("{path}.min_length"),
                        format!("min_length {min} is greater than max_length {max}"),
                    );
                }
                InputKind::Text { min_length: raw.min_length, max_length: raw.max_length, pattern }
            }
            "number" => InputKind::Number { min: raw.min, max: raw.max },
            "date" => InputKind::Date { allow_past: raw.allow_past },
            "time" => {
                let step = raw.minute_step.unwrap_or(15);
                if step == 0 || step > 60 || 60 % step != 0 {
                    self.error(
                        file,
                        &format!("{path}.minute_step"),
                        format!("`minute_step` must divide 60, found {step}"),
                    );
                }
                let (first, last) = match raw.hours.as_deref() {
                    None => (0, 23),
                    Some([first, last]) if first <= last && *last <= 23 => (*first, *last),
                    Some(_) => {
                        self.error(
                            file,
                            &format!("{path}.hours"),
                            "`hours` is `[first, last]` with 0 ≤ first ≤ last ≤ 23",
                        );
                        (0, 23)
                    }
                };
                if let Some(slot) = &raw.date_slot {
                    facts.reads.push((slot.clone(), format!("{path}.date_slot")));
                    if let Some(decl) = ctx.slots.get(slot)
                        && !matches!(decl.kind, SlotKind::Date | SlotKind::Any)
                    {
                        self.error(file, &format!("{path}.date_slot"), format!("slot `{slot}` is not a date slot"));
                    }
                }
                InputKind::Time {
                    minute_step: step.clamp(1, 60),
                    first_hour: first,
                    last_hour: last,
                    date_slot: raw.date_slot.clone(),
                }
            }
            "choice" => {
                if raw.options.is_empty() {
                    self.error(file, &path, "a `choice` input needs `options`");
                }
                InputKind::Choice(
                    raw.options
                        .iter()
                        .map(|o| ChoiceOption {
                            label: o.label.clone(),
                            value: serde_json::to_value(&o.value).unwrap_or_default(),
                        })
                        .collect(),
                )
            }
            "button" => InputKind::Button,
            "url" => InputKind::Url,
            other => match media_kinds(other) {
                Some(kinds) => InputKind::Media(kinds),
                None => {
                    let d = self.error(file, &format!("{path}.type"), format!("unknown input type `{other}`"));
                    self.hint(d, Some(suggestion_or_list(other, TYPES)));
                    return None;
                }
            },
        };
        // Options that do not apply to this type are mistakes, not silently ignored.
        let misplaced: [(&str, bool, &[&str]); 10] = [
            ("min_length", raw.min_length.is_some(), &["text"]),
            ("max_length", raw.max_length.is_some(), &["text"]),
            ("pattern", raw.pattern.is_some(), &["text"]),
            ("min", raw.min.is_some(), &["number"]),
            ("max", raw.max.is_some(), &["number"]),
            ("options", !raw.options.is_empty(), &["choice"]),
            ("allow_past", raw.allow_past, &["date"]),
            ("minute_step", raw.minute_step.is_some(), &["time"]),
            ("hours", raw.hours.is_some(), &["time"]),
            ("date_slot", raw.date_slot.is_some(), &["time"]),
        ];
        for (key, present, types) in misplaced {
            if present && !types.contains(&kind_name) {
                let d = self.diags.len();
                self.diags.push(Diagnostic::at(
                    file,
                    file.key_pos(&format!("{path}.{key}")),
                    format!("`{key}` does not apply to a `{kind_name}` input"),
                ));
                self.hint(d, Some(format!("`{key}` is for {} inputs", types.join(", "))));
            }
        }
        if let Some(slot) = &raw.save_as {
            self.check_slot_target(ctx, &format!("{path}.save_as"), slot, Some(kind.slot_kinds()));
            facts.saves.push(slot.clone());
        }
        let error = raw.error.as_ref().and_then(|text| {
            self.inline_template(file, &format!("{path}.error"), format!("{base_name}/input_error"), text)
        });
        let skip = match &raw.skip {
            None | Some(Yaml::Bool(false)) => None,
            Some(Yaml::Bool(true)) => Some(None),
            Some(Yaml::String(label)) if !label.trim().is_empty() => Some(Some(label.clone())),
            Some(_) => {
                self.error(
                    file,
                    &format!("{path}.skip"),
                    "`skip` is a button label or `true` (the menu's `skip` text)",
                );
                None
            }
        };
        Some(Input { kind, save_as: raw.save_as.clone(), error, skip })
    }

    /// A recurring job: its cron expression, time zone, action (checked like a step's, with
    /// literal arguments) and notice flow.
    fn job(
        &mut self,
        raw: &RawSchedule,
        file: &SourceFile,
        flows: &BTreeSet<String>,
        default_zone: chrono_tz::Tz,
    ) -> Option<Job> {
        let expected = file.name.trim_start_matches("flows/").trim_end_matches(".yaml").trim_end_matches(".yml");
        if raw.id.trim().is_empty() || !raw.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            let d = self.error(file, "id", format!("job id `{}` must be letters, digits, `_` or `-`", raw.id));
            self.hint(
                d,
                Some(format!("for example `{}`", expected.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))),
            );
        }
        let schedule = match crate::scheduler::recurring::parse(&raw.cron) {
            Ok(schedule) => Some(schedule),
            Err(problem) => {
                let d = self.error(file, "cron", problem.to_string());
                self.hint(
                    d,
                    Some(
                        "examples: `0 9 * * Mon` (crontab: Mondays 09:00), `0 0 9 * * Mon-Fri` (seconds first)".into(),
                    ),
                );
                None
            }
        };
        let timezone = match &raw.timezone {
            None => Some(default_zone),
            Some(name) => match name.parse::<chrono_tz::Tz>() {
                Ok(zone) => Some(zone),
                Err(_) => {
                    let d = self.error(file, "timezone", format!("unknown time zone `{name}`"));
                    self.hint(d, Some("an IANA name such as `Asia/Yerevan` or `Europe/Berlin`".into()));
                    None
                }
            },
        };
        let action = match &raw.action {
            None => None,
            Some(action) => self.job_action(action, file),
        };
        if let Some(flow) = &raw.notify
            && !flows.contains(flow)
        {
            let d = self.error(file, "notify", format!("flow `{flow}` does not exist"));
            self.hint(d, Some(suggestion_or_list(flow, flows.iter().map(String::as_str))));
        }
        if raw.action.is_none() && raw.notify.is_none() {
            let d = self.error(file, "id", format!("job `{}` does nothing", raw.id));
            self.hint(d, Some("give it an `action:`, a `notify:` flow, or both".into()));
        }
        Some(Job {
            id: raw.id.clone(),
            file: file.name.clone(),
            description: raw.description.clone().unwrap_or_default(),
            cron: raw.cron.clone(),
            schedule: schedule?,
            timezone: timezone?,
            enabled: raw.enabled,
            action: match (&raw.action, action) {
                (Some(_), None) => return None,
                (_, action) => action,
            },
            notify: raw.notify.clone(),
        })
    }

    /// The argument `name` of an action, or a diagnostic at `path` naming the known ones.
    fn known_arg(&mut self, schema: &ActionSchema, file: &SourceFile, path: &str, name: &str) -> Option<ArgSpec> {
        if let Some(spec) = schema.args.iter().find(|a| a.name == name) {
            return Some(*spec);
        }
        let d = self.diags.len();
        self.diags.push(Diagnostic::at(
            file,
            file.key_pos(path),
            format!("action `{}` has no argument `{name}`", schema.name),
        ));
        self.hint(d, Some(suggestion_or_list(name, schema.args.iter().map(|a| a.name))));
        None
    }

    /// A diagnostic at `at` for each required argument of an action that is not `given`.
    fn required_args(&mut self, schema: &ActionSchema, file: &SourceFile, at: &str, given: impl Fn(&str) -> bool) {
        for spec in schema.args.iter().filter(|a| a.required && !given(a.name)) {
            let d = self.diags.len();
            self.diags.push(Diagnostic::at(
                file,
                file.key_pos(at),
                format!("action `{}` needs the argument `{}`", schema.name, spec.name),
            ));
            self.hint(d, Some(format!("`{}`: {}", spec.name, spec.description)));
        }
    }

    /// A job's action: a known action a job may run, its arguments literal and of the right kind.
    fn job_action(&mut self, raw: &RawJobAction, file: &SourceFile) -> Option<(String, serde_json::Value)> {
        let Some(schema) = self.actions.iter().find(|a| a.name == raw.name) else {
            let d = self.error(file, "action.name", format!("unknown action `{}`", raw.name));
            self.hint(d, Some(suggestion_or_list(&raw.name, self.actions.iter().map(|a| a.name))));
            return None;
        };
        if !runs_in_a_job(&raw.name) {
            let d = self.error(file, "action.name", format!("`{}` cannot run from a schedule", raw.name));
            self.hint(d, Some("AI actions need an admin to read their result; run them in a flow".into()));
            return None;
        }
        let mut args = serde_json::Map::new();
        let before = self.diags.len();
        for (key, value) in &raw.args {
            let name = key.as_str().unwrap_or("?").to_string();
            let path = format!("action.with.{name}");
            let Some(spec) = self.known_arg(schema, file, &path, &name) else { continue };
            let value = serde_json::to_value(value).unwrap_or_default();
            if value.as_str().is_some_and(|s| s.contains("{{") || s.contains("{%")) {
                self.error(
                    file,
                    &path,
                    "a job's arguments are plain values (a job has no slots to fill templates from)",
                );
            } else if !spec.kind.accepts(&value) {
                self.error(file, &path, format!("argument `{name}` of `{}` must be {}", schema.name, spec.kind.name()));
            }
            args.insert(name, value);
        }
        self.required_args(schema, file, "action.name", |name| args.contains_key(name));
        (self.diags.len() == before).then(|| (raw.name.clone(), serde_json::Value::Object(args)))
    }

    fn action(
        &mut self,
        raw: &RawAction,
        ctx: &StepCtx<'_>,
        base_name: &str,
        facts: &mut StepFacts,
    ) -> Option<ActionCall> {
        let file = ctx.file;
        let path = format!("{}.action", ctx.prefix);
        let Some(schema) = self.actions.iter().find(|a| a.name == raw.name) else {
            let d = self.error(file, &format!("{path}.name"), format!("unknown action `{}`", raw.name));
            self.hint(d, Some(suggestion_or_list(&raw.name, self.actions.iter().map(|a| a.name))));
            return None;
        };
        let mut args = Vec::new();
        for (key, value) in &raw.args {
            let name = key.as_str().unwrap_or("?").to_string();
            let apath = format!("{path}.with.{name}");
            let Some(spec) = self.known_arg(schema, file, &apath, &name) else { continue };
            let arg = match value {
                Yaml::String(text) => match single_expression(text) {
                    Some(expr) => {
                        if let Some(vars) = self.expression(file, &apath, &expr) {
                            facts.reads.extend(vars.into_iter().map(|v| (v, apath.clone())));
                        }
                        ArgValue::Expression(expr)
                    }
                    None if literal_text(text).is_none() => {
                        let name = self
                            .inline_template(file, &apath, format!("{base_name}/arg/{name}"), text)
                            .unwrap_or_default();
                        for var in self.template_vars(&name) {
                            facts.reads.push((var, apath.clone()));
                        }
                        ArgValue::Template(name)
                    }
                    None => {
                        if name == "format" && !self.format_ids.contains(text) {
                            let d = self.error(file, &apath, format!("unknown format `{text}`"));
                            let hint = suggestion_or_list(text, self.format_ids.iter().map(String::as_str));
                            self.hint(d, Some(hint));
                        }
                        ArgValue::Literal(serde_json::Value::from(text.as_str()))
                    }
                },
                other => ArgValue::Literal(serde_json::to_value(other).unwrap_or_default()),
            };
            if let ArgValue::Literal(value) = &arg
                && !spec.kind.accepts(value)
            {
                self.error(
                    file,
                    &apath,
                    format!("argument `{name}` of `{}` must be {}", schema.name, spec.kind.name()),
                );
            }
            args.push((name, arg));
        }
        let at = if raw.args.is_empty() { format!("{path}.name") } else { format!("{path}.with") };
        self.required_args(schema, file, &at, |name| raw.args.contains_key(name));
        if let Some(slot) = &raw.save_as {
            self.check_slot_target(ctx, &format!("{path}.save_as"), slot, None);
            facts.saves.push(slot.clone());
        }
        if let Some(target) = &raw.on_error {
            self.check_step_ref(ctx, &format!("{path}.on_error"), target);
            facts.edges.push((target.clone(), vec!["error".into()], format!("{path}.on_error")));
        }
        if schema.name == crate::engine::BUILTIN_SESSION_CLEAR {
            // Only a literal `keep:` list is known; anything else may clear every slot.
            let keep = raw
                .args
                .get("keep")
                .and_then(Yaml::as_sequence)
                .map(|items| items.iter().filter_map(Yaml::as_str).map(str::to_string).collect::<Vec<_>>());
            facts.clears = Some(keep.unwrap_or_default());
        }
        Some(ActionCall { name: raw.name.clone(), args, save_as: raw.save_as.clone(), on_error: raw.on_error.clone() })
    }

    fn next(&mut self, value: &Yaml, ctx: &StepCtx<'_>, facts: &mut StepFacts) -> Vec<Branch> {
        let file = ctx.file;
        let path = format!("{}.next", ctx.prefix);
        let mut branches = Vec::new();
        match value {
            Yaml::String(target) => {
                self.check_step_ref(ctx, &path, target);
                branches.push(Branch { condition: None, goto: target.clone() });
            }
            Yaml::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let bpath = format!("{path}.{i}");
                    let Some(map) = item.as_mapping() else {
                        self.error(file, &bpath, "a `next` branch is `{ if: <condition>, goto: <step> }`");
                        continue;
                    };
                    for key in map.keys().filter_map(Yaml::as_str).filter(|k| !["if", "goto"].contains(k)) {
                        let d = self.diags.len();
                        self.diags.push(Diagnostic::at(
                            file,
                            file.key_pos(&format!("{bpath}.{key}")),
                            format!("unknown key `{key}` in a `next` branch"),
                        ));
                        self.hint(d, did_you_mean(key, ["if", "goto"]));
                    }
                    let Some(goto) = map.get("goto").and_then(Yaml::as_str) else {
                        self.error(file, &bpath, "a `next` branch needs `goto:`");
                        continue;
                    };
                    self.check_step_ref(ctx, &format!("{bpath}.goto"), goto);
                    let condition = map.get("if").map(yaml_expression);
                    if let Some(cond) = &condition
                        && let Some(vars) = self.expression(file, &format!("{bpath}.if"), cond)
                    {
                        facts.late_reads.extend(vars.into_iter().map(|v| (v, format!("{bpath}.if"))));
                    }
                    branches.push(Branch { condition, goto: goto.to_string() });
                }
                if branches.last().is_some_and(|b| b.condition.is_some()) {
                    let d =
                        self.error(file, &path, "the last `next` branch has a condition, so the flow could stop here");
                    self.hint(d, Some("end the list with a branch without `if:`".to_string()));
                }
            }
            _ => {
                self.error(file, &path, "`next` is a step name or a list of `{ if, goto }` branches");
            }
        }
        for branch in &branches {
            facts.edges.push((branch.goto.clone(), Vec::new(), path.clone()));
        }
        branches
    }

    fn check_step_ref(&mut self, ctx: &StepCtx<'_>, path: &str, target: &str) {
        if !ctx.steps.iter().any(|s| s == target) {
            let d = self.error(ctx.file, path, format!("step `{target}` does not exist in flow `{}`", ctx.flow));
            self.hint(d, Some(suggestion_or_list(target, ctx.steps.iter().map(String::as_str))));
        }
    }

    fn check_flow_ref(&mut self, ctx: &StepCtx<'_>, path: &str, flow: &str) {
        if !ctx.flows.contains(flow) {
            let d = self.error(ctx.file, path, format!("flow `{flow}` does not exist"));
            self.hint(d, Some(suggestion_or_list(flow, ctx.flows.iter().map(String::as_str))));
        }
    }

    fn check_slot_target(&mut self, ctx: &StepCtx<'_>, path: &str, slot: &str, kinds: Option<&[SlotKind]>) {
        match ctx.slots.get(slot) {
            None => {
                let d = self.error(ctx.file, path, format!("slot `{slot}` is not declared in flow `{}`", ctx.flow));
                let hint = did_you_mean(slot, ctx.slots.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("declare it under `slots:`, e.g. `{slot}: text`"));
                self.hint(d, Some(hint));
            }
            Some(decl) => {
                if let Some(kinds) = kinds
                    && !kinds.contains(&decl.kind)
                {
                    let names: Vec<String> = kinds.iter().map(|k| format!("{k:?}").to_lowercase()).collect();
                    self.error(
                        ctx.file,
                        path,
                        format!("slot `{slot}` is `{:?}` but this input gives {}", decl.kind, names.join(" or "))
                            .to_lowercase(),
                    );
                }
            }
        }
    }

    /// Flow-level checks: reachability, a way to end, and slots read before they are set.
    fn check_graph(
        &mut self,
        raw: &RawFlow,
        file: &SourceFile,
        start: &str,
        facts: &BTreeMap<String, StepFacts>,
        slots: &BTreeMap<String, SlotDecl>,
        is_callee: bool,
    ) {
        // Reachability. The notice flow is entered at each of its notice steps, with its slots
        // set by the publisher.
        let notice = raw.id == NOTICE_FLOW;
        let is_callee = is_callee || notice;
        let mut roots = vec![start.to_string()];
        if notice {
            roots.extend(NOTICE_STEPS.iter().map(|s| s.to_string()).filter(|s| facts.contains_key(s)));
        }
        let mut reached = BTreeSet::new();
        let mut queue = roots.clone();
        while let Some(id) = queue.pop() {
            if !reached.insert(id.clone()) {
                continue;
            }
            if let Some(f) = facts.get(&id) {
                queue.extend(f.edges.iter().map(|(to, _, _)| to.clone()).filter(|to| to != "<end>"));
            }
        }
        for id in facts.keys().filter(|id| !reached.contains(*id)) {
            let d = self.diags.len();
            self.diags.push(Diagnostic::at(
                file,
                file.key_pos(&format!("steps.{id}")),
                format!("step `{id}` can never be reached"),
            ));
            self.hint(d, Some(format!("no `next`, `goto` or `on_error` leads to it from `{}`", roots.join("`, `"))));
        }
        let ends =
            reached.iter().any(|id| facts.get(id).is_some_and(|f| f.edges.iter().any(|(to, _, _)| to == "<end>")));
        if !ends {
            let d = self.error(file, "id", format!("flow `{}` has no way to end", raw.id));
            self.hint(d, Some("add a step with `end: true`, or a button with `end: true`".to_string()));
        }

        // Definite assignment: IN[start] = slots with defaults (callees: every slot).
        let all: BTreeSet<String> = slots.keys().cloned().collect();
        let initial: BTreeSet<String> = if is_callee {
            all.clone()
        } else {
            slots.iter().filter(|(_, d)| d.default.is_some()).map(|(n, _)| n.clone()).collect()
        };
        let mut inn: BTreeMap<&str, BTreeSet<String>> = facts.keys().map(|k| (k.as_str(), all.clone())).collect();
        for root in &roots {
            inn.insert(root.as_str(), initial.clone());
        }
        let mut changed = true;
        while changed {
            changed = false;
            for (id, f) in facts {
                if !reached.contains(id) {
                    continue;
                }
                let mut out: BTreeSet<String> = inn.get(id.as_str()).cloned().unwrap_or_default();
                out.extend(f.sets.iter().cloned());
                for (to, assigned, path) in &f.edges {
                    if to == "<end>" {
                        continue;
                    }
                    let mut edge_out = out.clone();
                    edge_out.extend(assigned.iter().cloned());
                    if path.ends_with(".next") || path.contains(".next.") {
                        edge_out.extend(f.saves.iter().cloned());
                        if let Some(keep) = &f.clears {
                            edge_out.retain(|slot| keep.contains(slot));
                        }
                    }
                    if let Some(target) = inn.get_mut(to.as_str()) {
                        let met: BTreeSet<String> = if roots.contains(to) {
                            target
                                .intersection(&edge_out)
                                .cloned()
                                .collect::<BTreeSet<_>>()
                                .intersection(&initial)
                                .cloned()
                                .collect()
                        } else {
                            target.intersection(&edge_out).cloned().collect()
                        };
                        if met != *target {
                            *target = met;
                            changed = true;
                        }
                    }
                }
            }
        }
        let globals: HashSet<&str> =
            GLOBALS.iter().copied().chain(["formats_by_id", "loop", "range", "namespace", "dict", "debug"]).collect();
        let mut reported = BTreeSet::new();
        for (id, f) in facts {
            if !reached.contains(id) {
                continue;
            }
            let mut known: BTreeSet<String> = inn.get(id.as_str()).cloned().unwrap_or_default();
            known.extend(f.sets.iter().cloned());
            let mut late_known = known.clone();
            late_known.extend(f.saves.iter().cloned());
            let reads = f.reads.iter().map(|r| (r, &known)).chain(f.late_reads.iter().map(|r| (r, &late_known)));
            for ((name, path), known) in reads {
                if globals.contains(name.as_str())
                    || known.contains(name)
                    || !reported.insert((id.clone(), name.clone()))
                {
                    continue;
                }
                if !slots.contains_key(name) {
                    let d = self.error(file, path, format!("`{name}` is not a slot of flow `{}`", raw.id));
                    let candidates: Vec<&str> =
                        slots.keys().map(String::as_str).chain(GLOBALS.iter().copied()).collect();
                    let hint = did_you_mean(name, candidates)
                        .unwrap_or_else(|| format!("declare it under `slots:`, e.g. `{name}: text`"));
                    self.hint(d, Some(hint));
                } else {
                    let d = self.error(
                        file,
                        path,
                        format!("slot `{name}` is read in step `{id}` before any step could have set it"),
                    );
                    self.hint(d, Some("set it on every path that leads here, or give it a `default:`".to_string()));
                }
            }
        }
    }
}

/// What a step's checks need to know about its surroundings.
struct StepCtx<'a> {
    flow: &'a str,
    step: &'a str,
    prefix: &'a str,
    file: &'a SourceFile,
    slots: &'a BTreeMap<String, SlotDecl>,
    steps: &'a [String],
    flows: &'a BTreeSet<String>,
    /// Slots each flow declares: a `call` is taken to set the callee's slots.
    flow_slots: &'a BTreeMap<String, Vec<String>>,
    templates: &'a BTreeSet<String>,
}

/// A YAML scalar used as an expression: strings as written, other scalars as literals.
fn yaml_expression(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => single_expression(s).unwrap_or_else(|| s.clone()),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => "none".to_string(),
        other => serde_json::to_string(&serde_json::to_value(other).unwrap_or_default()).unwrap_or_default(),
    }
}

/// `"{{ expr }}"` → `expr` when the string is exactly one expression.
fn single_expression(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim().to_string())
}

/// Turns a serde error (with its path) into a positioned diagnostic.
fn serde_diagnostic(file: &SourceFile, path: &str, message: &str) -> Diagnostic {
    let message = message.split(" at line ").next().unwrap_or(message);
    let quoted = |text: &str| -> Vec<String> { text.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = quoted(rest);
        let field = names.first().cloned().unwrap_or_default();
        let expected: Vec<&str> = names.iter().skip(1).map(String::as_str).collect();
        let hint = did_you_mean(&field, expected.iter().copied()).or_else(|| {
            (!expected.is_empty()).then(|| {
                let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
                format!("expected one of {}", list.join(", "))
            })
        });
        // serde_path_to_error's path ends with the unknown field itself.
        let parent = path.strip_suffix(field.as_str()).map(|p| p.trim_end_matches('.')).unwrap_or(path);
        let key_path = join(parent, &field);
        let where_ = if parent.is_empty() { String::new() } else { format!(" in `{parent}`") };
        return Diagnostic::at(file, file.key_pos(&key_path), format!("unknown key `{field}`{where_}"))
            .with_hint_opt(hint);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = quoted(rest).first().cloned().unwrap_or_default();
        let where_ = if path.is_empty() { String::new() } else { format!(" in `{path}`") };
        return Diagnostic::at(file, file.key_pos(path), format!("missing key `{field}`{where_}"));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
        let name = path.rsplit('.').next().unwrap_or(path);
        return Diagnostic::at(
            file,
            file.value_pos(path),
            format!("`{name}` has the wrong type: found {found}, expected {expected}"),
        );
    }
    Diagnostic::at(file, file.value_pos(path), message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text kept out of minijinja must read exactly as minijinja would render it.
    #[test]
    fn literal_texts_render_as_their_templates_would() {
        let env = new_environment();
        let texts = [
            "naïve café — 20 €",
            "line one\nline two\n",
            "ends in two newlines\n\n",
            "windows\r\n",
            "a bare return\r",
            "newline, then return\n\r",
            "100% off } and { and }} and %} and #}",
            "<b>bold</b> & <i>italic</i>\n",
            "  spaced  \n",
            "",
        ];
        for text in texts {
            let expected = env.render_str(text, ()).unwrap();
            assert_eq!(literal_text(text).as_deref(), Some(expected.as_str()), "{text:?}");
        }
        for template in ["Hi {{ name }}", "{% if x %}y{% endif %}", "a {# note #} b"] {
            assert_eq!(literal_text(template), None, "{template:?}");
        }
    }
}
