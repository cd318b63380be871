//! A fake OpenAI-compatible API on 127.0.0.1 for tests of the real `async-openai` client. It
//! answers in OpenAI's JSON shapes (chat completions, the model list, errors) and checks
//! requests as OpenAI does: the API key, a known model, well-formed messages, temperature in
//! [0, 2], positive token limits, the response format and the "json" word rule of
//! `json_object`. Every request is recorded. Faults can be injected: 429 with or without
//! `Retry-After`, exhausted quota, 5xx, hangs, malformed JSON, and empty, truncated, filtered
//! or refused answers. Without a scripted answer it writes an Armenian Markdown post that
//! quotes its source (with a preamble and bold markup for the product to clean), or a fixed
//! JSON review when JSON was asked for.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

pub const API_KEY: &str = "sk-test-fake-openai-key-0123456789";

const DEFAULT_MODELS: &[&str] = &["gpt-4o-mini", "test-model"];
const COMPLETIONS_PATH: &str = "/v1/chat/completions";
/// `created` of every completion, and of every model object.
const CREATED: u32 = 1_764_000_000;
const MODEL_CREATED: u32 = 1_686_935_002;
/// How long a `Fault::Hang` holds its request when the fake is not dropped first.
const HANG: Duration = Duration::from_secs(600);
const ROLES: &[&str] = &["system", "developer", "user", "assistant"];
const FORMATS: &[&str] = &["text", "json_object", "json_schema"];
/// The answer preamble ("here is your post:") the product must remove.
const PREAMBLE: &str = "Ահա գրառումը՝";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// e.g. "/v1/chat/completions"
    pub path: String,
    /// The raw Authorization header value.
    pub authorization: Option<String>,
    /// The parsed JSON body, `Value::Null` if none or unparseable.
    pub body: Value,
    /// Arrival time.
    pub at: Instant,
}

impl Recorded {
    /// Content of the first message with this role ("system" / "user"); text parts are joined.
    pub fn message(&self, role: &str) -> Option<String> {
        let messages = self.body.get("messages")?.as_array()?;
        let message = messages.iter().find(|m| m.get("role").and_then(Value::as_str) == Some(role))?;
        content_text(message.get("content")?)
    }

    pub fn model(&self) -> Option<String> {
        self.body.get("model")?.as_str().map(str::to_string)
    }

    pub fn temperature(&self) -> Option<f64> {
        self.body.get("temperature")?.as_f64()
    }

    /// `max_completion_tokens` or `max_tokens`, whichever is present.
    pub fn max_tokens(&self) -> Option<u64> {
        let field = |name: &str| self.body.get(name).and_then(Value::as_u64);
        field("max_completion_tokens").or_else(|| field("max_tokens"))
    }

    /// `response_format.type` if present ("json_object", "json_schema", "text").
    pub fn response_format(&self) -> Option<String> {
        self.body.get("response_format")?.get("type")?.as_str().map(str::to_string)
    }
}

/// The text of a message content: a string, or the texts of `{type: "text", text}` parts joined.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()),
        _ => None,
    }
}

/// What a chat completion request can be made to suffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 `rate_limit_exceeded`, with `Retry-After: <secs>` unless `None`.
    RateLimited { retry_after_secs: Option<u64> },
    /// 429 `insufficient_quota`.
    QuotaExceeded,
    /// That HTTP status with a `server_error` body.
    ServerError(u16),
    /// No answer for 10 minutes (or until the fake is dropped), then 504.
    Hang,
    /// 200, `application/json`, a body that is not valid JSON.
    MalformedJson,
    /// 200, a valid completion with `"choices": []`.
    EmptyChoices,
    /// 200, content cut mid-sentence, finish_reason "length".
    Truncated,
    /// 200, content null, finish_reason "content_filter".
    ContentFilter,
    /// 200, content null, `refusal` set, finish_reason "stop".
    Refusal(String),
    /// 401 `invalid_api_key`, as if the key were wrong.
    Unauthorized,
    /// That status with an HTML page, as a proxy or gateway in front of the server answers.
    HtmlError(u16),
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    faults: VecDeque<Fault>,
    always: Option<Fault>,
    answers: VecDeque<String>,
    models: Vec<String>,
    delay: Duration,
    models_missing: bool,
    /// Refuse `response_format`, as some compatible servers do.
    json_mode_missing: bool,
    /// Completion objects sent so far (every 200 with a completion body, faulty ones included):
    /// numbers the ids and the "Տարբերակ <n>" of the default post.
    completions: u64,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handlers' state.
#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// Turns true when the `FakeOpenAi` is dropped: stops the server and wakes hanging requests.
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// The running fake server; it stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: watch::Sender<bool>,
    /// The server's own thread and runtime (`start_in_thread`).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOpenAi {
    /// Starts on the current tokio runtime (spawned task). Accepts `API_KEY` only.
    pub async fn start() -> FakeOpenAi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let (inner, stop, app) = setup();
        tokio::spawn(serve(listener, app, stop.subscribe()));
        FakeOpenAi { addr, inner, stop, thread: None }
    }

    /// Starts on its own thread with its own runtime, for sync tests and spawned binaries.
    pub fn start_in_thread() -> FakeOpenAi {
        // Bound here so the address is known at once; the thread's runtime adopts the socket.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (inner, stop, app) = setup();
        let stop_rx = stop.subscribe();
        let thread = std::thread::Builder::new()
            .name("fake-openai".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the fake OpenAI server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    serve(listener, app, stop_rx).await;
                });
                // Requests still being answered (long delays) are dropped, not awaited: Drop
                // of the `FakeOpenAi` joins this thread and must not hang.
                runtime.shutdown_background();
            })
            .expect("spawn the fake OpenAI thread");
        FakeOpenAi { addr, inner, stop, thread: Some(thread) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Base URL including `/v1`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far (all paths), in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Only the POST /v1/chat/completions requests.
    pub fn completions(&self) -> Vec<Recorded> {
        let inner = self.lock();
        inner.requests.iter().filter(|r| r.method == "POST" && r.path == COMPLETIONS_PATH).cloned().collect()
    }

    /// Queues a fault for the next chat completion request (FIFO, before scripted answers).
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Queues a fault for the next `n` chat completion requests.
    pub fn push_faults(&self, fault: Fault, n: usize) {
        self.lock().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Every chat completion request fails with this fault until cleared with `None`.
    pub fn set_always(&self, fault: Option<Fault>) {
        self.lock().always = fault;
    }

    /// Queues an exact assistant answer for the next chat completion (FIFO, after faults).
    pub fn push_answer(&self, content: &str) {
        self.lock().answers.push_back(content.to_string());
    }

    /// The model ids `/v1/models` lists and chat completions accept.
    pub fn set_models(&self, models: &[&str]) {
        self.lock().models = models.iter().map(|m| m.to_string()).collect();
    }

    /// Delays every answer (all routes) by this long.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Makes chat completions with `response_format` answer 400, as servers without JSON mode do.
    pub fn set_json_mode_unsupported(&self, unsupported: bool) {
        self.lock().json_mode_missing = unsupported;
    }

    /// Makes GET /v1/models and /v1/models/{id} answer 404, as some compatible servers do.
    pub fn set_models_endpoint_missing(&self, missing: bool) {
        self.lock().models_missing = missing;
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        // Stops accepting connections and wakes hanging requests (they answer 504).
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shared state, the stop switch and the app. Every request goes to the one fallback
/// handler, so that unknown paths and wrong methods are recorded and answered like OpenAI.
fn setup() -> (Arc<Mutex<Inner>>, watch::Sender<bool>, Router) {
    let models: Vec<String> = DEFAULT_MODELS.iter().map(|m| m.to_string()).collect();
    let inner = Arc::new(Mutex::new(Inner { models, ..Inner::default() }));
    let (stop, stop_rx) = watch::channel(false);
    let app = Router::new().fallback(handle).with_state(Shared { inner: inner.clone(), stop: stop_rx });
    (inner, stop, app)
}

/// Serves until the stop switch turns (or its sender is gone).
async fn serve(listener: tokio::net::TcpListener, app: Router, stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = async move { axum::serve(listener, app).await } => {}
        () = stopped(stop) => {}
    }
}

/// Resolves once the stop switch is on or its sender dropped.
async fn stopped(mut stop: watch::Receiver<bool>) {
    loop {
        // Copied out so that no watch guard lives across the await below.
        let now = *stop.borrow_and_update();
        if now || stop.changed().await.is_err() {
            return;
        }
    }
}

// ----- the HTTP side ---------------------------------------------------------------------------

fn error(status: StatusCode, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({ "error": { "message": message, "type": kind, "param": param, "code": code } });
    (status, axum::Json(body)).into_response()
}

/// 401 for a wrong key, showing only its first 3 and last 4 characters.
fn unauthorized(key: &str) -> Response {
    let chars: Vec<char> = key.chars().collect();
    let masked = if chars.len() >= 8 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}...{tail}")
    } else {
        "***".to_string()
    };
    let message = format!(
        "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    error(StatusCode::UNAUTHORIZED, &message, "invalid_request_error", None, Some("invalid_api_key"))
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        authorization: parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        at,
    };
    let (delay, models_missing, json_mode_missing) = {
        let mut inner = shared.lock();
        inner.requests.push(recorded.clone());
        (inner.delay, inner.models_missing, inner.json_mode_missing)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let key = recorded.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
    if key != API_KEY {
        return unauthorized(key);
    }
    let (method, path) = (recorded.method.as_str(), recorded.path.as_str());
    if method == "POST" && path == COMPLETIONS_PATH {
        if json_mode_missing && recorded.body.get("response_format").is_some_and(|f| !f.is_null()) {
            let message = "Unrecognized request argument supplied: response_format";
            return error(StatusCode::BAD_REQUEST, message, "invalid_request_error", Some("response_format"), None);
        }
        return chat_completion(&shared, &recorded.body).await;
    }
    if method == "GET" && !models_missing {
        if path == "/v1/models" {
            let data: Vec<Value> = shared.lock().models.iter().map(|m| model_json(m)).collect();
            return axum::Json(json!({ "object": "list", "data": data })).into_response();
        }
        if let Some(id) = path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) {
            let known = shared.lock().models.iter().any(|m| m == id);
            if known {
                return axum::Json(model_json(id)).into_response();
            }
            let message = format!("The model '{id}' does not exist");
            return error(
                StatusCode::NOT_FOUND,
                &message,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            );
        }
    }
    let message = format!("Invalid URL ({method} {path})");
    error(StatusCode::NOT_FOUND, &message, "invalid_request_error", None, None)
}

fn model_json(id: &str) -> Value {
    json!({ "id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "openai" })
}

/// A request OpenAI would refuse: status, message, param, code.
struct Invalid(StatusCode, String, Option<String>, Option<&'static str>);

impl Invalid {
    fn response(self) -> Response {
        error(self.0, &self.1, "invalid_request_error", self.2.as_deref(), self.3)
    }
}

/// A 400 about `param`.
fn bad(param: &str, code: &'static str, message: String) -> Invalid {
    Invalid(StatusCode::BAD_REQUEST, message, Some(param.to_string()), Some(code))
}

fn missing(param: &str) -> Invalid {
    bad(param, "missing_required_parameter", format!("Missing required parameter: '{param}'."))
}

fn wrong_type(param: &str, expected: &str, value: &Value) -> Invalid {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    bad(param, "invalid_type", format!("Invalid type for '{param}': expected {expected}, but got {got} instead."))
}

/// A string field (absent if null) that must be one of `allowed`.
fn one_of(value: Option<&Value>, param: &str, allowed: &[&str]) -> Result<String, Invalid> {
    match value {
        Some(Value::String(text)) if allowed.contains(&text.as_str()) => Ok(text.clone()),
        Some(Value::String(text)) => {
            let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
            let message = format!("Invalid value: '{text}'. Supported values are: {}.", list.join(", "));
            Err(bad(param, "invalid_value", message))
        }
        None => Err(missing(param)),
        Some(other) => Err(wrong_type(param, "a string", other)),
    }
}

/// A field of the request; JSON null counts as absent, as with OpenAI.
fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

/// What the answer depends on, from a valid request.
struct Checked {
    model: String,
    format: Option<String>,
    /// Characters (not bytes) of all message contents.
    prompt_chars: usize,
    /// The text of the last user message ("" if none).
    last_user: String,
}

/// Checks a chat completion request in OpenAI's order of concerns.
fn validate(body: &Value, models: &[String]) -> Result<Checked, Invalid> {
    let Some(object) = body.as_object() else {
        let message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)";
        return Err(Invalid(StatusCode::BAD_REQUEST, message.to_string(), None, None));
    };
    let model = match present(object, "model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        None | Some(Value::String(_)) => {
            return Err(bad("model", "missing_required_parameter", "you must provide a model parameter".into()));
        }
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    if !models.contains(&model) {
        let message = format!("The model `{model}` does not exist or you do not have access to it.");
        return Err(Invalid(StatusCode::NOT_FOUND, message, Some("model".into()), Some("model_not_found")));
    }
    let messages = match present(object, "messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => {
            let message = "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.";
            return Err(bad("messages", "empty_array", message.to_string()));
        }
        None => return Err(missing("messages")),
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    // (role, text) of each message.
    let mut texts: Vec<(String, String)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages[{index}]");
        let Some(fields) = message.as_object() else {
            return Err(wrong_type(&param, "an object", message));
        };
        let role = one_of(present(fields, "role"), &format!("{param}.role"), ROLES)?;
        let param = format!("{param}.content");
        let text = match present(fields, "content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => text_parts(parts, &param)?,
            None => return Err(missing(&param)),
            Some(other) => return Err(wrong_type(&param, "a string or an array of text parts", other)),
        };
        texts.push((role, text));
    }
    if let Some(value) = present(object, "temperature") {
        let temperature = value.as_f64().ok_or_else(|| wrong_type("temperature", "a decimal", value))?;
        if !(0.0..=2.0).contains(&temperature) {
            let message =
                format!("Invalid 'temperature': expected a value from 0 to 2, but got {temperature} instead.");
            return Err(bad("temperature", "invalid_value", message));
        }
    }
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(value) = present(object, name).filter(|v| v.as_u64().is_none_or(|n| n == 0)) {
            let message = format!("Invalid '{name}': expected a positive integer, but got {value} instead.");
            return Err(bad(name, "invalid_value", message));
        }
    }
    if present(object, "max_tokens").is_some() && present(object, "max_completion_tokens").is_some() {
        let message = "'max_tokens' and 'max_completion_tokens' cannot both be set; use 'max_completion_tokens'.";
        return Err(bad("max_tokens", "invalid_value", message.to_string()));
    }
    let format = match present(object, "response_format") {
        None => None,
        Some(Value::Object(fields)) => {
            let kind = one_of(present(fields, "type"), "response_format.type", FORMATS)?;
            // async-openai always sends the schema's name; OpenAI requires it.
            let name = fields.get("json_schema").and_then(|s| s.get("name")).and_then(Value::as_str);
            if kind == "json_schema" && name.is_none_or(str::is_empty) {
                return Err(missing("response_format.json_schema.name"));
            }
            Some(kind)
        }
        Some(other) => return Err(wrong_type("response_format", "an object", other)),
    };
    let mentions_json = texts.iter().any(|(_, text)| text.to_lowercase().contains("json"));
    if format.as_deref() == Some("json_object") && !mentions_json {
        let message =
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.";
        return Err(bad("messages", "invalid_value", message.to_string()));
    }
    match present(object, "stream") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            let message = "This fake OpenAI server does not stream: 'stream' must be false or absent.";
            return Err(bad("stream", "unsupported_value", message.to_string()));
        }
        Some(other) => return Err(wrong_type("stream", "a boolean", other)),
    }
    if let Some(n) = present(object, "n").filter(|n| n.as_u64() != Some(1)) {
        let message =
            format!("Invalid 'n': this fake OpenAI server answers one choice only, so 'n' must be 1, not {n}.");
        return Err(bad("n", "invalid_value", message));
    }
    let prompt_chars: usize = texts.iter().map(|(_, text)| text.chars().count()).sum();
    let last_user = texts.iter().rev().find(|(role, _)| role.as_str() == "user").map(|(_, text)| text.clone());
    Ok(Checked { model, format, prompt_chars, last_user: last_user.unwrap_or_default() })
}

/// The joined texts of an array content: a non-empty array of `{type: "text", text}` parts.
fn text_parts(parts: &[Value], param: &str) -> Result<String, Invalid> {
    if parts.is_empty() {
        let message = format!("Invalid '{param}': empty array. Expected an array with minimum length 1.");
        return Err(bad(param, "empty_array", message));
    }
    let mut joined = String::new();
    for (index, part) in parts.iter().enumerate() {
        let param = format!("{param}[{index}]");
        let fields = part.as_object().ok_or_else(|| wrong_type(&param, "an object", part))?;
        one_of(present(fields, "type"), &format!("{param}.type"), &["text"])?;
        match present(fields, "text") {
            Some(Value::String(text)) => joined.push_str(text),
            None => return Err(missing(&format!("{param}.text"))),
            Some(other) => return Err(wrong_type(&format!("{param}.text"), "a string", other)),
        }
    }
    Ok(joined)
}

async fn chat_completion(shared: &Shared, body: &Value) -> Response {
    let models = shared.lock().models.clone();
    let request = match validate(body, &models) {
        Ok(request) => request,
        Err(invalid) => return invalid.response(),
    };
    // A standing fault first, then queued faults, then scripted answers.
    let (fault, answer) = {
        let mut inner = shared.lock();
        match inner.always.clone().or_else(|| inner.faults.pop_front()) {
            Some(fault) => (Some(fault), None),
            None => (None, inner.answers.pop_front()),
        }
    };
    if let Some(fault) = fault {
        return apply_fault(shared, fault, &request).await;
    }
    let n = next_number(shared);
    let text = answer.unwrap_or_else(|| default_answer(n, &request));
    completion(n, &request, vec![choice(Some(text.as_str()), None, "stop")], text.chars().count())
}

fn next_number(shared: &Shared) -> u64 {
    let mut inner = shared.lock();
    inner.completions += 1;
    inner.completions
}

/// A fixed JSON review for JSON formats (or a request that asks for a `"score"` in words, as a
/// model without JSON mode still answers JSON when told to); else an Armenian post quoting its
/// source.
fn default_answer(n: u64, request: &Checked) -> String {
    let asked_in_words = request.format.is_none() && request.last_user.contains("\"score\"");
    if matches!(request.format.as_deref(), Some("json_object" | "json_schema")) || asked_in_words {
        let review = json!({
            "score": 7,
            "strengths": ["Վերնագիրը գրավիչ է", "Կա գործողության կոչ"],
            "problems": ["Տեքստը մի փոքր երկար է"],
            "suggestions": ["Կրճատեք երկրորդ պարբերությունը", "Ավելացրեք գինը"],
        });
        return review.to_string();
    }
    // The space after the closing `**` is deliberate, as specified.
    format!("{PREAMBLE}\n\n**✨ Տարբերակ {n}** \n\n{}\n\n#ShoppingTime", source_of(&request.last_user))
}

/// The block between the first two lines that are exactly `---` (trimmed), else the first 120
/// characters of the message.
fn source_of(user: &str) -> String {
    let lines: Vec<&str> = user.lines().collect();
    if let Some(start) = lines.iter().position(|line| *line == "---")
        && let Some(length) = lines[start + 1..].iter().position(|line| *line == "---")
    {
        return lines[start + 1..start + 1 + length].join("\n").trim().to_string();
    }
    user.chars().take(120).collect()
}

fn choice(content: Option<&str>, refusal: Option<&str>, finish_reason: &str) -> Value {
    json!({
        "index": 0,
        "message": { "role": "assistant", "content": content, "refusal": refusal },
        "logprobs": null,
        "finish_reason": finish_reason,
    })
}

/// A `chat.completion` object: P = prompt chars / 4, C = answer chars / 4, each at least 1.
fn completion(n: u64, request: &Checked, choices: Vec<Value>, answer_chars: usize) -> Response {
    let prompt_tokens = (request.prompt_chars / 4).max(1);
    let completion_tokens = (answer_chars / 4).max(1);
    axum::Json(json!({
        "id": format!("chatcmpl-fake-{n}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": request.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_fake",
    }))
    .into_response()
}

async fn apply_fault(shared: &Shared, fault: Fault, request: &Checked) -> Response {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let message = format!(
                "Rate limit reached for {} in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {}s.",
                request.model,
                retry_after_secs.unwrap_or(20)
            );
            let mut response =
                error(StatusCode::TOO_MANY_REQUESTS, &message, "requests", None, Some("rate_limit_exceeded"));
            if let Some(secs) = retry_after_secs {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Fault::QuotaExceeded => {
            let message = "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.";
            error(StatusCode::TOO_MANY_REQUESTS, message, "insufficient_quota", None, Some("insufficient_quota"))
        }
        Fault::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "The server had an error while processing your request.", "server_error", None, None)
        }
        Fault::Hang => {
            tokio::select! {
                () = tokio::time::sleep(HANG) => {}
                () = stopped(shared.stop.clone()) => {}
            }
            error(StatusCode::GATEWAY_TIMEOUT, "Gateway timeout.", "server_error", None, None)
        }
        Fault::MalformedJson => {
            let mut response = Response::new(Body::from(r#"{"id":"chatcmpl-x","choices":[{"message":"#));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Fault::EmptyChoices => completion(next_number(shared), request, Vec::new(), 0),
        Fault::Truncated => {
            let n = next_number(shared);
            // "Our new collection is already in the shop, and this week all" - cut mid-sentence.
            let cut = "Մեր նոր հավաքածուն արդեն խանութում է, և այս շաբաթ բոլոր";
            let text = format!("{PREAMBLE}\n\n**✨ Տարբերակ {n}**\n\n{cut}");
            completion(n, request, vec![choice(Some(text.as_str()), None, "length")], text.chars().count())
        }
        Fault::ContentFilter => completion(next_number(shared), request, vec![choice(None, None, "content_filter")], 0),
        Fault::Refusal(text) => {
            let choices = vec![choice(None, Some(text.as_str()), "stop")];
            completion(next_number(shared), request, choices, text.chars().count())
        }
        Fault::Unauthorized => unauthorized(API_KEY),
        Fault::HtmlError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page =
                format!("<html><head><title>{status}</title></head><body><h1>{status}</h1><hr>nginx</body></html>");
            let mut response = Response::new(Body::from(page));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
    }
}
