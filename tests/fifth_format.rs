//! A content manager adds a fifth format with one YAML file and its templates
//! (`tests/fixtures/fifth_format/`), no recompile: it validates, the create-post flow offers it,
//! the offline generator drafts it, and a model gets its own system prompt and settings.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::fake_openai::{API_KEY, FakeOpenAi};
use postflow::actions::CATALOGUE;
use postflow::ai::Ai;
use postflow::ai::openai::{OpenAi, OpenAiSettings, RetryPolicy};
use postflow::config;
use postflow::driver::Driver;
use postflow::engine::event::{Effect, Event, EventKind};
use postflow::store::Store;
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// The shipped configuration plus the fixture's files.
fn config_with_fifth_format() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for folder in ["flows", "formats", "prompts"] {
        copy_dir(&root.join(folder), &dir.path().join(folder));
    }
    copy_dir(&root.join("tests/fixtures/fifth_format"), dir.path());
    dir
}

fn load(dir: &Path) -> Arc<config::Bundle> {
    let loaded = config::load(dir, CATALOGUE, chrono_tz::Asia::Yerevan);
    Arc::new(loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources))))
}

#[test]
fn the_fifth_format_validates_and_the_flow_offers_and_drafts_it_offline() {
    let dir = config_with_fifth_format();
    let bundle = load(dir.path());
    assert_eq!(bundle.formats.len(), 5);
    let store_dir = tempfile::tempdir().unwrap();
    let driver = Driver::new(bundle.clone(), Store::open(&store_dir.path().join("s.redb")).unwrap());
    let mut now = 1_795_672_800;
    let mut send = |kind: EventKind| {
        now += 5;
        driver.handle(Event { chat_id: 9, user_id: 9, now, kind }).unwrap().effects
    };
    let shown = send(EventKind::Text { text: "📝 Նոր գրառում".into() });
    let buttons: Vec<String> = shown
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message } => {
                Some(message.keyboard.labels().into_iter().map(str::to_string).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert!(buttons.contains(&"🎁 Նվերի գաղափար".to_string()), "the flow lists the new format: {buttons:?}");

    let args = json!({ "format": "gift", "keywords": "ձեռագործ մոմ, ծննդյան օր" });
    let draft = Ai::offline().run_blocking(&bundle, "ai.generate", &args).result.unwrap();
    let text = draft["text"].as_str().unwrap();
    assert!(text.contains("Նվերի գաղափար՝ ձեռագործ մոմ") && text.contains("#նվեր"), "{text}");
    assert_eq!(draft["limit"], 900, "the format's own max_chars");
}

#[tokio::test]
async fn a_model_gets_the_fifth_formats_system_prompt_and_settings() {
    let dir = config_with_fifth_format();
    let bundle = load(dir.path());
    let fake = FakeOpenAi::start().await;
    let model = OpenAi::new(OpenAiSettings {
        api_key: API_KEY.to_string(),
        base_url: Some(fake.base_url()),
        model: "test-model".to_string(),
        timeout: std::time::Duration::from_secs(10),
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let ai = Ai::new(Arc::new(model));
    let args = json!({ "format": "gift", "keywords": "ձեռագործ մոմ, ծննդյան օր" });
    ai.run(&bundle, "ai.generate", &args).await.result.unwrap();
    let sent = &fake.completions()[0];
    let system = sent.message("system").unwrap();
    assert!(system.contains("Նվերի գրառումն օգնում է ընտրել նվեր"), "the gift role block: {system}");
    assert!(system.contains("Ում համար է նվերը"), "its structure from the YAML");
    assert!(system.contains("900 նիշ") && system.contains("30–70 բառ"), "its length");
    assert!(sent.message("user").unwrap().contains("Առիթը և ստացողին նշիր վերնագրում"), "its generate hints");
    assert!((sent.temperature().unwrap() - 0.9).abs() < 1e-6);
    assert_eq!(sent.max_tokens(), Some(500));
}
