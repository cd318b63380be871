//! The compiled configuration: checked, immutable and ready for the engine.

use std::collections::BTreeMap;

use minijinja::Environment;
use regex::Regex;
use serde::Serialize;

/// Everything the engine needs, compiled from `flows/`, `formats/` and `prompts/`.
pub struct Bundle {
    pub flows: BTreeMap<String, Flow>,
    pub menu: Menu,
    pub formats: Vec<Format>,
    /// Every template: files under `prompts/` by name, inline `say:` texts and menu texts. Each
    /// compiles when first rendered; render inline texts with `engine::render::render`, which
    /// also knows [`Bundle::literal_texts`].
    pub templates: Environment<'static>,
    /// Inline texts without template syntax (most button labels and menu texts), by template
    /// name, as they render: they need no compiled template, which would hold about 12 KiB each.
    pub literal_texts: std::collections::HashMap<String, String>,
    /// Number of templates loaded from `prompts/`.
    pub prompt_files: usize,
    pub timezone: chrono_tz::Tz,
    /// A stable hash of every source file; buttons rendered under another fingerprint are outdated.
    pub fingerprint: u64,
    /// Recurring jobs (`kind: schedule` files), by id.
    pub jobs: Vec<Job>,
    /// Analytics reports (`kind: pipeline` files), in file order.
    pub pipelines: Vec<super::pipeline::Pipeline>,
}

/// The names of a post's statuses, as pipelines and flows write them.
pub const POST_STATUSES: [&str; 7] =
    ["draft", "scheduled", "publishing", "published", "failed", "cancelled", "deleted"];

/// A recurring job: when it fires and what it does.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    /// The file it came from, relative to the configuration directory.
    pub file: String,
    pub description: String,
    /// The expression as written.
    pub cron: String,
    pub schedule: cron::Schedule,
    pub timezone: chrono_tz::Tz,
    pub enabled: bool,
    /// An action of the catalogue with literal arguments.
    pub action: Option<(String, serde_json::Value)>,
    /// A flow shown to every admin afterwards, with the action's result in `job_result`.
    pub notify: Option<String>,
}

/// Actions a recurring job may not run: they need a conversation or a language model.
pub fn runs_in_a_job(action: &str) -> bool {
    !action.starts_with("ai.") && action != crate::engine::BUILTIN_SESSION_CLEAR
}

impl Bundle {
    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.get(id)
    }

    pub fn step(&self, flow: &str, step: &str) -> Option<&Step> {
        self.flows.get(flow).and_then(|f| f.steps.get(step))
    }

    pub fn format(&self, id: &str) -> Option<&Format> {
        self.formats.iter().find(|f| f.id == id)
    }

    /// One-line summary such as "3 flows, 2 jobs, 7 pipelines, 4 formats, 17 templates".
    pub fn summary(&self) -> String {
        format!(
            "{} flows, {} jobs, {} pipelines, {} formats, {} templates",
            self.flows.len(),
            self.jobs.len(),
            self.pipelines.len(),
            self.formats.len(),
            self.prompt_files
        )
    }
}

/// A conversation: a set of steps starting at `start`.
pub struct Flow {
    pub id: String,
    pub title: Option<String>,
    pub start: String,
    pub slots: BTreeMap<String, SlotDecl>,
    pub steps: BTreeMap<String, Step>,
}

/// A declared session slot.
#[derive(Debug, Clone)]
pub struct SlotDecl {
    pub kind: SlotKind,
    pub default: Option<serde_json::Value>,
}

/// The type of a slot; values saved into it are checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Text,
    Html,
    Number,
    Bool,
    Date,
    Time,
    Media,
    List,
    Any,
}

impl SlotKind {
    pub const ALL: [SlotKind; 9] = [
        SlotKind::Text,
        SlotKind::Html,
        SlotKind::Number,
        SlotKind::Bool,
        SlotKind::Date,
        SlotKind::Time,
        SlotKind::Media,
        SlotKind::List,
        SlotKind::Any,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SlotKind::Text => "text",
            SlotKind::Html => "html",
            SlotKind::Number => "number",
            SlotKind::Bool => "bool",
            SlotKind::Date => "date",
            SlotKind::Time => "time",
            SlotKind::Media => "media",
            SlotKind::List => "list",
            SlotKind::Any => "any",
        }
    }

    /// Whether a literal value (a `default:`) fits the type; `null` always does.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self, value) {
            (_, J::Null) | (SlotKind::Any, _) => true,
            (SlotKind::Text | SlotKind::Html, J::String(_)) => true,
            (SlotKind::Number, J::Number(_)) => true,
            (SlotKind::Bool, J::Bool(_)) => true,
            (SlotKind::Date, J::String(s)) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            (SlotKind::Time, J::String(s)) => chrono::NaiveTime::parse_from_str(s, "%H:%M").is_ok(),
            (SlotKind::Media, J::Object(m)) => m.contains_key("kind") && m.contains_key("file_id"),
            (SlotKind::List, J::Array(_)) => true,
            _ => false,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One step of a flow. What it does on entry, in order: `set`, `action` (then wait for its
/// result) or the message (`say`/`template` with `media`, keyboard, input) and then wait, or
/// `call`, `end`, `next`.
pub struct Step {
    pub id: String,
    /// Name of the template in [`Bundle::templates`] (or [`Bundle::literal_texts`]) that renders
    /// the message.
    pub say: Option<String>,
    pub media_slot: Option<String>,
    /// An expression giving a post to show as the channel would, before the step's message.
    pub post: Option<String>,
    pub edit: bool,
    pub menu: bool,
    pub set: Vec<(String, String)>,
    pub buttons: Vec<Button>,
    pub columns: u8,
    pub list: Option<ListSpec>,
    pub input: Option<Input>,
    pub action: Option<ActionCall>,
    pub next: Vec<Branch>,
    pub call: Option<String>,
    pub end: bool,
}

impl Step {
    /// Whether entering this step stops and waits for the user.
    pub fn waits_for_user(&self) -> bool {
        self.input.is_some() || !self.buttons.is_empty() || self.list.is_some()
    }
}

/// A static inline button.
pub struct Button {
    /// Template name of the label.
    pub label: String,
    /// The label itself when it has no template syntax (no rendering needed).
    pub plain_label: Option<String>,
    pub target: Target,
    pub set: Vec<(String, String)>,
    pub condition: Option<String>,
    pub toast: Option<String>,
}

/// Where a button leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Goto(String),
    Call(String),
    End,
    /// Stay on the step (used by buttons that only `set` slots and re-render).
    Stay,
}

/// Buttons generated from a list expression.
pub struct ListSpec {
    pub items: String,
    /// Template name for a button label; `item` is the element.
    pub label: String,
    pub value: Option<String>,
    pub save_as: Option<String>,
    pub columns: u8,
    pub page_size: usize,
    pub empty: Option<String>,
}

/// An input the step waits for.
pub struct Input {
    pub kind: InputKind,
    pub save_as: Option<String>,
    /// Template name of a custom error message for this input.
    pub error: Option<String>,
    /// The skip button: `Some(None)` uses the menu's `skip` text.
    pub skip: Option<Option<String>>,
}

/// Kinds of input and their checks.
pub enum InputKind {
    Text {
        min_length: Option<u32>,
        max_length: Option<u32>,
        pattern: Option<Regex>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    Media(Vec<MediaKind>),
    Date {
        allow_past: bool,
    },
    Time {
        minute_step: u32,
        first_hour: u32,
        last_hour: u32,
        date_slot: Option<String>,
    },
    Choice(Vec<ChoiceOption>),
    /// A call-to-action button typed as `label - https://…`: saved as `{label, url}`.
    Button,
    /// A web address (http, https or t.me): saved as text.
    Url,
}

impl InputKind {
    pub fn slot_kinds(&self) -> &'static [SlotKind] {
        match self {
            InputKind::Text { .. } => &[SlotKind::Text, SlotKind::Html, SlotKind::Any],
            InputKind::Number { .. } => &[SlotKind::Number, SlotKind::Any],
            InputKind::Media(_) => &[SlotKind::Media, SlotKind::Any],
            InputKind::Date { .. } => &[SlotKind::Date, SlotKind::Any],
            InputKind::Time { .. } => &[SlotKind::Time, SlotKind::Any],
            InputKind::Choice(_) => &[SlotKind::Text, SlotKind::Number, SlotKind::Bool, SlotKind::Any],
            InputKind::Button => &[SlotKind::Any],
            InputKind::Url => &[SlotKind::Text, SlotKind::Any],
        }
    }
}

/// A kind of media Telegram delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Photo,
    Video,
    Animation,
    Document,
}

impl MediaKind {
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Animation => "animation",
            MediaKind::Document => "document",
        }
    }
}

/// One option of a choice input.
pub struct ChoiceOption {
    pub label: String,
    pub value: serde_json::Value,
}

/// A call of a registered action.
pub struct ActionCall {
    pub name: String,
    pub args: Vec<(String, ArgValue)>,
    pub save_as: Option<String>,
    pub on_error: Option<String>,
}

/// An action argument: a literal, or a string rendered as a template. A string that is
/// exactly one `{{ expression }}` keeps the expression's type.
#[derive(Debug, Clone)]
pub enum ArgValue {
    Literal(serde_json::Value),
    Expression(String),
    Template(String),
}

/// One branch of a conditional `next`.
#[derive(Debug, Clone)]
pub struct Branch {
    pub condition: Option<String>,
    pub goto: String,
}

/// Global texts, the main menu, commands and widget words.
pub struct Menu {
    pub start_flow: String,
    /// Text key → template name (`text:<key>`).
    pub texts: BTreeMap<String, String>,
    pub months: Vec<String>,
    pub weekdays: Vec<String>,
    pub reply_keyboard: Vec<Vec<MenuButton>>,
    pub commands: Vec<Command>,
    /// Widget labels from `texts`, rendered once at compile time.
    pub widget_labels: WidgetLabels,
}

/// Labels the calendar, time picker and pager show.
#[derive(Debug, Clone, Default)]
pub struct WidgetLabels {
    pub prev: String,
    pub next: String,
    pub back: String,
    pub today_marker: String,
    pub skip: String,
}

/// A main-menu button.
pub struct MenuButton {
    pub label: String,
    pub flow: String,
}

/// A bot command.
pub struct Command {
    pub name: String,
    pub description: String,
    pub target: CommandTarget,
    pub listed: bool,
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandTarget {
    Flow(String),
    Cancel,
}

/// A post format.
#[derive(Debug, Clone, Serialize)]
pub struct Format {
    pub id: String,
    pub names: FormatNames,
    pub description: Option<String>,
    pub audience: Option<String>,
    pub tone: Option<String>,
    pub structure: Vec<String>,
    pub emoji: Vec<String>,
    pub cta: Vec<String>,
    pub min_words: u32,
    pub max_words: u32,
    /// The longest post of this format, in Telegram's units (at most 4096).
    pub max_chars: u32,
    pub hashtags: Vec<String>,
    pub ai: FormatAi,
    pub prompts: FormatPrompts,
}

/// Model settings of a format.
#[derive(Debug, Clone, Serialize)]
pub struct FormatAi {
    pub temperature: f32,
    pub max_tokens: u32,
}

/// Names of a format in Armenian, Russian and English.
#[derive(Debug, Clone, Serialize)]
pub struct FormatNames {
    pub hy: String,
    pub ru: String,
    pub en: String,
}

/// Template names a format uses.
#[derive(Debug, Clone, Serialize)]
pub struct FormatPrompts {
    pub system: String,
    pub generate: String,
    pub offline: String,
    pub improve: String,
    pub translate: String,
    pub analyze: String,
    pub shorten: String,
    pub suggest_cta: String,
    pub offline_analyze: String,
}

impl FormatPrompts {
    /// Every template with its key under `prompts:`.
    pub fn named(&self) -> [(&'static str, &str); 9] {
        [
            ("prompts.system", self.system.as_str()),
            ("prompts.generate", self.generate.as_str()),
            ("prompts.offline", self.offline.as_str()),
            ("prompts.improve", self.improve.as_str()),
            ("prompts.translate", self.translate.as_str()),
            ("prompts.analyze", self.analyze.as_str()),
            ("prompts.shorten", self.shorten.as_str()),
            ("prompts.suggest_cta", self.suggest_cta.as_str()),
            ("prompts.offline_analyze", self.offline_analyze.as_str()),
        ]
    }
}

/// Why an action can fail. The menu file words each one as the text `error_<code>`; the engine
/// puts those words in the `error` slot and logs the technical detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionErrorCode {
    NotFound,
    NotADraft,
    EmptyText,
    NoKeywords,
    UnknownFormat,
    BadInput,
    StoreFailed,
    GenerationFailed,
    Unavailable,
    AiTimeout,
    AiRateLimited,
    AiUnavailable,
    AiMisconfigured,
    AiRefused,
    AiTruncated,
    AiEmpty,
    AiBadAnswer,
    AiOffline,
    PastTime,
    WrongStatus,
    BadButton,
    TooOld,
    NoFit,
}

impl ActionErrorCode {
    pub const ALL: [ActionErrorCode; 23] = [
        ActionErrorCode::NotFound,
        ActionErrorCode::NotADraft,
        ActionErrorCode::EmptyText,
        ActionErrorCode::NoKeywords,
        ActionErrorCode::UnknownFormat,
        ActionErrorCode::BadInput,
        ActionErrorCode::StoreFailed,
        ActionErrorCode::GenerationFailed,
        ActionErrorCode::Unavailable,
        ActionErrorCode::AiTimeout,
        ActionErrorCode::AiRateLimited,
        ActionErrorCode::AiUnavailable,
        ActionErrorCode::AiMisconfigured,
        ActionErrorCode::AiRefused,
        ActionErrorCode::AiTruncated,
        ActionErrorCode::AiEmpty,
        ActionErrorCode::AiBadAnswer,
        ActionErrorCode::AiOffline,
        ActionErrorCode::PastTime,
        ActionErrorCode::WrongStatus,
        ActionErrorCode::BadButton,
        ActionErrorCode::TooOld,
        ActionErrorCode::NoFit,
    ];

    /// The code as it travels in events and the action log.
    pub fn code(self) -> &'static str {
        match self {
            ActionErrorCode::NotFound => "not_found",
            ActionErrorCode::NotADraft => "not_a_draft",
            ActionErrorCode::EmptyText => "empty_text",
            ActionErrorCode::NoKeywords => "no_keywords",
            ActionErrorCode::UnknownFormat => "unknown_format",
            ActionErrorCode::BadInput => "bad_input",
            ActionErrorCode::StoreFailed => "store_failed",
            ActionErrorCode::GenerationFailed => "generation_failed",
            ActionErrorCode::Unavailable => "unavailable",
            ActionErrorCode::AiTimeout => "ai_timeout",
            ActionErrorCode::AiRateLimited => "ai_rate_limited",
            ActionErrorCode::AiUnavailable => "ai_unavailable",
            ActionErrorCode::AiMisconfigured => "ai_misconfigured",
            ActionErrorCode::AiRefused => "ai_refused",
            ActionErrorCode::AiTruncated => "ai_truncated",
            ActionErrorCode::AiEmpty => "ai_empty",
            ActionErrorCode::AiBadAnswer => "ai_bad_answer",
            ActionErrorCode::AiOffline => "ai_offline",
            ActionErrorCode::PastTime => "past_time",
            ActionErrorCode::WrongStatus => "wrong_status",
            ActionErrorCode::BadButton => "bad_button",
            ActionErrorCode::TooOld => "too_old",
            ActionErrorCode::NoFit => "no_fit",
        }
    }

    /// What the menu text for this code is shown for.
    fn purpose(self) -> &'static str {
        match self {
            ActionErrorCode::NotFound => "the post an action needs does not exist (any more)",
            ActionErrorCode::NotADraft => "only posts that never reached the channel can be deleted",
            ActionErrorCode::EmptyText => "a post text is empty",
            ActionErrorCode::NoKeywords => "the AI got no keywords",
            ActionErrorCode::UnknownFormat => "the format does not exist",
            ActionErrorCode::BadInput => "an action got arguments it cannot use",
            ActionErrorCode::StoreFailed => "the store could not be read or written",
            ActionErrorCode::GenerationFailed => "the draft could not be generated",
            ActionErrorCode::Unavailable => "the action is not available in this version",
            ActionErrorCode::AiTimeout => "the AI model did not answer in time (after retries)",
            ActionErrorCode::AiRateLimited => "the AI server is rate-limiting us or the quota is used up",
            ActionErrorCode::AiUnavailable => "the AI server cannot be reached or keeps failing",
            ActionErrorCode::AiMisconfigured => {
                "the AI server refuses the key, the model or the request (an operator must fix it)"
            }
            ActionErrorCode::AiRefused => "the model refused or its content filter blocked the answer",
            ActionErrorCode::AiTruncated => "the answer was cut off at the token limit",
            ActionErrorCode::AiEmpty => "the model gave an empty answer",
            ActionErrorCode::AiBadAnswer => "the model's answer could not be read (e.g. malformed JSON)",
            ActionErrorCode::AiOffline => "the action needs a language model and the AI runs offline",
            ActionErrorCode::PastTime => "the publish time has already passed",
            ActionErrorCode::WrongStatus => {
                "the post's status does not allow this (e.g. it is being published or is already out)"
            }
            ActionErrorCode::BadButton => "a button's label or address is not usable",
            ActionErrorCode::TooOld => "Telegram no longer allows it: the post is older than 48 hours",
            ActionErrorCode::NoFit => {
                "the new text does not fit the published post's layout (e.g. a caption over 1024)"
            }
        }
    }
}

/// Every text key the menu file must define, with what each is for: [`REQUIRED_TEXTS`] and an
/// `error_<code>` text per [`ActionErrorCode`].
pub fn required_texts() -> Vec<(String, String)> {
    REQUIRED_TEXTS
        .iter()
        .map(|(key, purpose)| (key.to_string(), purpose.to_string()))
        .chain(
            ActionErrorCode::ALL
                .iter()
                .map(|code| (format!("error_{}", code.code()), format!("an action failed because {}", code.purpose()))),
        )
        .collect()
}

/// The flow that words what the publisher tells admins on its own; the publisher starts it at
/// one of [`NOTICE_STEPS`] with the slots `notice_post`, `notice_title` and, per step,
/// `notice_link` (published, published_many, late, edited), `notice_count` (published_many),
/// `notice_minutes` (late),
/// `notice_due` (late, missed), `notice_reason` (failed, change_failed) and `notice_parts`
/// (unsure).
pub const NOTICE_FLOW: &str = "post_notice";
/// The steps of [`NOTICE_FLOW`]: published, several published at once (the newest named),
/// published late (after a stop), failed for good, left half-sent by a crash (unsure), and held
/// because its time passed long ago (missed); a published post's text changed in the channel
/// (edited), removed from it (deleted), or a change Telegram refused (change_failed).
pub const NOTICE_STEPS: [&str; 9] =
    ["published", "published_many", "late", "failed", "unsure", "missed", "edited", "deleted", "change_failed"];
/// Actions that put posts in the publisher's queue; a config using one needs [`NOTICE_FLOW`].
pub const PUBLISHING_ACTIONS: [&str; 6] =
    ["post.publish", "post.schedule", "post.resolve", "post.repeat", "post.channel_edit", "post.channel_delete"];

/// Text keys the menu file must define, with what each is for.
pub const REQUIRED_TEXTS: &[(&str, &str)] = &[
    ("outdated", "a button of an outdated message was pressed"),
    ("busy", "the user wrote while an action (such as the AI) is still running"),
    ("invalid_button", "callback data that does not decode"),
    ("unknown_input", "the user typed something no step expects"),
    ("use_buttons", "the step expects a button press, not text"),
    ("cancelled", "the conversation was cancelled"),
    ("action_failed", "an action failed and the flow has no on_error"),
    ("internal_error", "a template or expression failed at run time"),
    ("text_too_short", "text input shorter than min_length ({{ min }})"),
    ("text_too_long", "text input longer than max_length ({{ max }})"),
    ("text_pattern", "text input does not match the pattern"),
    ("text_expected", "a text was expected"),
    ("number_invalid", "not a number"),
    ("number_range", "number outside min..max"),
    ("media_expected", "the wrong kind of message for a media input ({{ kinds }})"),
    ("date_invalid", "a date that cannot be read"),
    ("date_past", "a date in the past"),
    ("time_invalid", "a time that cannot be read"),
    ("time_past", "a time in the past"),
    ("choice_invalid", "an answer that is not one of the options"),
    ("pager_prev", "label of the pager's previous-page button"),
    ("pager_next", "label of the pager's next-page button"),
    ("skip", "default label of the skip button"),
    ("back", "label of the time picker's back button"),
    ("today_marker", "marker put around today's day number in the calendar"),
    ("list_empty", "shown when a generated list has no items"),
    ("access_denied", "the one reply to someone who is not an authorised admin"),
    ("flood_warning", "the one warning to a user who sends too many updates too fast"),
    ("unsupported_message", "a message kind no flow can use (sticker, voice, location...)"),
    ("button_label_empty", "a typed button has an address but no label"),
    ("button_label_long", "a typed button's label is longer than 64 characters"),
    ("button_url_invalid", "a typed button or link has no usable http(s) or t.me address"),
    ("album_buttons", "the short text that carries a post's buttons under an album (albums cannot carry buttons)"),
    (
        "click_link",
        "a reader came through a CTA button's deep link (`CLICK_TRACKING=deep-link`): above a button to the real address; `label` and `url` are the button's",
    ),
    ("click_link_unknown", "a deep link into the bot that names no button of ours (tampered, or its post is gone)"),
    ("report_more_rows", "under a report table cut short: `{n}` is the number of rows not shown"),
    ("config_changed", "the configuration was reloaded and the admin's step no longer exists: back to the menu"),
    ("reload_done", "answer to /reload: the new configuration serves"),
    ("reload_unchanged", "answer to /reload: the files compile to the configuration already serving"),
    (
        "reload_failed",
        "to the admins when changed configuration files are refused: `problems` counts them, `details` has the first ones",
    ),
];

/// The argument schema of a registered action, which the compiler checks `with:` against.
#[derive(Debug, Clone, Copy)]
pub struct ActionSchema {
    pub name: &'static str,
    pub description: &'static str,
    pub args: &'static [ArgSpec],
}

/// One argument of an action.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    pub name: &'static str,
    pub kind: ArgKind,
    pub required: bool,
    pub description: &'static str,
}

/// The type of an action argument; literal values in YAML are checked against it (values from
/// expressions are checked by the action when it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Text,
    Number,
    List,
    Media,
}

impl ArgKind {
    /// Whether a literal YAML value fits.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        match self {
            ArgKind::Text => value.is_string(),
            ArgKind::Number => value.is_number() || value.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok()),
            ArgKind::List => value.is_array(),
            ArgKind::Media => value.is_object() || value.is_null(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ArgKind::Text => "text",
            ArgKind::Number => "a number",
            ArgKind::List => "a list",
            ArgKind::Media => "a media value",
        }
    }
}
