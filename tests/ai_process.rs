//! The AI as an operator and a content manager meet it, through the `postflow` binary and the
//! fake OpenAI-compatible server: `chat` drafts every format and runs every review action with a
//! model; `doctor` gives a clear verdict for no key, a wrong key, an unreachable server, an
//! unknown model, a server without a model list, and a healthy setup.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::fake_openai::{API_KEY, FakeOpenAi};
use common::postflow;

const FORMATS: [&str; 4] = ["Վաճառող փոստ", "Տեղեկատվական", "Ակցիա/Զեղչ", "Ընտրանի"];

fn chat(fake: &FakeOpenAi, input: &str) -> Output {
    chat_logging(fake, input, "warn")
}

fn chat_logging(fake: &FakeOpenAi, input: &str, log_level: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = postflow(&dir.path().join("store.redb"), &["chat", "--user", "1001"])
        .env("LOG_LEVEL", log_level)
        .env("OPENAI_API_KEY", API_KEY)
        .env("OPENAI_BASE_URL", fake.base_url())
        .env("OPENAI_MODEL", "test-model")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn chat_with_a_model_drafts_every_format_and_runs_every_review_action() {
    let fake = FakeOpenAi::start_in_thread();
    let mut input = String::new();
    for format in FORMATS {
        for line in [
            "📝 Նոր գրառում",
            format,
            "կաշվե պայուսակ, 20% զեղչ",
            "Բաց թողնել ⏭",
            "✨ Բարելավել",
            "ավելի ուրախ տոնով",
            "🌐 Թարգմանել",
            "🇷🇺 Ռուսերեն",
            "📊 Գնահատել",
            "⬅️ Վերադառնալ տեքստին",
            "✂️ Կրճատել",
            "/cancel",
        ] {
            input.push_str(line);
            input.push('\n');
        }
    }
    let output = chat(&fake, &input);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("AI: model test-model at {}", fake.base_url())), "{stdout}");
    assert!(!stdout.contains("Օֆլայն") && !stdout.contains("Չստացվեց") && !stdout.contains("Չհաջողվեց"), "{stdout}");
    assert_eq!(stdout.matches("Որակի գնահատականը՝ 7/10").count(), 4, "{stdout}");
    let sent = fake.completions();
    assert_eq!(sent.len(), 4 * 5, "generate, improve, translate, analyze and shorten per format");
    for (index, format) in FORMATS.iter().enumerate() {
        let calls = &sent[index * 5..index * 5 + 5];
        for call in calls {
            assert!(call.message("system").unwrap().contains(&format!("«{format}»")), "{format}: the format's prompt");
        }
        let users: Vec<String> = calls.iter().map(|c| c.message("user").unwrap()).collect();
        assert!(users[0].contains("կաշվե պայուսակ, 20% զեղչ"), "{format}: generate");
        assert!(users[1].contains("ավելի ուրախ տոնով"), "{format}: improve with the instruction");
        assert!(users[2].contains("ռուսերեն"), "{format}: translate");
        assert_eq!(calls[3].response_format().as_deref(), Some("json_object"), "{format}: analyze");
        assert!(users[4].contains("Կրճատիր"), "{format}: shorten");
    }
    // Every draft the admin saw came from the model, cleaned of its Markdown.
    for n in 1..=20 {
        if n % 5 != 4 {
            assert!(stdout.contains(&format!("✨ Տարբերակ {n}")), "answer {n} shown\n{stdout}");
        }
    }
    assert!(!stdout.contains("**"), "Markdown is converted, never shown raw");
}

#[test]
fn prompts_and_answers_reach_only_debug_logs_and_the_key_never() {
    let fake = FakeOpenAi::start_in_thread();
    let input = "📝 Նոր գրառում\nՎաճառող փոստ\nկաշվե պայուսակ\nԲաց թողնել ⏭\n";
    let info = chat_logging(&fake, input, "info");
    let info_log = String::from_utf8_lossy(&info.stderr);
    assert!(info_log.contains("AI call") && info_log.contains("prompt_tokens="), "accounting is logged: {info_log}");
    assert!(!info_log.contains("Լեզվի կանոններ") && !info_log.contains("Տարբերակ"), "no prompt or answer: {info_log}");
    let debug = chat_logging(&fake, input, "debug");
    let debug_log = String::from_utf8_lossy(&debug.stderr);
    assert!(debug_log.contains("Լեզվի կանոններ") && debug_log.contains("Տարբերակ"), "debug shows both");
    for log in [&info_log, &debug_log] {
        assert!(!log.contains(API_KEY) && !log.contains(&API_KEY[API_KEY.len() - 12..]), "the API key leaked");
    }
}

fn doctor(envs: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = postflow(&dir.path().join("store.redb"), &["doctor"]);
    command.env("OPENAI_MAX_ATTEMPTS", "1").env("OPENAI_TIMEOUT_SECS", "5");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let line = stdout.lines().find(|l| l.contains("AI")).unwrap_or_else(|| panic!("no AI line:\n{stdout}"));
    (output.status.success(), line.to_string())
}

#[test]
fn doctor_gives_a_plain_verdict_for_each_ai_setup() {
    let fake = FakeOpenAi::start_in_thread();
    let base = fake.base_url();
    let (ok, line) = doctor(&[]);
    assert!(ok && line.starts_with("– AI: offline (no OPENAI_API_KEY)"), "{line}");

    let (ok, line) = doctor(&[("OPENAI_API_KEY", API_KEY), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "test-model")]);
    assert!(ok, "{line}");
    assert!(line.starts_with(&format!("✔ AI: model test-model at {base}: model test-model listed by the server (")));
    assert!(line.ends_with(" ms)"), "with latency: {line}");

    let (ok, line) = doctor(&[
        ("OPENAI_API_KEY", "sk-wrong-key-000000"),
        ("OPENAI_BASE_URL", &base),
        ("OPENAI_MODEL", "test-model"),
    ]);
    assert!(!ok && line.contains("✘ AI:") && line.contains("refuses OPENAI_API_KEY (wrong or revoked key)"), "{line}");
    assert!(!line.contains("sk-wrong-key-000000"), "the key is never printed: {line}");

    let (ok, line) =
        doctor(&[("OPENAI_API_KEY", API_KEY), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "gpt-9-ultra")]);
    assert!(!ok, "{line}");
    assert!(
        line.contains("OPENAI_MODEL is not available on this server: `gpt-9-ultra` is not among the server's models (gpt-4o-mini, test-model)"),
        "{line}"
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("http://127.0.0.1:{closed}/v1");
    let (ok, line) = doctor(&[("OPENAI_API_KEY", API_KEY), ("OPENAI_BASE_URL", &unreachable)]);
    assert!(!ok && line.contains("the server cannot be reached (check OPENAI_BASE_URL and the network)"), "{line}");

    fake.set_models_endpoint_missing(true);
    let (ok, line) = doctor(&[("OPENAI_API_KEY", API_KEY), ("OPENAI_BASE_URL", &base), ("OPENAI_MODEL", "test-model")]);
    assert!(ok && line.contains("one-token completion with test-model"), "{line}");
    let ping = fake.completions().pop().unwrap();
    assert_eq!(ping.max_tokens(), Some(1));
}
