//! The OpenAI-compatible model behind `OPENAI_API_KEY`: async-openai's chat client over our own
//! HTTP transport, which times each attempt out and retries timeouts, network errors, 429 (after
//! its Retry-After) and 5xx with bounded exponential backoff and full jitter. Answers are
//! classified: empty choices, refusals, content filtering and truncation are errors, never text.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, FinishReason, ResponseFormat,
};

use super::llm::{ChatAnswer, ChatRequest, Llm, LlmError, LlmFuture};

/// The public OpenAI API, used when `OPENAI_BASE_URL` is not set.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// How the client talks to the server.
#[derive(Clone)]
pub struct OpenAiSettings {
    pub api_key: String,
    /// `OPENAI_BASE_URL`, e.g. `http://localhost:11434/v1` for Ollama; `None` for OpenAI.
    pub base_url: Option<String>,
    pub model: String,
    /// The longest one attempt may take, answer included.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

/// Waits between attempts (tests record the waits instead of sleeping them).
pub type Sleeper = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// When and how long to retry.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The backoff before the second attempt; it doubles each time, up to `max_backoff`, and
    /// the actual wait is drawn uniformly below it (full jitter).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A Retry-After longer than this is not waited for: the request fails as rate-limited.
    pub max_retry_after: Duration,
    pub sleep: Sleeper,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            sleep: Arc::new(|delay| Box::pin(tokio::time::sleep(delay))),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) when the server named no time.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base_backoff.saturating_mul(2u32.saturating_pow(retry)).min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

/// An OpenAI-compatible chat model.
pub struct OpenAi {
    client: Client<OpenAIConfig>,
    model: String,
    base_url: String,
    /// Newer OpenAI models take `max_completion_tokens`; most compatible servers `max_tokens`.
    use_max_completion_tokens: bool,
    /// Cleared when the server refuses `response_format`; JSON is then asked for in words only.
    json_mode: AtomicBool,
}

impl OpenAi {
    pub fn new(settings: OpenAiSettings) -> Result<OpenAi, String> {
        install_crypto_provider();
        let http = openai_http::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base_url = settings.base_url.clone().unwrap_or_else(|| OPENAI_API_BASE.to_string());
        let base_url = base_url.trim_end_matches('/').to_string();
        url::Url::parse(&base_url).map_err(|e| format!("OPENAI_BASE_URL {base_url} is not a URL: {e}"))?;
        let config = OpenAIConfig::new().with_api_key(settings.api_key).with_api_base(base_url.clone());
        let transport = Transport { http, policy: Arc::new(settings.retry) };
        let client = Client::with_config(config).with_http_service(transport);
        Ok(OpenAi {
            client,
            model: settings.model,
            use_max_completion_tokens: base_url.contains("api.openai.com"),
            base_url,
            json_mode: AtomicBool::new(true),
        })
    }

    /// `doctor`'s check: the model list (is the model there?), or, where a server has no list,
    /// a one-token completion. Returns what was checked and how long it took.
    pub async fn check(&self) -> Result<String, LlmError> {
        let started = Instant::now();
        match self.client.models().list().await {
            Ok(list) => {
                let millis = started.elapsed().as_millis();
                if list.data.iter().any(|m| m.id == self.model) {
                    Ok(format!("model {} listed by the server ({millis} ms)", self.model))
                } else {
                    let mut known: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).take(8).collect();
                    known.sort_unstable();
                    Err(LlmError::UnknownModel(format!(
                        "`{}` is not among the server's models ({})",
                        self.model,
                        if known.is_empty() { "none listed".to_string() } else { known.join(", ") }
                    )))
                }
            }
            Err(OpenAIError::ApiError(e)) if e.status_code.as_u16() == 404 => {
                let ping = ChatRequest {
                    purpose: super::llm::Purpose::Ping,
                    system: "Answer with one word.".to_string(),
                    user: "ping".to_string(),
                    temperature: None,
                    max_tokens: Some(1),
                    json: false,
                    inputs: serde_json::Value::Null,
                };
                match self.complete(&ping).await {
                    Ok(_) | Err(LlmError::Truncated) => Ok(format!(
                        "one-token completion with {} ({} ms; the server lists no models)",
                        self.model,
                        started.elapsed().as_millis()
                    )),
                    Err(other) => Err(other),
                }
            }
            Err(other) => Err(classify(other)),
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatAnswer, LlmError> {
        let json = request.json && self.json_mode.load(Ordering::Relaxed);
        match self.client.chat().create(self.build(request, json)).await {
            Ok(response) => read_answer(response),
            Err(OpenAIError::ApiError(e))
                if json && e.status_code.as_u16() == 400 && e.api_error.message.contains("response_format") =>
            {
                tracing::info!("the server refuses JSON mode; asking for JSON in the prompt only from now on");
                self.json_mode.store(false, Ordering::Relaxed);
                self.client.chat().create(self.build(request, false)).await.map_err(classify).and_then(read_answer)
            }
            Err(other) => Err(classify(other)),
        }
    }

    fn build(&self, request: &ChatRequest, json: bool) -> CreateChatCompletionRequest {
        let messages = vec![
            ChatCompletionRequestMessage::from(ChatCompletionRequestSystemMessage {
                content: request.system.as_str().into(),
                name: None,
            }),
            ChatCompletionRequestMessage::from(ChatCompletionRequestUserMessage::from(request.user.as_str())),
        ];
        let (max_completion_tokens, max_tokens) =
            if self.use_max_completion_tokens { (request.max_tokens, None) } else { (None, request.max_tokens) };
        #[allow(deprecated)]
        CreateChatCompletionRequest {
            model: self.model.clone(),
            messages,
            temperature: request.temperature,
            max_completion_tokens,
            max_tokens,
            response_format: json.then_some(ResponseFormat::JsonObject),
            ..Default::default()
        }
    }
}

impl Llm for OpenAi {
    fn describe(&self) -> String {
        format!("model {} at {}", self.model, without_credentials(&self.base_url))
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn is_offline(&self) -> bool {
        false
    }

    fn chat<'a>(&'a self, request: &'a ChatRequest) -> LlmFuture<'a> {
        Box::pin(self.complete(request))
    }
}

/// A URL for logs and `doctor`: any `user:password@` part removed.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string().trim_end_matches('/').to_string()
        }
        _ => url.to_string(),
    }
}

/// The text of the first choice, or why there is none worth showing.
fn read_answer(response: async_openai::types::chat::CreateChatCompletionResponse) -> Result<ChatAnswer, LlmError> {
    let usage = response.usage.as_ref();
    let (prompt_tokens, completion_tokens) = usage.map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
    let Some(choice) = response.choices.into_iter().next() else { return Err(LlmError::Empty) };
    match choice.finish_reason {
        Some(FinishReason::Length) => return Err(LlmError::Truncated),
        Some(FinishReason::ContentFilter) => return Err(LlmError::Refused("content filter".to_string())),
        _ => {}
    }
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(LlmError::Refused(refusal));
    }
    let text = choice.message.content.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(LlmError::Empty);
    }
    Ok(ChatAnswer { text, model: response.model, prompt_tokens, completion_tokens })
}

/// What a failed call means, in the words the admin and the operator need.
fn classify(error: OpenAIError) -> LlmError {
    match error {
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout,
        OpenAIError::Reqwest(e) => LlmError::Unavailable(e.without_url().to_string()),
        OpenAIError::ApiError(e) => {
            let status = e.status_code.as_u16();
            let message = e.api_error.message.chars().take(300).collect::<String>();
            let code = e.api_error.code.as_deref().unwrap_or_default();
            let kind = e.api_error.r#type.as_deref().unwrap_or_default();
            match status {
                401 | 403 => LlmError::Unauthorized(message),
                404 => LlmError::UnknownModel(message),
                429 if code == "insufficient_quota" || kind == "insufficient_quota" => LlmError::QuotaExceeded(message),
                429 => LlmError::RateLimited { retry_after: None },
                400 if code == "content_filter" || message.contains("content management policy") => {
                    LlmError::Refused(message)
                }
                500..=599 => LlmError::Unavailable(format!("HTTP {status}")),
                _ => LlmError::BadRequest(format!("HTTP {status}: {message}")),
            }
        }
        OpenAIError::JSONDeserialize(e, _) => LlmError::Malformed(e.to_string()),
        other => LlmError::Unavailable(other.to_string()),
    }
}

/// rustls needs a process-wide crypto provider; ring is the one teloxide already uses.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race; either way a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The HTTP transport under async-openai: each attempt timed out by the client, transient
/// failures retried by [`RetryPolicy`].
#[derive(Clone)]
struct Transport {
    http: openai_http::Client,
    policy: Arc<RetryPolicy>,
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<openai_http::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = openai_http::Response;
    type Error = OpenAIError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let (http, policy) = (self.http.clone(), self.policy.clone());
        Box::pin(async move { send_with_retries(&http, &policy, &factory).await })
    }
}

async fn send_with_retries(
    http: &openai_http::Client,
    policy: &RetryPolicy,
    factory: &HttpRequestFactory,
) -> Result<openai_http::Response, OpenAIError> {
    let mut retry = 0;
    loop {
        let last = retry + 1 >= policy.attempts.max(1);
        let request = factory.build().await?;
        // The whole answer is read inside the attempt, so a body that stalls times out and is
        // retried like any other timeout.
        let attempt = match http.execute(request).await {
            Ok(response) => read_whole(response).await,
            Err(error) => Err(error),
        };
        let wait = match attempt {
            Ok(answer) if answer.status.as_u16() == 429 => {
                let retry_after = retry_after(&answer.headers);
                let quota = String::from_utf8_lossy(&answer.body).contains("insufficient_quota");
                match retry_after {
                    _ if quota || last => return Ok(answer.into_response()),
                    Some(wait) if wait > policy.max_retry_after => {
                        tracing::warn!(
                            retry_after_secs = wait.as_secs(),
                            "the AI server asks to wait too long; giving up"
                        );
                        return Ok(answer.into_response());
                    }
                    Some(wait) => wait,
                    None => policy.backoff(retry),
                }
            }
            Ok(answer) if answer.status.is_server_error() && !last => {
                tracing::warn!(status = answer.status.as_u16(), retry, "the AI server failed; retrying");
                retry_after(&answer.headers).filter(|w| *w <= policy.max_retry_after).unwrap_or(policy.backoff(retry))
            }
            Ok(answer) => return Ok(answer.into_response()),
            Err(error)
                if !last && (error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()) =>
            {
                tracing::warn!(retry, "the AI request failed ({}); retrying", error.without_url());
                policy.backoff(retry)
            }
            Err(error) => return Err(OpenAIError::Reqwest(error)),
        };
        (policy.sleep)(wait).await;
        retry += 1;
    }
}

/// An answer read in full.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

async fn read_whole(response: openai_http::Response) -> Result<Answer, openai_http::Error> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Answer { status, headers, body })
}

impl Answer {
    /// The response for async-openai to read. An error whose body is not OpenAI's
    /// `{"error": {...}}` (a proxy's HTML page, a FastAPI `{"detail": ...}`) is rewrapped in that
    /// shape, so it is reported by its status, not as an unreadable answer.
    fn into_response(self) -> openai_http::Response {
        let body = if !self.status.is_success() && !self.status.is_server_error() && !is_openai_error(&self.body) {
            let excerpt: String = String::from_utf8_lossy(&self.body).chars().take(200).collect();
            let wrapped = serde_json::json!({ "error": { "message": excerpt.trim(), "type": null, "param": null, "code": null } });
            bytes::Bytes::from(wrapped.to_string())
        } else {
            self.body
        };
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = self.status;
        *rebuilt.headers_mut() = self.headers;
        rebuilt.headers_mut().remove(http::header::CONTENT_LENGTH);
        openai_http::Response::from(rebuilt)
    }
}

/// Whether async-openai can read the body as its error shape (a message string, optional string
/// code: a gateway's numeric `code` is not).
fn is_openai_error(body: &[u8]) -> bool {
    serde_json::from_slice::<async_openai::error::WrappedError>(body).is_ok()
}

/// Retry-After in seconds (the form OpenAI and most gateways send).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    // Anything beyond a day is as good as "too long" (and must not overflow a Duration).
    value.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        for retry in 0..10 {
            let ceiling = policy.base_backoff.saturating_mul(2u32.pow(retry)).min(policy.max_backoff);
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(86_400)), "clamped, no overflow");
    }
}
