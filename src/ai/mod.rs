//! The AI content layer: the `ai.*` actions. Each renders its prompts from the format's Jinja
//! templates, asks the language model chosen at start-up (an OpenAI-compatible server, or the
//! offline generator without `OPENAI_API_KEY`), turns the answer into Telegram HTML that fits the
//! limit (shortening once through the model when it does not), and records one accounting entry
//! per model call.

pub mod llm;
pub mod offline;
pub mod openai;
pub mod output;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use minijinja::value::Serde;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::ActionError;
use crate::config::Bundle;
use crate::config::bundle::{ActionErrorCode, Format};
use crate::config::fnv1a;
use crate::engine::html;
use llm::{ChatAnswer, ChatRequest, Llm, LlmError, Purpose};

/// The most call-to-action suggestions offered, and the longest label kept.
const MAX_CTA_LABELS: usize = 5;
const MAX_CTA_LABEL_CHARS: usize = 64;
/// The most items kept in each list of a quality verdict, and the longest item.
const MAX_VERDICT_ITEMS: usize = 6;
const MAX_VERDICT_ITEM_CHARS: usize = 300;

/// One model call, as accounting records it (analytics reports cost from these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiCall {
    pub action: String,
    pub format: String,
    pub model: String,
    pub offline: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency_ms: u64,
    /// `ok`, or why the call failed (`timeout`, `rate_limited`, `truncated`...).
    pub outcome: String,
}

/// What an AI action produced: its result for the flow, and every model call it made.
#[derive(Debug)]
pub struct Completed {
    pub result: Result<Value, ActionError>,
    pub calls: Vec<AiCall>,
}

/// The AI actions over one language model.
pub struct Ai {
    llm: Arc<dyn Llm>,
    /// For callers outside any runtime (`chat`, `test`), made on first need.
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl Ai {
    pub fn new(llm: Arc<dyn Llm>) -> Ai {
        Ai { llm, runtime: OnceLock::new() }
    }

    /// The offline generator.
    pub fn offline() -> Ai {
        Ai::new(Arc::new(offline::Offline))
    }

    pub fn llm(&self) -> &dyn Llm {
        self.llm.as_ref()
    }

    /// Whether an action is one of ours (and so may run outside the store's turn).
    pub fn handles(action: &str) -> bool {
        action.starts_with("ai.")
    }

    /// Runs an `ai.*` action.
    pub async fn run(&self, bundle: &Bundle, name: &str, args: &Value) -> Completed {
        let mut job = Job { ai: self, bundle, calls: Vec::new() };
        let result = job.run(name, args).await;
        Completed { result, calls: job.calls }
    }

    /// Runs an `ai.*` action from code that is not async, waiting for the answer.
    pub fn run_blocking(&self, bundle: &Bundle, name: &str, args: &Value) -> Completed {
        let mut future = std::pin::pin!(self.run(bundle, name, args));
        // The offline generator answers at once and touches no I/O: no runtime needed. (A
        // network model's future must first be polled inside a runtime.)
        if self.llm.is_offline() {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(done) = future.as_mut().poll(&mut context) {
                return done;
            }
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside a runtime a nested block_on would panic: wait on a thread of its own.
            return std::thread::scope(|scope| {
                scope.spawn(|| self.blocking_runtime().block_on(future)).join().unwrap_or_else(|_| Completed {
                    result: Err(ActionError::new(ActionErrorCode::GenerationFailed, "the AI call panicked")),
                    calls: Vec::new(),
                })
            });
        }
        self.blocking_runtime().block_on(future)
    }

    fn blocking_runtime(&self) -> &tokio::runtime::Runtime {
        // Dropped without blocking (see `Drop`), so an `Ai` may be dropped anywhere.
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("postflow-ai")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot start the AI runtime: {e}"))
        })
    }
}

impl Drop for Ai {
    fn drop(&mut self) {
        // A runtime dropped the usual way blocks, which panics inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One action's work, collecting its model calls.
struct Job<'a> {
    ai: &'a Ai,
    bundle: &'a Bundle,
    calls: Vec<AiCall>,
}

impl<'a> Job<'a> {
    async fn run(&mut self, name: &str, args: &Value) -> Result<Value, ActionError> {
        let format = self.format(args)?;
        match name {
            "ai.generate" => self.generate(format, args).await,
            "ai.improve" => {
                let text = text_arg(args, "text")?;
                let instruction = opt_arg(args, "instruction");
                let inputs = json!({ "text": text, "instruction": instruction });
                self.rewrite(format, Purpose::Improve, &format.prompts.improve, inputs, limit_arg(args, format)).await
            }
            "ai.translate" => {
                let text = text_arg(args, "text")?;
                let language = language_arg(args)?;
                let inputs = json!({ "text": text, "language": language });
                let mut done = self
                    .rewrite(format, Purpose::Translate, &format.prompts.translate, inputs, limit_arg(args, format))
                    .await?;
                done["language"] = Value::from(language);
                Ok(done)
            }
            "ai.shorten" => {
                let text = text_arg(args, "text")?;
                let limit = limit_arg(args, format);
                let answer = self.shorten(format, text, limit).await?;
                Ok(self.describe_text(answer, limit, true))
            }
            "ai.analyze" => self.analyze(format, text_arg(args, "text")?).await,
            "ai.suggest_cta" => self.suggest_cta(format, text_arg(args, "text")?).await,
            other => Err(ActionError::new(ActionErrorCode::Unavailable, format!("action `{other}`"))),
        }
    }

    fn format(&self, args: &Value) -> Result<&'a Format, ActionError> {
        let id = args.get("format").and_then(Value::as_str).unwrap_or_default();
        self.bundle.format(id).ok_or_else(|| ActionError::new(ActionErrorCode::UnknownFormat, format!("format `{id}`")))
    }

    async fn generate(&mut self, format: &Format, args: &Value) -> Result<Value, ActionError> {
        let keywords_text = text_arg(args, "keywords")?;
        let keywords = split_keywords(keywords_text);
        if keywords.is_empty() {
            return Err(ActionError::new(ActionErrorCode::NoKeywords, format!("keywords {keywords_text:?}")));
        }
        let details = opt_arg(args, "details");
        let language = args.get("language").and_then(Value::as_str).filter(|l| !l.is_empty()).unwrap_or("hy");
        let limit = limit_arg(args, format);
        // Choices the offline template makes depend only on the inputs: the same keywords
        // always give the same draft.
        let seed = fnv1a([format.id.as_str(), keywords_text, details.unwrap_or("")]) as usize;
        let pick = |items: &[String], salt: usize| -> String {
            if items.is_empty() { String::new() } else { items[seed.wrapping_add(salt) % items.len()].clone() }
        };
        let inputs = json!({
            "keywords": keywords,
            "keywords_text": keywords_text.trim(),
            "details": details,
            "language": language,
            "emoji": pick(&format.emoji, 0),
            "emoji2": pick(&format.emoji, 1),
            "cta": pick(&format.cta, 0),
            "hashtags": format.hashtags.join(" "),
        });
        self.rewrite(format, Purpose::Generate, &format.prompts.generate, inputs, limit).await
    }

    /// Generate, improve and translate: ask, then make the answer sendable within `limit`.
    async fn rewrite(
        &mut self,
        format: &Format,
        purpose: Purpose,
        template: &str,
        inputs: Value,
        limit: usize,
    ) -> Result<Value, ActionError> {
        let answer = self.request(format, purpose, template, inputs, limit, false).await?;
        self.finish(format, answer, limit).await
    }

    /// Makes an answer sendable; one that is too long is shortened once through the model, and
    /// the result says whether it fits now.
    async fn finish(&mut self, format: &Format, answer: ChatAnswer, limit: usize) -> Result<Value, ActionError> {
        let sendable = output::sendable(&answer.text);
        if html::to_plain_text(&sendable.html, false).trim().is_empty() {
            return Err(ActionError::new(ActionErrorCode::AiEmpty, "nothing left after cleaning the answer"));
        }
        if sendable.fits(limit) {
            return Ok(self.describe_text(sendable, limit, false));
        }
        tracing::info!(format = %format.id, length = sendable.length, limit, "the answer is too long; shortening it once");
        let shorter = self.shorten(format, &sendable.html, limit).await?;
        Ok(self.describe_text(shorter, limit, true))
    }

    async fn shorten(&mut self, format: &Format, text: &str, limit: usize) -> Result<output::Sendable, ActionError> {
        let inputs = json!({ "text": text, "length": html::sanitized_utf16_len(&html::sanitize(text)) });
        let answer = self.request(format, Purpose::Shorten, &format.prompts.shorten, inputs, limit, false).await?;
        let sendable = output::sendable(&answer.text);
        if html::to_plain_text(&sendable.html, false).trim().is_empty() {
            return Err(ActionError::new(ActionErrorCode::AiEmpty, "nothing left after cleaning the answer"));
        }
        Ok(sendable)
    }

    fn describe_text(&self, text: output::Sendable, limit: usize, shortened: bool) -> Value {
        let words = html::to_plain_text(&text.html, false).split_whitespace().count();
        json!({
            "text": text.html,
            "length": text.length,
            "limit": limit,
            "fits": text.fits(limit),
            "shortened": shortened,
            "words": words,
            "offline": self.ai.llm.is_offline(),
            "model": self.ai.llm.model(),
        })
    }

    async fn analyze(&mut self, format: &Format, text: &str) -> Result<Value, ActionError> {
        let clean = html::sanitize(text);
        let inputs = json!({ "text": clean, "facts": facts(format, &clean) });
        let answer = self
            .request(format, Purpose::Analyze, &format.prompts.analyze, inputs, format.max_chars as usize, true)
            .await?;
        let verdict = parse_verdict(&answer.text)?;
        let whole = (verdict.score.fract() == 0.0).then_some(verdict.score as i64);
        let mut value = serde_json::to_value(verdict)?;
        // "7/10" reads better than "7.0/10".
        if let Some(whole) = whole {
            value["score"] = Value::from(whole);
        }
        value["offline"] = Value::from(self.ai.llm.is_offline());
        Ok(value)
    }

    async fn suggest_cta(&mut self, format: &Format, text: &str) -> Result<Value, ActionError> {
        let inputs = json!({ "text": html::sanitize(text) });
        let answer = self
            .request(format, Purpose::SuggestCta, &format.prompts.suggest_cta, inputs, format.max_chars as usize, true)
            .await?;
        let labels = parse_labels(&answer.text)?;
        Ok(json!({ "labels": labels, "offline": self.ai.llm.is_offline() }))
    }

    /// Renders the prompts, asks the model (for a JSON object when `json`) and records the call.
    async fn request(
        &mut self,
        format: &Format,
        purpose: Purpose,
        template: &str,
        mut inputs: Value,
        limit: usize,
        json: bool,
    ) -> Result<ChatAnswer, ActionError> {
        inputs["format"] = serde_json::to_value(format)?;
        inputs["limit"] = Value::from(limit);
        let system = render(self.bundle, &format.prompts.system, &inputs)?;
        let user = render(self.bundle, template, &inputs)?;
        if self.ai.llm.is_offline() {
            let offline_template = match purpose {
                Purpose::Generate => Some(&format.prompts.offline),
                Purpose::Analyze => Some(&format.prompts.offline_analyze),
                _ => None,
            };
            if let Some(name) = offline_template {
                inputs["offline_answer"] = Value::from(render(self.bundle, name, &inputs)?);
            }
        }
        let request = ChatRequest {
            purpose,
            system,
            user,
            temperature: Some(format.ai.temperature),
            max_tokens: Some(format.ai.max_tokens),
            json,
            inputs,
        };
        tracing::debug!(action = purpose.action(), system = %request.system, user = %request.user, "AI request");
        let started = Instant::now();
        let answer = self.ai.llm.chat(&request).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut call = AiCall {
            action: purpose.action().to_string(),
            format: format.id.clone(),
            model: self.ai.llm.model().to_string(),
            offline: self.ai.llm.is_offline(),
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_ms,
            outcome: "ok".to_string(),
        };
        let result = match answer {
            Ok(answer) => {
                tracing::debug!(action = purpose.action(), answer = %answer.text, "AI answer");
                call.model.clone_from(&answer.model);
                call.prompt_tokens = answer.prompt_tokens;
                call.completion_tokens = answer.completion_tokens;
                Ok(answer)
            }
            Err(error) => {
                call.outcome = error.outcome().to_string();
                Err(ActionError::new(error.code(), error.to_string()))
            }
        };
        tracing::info!(
            action = %call.action,
            format = %call.format,
            model = %call.model,
            prompt_tokens = call.prompt_tokens,
            completion_tokens = call.completion_tokens,
            latency_ms,
            outcome = %call.outcome,
            "AI call"
        );
        crate::telemetry::ai_request(
            &call.action,
            &call.outcome,
            call.prompt_tokens,
            call.completion_tokens,
            call.latency_ms,
        );
        self.calls.push(call);
        result
    }
}

/// Renders a prompt template with the action's inputs.
fn render(bundle: &Bundle, name: &str, inputs: &Value) -> Result<String, ActionError> {
    let failed = |e: minijinja::Error| ActionError::new(ActionErrorCode::GenerationFailed, format!("{name}: {e}"));
    let template = bundle.templates.get_template(name).map_err(failed)?;
    let text = template.render(minijinja::Value::from(Serde(inputs))).map_err(failed)?;
    Ok(text.trim().to_string())
}

/// Splits keywords typed as "a, b; c" or on separate lines.
pub fn split_keywords(keywords: &str) -> Vec<String> {
    keywords.split([',', ';', '\n', '،']).map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect()
}

fn text_arg<'v>(args: &'v Value, name: &str) -> Result<&'v str, ActionError> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| ActionError::new(ActionErrorCode::EmptyText, format!("argument `{name}` is missing or empty")))
}

fn opt_arg<'v>(args: &'v Value, name: &str) -> Option<&'v str> {
    args.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The length limit of a result: the `limit` argument (1024 for a caption, say), else the
/// format's own; never above Telegram's 4096.
fn limit_arg(args: &Value, format: &Format) -> usize {
    let given = match args.get("limit") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    given.filter(|l| *l > 0).unwrap_or(u64::from(format.max_chars)).min(4096) as usize
}

/// A language code such as `hy`, `ru` or `en` (two or three lowercase letters).
fn language_arg(args: &Value) -> Result<&str, ActionError> {
    let language = args.get("language").and_then(Value::as_str).unwrap_or_default().trim();
    if (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_lowercase()) {
        Ok(language)
    } else {
        Err(ActionError::new(ActionErrorCode::BadInput, format!("language {language:?} is not a language code")))
    }
}

/// Measurable facts about a post, for the quality prompt and the offline verdict.
fn facts(format: &Format, clean: &str) -> Value {
    let plain = html::to_plain_text(clean, false);
    let words = plain.split_whitespace().count();
    let lower = plain.to_lowercase();
    let has_cta = format.cta.iter().any(|cta| lower.contains(&cta.to_lowercase()));
    let missing_hashtags: Vec<&str> =
        format.hashtags.iter().filter(|tag| !lower.contains(&tag.to_lowercase())).map(String::as_str).collect();
    let emoji_count = format.emoji.iter().map(|e| plain.matches(e.as_str()).count()).sum::<usize>();
    let bold_title = clean.trim_start().starts_with("<b>")
        || clean.trim_start().chars().next().is_some_and(|c| !c.is_alphanumeric()) && clean.contains("<b>");
    let length = html::sanitized_utf16_len(clean);
    let in_range = (format.min_words as usize..=format.max_words as usize).contains(&words);
    let mut score: i64 = 10;
    score -= if in_range { 0 } else { 2 };
    score -= if has_cta { 0 } else { 2 };
    score -= if missing_hashtags.is_empty() { 0 } else { 1 };
    score -= if bold_title { 0 } else { 1 };
    score -= if (1..=6).contains(&emoji_count) { 0 } else { 1 };
    score -= if length <= format.max_chars as usize { 0 } else { 2 };
    json!({
        "words": words,
        "too_short": words < format.min_words as usize,
        "too_long": words > format.max_words as usize,
        "has_cta": has_cta,
        "missing_hashtags": missing_hashtags,
        "emoji_count": emoji_count,
        "bold_title": bold_title,
        "length": length,
        "over_limit": length > format.max_chars as usize,
        "score": score.clamp(0, 10),
    })
}

/// A quality verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// 0–10.
    pub score: f64,
    pub strengths: Vec<String>,
    pub problems: Vec<String>,
    pub suggestions: Vec<String>,
}

/// Reads a verdict from JSON, tolerating code fences and text around the object; a missing or
/// out-of-range score is an error, never a zero.
pub fn parse_verdict(answer: &str) -> Result<Verdict, ActionError> {
    let object = json_object(answer)?;
    let score = match object.get("score") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.split('/').next().and_then(|s| s.trim().replace(',', ".").parse::<f64>().ok()),
        _ => None,
    }
    .filter(|s| s.is_finite() && (0.0..=10.0).contains(s))
    .ok_or_else(|| bad_answer("no score from 0 to 10", answer))?;
    let list = |name: &str| -> Vec<String> {
        let items = match object.get(name) {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(one)) if !one.trim().is_empty() => vec![Value::from(one.as_str())],
            _ => Vec::new(),
        };
        items
            .iter()
            .filter_map(|item| item.as_str().map(|s| clip_to(s.trim(), MAX_VERDICT_ITEM_CHARS)))
            .filter(|s| !s.is_empty())
            .take(MAX_VERDICT_ITEMS)
            .collect()
    };
    Ok(Verdict {
        score: (score * 10.0).round() / 10.0,
        strengths: list("strengths"),
        problems: list("problems"),
        suggestions: list("suggestions"),
    })
}

/// Reads CTA labels: `{"labels": [...]}`, a bare JSON list, or one label per line.
pub fn parse_labels(answer: &str) -> Result<Vec<String>, ActionError> {
    let from_json = match json_object(answer) {
        Ok(object) => object.get("labels").or_else(|| object.get("cta")).and_then(Value::as_array).cloned(),
        Err(_) => serde_json::from_str::<Vec<Value>>(strip_fences(answer)).ok(),
    };
    let raw: Vec<String> = match from_json {
        Some(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        None => strip_fences(answer).lines().map(str::to_string).collect(),
    };
    let mut labels: Vec<String> = Vec::new();
    for label in raw {
        let label = html::to_plain_text(&html::sanitize(&label), false);
        let label = label
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*' | '•' | ' '))
            .trim_matches(|c: char| matches!(c, '"' | '«' | '»' | '“' | '”' | '\'') || c.is_whitespace());
        let label = clip_to(label, MAX_CTA_LABEL_CHARS);
        if label.chars().count() >= 2 && !labels.contains(&label) {
            labels.push(label);
        }
        if labels.len() == MAX_CTA_LABELS {
            break;
        }
    }
    if labels.is_empty() {
        return Err(bad_answer("no call-to-action labels", answer));
    }
    Ok(labels)
}

fn json_object(answer: &str) -> Result<serde_json::Map<String, Value>, ActionError> {
    let text = strip_fences(answer);
    let start = text.find('{');
    let end = text.rfind('}');
    let (Some(start), Some(end)) = (start, end) else {
        return Err(bad_answer("no JSON object", answer));
    };
    match serde_json::from_str::<Value>(text.get(start..=end).unwrap_or_default()) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) | Err(_) => Err(bad_answer("malformed JSON", answer)),
    }
}

fn strip_fences(answer: &str) -> &str {
    let text = answer.trim();
    let text = text.strip_prefix("```json").or_else(|| text.strip_prefix("```")).unwrap_or(text);
    text.strip_suffix("```").unwrap_or(text).trim()
}

/// An unreadable answer: the reason goes to the warning, the answer itself only to the debug log.
fn bad_answer(reason: &str, answer: &str) -> ActionError {
    tracing::debug!(answer, "unreadable answer: {reason}");
    ActionError::new(ActionErrorCode::AiBadAnswer, reason.to_string())
}

fn clip_to(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl From<LlmError> for ActionError {
    fn from(error: LlmError) -> Self {
        ActionError::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_read_through_fences_and_chatter() {
        let answer = "Sure!\n```json\n{\"score\": \"8/10\", \"strengths\": [\"clear\"], \"problems\": \"long\", \"suggestions\": []}\n```";
        let verdict = parse_verdict(answer).unwrap();
        assert_eq!(verdict.score, 8.0);
        assert_eq!(verdict.strengths, vec!["clear"]);
        assert_eq!(verdict.problems, vec!["long"]);
    }

    #[test]
    fn a_verdict_without_a_score_is_an_error_not_a_zero() {
        for answer in
            ["{\"strengths\": []}", "{\"score\": 12}", "{\"score\": \"n/a\"}", "no json here", "{\"score\": 5"]
        {
            let error = parse_verdict(answer).unwrap_err();
            assert_eq!(error.code, ActionErrorCode::AiBadAnswer, "{answer}");
        }
    }

    #[test]
    fn labels_come_from_json_or_lines_cleaned_and_deduplicated() {
        assert_eq!(
            parse_labels("{\"labels\": [\"Order now\", \"Order now\", \"Write to us\"]}").unwrap(),
            vec!["Order now", "Write to us"]
        );
        assert_eq!(
            parse_labels("1. «Order now»\n2) <b>Write to us</b>\n\n").unwrap(),
            vec!["Order now", "Write to us"]
        );
        assert!(parse_labels("```\n```").is_err());
    }
}
