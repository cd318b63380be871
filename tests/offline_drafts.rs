//! The offline generator: every shipped format gives a deterministic draft of valid Telegram HTML
//! within the format's target length, with the keywords, details, a call to action and hashtags.

use std::path::Path;

use postflow::actions::CATALOGUE;
use postflow::ai::Ai;
use postflow::config;
use postflow::config::Bundle;
use postflow::engine::html;

struct Draft {
    text: String,
    words: usize,
}

/// The offline generator's draft, through the `ai.generate` action.
fn offline_draft(bundle: &Bundle, format: &str, keywords: &str, details: Option<&str>) -> Draft {
    let args = serde_json::json!({ "format": format, "keywords": keywords, "details": details });
    let completed = Ai::offline().run_blocking(bundle, "ai.generate", &args);
    let value = completed.result.unwrap_or_else(|e| panic!("{format}: {e:?}"));
    assert_eq!(value["offline"], true);
    assert_eq!(completed.calls.len(), 1, "one accounting entry per model call");
    assert_eq!(completed.calls[0].model, "offline");
    Draft { text: value["text"].as_str().unwrap().to_string(), words: value["words"].as_u64().unwrap() as usize }
}

#[test]
fn every_format_drafts_within_its_length() {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)));
    let inputs = [
        ("կաշվե պայուսակ, նոր հավաքածու, 20% զեղչ", Some("Գինը՝ 25000 ֏, առաքումն անվճար է Երևանում")),
        ("բրդյա սվիտեր", None),
        ("ձմեռային կոշիկներ, սանդալներ, ակնոցներ, գլխարկներ", Some("Միայն այս շաբաթ")),
    ];
    let mut problems = Vec::new();
    for format in &bundle.formats {
        for (keywords, details) in inputs {
            let draft = offline_draft(&bundle, &format.id, keywords, details);
            let again = offline_draft(&bundle, &format.id, keywords, details);
            assert_eq!(draft.text, again.text, "deterministic");
            assert_eq!(html::sanitize(&draft.text), draft.text, "valid Telegram HTML");
            let plain = html::to_plain_text(&draft.text, false);
            if !(format.min_words as usize..=format.max_words as usize).contains(&draft.words) {
                problems.push(format!(
                    "{} with {keywords:?}/{details:?}: {} words, target {}–{}",
                    format.id, draft.words, format.min_words, format.max_words
                ));
            }
            let first = keywords.split(',').next().unwrap().trim();
            assert!(plain.contains(first), "{}: keyword {first:?} missing\n{plain}", format.id);
            if let Some(details) = details {
                assert!(plain.contains(details), "{}: details missing", format.id);
            }
            assert!(format.cta.iter().any(|cta| plain.contains(cta.as_str())), "{}: no call to action", format.id);
            assert!(format.hashtags.iter().all(|tag| plain.contains(tag.as_str())), "{}: hashtags", format.id);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn keywords_cannot_inject_html() {
    let loaded = config::load(Path::new(env!("CARGO_MANIFEST_DIR")), CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = loaded.result.unwrap_or_else(|d| panic!("{}", config::render_diagnostics(&d, &loaded.sources)));
    let draft = offline_draft(&bundle, "selling", "<script>x</script>, a & b", Some("<b>bold"));
    assert!(draft.text.contains("&lt;script&gt;"));
    assert!(!draft.text.contains("<script>"));
    assert_eq!(html::sanitize(&draft.text), draft.text);
}
