//! The AI actions through the real async-openai client against the fake OpenAI-compatible server:
//! what is sent (the format's system prompt, the keywords, model, temperature, token limit, JSON
//! mode), what comes back (cleaned, length-checked, shortened once), and every failure — each
//! ends in its own error code, retries stop at the bound, Retry-After is honoured, and every call
//! is accounted.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bot::load_bundle;
use common::fake_openai::{API_KEY, FakeOpenAi, Fault};
use postflow::ai::Ai;
use postflow::ai::openai::{OpenAi, OpenAiSettings, RetryPolicy};
use postflow::config::Bundle;
use postflow::config::bundle::ActionErrorCode;
use postflow::engine::html;
use serde_json::{Value, json};

const MODEL: &str = "test-model";

/// An AI over the fake, whose waits between attempts are recorded instead of slept.
struct Harness {
    fake: FakeOpenAi,
    ai: Ai,
    waits: Arc<Mutex<Vec<Duration>>>,
    bundle: Arc<Bundle>,
}

async fn harness(attempts: u32, timeout: Duration) -> Harness {
    let fake = FakeOpenAi::start().await;
    let waits = Arc::new(Mutex::new(Vec::new()));
    let recorded = waits.clone();
    let retry = RetryPolicy {
        attempts,
        sleep: Arc::new(move |wait| {
            recorded.lock().unwrap().push(wait);
            Box::pin(async {})
        }),
        ..RetryPolicy::default()
    };
    let model = OpenAi::new(OpenAiSettings {
        api_key: API_KEY.to_string(),
        base_url: Some(fake.base_url()),
        model: MODEL.to_string(),
        timeout,
        retry,
    })
    .unwrap();
    let bundle = load_bundle(Path::new(env!("CARGO_MANIFEST_DIR")));
    Harness { fake, ai: Ai::new(Arc::new(model)), waits, bundle }
}

impl Harness {
    async fn run(&self, action: &str, args: Value) -> postflow::ai::Completed {
        self.ai.run(&self.bundle, action, &args).await
    }

    async fn generate(&self) -> postflow::ai::Completed {
        self.run("ai.generate", json!({ "format": "selling", "keywords": "կաշվե պայուսակ, 20% զեղչ" })).await
    }

    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
}

fn code(completed: &postflow::ai::Completed) -> ActionErrorCode {
    completed.result.as_ref().expect_err("the action should fail").code
}

#[tokio::test]
async fn the_formats_prompts_keywords_model_and_settings_are_sent_and_the_answer_is_cleaned() {
    let h = harness(3, Duration::from_secs(10)).await;
    let done = h.generate().await;
    let value = done.result.unwrap();
    let sent = &h.fake.completions()[0];
    let selling = h.bundle.format("selling").unwrap();
    let system = sent.message("system").unwrap();
    assert!(system.contains("«Վաճառող փոստ»"), "the format's name: {system}");
    assert!(system.contains("Վաճառող գրառումը պատմում է մեկ ապրանքի մասին"), "the selling role block");
    assert!(system.contains(selling.structure[1].as_str()), "the format's structure from its YAML");
    assert!(system.contains(&selling.hashtags.join(" ")), "hashtags");
    assert!(system.contains("1024 նիշ"), "the length limit");
    assert!(system.contains("Լեզվի կանոններ"), "the shared rules partial");
    let user = sent.message("user").unwrap();
    assert!(user.contains("կաշվե պայուսակ, 20% զեղչ"), "the keywords: {user}");
    assert_eq!(sent.model().as_deref(), Some(MODEL));
    let temperature = sent.temperature().unwrap();
    assert!((temperature - 0.8).abs() < 1e-6, "the selling format's temperature from its YAML: {temperature}");
    assert_eq!(sent.max_tokens(), Some(u64::from(selling.ai.max_tokens)));
    assert_eq!(sent.response_format(), None, "a post is not JSON");
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {API_KEY}").as_str()));
    // The fake answers Markdown with a preamble line: the product sends clean Telegram HTML.
    let text = value["text"].as_str().unwrap();
    assert!(text.starts_with("<b>✨ Տարբերակ 1</b>"), "{text}");
    assert!(!text.contains("**") && !text.contains("Ահա գրառումը"), "{text}");
    assert_eq!(html::sanitize(text), text);
    assert_eq!(value["offline"], false);
    assert_eq!(value["model"], MODEL);
    assert_eq!(value["fits"], true);
    let call = &done.calls[..];
    assert_eq!(call.len(), 1);
    assert_eq!(
        (call[0].action.as_str(), call[0].format.as_str(), call[0].outcome.as_str()),
        ("ai.generate", "selling", "ok")
    );
    assert!(call[0].prompt_tokens > 0 && call[0].completion_tokens > 0, "{call:?}");
}

#[tokio::test]
async fn improve_translate_shorten_analyze_and_cta_each_send_their_own_prompt() {
    let h = harness(3, Duration::from_secs(10)).await;
    let draft = "<b>Կաշվե պայուսակ</b> 20% զեղչով։ #ShoppingTime";
    let improved = h
        .run("ai.improve", json!({ "format": "promo", "text": draft, "instruction": "ավելի ուրախ" }))
        .await
        .result
        .unwrap();
    assert!(improved["text"].as_str().unwrap().contains("Կաշվե պայուսակ"));
    let translated =
        h.run("ai.translate", json!({ "format": "promo", "text": draft, "language": "ru" })).await.result.unwrap();
    assert_eq!(translated["language"], "ru");
    let shortened =
        h.run("ai.shorten", json!({ "format": "promo", "text": draft, "limit": 200 })).await.result.unwrap();
    assert_eq!(shortened["limit"], 200);
    let verdict = h.run("ai.analyze", json!({ "format": "promo", "text": draft })).await.result.unwrap();
    assert_eq!(verdict["score"], 7, "a whole score shows as 7, not 7.0");
    assert_eq!(verdict["strengths"][0], "Վերնագիրը գրավիչ է");
    h.fake.push_answer("```json\n{\"labels\": [\"Պատվիրե՛լ հիմա 🛍️\", \"<b>Գրե՛ք մեզ</b>\"]}\n```");
    let ctas = h.run("ai.suggest_cta", json!({ "format": "promo", "text": draft })).await.result.unwrap();
    assert_eq!(ctas["labels"], json!(["Պատվիրե՛լ հիմա 🛍️", "Գրե՛ք մեզ"]));

    let sent = h.fake.completions();
    let users: Vec<String> = sent.iter().map(|r| r.message("user").unwrap()).collect();
    assert!(users[0].contains("Բարելավիր") && users[0].contains("ավելի ուրախ") && users[0].contains(draft));
    assert!(users[1].contains("ռուսերեն") && users[1].contains(draft));
    assert!(users[2].contains("Կրճատիր") && users[2].contains("180 նիշ"), "90% of the limit: {}", users[2]);
    assert!(users[3].contains("JSON") && users[3].contains("Բառեր՝"), "measured facts go to the model");
    assert!(users[4].contains("labels"));
    let formats: Vec<Option<String>> = sent.iter().map(|r| r.response_format()).collect();
    assert_eq!(formats, vec![None, None, None, Some("json_object".into()), Some("json_object".into())]);
    for request in &sent {
        assert!(
            request.message("system").unwrap().contains("«Ակցիա/Զեղչ»"),
            "every call has the format's system prompt"
        );
    }
}

#[tokio::test]
async fn an_answer_too_long_is_shortened_once_then_reported_as_not_fitting() {
    let h = harness(3, Duration::from_secs(10)).await;
    let long = "Շատ երկար նախադասություն կաշվե պայուսակի մասին։ ".repeat(60);
    h.fake.push_answer(&long);
    h.fake.push_answer("<b>Կարճ</b> տարբերակ։");
    let value = h.generate().await.result.unwrap();
    assert_eq!((value["fits"].clone(), value["shortened"].clone()), (json!(true), json!(true)));
    assert_eq!(value["text"], "<b>Կարճ</b> տարբերակ։");
    let sent = h.fake.completions();
    assert_eq!(sent.len(), 2, "one generation and one shortening");
    assert!(sent[1].message("user").unwrap().contains("Կրճատիր"));

    h.fake.push_answer(&long);
    h.fake.push_answer(&long);
    let done = h.generate().await;
    let value = done.result.unwrap();
    assert_eq!(value["fits"], false, "still too long: the flow asks the admin");
    assert!(value["length"].as_u64().unwrap() > 1024);
    assert_eq!(h.fake.completions().len(), 4, "shortened once, not in a loop");
    assert_eq!(done.calls.len(), 2, "both calls accounted");
}

#[tokio::test]
async fn a_429_waits_for_its_retry_after_then_succeeds() {
    let h = harness(3, Duration::from_secs(10)).await;
    h.fake.push_fault(Fault::RateLimited { retry_after_secs: Some(7) });
    assert!(h.generate().await.result.is_ok());
    assert_eq!(h.fake.completions().len(), 2);
    assert_eq!(h.waits(), vec![Duration::from_secs(7)], "Retry-After is honoured");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_not_waited_for() {
    let h = harness(3, Duration::from_secs(10)).await;
    h.fake.push_fault(Fault::RateLimited { retry_after_secs: Some(3600) });
    let done = h.generate().await;
    assert_eq!(code(&done), ActionErrorCode::AiRateLimited);
    assert_eq!(h.fake.completions().len(), 1);
    assert!(h.waits().is_empty());
    assert_eq!(done.calls[0].outcome, "rate_limited");
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_jittered_backoff_and_stop_at_the_bound() {
    let h = harness(4, Duration::from_secs(10)).await;
    h.fake.set_always(Some(Fault::ServerError(502)));
    let done = h.generate().await;
    assert_eq!(code(&done), ActionErrorCode::AiUnavailable);
    assert_eq!(h.fake.completions().len(), 4, "exactly the configured attempts");
    let waits = h.waits();
    assert_eq!(waits.len(), 3);
    let policy = RetryPolicy::default();
    for (retry, wait) in waits.iter().enumerate() {
        let ceiling = policy.base_backoff * 2u32.pow(retry as u32);
        assert!(*wait <= ceiling.min(policy.max_backoff), "retry {retry}: {wait:?} over {ceiling:?}");
    }
    assert_eq!(done.calls.len(), 1, "one action call, however many attempts");
    assert_eq!(done.calls[0].outcome, "unavailable");
}

#[tokio::test]
async fn a_hanging_server_times_out_each_attempt() {
    let h = harness(2, Duration::from_millis(300)).await;
    h.fake.set_always(Some(Fault::Hang));
    let done = h.generate().await;
    assert_eq!(code(&done), ActionErrorCode::AiTimeout);
    assert_eq!(h.fake.completions().len(), 2);
}

#[tokio::test]
async fn answers_that_are_not_posts_are_recognised_and_not_retried() {
    let cases = [
        (Fault::MalformedJson, ActionErrorCode::AiBadAnswer, "malformed"),
        (Fault::EmptyChoices, ActionErrorCode::AiEmpty, "empty"),
        (Fault::Truncated, ActionErrorCode::AiTruncated, "truncated"),
        (Fault::ContentFilter, ActionErrorCode::AiRefused, "refused"),
        (Fault::Refusal("I can't help with that.".into()), ActionErrorCode::AiRefused, "refused"),
        (Fault::Unauthorized, ActionErrorCode::AiMisconfigured, "unauthorized"),
        (Fault::QuotaExceeded, ActionErrorCode::AiRateLimited, "quota_exceeded"),
    ];
    for (fault, expected, outcome) in cases {
        let h = harness(3, Duration::from_secs(10)).await;
        h.fake.push_fault(fault.clone());
        let done = h.generate().await;
        assert_eq!(code(&done), expected, "{fault:?}");
        assert_eq!(h.fake.completions().len(), 1, "{fault:?} is not retried");
        assert_eq!(done.calls[0].outcome, outcome, "{fault:?}");
    }
}

#[tokio::test]
async fn a_proxys_html_error_page_is_read_by_its_status() {
    let cases = [
        (Fault::HtmlError(404), ActionErrorCode::AiMisconfigured, 1),
        (Fault::HtmlError(401), ActionErrorCode::AiMisconfigured, 1),
        (Fault::HtmlError(429), ActionErrorCode::AiRateLimited, 3),
        (Fault::HtmlError(502), ActionErrorCode::AiUnavailable, 3),
    ];
    for (fault, expected, attempts) in cases {
        let h = harness(3, Duration::from_secs(10)).await;
        h.fake.set_always(Some(fault.clone()));
        assert_eq!(code(&h.generate().await), expected, "{fault:?}");
        assert_eq!(h.fake.completions().len(), attempts, "{fault:?}");
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_configuration_problem() {
    let h = harness(3, Duration::from_secs(10)).await;
    h.fake.set_models(&["gpt-4o-mini"]);
    assert_eq!(code(&h.generate().await), ActionErrorCode::AiMisconfigured);
}

#[tokio::test]
async fn a_server_without_json_mode_is_asked_in_words_from_then_on() {
    let h = harness(3, Duration::from_secs(10)).await;
    h.fake.set_json_mode_unsupported(true);
    for _ in 0..2 {
        let verdict = h.run("ai.analyze", json!({ "format": "info", "text": "<b>Խորհուրդ</b>" })).await;
        assert_eq!(verdict.result.unwrap()["score"], 7);
    }
    let formats: Vec<Option<String>> = h.fake.completions().iter().map(|r| r.response_format()).collect();
    assert_eq!(formats, vec![Some("json_object".into()), None, None], "refused once, then not sent again");
}

#[tokio::test]
async fn a_malformed_quality_verdict_is_an_error_not_a_zero_score() {
    let h = harness(3, Duration::from_secs(10)).await;
    for answer in ["Տեքստը լավն է, 8 միավոր։", "{\"strengths\": [\"ok\"]}", "{\"score\": 14}"] {
        h.fake.push_answer(answer);
        let done = h.run("ai.analyze", json!({ "format": "info", "text": "<b>Խորհուրդ</b>" })).await;
        assert_eq!(code(&done), ActionErrorCode::AiBadAnswer, "{answer}");
    }
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_call() {
    let h = harness(3, Duration::from_secs(10)).await;
    let cases = [
        ("ai.generate", json!({ "format": "nope", "keywords": "x" }), ActionErrorCode::UnknownFormat),
        ("ai.generate", json!({ "format": "selling", "keywords": " , ;" }), ActionErrorCode::NoKeywords),
        ("ai.translate", json!({ "format": "selling", "text": "x", "language": "Russian" }), ActionErrorCode::BadInput),
        ("ai.improve", json!({ "format": "selling", "text": "  " }), ActionErrorCode::EmptyText),
    ];
    for (action, args, expected) in cases {
        assert_eq!(code(&h.run(action, args.clone()).await), expected, "{action} {args}");
    }
    assert!(h.fake.completions().is_empty());
}
