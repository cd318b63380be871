//! Raw configuration: serde structs that mirror the YAML files exactly (`deny_unknown_fields`).
//!
//! Fields that accept several shapes stay `serde_yaml::Value` here; the compiler gives them
//! precise error messages.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// The head of any file under `flows/`: only `kind` is read first.
#[derive(Debug, Deserialize)]
pub struct RawKind {
    pub kind: String,
}

/// A `kind: flow` file. Steps are kept as values and deserialised one by one, so that a
/// mistake in one step does not hide the mistakes in the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub slots: Mapping,
    pub steps: Mapping,
}

/// One step of a flow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[serde(default)]
    pub say: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub media: Option<String>,
    /// An expression giving a post (`{text, media, buttons, options}`) to show exactly as the
    /// channel would, before the step's own message.
    #[serde(default)]
    pub post: Option<String>,
    #[serde(default)]
    pub edit: bool,
    #[serde(default)]
    pub menu: bool,
    #[serde(default)]
    pub set: Mapping,
    #[serde(default)]
    pub buttons: Vec<RawButton>,
    #[serde(default)]
    pub columns: Option<u8>,
    #[serde(default)]
    pub list: Option<RawList>,
    #[serde(default)]
    pub input: Option<RawInput>,
    #[serde(default)]
    pub action: Option<RawAction>,
    #[serde(default)]
    pub next: Option<Value>,
    #[serde(default)]
    pub call: Option<String>,
    #[serde(default)]
    pub end: bool,
}

/// A static inline button.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawButton {
    pub label: String,
    #[serde(default)]
    pub goto: Option<String>,
    #[serde(default)]
    pub call: Option<String>,
    #[serde(default)]
    pub end: bool,
    #[serde(default)]
    pub set: Mapping,
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    #[serde(default)]
    pub toast: Option<String>,
}

/// Buttons generated from a list, with a pager.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    pub items: String,
    pub label: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub save_as: Option<String>,
    #[serde(default)]
    pub columns: Option<u8>,
    #[serde(default)]
    pub page_size: Option<u16>,
    #[serde(default)]
    pub empty: Option<String>,
}

/// What the step waits for from the user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub save_as: Option<String>,
    #[serde(default)]
    pub min_length: Option<u32>,
    #[serde(default)]
    pub max_length: Option<u32>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// A skip button: its label, or `true` for the menu's `skip` text.
    #[serde(default)]
    pub skip: Option<Value>,
    #[serde(default)]
    pub options: Vec<RawOption>,
    #[serde(default)]
    pub allow_past: bool,
    #[serde(default)]
    pub minute_step: Option<u32>,
    #[serde(default)]
    pub hours: Option<Vec<u32>>,
    #[serde(default)]
    pub date_slot: Option<String>,
}

/// One option of a `choice` input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOption {
    pub label: String,
    pub value: Value,
}

/// A call of a registered action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub name: String,
    #[serde(default, rename = "with")]
    pub args: Mapping,
    #[serde(default)]
    pub save_as: Option<String>,
    #[serde(default)]
    pub on_error: Option<String>,
}

/// A `kind: schedule` file: a recurring job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The cron crate's syntax (seconds first) or the five-field crontab form.
    pub cron: String,
    /// An IANA zone such as `Asia/Yerevan`; default SCHEDULER_TIMEZONE.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The action to run (literal arguments only: a job has no conversation).
    #[serde(default)]
    pub action: Option<RawJobAction>,
    /// A flow shown to every admin after the action, as a notice (its result in `job_result`).
    #[serde(default)]
    pub notify: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// The action of a recurring job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobAction {
    pub name: String,
    #[serde(default, rename = "with")]
    pub args: Mapping,
}

/// The `kind: menu` file: global texts, the main menu, commands and the calendar's words.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMenu {
    pub kind: String,
    pub start_flow: String,
    pub texts: Mapping,
    pub locale: RawLocale,
    pub reply_keyboard: RawReplyKeyboard,
    #[serde(default)]
    pub commands: Vec<RawCommand>,
}

/// Words the widgets show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocale {
    pub months: Vec<String>,
    pub weekdays: Vec<String>,
}

/// The main menu (Telegram reply keyboard).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplyKeyboard {
    #[serde(default)]
    pub columns: Option<u8>,
    pub buttons: Vec<RawMenuButton>,
}

/// A main-menu button starts a flow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMenuButton {
    pub label: String,
    pub flow: String,
}

/// A bot command such as `/start`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    pub command: String,
    pub description: String,
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub cancel: bool,
    #[serde(default = "default_true")]
    pub listed: bool,
}

fn default_true() -> bool {
    true
}

/// A post format under `formats/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    pub id: String,
    pub names: RawNames,
    #[serde(default)]
    pub description: Option<String>,
    /// Who the posts are for, in the prompt's words.
    #[serde(default)]
    pub audience: Option<String>,
    /// How the posts sound.
    #[serde(default)]
    pub tone: Option<String>,
    /// The parts of a post, in order.
    #[serde(default)]
    pub structure: Vec<String>,
    pub emoji: Vec<String>,
    pub cta: Vec<String>,
    pub length: RawLength,
    #[serde(default)]
    pub hashtags: Vec<String>,
    #[serde(default)]
    pub ai: RawFormatAi,
    pub prompts: RawFormatPrompts,
}

/// Model settings of a format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormatAi {
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// A name in the three languages the shop uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNames {
    pub hy: String,
    pub ru: String,
    pub en: String,
}

/// Target post length in words, and the most characters a post of the format may have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLength {
    pub min_words: u32,
    pub max_words: u32,
    #[serde(default)]
    pub max_chars: Option<u32>,
}

/// Templates a format uses, by name (path under `prompts/` without `.j2`). The shared ones
/// default to `ai/<task>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormatPrompts {
    pub system: String,
    pub generate: String,
    pub offline: String,
    #[serde(default)]
    pub improve: Option<String>,
    #[serde(default)]
    pub translate: Option<String>,
    #[serde(default)]
    pub analyze: Option<String>,
    #[serde(default)]
    pub shorten: Option<String>,
    #[serde(default)]
    pub suggest_cta: Option<String>,
    #[serde(default)]
    pub offline_analyze: Option<String>,
}

/// A `kind: pipeline` file: an analytics report (sources → steps → sinks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Parameters by name, in order.
    #[serde(default)]
    pub params: Mapping,
    /// The source the steps start from.
    pub source: String,
    /// Steps, kept as values and read one by one.
    #[serde(default)]
    pub steps: Vec<Value>,
    /// Column name → the header shown in files and tables.
    #[serde(default)]
    pub columns: Mapping,
    #[serde(default)]
    pub sinks: Option<RawSinks>,
}

/// One parameter of a pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub default: Option<Value>,
    /// The allowed values of a `choice` parameter.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One step of a pipeline: exactly one verb (`group_by` comes with `agg`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineStep {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub select: Option<Vec<String>>,
    #[serde(default)]
    pub derive: Option<Mapping>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub agg: Option<Mapping>,
    #[serde(default)]
    pub join: Option<RawJoin>,
    #[serde(default)]
    pub sort: Option<Vec<String>>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub pivot: Option<RawPivot>,
    #[serde(default)]
    pub rename: Option<Mapping>,
    #[serde(default)]
    pub sql: Option<String>,
}

/// A join of the current rows with a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJoin {
    pub source: String,
    pub on: Vec<String>,
    /// The source's columns, when they are named differently; default `on`.
    #[serde(default)]
    pub source_on: Option<Vec<String>>,
    #[serde(default = "left_join")]
    pub how: String,
}

fn left_join() -> String {
    "left".to_string()
}

/// A pivot: one column per value of `on`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPivot {
    pub on: String,
    pub index: Vec<String>,
    pub values: String,
    #[serde(default = "sum_aggregate")]
    pub agg: String,
}

fn sum_aggregate() -> String {
    "sum".to_string()
}

/// Where a pipeline's rows can go besides files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSinks {
    /// File formats offered for export; default csv, json and parquet.
    #[serde(default)]
    pub files: Option<Vec<String>>,
    #[serde(default)]
    pub table: Option<RawTableSink>,
    #[serde(default)]
    pub chart: Option<RawChart>,
}

/// The rows as a text table in a Telegram message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTableSink {
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// The columns shown (a message is narrow); default all.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// The rows as a PNG chart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChart {
    #[serde(rename = "type", default = "line_chart")]
    pub kind: String,
    pub x: String,
    pub y: Vec<String>,
}

fn line_chart() -> String {
    "line".to_string()
}
