//! The offline generator, used when no `OPENAI_API_KEY` is set: deterministic answers in the
//! same shapes a model gives, so everything downstream (sanitizing, length checks, JSON parsing)
//! runs the same way. Drafts and quality verdicts come from the formats' offline templates
//! (rendered by the AI layer into `inputs.offline_answer`), shortening cuts at a paragraph or
//! sentence, CTA suggestions are the format's own; improving and translating need a model.

use serde_json::{Value, json};

use super::llm::{ChatAnswer, ChatRequest, Llm, LlmError, LlmFuture, Purpose};
use super::output;

/// The model name accounting records for offline answers.
pub const MODEL: &str = "offline";

/// The deterministic stand-in for a model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

impl Offline {
    fn answer(&self, request: &ChatRequest) -> Result<String, LlmError> {
        let input = |name: &str| request.inputs.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        match request.purpose {
            Purpose::Generate | Purpose::Analyze => {
                let answer = input("offline_answer");
                if answer.trim().is_empty() { Err(LlmError::Empty) } else { Ok(answer) }
            }
            Purpose::Shorten => {
                let limit = request.inputs.get("limit").and_then(Value::as_u64).unwrap_or(1024) as usize;
                Ok(output::cut_to(&input("text"), limit).html)
            }
            Purpose::SuggestCta => {
                let labels = request.inputs.pointer("/format/cta").cloned().unwrap_or(Value::Array(Vec::new()));
                Ok(json!({ "labels": labels }).to_string())
            }
            Purpose::Improve | Purpose::Translate => Err(LlmError::Offline),
            Purpose::Ping => Ok("ok".to_string()),
        }
    }
}

impl Llm for Offline {
    fn describe(&self) -> String {
        "offline (no OPENAI_API_KEY): drafts from each format's offline template".to_string()
    }

    fn model(&self) -> &str {
        MODEL
    }

    fn is_offline(&self) -> bool {
        true
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> LlmFuture<'a> {
        let answer = self.answer(request).map(|text| ChatAnswer {
            text,
            model: MODEL.to_string(),
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Box::pin(std::future::ready(answer))
    }
}
