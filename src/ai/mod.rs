//! Post text generation. Without `OPENAI_API_KEY` the AI runs offline: a deterministic draft
//! rendered from the format's own `offline` template and the admin's keywords.

pub mod output;

use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;

use crate::actions::ActionError;
use crate::config::Bundle;
use crate::config::bundle::ActionErrorCode;
use crate::config::fnv1a;
use crate::engine::html;

/// A generated draft.
#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    /// Telegram HTML.
    pub text: String,
    pub words: usize,
    pub offline: bool,
}

/// Splits keywords typed as "a, b; c" or on separate lines.
pub fn split_keywords(keywords: &str) -> Vec<String> {
    keywords.split([',', ';', '\n', '،']).map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

/// Renders the offline draft for `format_id`. Choices (emoji, call to action) depend only on
/// the inputs, so the same keywords always give the same draft.
pub fn offline_draft(
    bundle: &Bundle,
    format_id: &str,
    keywords: &str,
    details: Option<&str>,
) -> Result<Draft, ActionError> {
    let format = bundle
        .format(format_id)
        .ok_or_else(|| ActionError::new(ActionErrorCode::UnknownFormat, format!("format `{format_id}`")))?;
    let list = split_keywords(keywords);
    if list.is_empty() {
        return Err(ActionError::new(ActionErrorCode::NoKeywords, format!("keywords {keywords:?}")));
    }
    let seed = fnv1a([format_id, keywords, details.unwrap_or("")]) as usize;
    let pick = |items: &[String], salt: usize| -> String {
        if items.is_empty() { String::new() } else { items[(seed.wrapping_add(salt)) % items.len()].clone() }
    };
    let ctx: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::from([
        ("format", Value::from(Serde(format))),
        ("keywords", Value::from(Serde(&list))),
        ("keywords_text", Value::from(keywords.trim())),
        ("details", Value::from(details.map(str::trim).filter(|d| !d.is_empty()))),
        ("emoji", Value::from(pick(&format.emoji, 0))),
        ("emoji2", Value::from(pick(&format.emoji, 1))),
        ("cta", Value::from(pick(&format.cta, 0))),
        ("hashtags", Value::from(format.hashtags.join(" "))),
    ]);
    let template = bundle
        .templates
        .get_template(&format.prompts.offline)
        .map_err(|e| ActionError::new(ActionErrorCode::GenerationFailed, format!("{}: {e}", format.prompts.offline)))?;
    let rendered = template
        .render(Value::from(ctx))
        .map_err(|e| ActionError::new(ActionErrorCode::GenerationFailed, format!("{}: {e}", format.prompts.offline)))?;
    let text = html::sanitize(rendered.trim());
    let words = html::to_plain_text(&text, false).split_whitespace().count();
    Ok(Draft { text, words, offline: true })
}
