//! The language-model seam: one chat request in, one answer out. Two implementations exist —
//! an OpenAI-compatible server through async-openai ([`super::openai`]) and the deterministic
//! offline generator ([`super::offline`]) — chosen once at start-up.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::config::bundle::ActionErrorCode;

/// What a request is for: the offline generator answers by purpose; a model reads the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Generate,
    Improve,
    Translate,
    Analyze,
    Shorten,
    SuggestCta,
    /// `postflow doctor`'s one-token check.
    Ping,
}

impl Purpose {
    /// The action name a purpose belongs to, as accounting records it.
    pub fn action(self) -> &'static str {
        match self {
            Purpose::Generate => "ai.generate",
            Purpose::Improve => "ai.improve",
            Purpose::Translate => "ai.translate",
            Purpose::Analyze => "ai.analyze",
            Purpose::Shorten => "ai.shorten",
            Purpose::SuggestCta => "ai.suggest_cta",
            Purpose::Ping => "doctor.ping",
        }
    }
}

/// One chat completion request, prompts already rendered.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub purpose: Purpose,
    pub system: String,
    pub user: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Ask for a JSON object (JSON mode where the server has it).
    pub json: bool,
    /// The inputs the prompts were rendered from (format, keywords, text, limit...): the
    /// offline generator works from these, a model never sees them directly.
    pub inputs: Value,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    pub text: String,
    /// The model that answered (as the server names it).
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer in time")]
    Timeout,
    #[error("the server's rate limit was hit{}", retry_note(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("the account's quota is used up: {0}")]
    QuotaExceeded(String),
    #[error("the server could not be reached or failed: {0}")]
    Unavailable(String),
    #[error("the server refused the API key: {0}")]
    Unauthorized(String),
    #[error("the server does not know the model: {0}")]
    UnknownModel(String),
    #[error("the server refused the request: {0}")]
    BadRequest(String),
    #[error("the model refused to answer: {0}")]
    Refused(String),
    #[error("the answer was cut off at the token limit")]
    Truncated,
    #[error("the answer was empty")]
    Empty,
    #[error("the answer could not be read: {0}")]
    Malformed(String),
    #[error("this needs a language model, and the AI runs offline")]
    Offline,
}

fn retry_note(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default()
}

impl LlmError {
    /// The action error code the menu words for the admin.
    pub fn code(&self) -> ActionErrorCode {
        match self {
            LlmError::Timeout => ActionErrorCode::AiTimeout,
            LlmError::RateLimited { .. } | LlmError::QuotaExceeded(_) => ActionErrorCode::AiRateLimited,
            LlmError::Unavailable(_) => ActionErrorCode::AiUnavailable,
            LlmError::Unauthorized(_) | LlmError::UnknownModel(_) | LlmError::BadRequest(_) => {
                ActionErrorCode::AiMisconfigured
            }
            LlmError::Refused(_) => ActionErrorCode::AiRefused,
            LlmError::Truncated => ActionErrorCode::AiTruncated,
            LlmError::Empty => ActionErrorCode::AiEmpty,
            LlmError::Malformed(_) => ActionErrorCode::AiBadAnswer,
            LlmError::Offline => ActionErrorCode::AiOffline,
        }
    }

    /// A short tag for accounting and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::Timeout => "timeout",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::QuotaExceeded(_) => "quota_exceeded",
            LlmError::Unavailable(_) => "unavailable",
            LlmError::Unauthorized(_) => "unauthorized",
            LlmError::UnknownModel(_) => "unknown_model",
            LlmError::BadRequest(_) => "bad_request",
            LlmError::Refused(_) => "refused",
            LlmError::Truncated => "truncated",
            LlmError::Empty => "empty",
            LlmError::Malformed(_) => "malformed",
            LlmError::Offline => "offline",
        }
    }
}

pub type LlmFuture<'a> = Pin<Box<dyn Future<Output = Result<ChatAnswer, LlmError>> + Send + 'a>>;

/// A language model.
pub trait Llm: Send + Sync {
    /// One line for logs and `doctor`: which model, where, or "offline".
    fn describe(&self) -> String;
    /// The model name requests use ("offline" for the offline generator).
    fn model(&self) -> &str;
    fn is_offline(&self) -> bool;
    /// Sends one request (retrying transient failures as the implementation sees fit).
    fn chat<'a>(&'a self, request: &'a ChatRequest) -> LlmFuture<'a>;
}
